"""The balancing methods' mathematics against numbers worked out by hand on tiny tensors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from prefuse.methods import agm, gblend, gradients, mmpareto, ogm_ge, scores
from prefuse.models import combiners
from prefuse.tasks import make_task

# ---------------------------------------------------------------- scores


@pytest.mark.parametrize("kind,targets,logits,y", [
    ("multiclass", 3, torch.tensor([[0.0, 1, 2], [2, 0, 0]]), torch.tensor([2, 1])),
    ("binary", 1, torch.tensor([[0.5], [-1.0]]), torch.tensor([1, 0])),
    ("multilabel", 2, torch.tensor([[0.0, 1, 2, 0], [1, 1, 0, 3]]),
     torch.tensor([[1, 0], [0, 1]])),
    ("regression", 1, torch.tensor([[0.5], [-1.0]]), torch.tensor([1.0, 2.0])),
])
def test_per_sample_losses_average_to_the_task_loss(kind, targets, logits, y):
    task = make_task(kind, targets)
    per = scores.per_sample_loss(task, logits, y)
    assert per.shape == (2,)
    assert per.mean().item() == pytest.approx(task.loss(logits, y).item(), rel=1e-6)


def test_confidence_is_the_true_class_probability():
    # logits (0, ln 3): softmax (1/4, 3/4); the true class 1 has probability 3/4
    task = make_task("multiclass", 2)
    per = scores.per_sample_loss(task, torch.tensor([[0.0, math.log(3)]]), torch.tensor([1]))
    assert scores.confidence(per).item() == pytest.approx(0.75)
    # binary logit ln 3 -> sigmoid 3/4; label 0 -> probability 1/4
    task = make_task("binary", 1)
    per = scores.per_sample_loss(task, torch.tensor([[math.log(3)]]), torch.tensor([0]))
    assert scores.confidence(per).item() == pytest.approx(0.25)
    # regression: exp(-|0.5 - 1.0|)
    task = make_task("regression", 1)
    per = scores.per_sample_loss(task, torch.tensor([[1.0]]), torch.tensor([0.5]))
    assert scores.confidence(per).item() == pytest.approx(math.exp(-0.5))


# ---------------------------------------------------------------- OGM-GE


def test_ogm_scores_sum_true_class_probabilities():
    # exp(-0) + exp(-ln 2) = 1.5 ; exp(-ln 4) * 2 = 0.5
    losses = torch.tensor([[0.0, math.log(2)], [math.log(4), math.log(4)]])
    assert ogm_ge.ogm_scores(losses).tolist() == pytest.approx([1.5, 0.5])


def test_ogm_coefficient_two_modalities():
    # rho = (3/1.5, 1.5/3) = (2, 0.5); k_0 = 1 - tanh(0.5 * 2) = 1 - 0.7615942 ; k_1 = 1
    k = ogm_ge.ogm_coefficients(torch.tensor([3.0, 1.5]), alpha=0.5)
    assert k.tolist() == pytest.approx([1 - 0.7615941559557649, 1.0])


def test_ogm_coefficient_three_modalities_uses_the_weakest_other():
    # scores (4, 2, 1): rho = (4/1, 2/1, 1/2) = (4, 2, 0.5)
    assert ogm_ge.discrepancy_ratios(torch.tensor([4.0, 2, 1])).tolist() == \
        pytest.approx([4, 2, 0.5])
    # alpha 0.1: k = (1 - tanh 0.4, 1 - tanh 0.2, 1) = (1 - 0.379949, 1 - 0.197375, 1)
    k = ogm_ge.ogm_coefficients(torch.tensor([4.0, 2, 1]), alpha=0.1)
    assert k.tolist() == pytest.approx([1 - 0.3799489622552249, 1 - 0.197375320224904, 1])


def test_ogm_equal_scores_leave_everyone_alone():
    assert ogm_ge.ogm_coefficients(torch.tensor([2.0, 2.0, 2.0])).tolist() == [1, 1, 1]


def test_ogm_zero_weakest_score_stops_the_leader_without_nan():
    k = ogm_ge.ogm_coefficients(torch.tensor([1.0, 0.0]))
    assert k.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("bad", [torch.tensor([1.0]), torch.tensor([1.0, float("nan")]),
                                 torch.tensor([1.0, -1.0])])
def test_ogm_rejects_bad_scores(bad):
    with pytest.raises(ValueError):
        ogm_ge.ogm_coefficients(bad)


def _two_encoders(seed=0):
    torch.manual_seed(seed)
    encoders = [torch.nn.Linear(3, 4), torch.nn.Linear(2, 4)]
    x0, x1 = torch.randn(5, 3), torch.randn(5, 2)
    (encoders[0](x0).pow(2).sum() + encoders[1](x1).sin().sum()).backward()
    return encoders


def test_ogm_modulation_changes_only_the_dominant_encoder():
    encoders = _two_encoders()
    before = [[p.grad.clone() for p in e.parameters()] for e in encoders]
    k = torch.tensor([0.25, 1.0])
    ogm_ge.modulate_([e.parameters() for e in encoders], k, noise=False)
    for g0, p in zip(before[0], encoders[0].parameters()):
        assert torch.allclose(p.grad, 0.25 * g0)
    for g0, p in zip(before[1], encoders[1].parameters()):
        assert torch.equal(p.grad, g0)


def test_modulated_parameters_are_the_weight_matrices():
    e = torch.nn.Linear(3, 4)
    assert ogm_ge.modulated_parameters(e) == [e.weight]


def test_ogm_noise_has_the_gradients_std_and_is_reproducible():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.zeros(400, 500))
    g = torch.randn(400, 500) * 0.3 + 0.1
    p.grad = g.clone()
    ogm_ge.modulate_([[p]], torch.tensor([0.5]), torch.Generator().manual_seed(7))
    noise = p.grad - 0.5 * g
    # 200,000 draws: the sample std is within 1% of std(g) (its standard error is ~0.16%)
    assert noise.std().item() == pytest.approx(g.std().item(), rel=0.01)
    assert abs(noise.mean().item()) < 0.01 * g.std().item()  # about 4.5 standard errors
    again = torch.nn.Parameter(torch.zeros(400, 500))
    again.grad = g.clone()
    ogm_ge.modulate_([[again]], torch.tensor([0.5]), torch.Generator().manual_seed(7))
    assert torch.equal(again.grad, p.grad)
    other = torch.nn.Parameter(torch.zeros(400, 500))
    other.grad = g.clone()
    ogm_ge.modulate_([[other]], torch.tensor([0.5]), torch.Generator().manual_seed(8))
    assert not torch.equal(other.grad, p.grad)


def test_ogm_noise_needs_a_generator():
    with pytest.raises(ValueError, match="Generator"):
        ogm_ge.modulate_([e.parameters() for e in _two_encoders()], torch.tensor([1.0, 1.0]))


# ---------------------------------------------------------------- MMPareto


def test_min_norm_weight_for_conflicting_gradients():
    # g_f = (1, 0), g_u = (-1, 1): cos < 0.
    # w = (g_u - g_f).g_u / |g_f - g_u|^2 = (-2, 1).(-1, 1) / |(2, -1)|^2 = 3 / 5
    g_f, g_u = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    assert mmpareto.pareto_weights(g_f, g_u) == pytest.approx((0.6, 0.4))
    # the combination 0.6 g_f + 0.4 g_u = (0.2, 0.4) has equal, positive dot products
    d = 0.6 * g_f + 0.4 * g_u
    assert d.dot(g_f).item() == pytest.approx(d.dot(g_u).item()) == pytest.approx(0.2)


def test_agreeing_gradients_get_equal_weights():
    assert mmpareto.pareto_weights(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])) == \
        (0.5, 0.5)


def test_combined_gradient_takes_the_summed_norm_times_gamma():
    # conflict above: h = 2 (0.2, 0.4) = (0.4, 0.8), |h| = sqrt(0.8) = 0.894 < |g_f + g_u| = 1
    # -> stretched to norm 1, times gamma 1.5: 1.5 (0.4, 0.8) / sqrt(0.8) = (0.67082, 1.34164)
    g_f, g_u = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    out = mmpareto.pareto_combine(g_f, g_u, (0.6, 0.4), gamma=1.5)
    assert out.tolist() == pytest.approx([0.6708204, 1.3416408])
    assert out.norm().item() == pytest.approx(1.5)
    # agreement: h = g_f + g_u = (2, 1) exactly, so the result is 1.5 (2, 1)
    out = mmpareto.pareto_combine(g_f, torch.tensor([1.0, 1.0]), (0.5, 0.5), gamma=1.5)
    assert out.tolist() == pytest.approx([3.0, 1.5])


def test_exactly_opposed_gradients_give_zero():
    # g_f = (1, 0), g_u = (-2, 0): w = (-3, 0).(-2, 0) / 9 = 2/3, 2/3 g_f + 1/3 g_u = 0
    g_f, g_u = torch.tensor([1.0, 0.0]), torch.tensor([-2.0, 0.0])
    w = mmpareto.pareto_weights(g_f, g_u)
    assert w == pytest.approx((2 / 3, 1 / 3))
    assert mmpareto.pareto_combine(g_f, g_u, w).tolist() == [0.0, 0.0]


def test_mmpareto_direction_per_encoder_magnitude_per_tensor():
    # Encoder of two tensors A (2 entries) and B (1 entry).
    # g_f = (1, 0 | 0), g_u = (-1, 1 | 3): dot -1 -> conflict.
    # w = (g_u - g_f).g_u / |g_f - g_u|^2 = (-2, 1, 3).(-1, 1, 3) / 14 = 12 / 14 = 6/7.
    # A: h = 2 (6/7 (1, 0) + 1/7 (-1, 1)) = (10/7, 2/7), |h| = 1.457 > |(0, 1)| = 1: kept,
    #    times 1.5 = (15/7, 3/7).
    # B: h = 2 (1/7 * 3) = 6/7 < |3|: stretched to 3, times 1.5 = 4.5.
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    w = mmpareto.mmpareto_([a, b], [torch.tensor([1.0, 0.0]), torch.tensor([0.0])],
                           [torch.tensor([-1.0, 1.0]), torch.tensor([3.0])])
    assert w == pytest.approx((6 / 7, 1 / 7))
    assert a.grad.tolist() == pytest.approx([15 / 7, 3 / 7])
    assert b.grad.tolist() == pytest.approx([4.5])


def test_encoder_grads_from_two_losses():
    # y = w x with w = 2, x = 3: d(y)/dw = 3, d(-y^2)/dw = -2 y x = -36; unused -> zeros
    w, unused = torch.nn.Parameter(torch.tensor(2.0)), torch.nn.Parameter(torch.ones(2))
    y = w * 3.0
    g_f = mmpareto.encoder_grads(y, [w, unused])
    g_u = mmpareto.encoder_grads(-(y ** 2), [w, unused])
    assert g_f[0].item() == 3.0 and g_u[0].item() == -36.0
    assert g_f[1].tolist() == [0.0, 0.0]


# ---------------------------------------------------------------- AGM


def test_shapley_responses_two_modalities():
    # f(0) = 1, f(1) = 3, f(0,1) = 10, empty worth 0:
    # phi_0 = 1/2 [(f(0) - 0) + (f(01) - f(1))] = 1/2 (1 + 7) = 4
    # phi_1 = 1/2 [(f(1) - 0) + (f(01) - f(0))] = 1/2 (3 + 9) = 6 ; 4 + 6 = 10 = f(0,1)
    out = {frozenset({0}): torch.tensor([1.0]), frozenset({1}): torch.tensor([3.0]),
           frozenset({0, 1}): torch.tensor([10.0])}
    phi = agm.shapley_responses(out, 2)
    assert [p.item() for p in phi] == pytest.approx([4.0, 6.0])


def _toy_game(s: frozenset[int], u=(1.0, 2.0, 4.0)) -> float:
    """2 for any non-empty coalition + own values u + 6 if {0,1} both in + 3 if all three."""
    return (2.0 + sum(u[m] for m in s) + 6.0 * ({0, 1} <= s) + 3.0 * (len(s) == 3))


def test_shapley_responses_three_modalities_known_values():
    # Shapley values add over games: the constant 2 is shared equally (2/3 each), u_m goes
    # to m, the {0,1} bonus 6 is split 3 + 3, the all-three bonus 3 is split 1 + 1 + 1:
    # phi = (1 + 2/3 + 3 + 1, 2 + 2/3 + 3 + 1, 4 + 2/3 + 1) = (17/3, 20/3, 17/3), sum 18
    subsets = [frozenset(s) for s in ({0}, {1}, {2}, {0, 1}, {0, 2}, {1, 2}, {0, 1, 2})]
    out = {s: torch.full((2, 3), _toy_game(s)) for s in subsets}
    out[frozenset()] = torch.full((2, 3), 99.0)  # not needed, changes nothing
    phi = agm.shapley_responses(out, 3)
    assert [p[0, 0].item() for p in phi] == pytest.approx([17 / 3, 20 / 3, 17 / 3])
    assert torch.allclose(sum(phi), out[frozenset({0, 1, 2})])


def test_shapley_responses_sum_to_the_fused_output_and_carry_gradients():
    torch.manual_seed(0)
    subsets = [frozenset(s) for s in ({0}, {1}, {2}, {0, 1}, {0, 2}, {1, 2}, {0, 1, 2})]
    out = {s: torch.randn(4, 2, requires_grad=True) for s in subsets}
    phi = agm.shapley_responses(out, 3)
    assert torch.allclose(sum(phi), out[frozenset({0, 1, 2})], atol=1e-6)
    # the full coalition enters phi_0 with weight 2! 0! / 3! = 1/3
    phi[0].sum().backward()
    assert torch.allclose(out[frozenset({0, 1, 2})].grad, torch.full((4, 2), 1 / 3))


def test_shapley_responses_need_every_subset():
    with pytest.raises(ValueError, match="missing"):
        agm.shapley_responses({frozenset({0, 1}): torch.zeros(1)}, 2)


def test_dominance_ratios_favour_the_lower_loss():
    # s = (0.2, 0.6): r_0 = exp(0.6 - 0.2), r_1 = exp(0.2 - 0.6)
    assert agm.dominance_ratios(torch.tensor([0.2, 0.6])).tolist() == \
        pytest.approx([math.exp(0.4), math.exp(-0.4)])
    # s = (0.1, 0.4, 0.7): mean of the others minus own = (0.45, 0, -0.45)
    assert agm.dominance_ratios(torch.tensor([0.1, 0.4, 0.7])).tolist() == \
        pytest.approx([math.exp(0.45), 1.0, math.exp(-0.45)])


def test_agm_coefficient_slows_the_modality_ahead_of_its_trend():
    # running (0.4, 0.4): r_hat = (1, 1); current (0.2, 0.6): r = (1.49182, 0.67032)
    # c = exp(1.5 (1 - 1.4918247)), exp(1.5 (1 - 0.6703200)) = exp(-0.737737), exp(0.494520)
    #   = (0.4781948, 1.6397109)
    c = agm.agm_coefficients(torch.tensor([0.2, 0.6]), torch.tensor([0.4, 0.4]), alpha=1.5)
    assert c.tolist() == pytest.approx([0.4781948, 1.6397109], rel=1e-6)


def test_agm_coefficient_exponent_is_capped():
    # running (0, 10): r_hat_0 = exp(10) ~ 22026; current equal: r = (1, 1); cap 10
    c = agm.agm_coefficients(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 10.0]), alpha=0.5)
    assert c[0].item() == pytest.approx(math.exp(5.0))
    assert c[1].item() == pytest.approx(math.exp(0.5 * (math.exp(-10) - 1)))


def test_agm_coefficients_scale_each_encoders_gradients():
    encoders = _two_encoders()
    before = [[p.grad.clone() for p in e.parameters()] for e in encoders]
    gradients.scale_grads_([e.parameters() for e in encoders], torch.tensor([0.5, 2.0]))
    for k, e, grads in zip((0.5, 2.0), encoders, before):
        for g0, p in zip(grads, e.parameters()):
            assert torch.allclose(p.grad, k * g0)
    with pytest.raises(ValueError):
        gradients.scale_grads_([encoders[0].parameters()], torch.tensor([0.5, 2.0]))


def test_agm_scores_are_batch_mean_losses():
    assert agm.agm_scores(torch.tensor([[1.0, 3.0], [0.5, 0.5]])).tolist() == [2.0, 0.5]


def test_running_scores_average_and_round_trip():
    state = agm.RunningScores(2)
    # first step against zero averages (ratios 1): same as agm_coefficients with zeros
    c = state.coefficients(torch.tensor([0.2, 0.6]), alpha=1.5)
    assert c.tolist() == pytest.approx(
        agm.agm_coefficients(torch.tensor([0.2, 0.6]), torch.zeros(2), 1.5).tolist())
    state.update(torch.tensor([0.4, 0.2]))
    # mean of (0.2, 0.6) and (0.4, 0.2) = (0.3, 0.4)
    assert state.mean.tolist() == pytest.approx([0.3, 0.4])
    saved = json.loads(json.dumps(state.state_dict()))
    fresh = agm.RunningScores(2)
    fresh.load_state_dict(saved)
    assert fresh.count == 2 and fresh.mean.tolist() == pytest.approx([0.3, 0.4])
    with pytest.raises(ValueError):
        agm.RunningScores(3).load_state_dict(saved)


# ---------------------------------------------------------------- G-Blending


def test_blend_weights_by_hand():
    # A: G = 1.0 - 0.8 = 0.2; O = (0.8 - 0.5) - (1.0 - 1.0) = 0.3; G/O^2 = 2.2222
    # B: G = 1.1 - 0.9 = 0.2; O = (0.9 - 0.9) - (1.1 - 1.0) = -0.1; G/O^2 = 20
    # C: G = 0.9 - 1.0 < 0 -> 0.   Z = 22.2222 -> (0.1, 0.9, 0)
    w = gblend.blend_weights(train_before=[1.0, 1.0, 1.0], train_after=[0.5, 0.9, 0.4],
                             valid_before=[1.0, 1.1, 0.9], valid_after=[0.8, 0.9, 1.0])
    assert w == pytest.approx([0.1, 0.9, 0.0])


def test_blend_weights_edge_cases():
    # nothing generalises: uniform
    assert gblend.blend_weights([1, 1], [0.5, 0.5], [1, 1], [1.2, 1.0]) == [0.5, 0.5]
    # a branch with G = 0.2 and no overfitting growth (O = 0) takes (nearly) all the weight
    w = gblend.blend_weights([1, 1], [0.5, 0.8], [1, 1], [0.8, 0.8])
    assert w[1] == pytest.approx(1.0) and w[0] < 1e-9
    with pytest.raises(ValueError):
        gblend.blend_weights([1, 1], [1], [1, 1], [1, 1])
    with pytest.raises(ValueError):
        gblend.blend_weights([1], [float("nan")], [1], [1])


# ---------------------------------------------------------------- ensemble


def test_fit_blend_recovers_known_weights():
    rng = np.random.default_rng(0)
    preds = rng.normal(size=(50, 3))
    y = 0.5 + 2.0 * preds[:, 0] - 1.0 * preds[:, 1] + 0.25 * preds[:, 2]
    blend = combiners.fit_blend(preds, y)
    assert blend.coef[0] == pytest.approx([2.0, -1.0, 0.25], abs=1e-10)
    assert blend.intercept[0] == pytest.approx(0.5, abs=1e-10)
    assert combiners.apply_blend(blend, preds) == pytest.approx(y, abs=1e-10)
    restored = combiners.LinearBlend.from_dict(json.loads(json.dumps(blend.to_dict())))
    assert combiners.apply_blend(restored, preds) == pytest.approx(y, abs=1e-10)


def test_fit_blend_per_target():
    rng = np.random.default_rng(1)
    preds = rng.normal(size=(40, 2, 2))
    y = np.stack([1 + preds[:, 0, 0], -2 + 3 * preds[:, 1, 1]], axis=1)
    blend = combiners.fit_blend(preds, y)
    assert blend.coef == pytest.approx(np.array([[1.0, 0.0], [0.0, 3.0]]), abs=1e-10)
    assert blend.intercept == pytest.approx([1.0, -2.0], abs=1e-10)
    assert combiners.apply_blend(blend, preds).shape == (40, 2)
    with pytest.raises(ValueError):
        combiners.fit_blend(preds, y[:, :1])


def test_average_probabilities_by_hand():
    out = combiners.average_probabilities([np.array([0.2, 0.8]), np.array([0.6, 0.4])])
    assert out == pytest.approx([0.4, 0.6])
    with pytest.raises(ValueError):
        combiners.average_probabilities([np.array([1.5])])


def test_binary_ensemble_averages_probabilities_not_logits():
    # sigmoid(0) = 0.5, sigmoid(ln 3) = 0.75 -> mean 0.625 -> logit ln(0.625 / 0.375)
    combine = combiners.COMBINERS.get("binary")().combine
    z = combine([np.array([[0.0]]), np.array([[math.log(3)]])])
    assert z[0, 0] == pytest.approx(math.log(5 / 3))
    # logits 0 and 10: mean probability (0.5 + 0.9999546) / 2, not sigmoid(5) = 0.9933
    z = combine([np.array([[0.0]]), np.array([[10.0]])])
    assert 1 / (1 + math.exp(-z[0, 0])) == pytest.approx(0.7499773, rel=1e-6)


def test_multiclass_and_multilabel_ensembles_decode_to_mean_probabilities():
    p1, p2 = np.array([[0.2, 0.3, 0.5]]), np.array([[0.6, 0.2, 0.2]])
    z = combiners.COMBINERS.get("multiclass")().combine([np.log(p1), np.log(p2)])
    assert make_task("multiclass", 3).decode(z)[1] == pytest.approx(np.array([[0.4, 0.25, 0.35]]))
    # two labels as (absent, present) pairs: present probabilities (0.8, 0.1) and (0.4, 0.3)
    m1 = np.log(np.array([[0.2, 0.8, 0.9, 0.1]]))
    m2 = np.log(np.array([[0.6, 0.4, 0.7, 0.3]]))
    z = combiners.COMBINERS.get("multilabel")().combine([m1, m2])
    assert make_task("multilabel", 2).decode(z)[1] == pytest.approx(np.array([[0.6, 0.2]]))


def test_regression_ensemble_fits_on_validation():
    rng = np.random.default_rng(2)
    valid = [rng.normal(size=(30, 1)) for _ in range(2)]
    y = 0.3 * valid[0][:, 0] + 0.7 * valid[1][:, 0]
    combiner = combiners.COMBINERS.get("regression")()
    with pytest.raises(ValueError, match="fit"):
        combiner.combine(valid)
    out = combiner.fit(valid, y).combine(valid)
    assert out.shape == (30, 1) and out[:, 0] == pytest.approx(y, abs=1e-10)

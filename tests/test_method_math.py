"""The balancing methods' mathematics against numbers worked out by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from prefuse.tasks import make_task
from prefuse.training.methods import mmpareto, ogm_ge, scores

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

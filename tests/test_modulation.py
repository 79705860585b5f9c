"""OGM-GE, AGM and MMPareto inside real training steps on tiny networks, checked against
the papers' formulas worked by hand; then resuming and bad options (their tiny runs on the
built-in benchmark are in test_methods)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from prefuse.config import TrainConfig
from prefuse.data.batching import Batch, Tensors
from prefuse.engine.checkpoint import RunCheckpoints
from prefuse.engine.fit import fit
from prefuse.errors import ConfigError
from prefuse.methods import build_method
from prefuse.models.network import MultimodalNetwork, NetworkSpec
from prefuse.tasks import make_task, task_for

from .conftest import CPU, tiny_config
from .test_models import _batch, _spec

TASK = make_task("multiclass", 2, ["n", "y"])
LABELS = torch.tensor([0, 1, 0, 1, 1, 0])


def _two_modality_spec() -> NetworkSpec:
    return NetworkSpec(modalities=["a", "c"], dims={"a": 4, "c": 5},
                       sequence={"a": True, "c": False}, encoders={"a": "lstm", "c": "mlp"},
                       fusion="attention", out_dim=2, width=8, dropout=0.0, head_hidden=8,
                       unimodal_heads=True)


def _two_modality_batch() -> Batch:
    batch = _batch()
    return Batch({m: batch.x[m] for m in "ac"}, {m: batch.lengths[m] for m in "ac"},
                 {m: batch.present[m] for m in "ac"}, LABELS)


def _method(name: str, modalities, seed: int = 0, model=None, **options):
    config = tiny_config("unused", **{f"methods.{name}.{k}": v for k, v in options.items()})
    method = build_method(name, TASK, config, list(modalities))
    if model is not None:
        method.start(model, seed, CPU)
    return method


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


def _backward(model, method, batch):
    """Forward, the method's loss and backward: the gradients before ``after_backward``."""
    model.zero_grad(set_to_none=True)
    out = model(batch, method.request)
    method.loss(out, batch).backward()
    return out


# --- OGM-GE -----------------------------------------------------------------------------

def test_ogm_ge_scales_only_the_leading_encoders_weights_by_k():
    torch.manual_seed(0)
    model = MultimodalNetwork(_two_modality_spec())
    method = _method("ogm-ge", "ac", model=model, noise=False)
    batch = _two_modality_batch()
    fused = torch.autograd.grad(TASK.loss(model(batch).logits, batch.y),
                                list(model.encoders.parameters()))
    out = _backward(model, method, batch)

    # The heads read detached features: the encoders' gradients are the fused loss's alone.
    for before, g in zip(fused, [p.grad for p in model.encoders.parameters()]):
        assert torch.allclose(before, g)
    head_grads = _grads(model.unimodal_heads)
    assert head_grads and all(g.abs().sum() > 0 for g in head_grads.values())

    # Paper Eq. 10 by hand: s_u = mean_i softmax(z_u)_i[y_i], rho = s_u / s_other.
    s = {m: torch.softmax(out.unimodal_logits[m], 1)[torch.arange(6), batch.y].mean().item()
         for m in "ac"}
    lead, other = ("a", "c") if s["a"] > s["c"] else ("c", "a")
    k = 1 - math.tanh(0.8 * s[lead] / s[other])
    before = {m: _grads(model.encoders[m]) for m in "ac"}
    rest = _grads(model.fusion) | _grads(model.head)
    method.after_backward(model)

    for name, p in model.encoders[lead].named_parameters():
        factor = k if p.dim() >= 2 else 1.0  # weight matrices only, as the authors' code
        assert torch.allclose(p.grad, factor * before[lead][name], atol=1e-7), name
    for name, p in model.encoders[other].named_parameters():
        assert torch.equal(p.grad, before[other][name]), name
    for name, g in (_grads(model.fusion) | _grads(model.head)).items():
        assert torch.equal(g, rest[name])
    logged = method.end_epoch(1, model, None)
    assert logged[f"ogm_coeff_{lead}"] == pytest.approx(k)
    assert logged[f"ogm_coeff_{other}"] == 1.0


def _noisy_grads(seed: int) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = MultimodalNetwork(_two_modality_spec())
    method = _method("ogm-ge", "ac", seed=seed, model=model)
    _backward(model, method, _two_modality_batch())
    method.after_backward(model)
    return [p.grad.clone() for p in model.encoders.parameters()]


def test_ogm_ge_noise_comes_from_the_seed():
    first, again, other = _noisy_grads(0), _noisy_grads(0), _noisy_grads(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_ogm_ge_leaves_steps_outside_its_window_alone():
    torch.manual_seed(0)
    model = MultimodalNetwork(_two_modality_spec())
    method = _method("ogm-ge", "ac", model=model, first_epoch=2, last_epoch=2)
    batch = _two_modality_batch()
    _backward(model, method, batch)
    before = _grads(model)
    method.after_backward(model)
    assert all(torch.equal(p.grad, before[k]) for k, p in model.named_parameters()
               if p.grad is not None)
    assert method.end_epoch(1, model, None) == {"ogm_coeff_a": 1.0, "ogm_coeff_c": 1.0}
    _backward(model, method, batch)  # epoch 2: inside the window
    before = _grads(model.encoders)
    method.after_backward(model)
    assert not all(torch.equal(p.grad, before[k])
                   for k, p in model.encoders.named_parameters())
    assert method.state_dict()["epoch"] == 2


def test_ogm_ge_scores_only_samples_that_have_the_modality():
    torch.manual_seed(0)
    model = MultimodalNetwork(_two_modality_spec())
    method = _method("ogm-ge", "ac", model=model)
    batch = _two_modality_batch()
    batch.present["c"] = torch.tensor([True, True, False, True, False, True])
    out = model(batch, method.request)
    seen = method.scores_seen(out, batch)
    p = {m: torch.softmax(out.unimodal_logits[m], 1)[torch.arange(6), batch.y] for m in "ac"}
    assert seen == pytest.approx([p["a"].sum().item(), p["c"][batch.present["c"]].sum().item(),
                                  6.0, 4.0])


# --- AGM --------------------------------------------------------------------------------

def test_agm_responses_sum_to_the_fused_output():
    torch.manual_seed(0)
    model = MultimodalNetwork(_spec())
    method = _method("agm", "abc")
    assert sorted(method.request.keep) == sorted(
        [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c")])
    out = model(_batch(), method.request)
    responses = method.responses(out)
    assert len(responses) == 3
    assert torch.allclose(sum(responses), out.logits, atol=1e-6)


def test_agm_two_modality_responses_are_the_authors_formula():
    torch.manual_seed(0)
    model = MultimodalNetwork(replace(_two_modality_spec(), unimodal_heads=False))
    method = _method("agm", "ac")
    batch = _two_modality_batch()
    out = model(batch, method.request)

    def only(*kept):
        present = {m: torch.full((6,), m in kept) for m in "ac"}
        return model(Batch(batch.x, batch.lengths, present, batch.y)).logits

    # m_a = (f(a,c) - f(0,c) + f(a,0)) / 2, and m_c likewise.
    m_a, m_c = method.responses(out)
    assert torch.allclose(m_a, (out.logits - only("c") + only("a")) / 2, atol=1e-6)
    assert torch.allclose(m_c, (out.logits - only("a") + only("c")) / 2, atol=1e-6)


def test_agm_step_scales_each_encoder_by_its_coefficient():
    torch.manual_seed(0)
    model = MultimodalNetwork(_spec())
    method = _method("agm", "abc", model=model)
    batch = _batch()
    batch.y = LABELS
    out = _backward(model, method, batch)
    # By hand: s_m = mean CE of response m; r_m = exp(3/2 (mean(s) - s_m)); the running
    # averages start at 0 (r_hat = 1), so c_m = exp(1.5 (1 - r_m)).
    s = torch.stack([torch.nn.functional.cross_entropy(r, batch.y)
                     for r in method.responses(out)]).double()
    c = torch.exp(1.5 * (1 - torch.exp(1.5 * (s.mean() - s))))
    assert not torch.allclose(c, torch.ones(3, dtype=torch.float64))
    before = {m: _grads(model.encoders[m]) for m in "abc"}
    rest = _grads(model.fusion) | _grads(model.head)
    method.after_backward(model)
    for k, m in enumerate("abc"):
        for name, p in model.encoders[m].named_parameters():
            assert torch.allclose(p.grad, c[k].float() * before[m][name], atol=1e-7), (m, name)
    for name, g in (_grads(model.fusion) | _grads(model.head)).items():
        assert torch.equal(g, rest[name])
    logged = method.end_epoch(1, model, None)
    assert [logged[f"agm_coeff_{m}"] for m in "abc"] == pytest.approx(c.tolist())
    state = method.state_dict()["running"]
    assert state["count"] == 1 and state["mean"] == pytest.approx(s.tolist())


# --- MMPareto ---------------------------------------------------------------------------

def test_mmpareto_encoder_gradient_is_the_hand_combination():
    torch.manual_seed(0)
    model = MultimodalNetwork(replace(_spec(), unimodal_heads=True))
    method = _method("mmpareto", "abc", model=model)
    batch = _batch()
    batch.y = LABELS

    # By hand, from a separate forward: g_f and g_u per encoder, then the paper's rule.
    out = model(batch, method.request)
    fused = TASK.loss(out.logits, batch.y)
    expected, conflicts = {}, []
    for m in "abc":
        params = list(model.encoders[m].parameters())
        g_f = torch.autograd.grad(fused, params, retain_graph=True)
        g_u = torch.autograd.grad(TASK.loss(out.unimodal_logits[m], batch.y), params,
                                  retain_graph=True)
        a = torch.cat([g.reshape(-1) for g in g_f])
        b = torch.cat([g.reshape(-1) for g in g_u])
        if a.dot(b) > 0:
            w = 0.5
        else:  # min-norm point of the segment between the two gradients
            w = float(((b - a).dot(b) / (a - b).dot(a - b)).clamp(0, 1))
        conflicts.append(a.dot(b).item() <= 0)
        for name, gf, gu in zip([n for n, _ in model.encoders[m].named_parameters()], g_f, g_u):
            h = 2 * (w * gf + (1 - w) * gu)
            stretch = max(1.0, ((gf + gu).norm() / h.norm()).item())
            expected[m, name] = 1.5 * stretch * h
    assert True in conflicts and False in conflicts  # both branches are exercised
    summed = torch.autograd.grad(
        fused + sum(TASK.loss(out.unimodal_logits[m], batch.y) for m in "abc"),
        list(model.head.parameters()))

    _backward(model, method, batch)
    method.after_backward(model)
    for m in "abc":
        for name, p in model.encoders[m].named_parameters():
            assert torch.allclose(p.grad, expected[m, name], atol=1e-6), (m, name)
    for g, p in zip(summed, model.head.parameters()):
        assert torch.allclose(p.grad, g, atol=1e-7)
    logged = method.end_epoch(1, model, None)
    assert [logged[f"mmpareto_conflict_{m}"] for m in "abc"] == [float(c) for c in conflicts]


def test_mmpareto_leaves_frozen_encoders_alone_and_trains_their_heads():
    torch.manual_seed(0)
    model = MultimodalNetwork(replace(_spec(), unimodal_heads=True))
    model.encoders["a"].requires_grad_(False)
    method = _method("mmpareto", "abc", model=model)
    _backward(model, method, _batch())
    method.after_backward(model)
    assert all(p.grad is None for p in model.encoders["a"].parameters())
    assert all(p.grad is not None for p in model.encoders["b"].parameters())
    # Its auxiliary head still learns.
    assert all(p.grad is not None for p in model.unimodal_heads["a"].parameters())


# --- options, tiny runs, resuming -------------------------------------------------------

@pytest.mark.parametrize("name, key, value", [("ogm-ge", "alpha", 0.0),
                                              ("ogm-ge", "first_epoch", 0),
                                              ("agm", "alpha", -1.0),
                                              ("mmpareto", "gamma", 0.0)])
def test_bad_options_are_config_errors_naming_the_field(name, key, value):
    with pytest.raises(ConfigError, match=f"methods.{name}.{key}"):
        _method(name, "abc", **{key: value})


def test_defaults_are_the_published_ones():
    assert _method("ogm-ge", "ac").options.alpha == 0.8
    assert (_method("ogm-ge", "ac").options.first_epoch,
            _method("ogm-ge", "ac").options.last_epoch) == (1, 51)
    assert _method("agm", "ac").options.alpha == 1.5
    assert _method("mmpareto", "ac").options.gamma == 1.5


@pytest.mark.parametrize("name", ["ogm-ge", "agm"])
def test_comparing_methods_need_two_modalities(name):
    with pytest.raises(ConfigError, match="arms"):
        _method(name, "a")


@pytest.mark.parametrize("name, options", [("agm", {}), ("ogm-ge", {}),
                                           ("ogm-ge", {"last_epoch": 2})])
def test_resumed_fit_equals_an_uninterrupted_one(tiny_synthetic, tmp_path, name, options):
    """AGM's running scores and OGM-GE's epoch (its window) and noise generator are saved
    with each epoch, so stopping after epoch 2 and resuming gives the 3-epoch run."""
    from prefuse.recipe.stages import network_spec

    config = tiny_config(tmp_path, **{f"methods.{name}.{k}": v for k, v in options.items()})
    task = task_for(tiny_synthetic)
    data = Tensors(tiny_synthetic, task)

    def run(epochs: int, stage=None):
        method = build_method(name, task, config, tiny_synthetic.modalities)
        torch.manual_seed(0)
        model = MultimodalNetwork(network_spec(tiny_synthetic, config, task, "attention",
                                               method.request.unimodal_heads))
        model.fit_standardization(tiny_synthetic["train"])
        result = fit(model, method, data, task,
                     TrainConfig(epochs=epochs, lr=1e-2, patience=10), CPU, seed=0,
                     checkpoint=stage)
        return model, result.history

    stage = RunCheckpoints(tmp_path, CPU).start(config, resume=False).stage(0, "arm", name)
    run(2, stage)
    resumed, history = run(3, stage)
    whole, reference = run(3)
    # The best epoch's weights come back, so epoch 3 shows in the history (its training
    # loss and the method's coefficients), and any best state in the weights.
    assert history == reference
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key

"""Context layers over the utterances of a window, and the network built with them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from prefuse.config import RunConfig, TrainConfig, with_overrides
from prefuse.data.batching import Batch, Windows
from prefuse.engine.step import Objective, train_step
from prefuse.errors import ConfigError
from prefuse.methods import METHODS, build_method
from prefuse.models.context import CONTEXTS, contextualise, gather, mirrored, occupied, scatter
from prefuse.models.network import MultimodalNetwork, NetworkSpec
from prefuse.models.outputs import Request
from prefuse.models.recurrence import Recurrence, run
from prefuse.models.saving import load_model, save_model
from prefuse.recipe.arms import arm
from prefuse.recipe.checks import check_config
from prefuse.tasks import make_task

from .conftest import CPU, tiny_config
from .test_models import _batch, _spec

KINDS = ["gru", "lstm", "transformer"]
TASK = make_task("multiclass", 2, ["n", "y"])
# Six utterances in three windows (lengths 3, 2, 1), rows not in window order.
WINDOWS = Windows(window=torch.tensor([1, 0, 0, 2, 1, 0]), slot=torch.tensor([1, 0, 2, 0, 0, 1]),
                  count=3, size=3)


def _windows(lengths: list[int], order: torch.Tensor | None = None) -> Windows:
    """Windows of ``lengths``, rows in window order (or permuted by ``order``)."""
    window = torch.cat([torch.full((n,), w) for w, n in enumerate(lengths)])
    slot = torch.cat([torch.arange(n) for n in lengths])
    if order is not None:
        window, slot = window[order], slot[order]
    return Windows(window=window, slot=slot, count=len(lengths), size=max(lengths))


def _layer(kind: str, width: int = 6) -> torch.nn.Module:
    torch.manual_seed(0)
    return CONTEXTS.get(kind)(width, 0.0).eval()


def _context_spec(kind: str, **changes) -> NetworkSpec:
    return replace(_spec(), context=kind, **changes)


def _context_batch() -> Batch:
    batch = _batch()
    batch.windows = WINDOWS
    return batch


def test_scatter_and_gather_are_inverse_and_padding_is_zero():
    rows = torch.randn(6, 4)
    padded = scatter(rows, WINDOWS)
    assert padded.shape == (3, 3, 4)
    assert torch.equal(gather(padded, WINDOWS), rows)
    assert torch.equal(padded[1, 1], rows[0]) and torch.equal(padded[0, 2], rows[2])
    valid = occupied(WINDOWS)
    assert valid.sum(1).tolist() == [3, 2, 1]
    assert (padded[~valid] == 0).all()
    # Read backwards, each window's last utterance comes first.
    assert mirrored(WINDOWS).slot.tolist() == [0, 2, 0, 0, 1, 1]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("width", [6, 7])
def test_a_layer_keeps_the_width_and_sees_its_window_only(kind, width):
    layer = _layer(kind, width)
    rows = torch.randn(6, width)
    out = layer(rows, WINDOWS)
    assert out.shape == (6, width)
    for changed, same_window in ((1, [2, 5]), (2, [1, 5]), (4, [0])):
        moved = rows.clone()
        moved[changed] += torch.randn(width)  # not a constant: a layer norm takes it off
        diff = (layer(moved, WINDOWS) - out).abs().sum(1)
        others = [i for i in range(6) if i != changed]
        # Neighbours before and after it in its window change; no other window's rows.
        assert all(diff[i] > 1e-4 for i in same_window)
        assert all(diff[i] == 0 for i in others if i not in same_window)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_never_leaks_into_a_window(kind):
    layer = _layer(kind)
    rows = torch.randn(2, 6)
    alone = layer(rows, _windows([2]))
    longer = torch.cat([rows, torch.randn(5, 6)])
    # The same window of 2 padded to 5 beside a longer one, rows shuffled.
    order = torch.tensor([3, 0, 5, 2, 6, 1, 4])
    windows = _windows([2, 5], order)
    shuffled = layer(longer[order], windows)
    back = torch.empty_like(shuffled)
    back[order] = shuffled
    assert torch.allclose(back[:2], alone, atol=1e-6)
    with torch.no_grad():  # the Transformer's inference fast path masks alike
        assert torch.allclose(layer(longer[order], windows)[order.argsort()][:2], alone,
                              atol=1e-6)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_recurrent_layer_is_a_packed_bidirectional_layer(kind):
    """The two one-way layers give what one bidirectional layer on packed windows gives."""
    layer = _layer(kind)
    cell = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    both = cell(6, 3, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name, p in layer.ahead.named_parameters():
            getattr(both, name).copy_(p)
            getattr(both, name + "_reverse").copy_(getattr(layer.behind, name))
    rows, windows = torch.randn(9, 6), _windows([4, 2, 3])
    lengths = occupied(windows).sum(1)
    packed = pack_padded_sequence(scatter(rows, windows), lengths, batch_first=True,
                                  enforce_sorted=False)
    reference = gather(pad_packed_sequence(both(packed)[0], batch_first=True)[0], windows)
    expected = rows + layer.out(reference)
    assert torch.allclose(layer(rows, windows), expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_a_written_out_recurrence_is_torchs_layer_and_starts_like_it(kind):
    cell = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    torch.manual_seed(3)
    reference = cell(5, 4, batch_first=True)
    torch.manual_seed(3)
    layer = Recurrence(kind, 5, 4)
    # nn.GRU's / nn.LSTM's names, shapes and initial values.
    assert all(torch.equal(p, getattr(layer, n)) for n, p in reference.named_parameters())
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
            getattr(reference, [n for n, q in layer.named_parameters() if q is p][0]).copy_(p)
    x = torch.randn(3, 7, 5)
    assert torch.allclose(layer(x), reference(x)[0], atol=1e-5)
    with pytest.raises(ValueError, match="share"):
        run([layer, Recurrence(kind, 5, 3)], x.expand(2, -1, -1, -1))


@pytest.mark.parametrize("kind", KINDS)
def test_layers_run_together_give_what_each_gives_alone(kind):
    torch.manual_seed(0)
    layers = [CONTEXTS.get(kind)(6, 0.0) for _ in range(3)]
    rows = [torch.randn(9, 6, requires_grad=True) for _ in range(3)]
    windows = _windows([4, 2, 3], torch.randperm(9))
    together = contextualise(layers, rows, windows)
    sum(t.square().sum() for t in together).backward()
    grads = [r.grad.clone() for r in rows] + [p.grad.clone() for layer in layers
                                              for p in layer.parameters()]
    for r in rows:
        r.grad = None
    for layer in layers:
        layer.zero_grad()
    alone = [layer(r, windows) for layer, r in zip(layers, rows)]
    sum(t.square().sum() for t in alone).backward()
    assert all(torch.allclose(t, a, atol=1e-6) for t, a in zip(together, alone))
    again = [r.grad for r in rows] + [p.grad for layer in layers for p in layer.parameters()]
    assert all(torch.allclose(g, h, atol=1e-5) for g, h in zip(grads, again))


def test_every_modality_has_its_own_context_layer_and_the_fused_vectors_one():
    model = MultimodalNetwork(_context_spec("lstm"))
    layers = [model.encoders[m].context for m in "abc"]
    assert all(isinstance(c, CONTEXTS.get("lstm")) for c in layers)
    assert len({id(c) for c in layers}) == 3
    assert model.fused_context.out.out_features == 3 * 8
    # Each modality's context is in its encoder's module: the encoder group of the
    # optimizer (encoder_lr, freezing) takes it along.
    optimizer = model.configure_optimizer(TrainConfig(lr=1e-3, encoder_lr=1e-4))
    encoder_group = {id(p) for p in optimizer.param_groups[1]["params"]}
    assert optimizer.param_groups[1]["lr"] == 1e-4
    assert all(id(p) in encoder_group for c in layers for p in c.parameters())
    assert not any(id(p) in encoder_group for p in model.fused_context.parameters())


def test_without_context_nothing_is_built_and_windows_change_nothing():
    torch.manual_seed(0)
    model = MultimodalNetwork(_spec()).eval()
    assert not any("context" in n for n in model.state_dict())
    assert {n.split(".")[0] for n in model.state_dict()} == \
        {"standardize", "encoders", "fusion", "head"}
    plain = model(_batch())
    windowed = model(_context_batch(), Request(keep=(("a",),)))
    assert torch.equal(plain.logits, windowed.logits)
    assert torch.equal(plain.features, windowed.features)
    # Without context the network draws the same numbers when built: same parameters.
    torch.manual_seed(0)
    again = MultimodalNetwork(replace(_spec(), context="none", context_window=8))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))


@pytest.mark.parametrize("kind", KINDS)
def test_network_output_depends_on_its_window_alone(kind):
    torch.manual_seed(0)
    model = MultimodalNetwork(_context_spec(kind)).eval()
    batch = _context_batch()
    out = model(batch).logits
    batch.x["c"] = batch.x["c"].clone()
    batch.x["c"][4] += torch.randn(5)  # window 1 holds rows 0 and 4
    diff = (model(batch).logits - out).abs().sum(1)
    assert diff[0] > 1e-5 and diff[4] > 1e-5
    assert (diff[[1, 2, 3, 5]] == 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_an_absent_modality_tells_its_neighbours_nothing(kind):
    torch.manual_seed(0)
    model = MultimodalNetwork(_context_spec(kind)).eval()
    batch = _context_batch()
    batch.present["a"] = torch.tensor([True, True, False, True, True, True])
    out = model(batch).logits
    batch.x["a"] = batch.x["a"].clone()
    batch.x["a"][2] += 5.0  # row 2's "a" is absent: whatever it holds
    assert torch.equal(model(batch).logits, out)


@pytest.mark.parametrize("kind", KINDS)
def test_request_paths_see_the_context_enriched_vectors(kind):
    torch.manual_seed(0)
    model = MultimodalNetwork(_context_spec(kind, unimodal_heads=True)).eval()
    batch = _context_batch()
    out = model(batch, Request(unimodal_heads=True, keep=(("a", "c"),)))
    assert out.features.shape == (6, 3, 8) and out.weights.shape == (6, 3)
    assert torch.allclose(out.features, model.encode(batch))
    assert torch.allclose(out.unimodal_logits["b"], model.unimodal_heads["b"](out.features[:, 1]))
    assert torch.allclose(out.kept_logits[("a", "c")], model(batch.keeping(("a", "c"))).logits,
                          atol=1e-6)
    shared = model(batch, Request(shared_unimodal=True))
    for m in "abc":
        only = {k: torch.full((6,), k == m) for k in "abc"}
        # The fused path with one modality present, that modality's vectors as the
        # full batch has them (its own context layer sees it whole).
        z = model.fusion(out.features, torch.stack([only[k] for k in "abc"], 1))[0]
        expected = model.head(model.fused_context(z, WINDOWS))
        assert torch.allclose(shared.unimodal_logits[m], expected, atol=1e-6)


def test_a_batch_without_windows_is_utterances_each_alone():
    torch.manual_seed(0)
    model = MultimodalNetwork(_context_spec("gru")).eval()
    single = _batch()
    single.windows = _windows([1] * 6)
    assert torch.equal(model(_batch()).logits, model(single).logits)


def test_stage1_context_loads_and_the_fused_context_starts_fresh():
    spec = _context_spec("gru", unimodal_heads=True)
    torch.manual_seed(0)
    unimodal = MultimodalNetwork(spec.only("a"))
    assert unimodal.spec.context == "gru"
    with torch.no_grad():
        for p in unimodal.parameters():
            p.add_(0.5)
    torch.manual_seed(1)
    model = MultimodalNetwork(spec)
    fused_before = {k: v.clone() for k, v in model.fused_context.state_dict().items()}
    model.load_pretrained("a", unimodal)
    for name, value in unimodal.encoders["a"].context.state_dict().items():
        assert torch.equal(model.encoders["a"].context.state_dict()[name], value)
    for name, value in unimodal.encoders["a"].encoder.state_dict().items():
        assert torch.equal(model.encoders["a"].encoder.state_dict()[name], value)
    assert all(torch.equal(v, fused_before[k]) for k, v in model.fused_context.state_dict().items())
    assert not torch.equal(model.encoders["b"].context.out.weight,
                           unimodal.encoders["a"].context.out.weight)


def test_an_alone_arm_has_its_modality_context_and_a_fused_one():
    model = arm("alone-b").build(_context_spec("transformer"))
    assert model.modalities == ["b"]
    assert isinstance(model.encoders["b"].context, CONTEXTS.get("transformer"))
    assert model.fused_context.width == 8
    assert model(_context_batch()).logits.shape == (6, 2)


def test_model_context_is_checked_when_the_config_is_read():
    for kind in KINDS + ["none"]:
        check_config(with_overrides(RunConfig(), {"model.context": kind}))
    with pytest.raises(ConfigError, match="model.context") as err:
        check_config(with_overrides(RunConfig(), {"model.context": "bilstm"}))
    assert err.value.field == "model.context" and "transformer" in str(err.value)


def test_a_saved_context_model_reloads_with_its_context(tmp_path):
    torch.manual_seed(0)
    model = MultimodalNetwork(_context_spec("lstm", context_window=12)).eval()
    save_model(model, "scratch+attention", TASK, tmp_path)
    loaded, _, meta = load_model(tmp_path)
    assert meta["spec"]["context"] == "lstm" and loaded.spec.context_window == 12
    batch = _context_batch()
    assert torch.equal(loaded(batch).logits, model(batch).logits)


def _stage1(spec: NetworkSpec) -> dict[str, MultimodalNetwork]:
    out = {}
    for m in spec.modalities:
        torch.manual_seed(0)
        out[m] = MultimodalNetwork(spec.only(m)).eval()
    return out


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_a_context_network(name):
    method = build_method(name, TASK, tiny_config("unused"), list("abc"),
                          _stage1(_context_spec("gru")))
    torch.manual_seed(0)
    model = MultimodalNetwork(_context_spec("gru", unimodal_heads=method.request.unimodal_heads))
    method.start(model, 0, CPU)
    batch = _context_batch()
    batch.y = torch.tensor([0, 1, 1, 0, 1, 0])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss, out = train_step(Objective(model, method, CPU), batch, optimizer, grad_clip=1.0)
    assert torch.isfinite(loss) and out.logits.shape == (6, 2)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    for part in ("encoders.a.context.", "encoders.c.context.", "fused_context."):
        assert any(n.startswith(part) for n in moved), (name, part)


def _window_mean_task(windows: int, seed: int) -> Batch:
    """Windows of 8 utterances; an utterance's label is whether its window's mean cue
    (modality ``a``) is positive: its own cue says little (corr 1/sqrt(8)), the window's
    all of it. Modality ``c`` is noise."""
    g = torch.Generator().manual_seed(seed)
    n = 8 * windows
    cue = torch.randn(n, generator=g)
    label = (cue.view(windows, 8).mean(1) > 0).long().repeat_interleave(8)
    x = {"a": torch.stack([cue, torch.randn(n, generator=g)], 1),
         "c": torch.randn(n, 3, generator=g)}
    order = torch.randperm(n, generator=g)
    win = _windows([8] * windows)
    return Batch(x={m: v[order] for m, v in x.items()},
                 lengths={m: torch.ones(n, dtype=torch.long) for m in x},
                 present={m: torch.ones(n, dtype=torch.bool) for m in x}, y=label[order],
                 windows=Windows(win.window[order], win.slot[order], win.count, win.size))


def _accuracy_after_training(context: str) -> float:
    spec = NetworkSpec(modalities=["a", "c"], dims={"a": 2, "c": 3},
                       sequence={"a": False, "c": False}, encoders={"a": "mlp", "c": "mlp"},
                       fusion="attention", out_dim=2, width=8, dropout=0.0, head_hidden=16,
                       context=context)
    torch.manual_seed(0)
    model = MultimodalNetwork(spec)
    train, test = _window_mean_task(128, seed=1), _window_mean_task(32, seed=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        TASK.loss(model(train).logits, train.y).backward()
        optimizer.step()
    with torch.no_grad():
        return (model.eval()(test).logits.argmax(1) == test.y).float().mean().item()


@pytest.fixture(scope="module")
def without_context() -> float:
    return _accuracy_after_training("none")


@pytest.mark.parametrize("kind", KINDS)
def test_context_learns_a_label_that_only_the_window_tells(kind, without_context):
    assert without_context < 0.7
    assert _accuracy_after_training(kind) > 0.85


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("kind", KINDS)
def test_context_layers_run_on_the_gpu_as_on_the_cpu(kind):
    torch.manual_seed(0)
    model = MultimodalNetwork(_context_spec(kind)).eval()
    batch = _context_batch()
    on_cpu = model(batch).logits
    on_gpu = model.to("cuda")(batch.to("cuda")).logits.cpu()
    assert torch.allclose(on_cpu, on_gpu, atol=1e-4)

"""MulT: size at the published defaults, shapes, padding and missing modalities, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefuse.config import TrainConfig
from prefuse.data.batching import Batch, Tensors
from prefuse.data.dataset import MultimodalDataset, Split
from prefuse.engine.fit import fit
from prefuse.models.mult import MulT
from prefuse.models.network import NetworkSpec
from prefuse.recipe.arms import arm as arm_named
from prefuse.tasks import make_task

from .conftest import CPU

TINY = {"width": 8, "layers": 1, "heads": 2, "embed_dropout": 0.0, "attn_dropout": 0.0,
        "relu_dropout": 0.0, "res_dropout": 0.0}


def spec(dims: dict[str, int], extra: dict | None = None, out_dim: int = 1,
         sequence: dict[str, bool] | None = None) -> NetworkSpec:
    names = list(dims)
    return NetworkSpec(modalities=names, dims=dims,
                       sequence=sequence or {m: True for m in names},
                       encoders={m: "lstm" for m in names}, fusion="mult", out_dim=out_dim,
                       extra=extra or {})


def batch(shapes: dict[str, tuple], lengths: dict[str, list[int]] | None = None,
          seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(*s, generator=g) for m, s in shapes.items()}
    b = next(iter(x.values())).shape[0]
    n = {m: torch.tensor(lengths[m]) if lengths and m in lengths
         else torch.full((b,), s[1] if len(s) == 3 else 1) for m, s in shapes.items()}
    for m, v in x.items():
        if v.dim() == 3:
            v[torch.arange(v.shape[1])[None, :] >= n[m][:, None]] = 0.0
    return Batch(x=x, lengths=n, present={m: torch.ones(b, dtype=torch.bool) for m in x},
                 y=torch.zeros(b))


def test_param_count_matches_published_defaults():
    model = MulT(spec({"text": 300, "audio": 74, "vision": 35}))
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - 1.07e6) / 1.07e6 < 0.05, params


def test_registered_as_arm_with_its_own_optimiser_settings():
    arm = arm_named("mult")
    assert arm.build is MulT and not arm.uses_stage1 and not arm.has_weights
    assert arm.train_overrides == {"lr": 1e-3, "batch_size": 24, "grad_clip": 0.8}


def test_simple_network_width_does_not_set_mult_width():
    a = MulT(spec({"a": 4, "b": 3}))
    s = spec({"a": 4, "b": 3})
    s.width = 64
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in MulT(s).parameters())


@pytest.mark.parametrize("shapes", [
    {"text": (3, 7, 6), "audio": (3, 7, 4), "vision": (3, 7, 5)},     # aligned
    {"text": (3, 7, 6), "audio": (3, 19, 4), "vision": (3, 11, 5)},   # unaligned
    {"text": (3, 7, 6), "audio": (3, 4)},                             # vector modality
    {"a": (3, 5, 2), "b": (3, 6, 2), "c": (3, 4, 2), "d": (3, 3, 2)},  # M = 4
])
def test_forward_shapes(shapes):
    dims = {m: s[-1] for m, s in shapes.items()}
    model = MulT(spec(dims, TINY, out_dim=2)).eval()
    out = model(batch(shapes))
    logits, weights = out.logits, out.weights
    assert logits.shape == (3, 2)
    assert weights.shape == (3, len(shapes))
    assert torch.allclose(weights, torch.full_like(weights, 1 / len(shapes)))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("kernel", [1, 3])
def test_padding_does_not_change_output(kernel):
    torch.manual_seed(0)
    model = MulT(spec({"text": 6, "audio": 4}, {**TINY, "kernel": kernel})).eval()
    lengths = {"text": [3, 7], "audio": [9, 2]}
    short = batch({"text": (2, 7, 6), "audio": (2, 9, 4)}, lengths)
    padded = Batch(x={m: torch.cat([v, torch.zeros(2, 5, v.shape[2])], dim=1)
                      for m, v in short.x.items()},
                   lengths=short.lengths, present=short.present, y=short.y)
    assert torch.allclose(model(short).logits, model(padded).logits, atol=1e-5)


def test_missing_modality_is_masked_not_nan():
    model = MulT(spec({"text": 6, "audio": 4, "vision": 5}, TINY)).eval()
    b = batch({"text": (2, 7, 6), "audio": (2, 7, 4), "vision": (2, 7, 5)})
    b.present["audio"] = torch.tensor([False, True])
    out = model(b)
    logits, weights = out.logits, out.weights
    assert torch.isfinite(logits).all()
    assert torch.allclose(weights[0], torch.tensor([0.5, 0.0, 0.5]))
    # What a missing modality holds must not matter.
    b.x["audio"][0] = 100.0
    assert torch.allclose(model(b).logits, logits)


def test_tiny_mult_learns():
    rng = np.random.default_rng(0)

    def make(n: int) -> Split:
        text = rng.normal(size=(n, 6, 4)).astype(np.float32)
        audio = rng.normal(size=(n, 9, 3)).astype(np.float32)
        y = (text[:, :, 0].mean(1) + audio[:, :, 1].mean(1)).astype(np.float32) * 3
        return Split(features={"text": text, "audio": audio}, labels=y)

    train, valid = make(160), make(60)
    task = make_task("regression", 1, ["y"])
    torch.manual_seed(0)
    model = MulT(spec({"text": 4, "audio": 3}, TINY))
    model.fit_standardization(train)
    dataset = MultimodalDataset(splits={"train": train, "valid": valid}, task="regression",
                                modalities=["text", "audio"], label_names=["y"], name="tiny")
    result = fit(model, None, Tensors(dataset, task), task,
                 TrainConfig(epochs=15, lr=3e-3, batch_size=16, patience=15), CPU, seed=0)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.6 * losses[0], losses


def test_saved_and_loaded_like_any_arm(tmp_path):
    from prefuse.models.saving import load_model, save_model

    model = MulT(spec({"text": 6, "audio": 4}, TINY)).eval()
    b = batch({"text": (2, 7, 6), "audio": (2, 9, 4)})
    save_model(model, "mult", make_task("regression", 1, ["y"]), tmp_path)
    loaded, _, meta = load_model(tmp_path)
    assert meta["arm"] == "mult" and isinstance(loaded, MulT)
    assert torch.allclose(loaded(b).logits, model(b).logits)

"""Shared fixtures: tiny datasets and configs that train in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefuse.config import RunConfig, TrainConfig, with_overrides
from prefuse.data.dataset import MultimodalDataset, Split
from prefuse.data.synthetic import make_synthetic
from prefuse.engine import runtime
from prefuse.engine.fit import fit
from prefuse.models.network import MultimodalNetwork

# Small models, single-threaded: the suite runs on 2 cores. On the CPU even where a GPU
# is present, so that every result is the same on any machine; tests of the GPU path ask
# for it by name. Tests hand ``CPU`` to what takes a runtime.
CPU = runtime.apply(runtime.resolve(TrainConfig(device="cpu", threads=1), env={}))


@pytest.fixture(scope="session")
def tiny_synthetic() -> MultimodalDataset:
    return make_synthetic(seed=0, train=240, valid=80, test=120)


def tiny_config(out, **overrides) -> RunConfig:
    """A config that trains every arm in a couple of seconds."""
    base = {"out": str(out), "seeds": [0], "train.epochs": 6, "train.pretrain_epochs": 2,
            "train.patience": 6, "model.width": 8, "model.head_hidden": 16,
            "data.synthetic.train": 240, "data.synthetic.valid": 80,
            "data.synthetic.test": 120, "train.device": "cpu"}
    base.update(overrides)
    return with_overrides(RunConfig(), base)


def mixed_dataset(n: int = 60, seed: int = 0) -> MultimodalDataset:
    """Two modalities of different kinds: a sequence (N, T, D) and a vector (N, D),
    with a label readable from either."""
    rng = np.random.default_rng(seed)

    def split(k: int) -> Split:
        y = rng.integers(0, 3, size=k)
        seq = rng.normal(size=(k, 7, 3)).astype(np.float32)
        seq[:, :, 0] += y[:, None]
        lengths = rng.integers(2, 8, size=k)
        seq[np.arange(7)[None, :] >= lengths[:, None]] = 0
        vec = rng.normal(size=(k, 5)).astype(np.float32)
        vec[:, 1] += 2 * y
        return Split(features={"sensor": seq, "meta": vec}, labels=y.astype(np.int64),
                     lengths={"sensor": lengths.astype(np.int64)})

    return MultimodalDataset(
        splits={"train": split(n), "valid": split(n // 2), "test": split(n // 2)},
        task="multiclass", modalities=["sensor", "meta"], label_names=["a", "b", "c"],
        name="mixed")


def fit_fresh(spec, dataset: MultimodalDataset, data, task, checkpoint=None,
              stop_at: int | None = None, seed: int = 0, **train):
    """``(model, fit result)`` of a fresh seeded network of ``spec`` trained on ``data``
    with ``TrainConfig(**train)``; interrupted (``KeyboardInterrupt``, as Ctrl-C) after
    epoch ``stop_at``."""
    def interrupt(epoch, model, row):
        if epoch == stop_at:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    model = MultimodalNetwork(spec)
    model.fit_standardization(dataset["train"])
    return model, fit(model, None, data, task, TrainConfig(**train), CPU, seed=seed,
                      checkpoint=checkpoint, hooks=[interrupt])


def fit_then_interrupt(spec, dataset: MultimodalDataset, data, task, stage, **options):
    """The uninterrupted fit's ``(model, result)``; ``stage`` is left as Ctrl-C after
    epoch 2 of the same fit leaves it, for a resume to continue."""
    reference = fit_fresh(spec, dataset, data, task, **options)
    with pytest.raises(KeyboardInterrupt):
        fit_fresh(spec, dataset, data, task, stage, stop_at=2, **options)
    return reference

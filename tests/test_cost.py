"""Cost helpers: parameter count, inference throughput, peak memory, the metrics row."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from prefuse.data.batching import Batch, TensorSplit
from prefuse.data.dataset import Split
from prefuse.engine.fit import FitResult
from prefuse.runs.cost import (
    cost_report,
    count_params,
    inference_throughput,
    peak_cuda_mb,
    peak_rss_mb,
)


class Mean(nn.Module):
    """A model of the arm interface: one linear map of the feature mean."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.register_buffer("unused", torch.zeros(100))

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        assert not self.training
        x = batch.x["a"]
        return self.linear(x.mean(1)), torch.ones(len(x), 1)


def split(n: int = 50) -> TensorSplit:
    rng = np.random.default_rng(0)
    s = Split(features={"a": rng.normal(size=(n, 4, 3)).astype(np.float32)},
              labels=rng.normal(size=n).astype(np.float32))
    return TensorSplit(s, ["a"], regression=True)


def test_count_params_excludes_buffers():
    assert count_params(Mean()) == 4


def test_inference_throughput_is_positive_and_restores_mode():
    model = Mean().train()  # forward asserts eval mode; train mode must come back
    rate = inference_throughput(model, split(), batch_size=16, repeats=2)
    assert rate > 0 and np.isfinite(rate)
    assert model.training


def test_peak_memory():
    assert 10 < peak_rss_mb() < 1e6
    assert peak_cuda_mb() is None or peak_cuda_mb() >= 0


def test_cost_report_row():
    fit = FitResult(best_epoch=2, best_valid={}, epochs_run=4, seconds=2.0)
    row = cost_report(Mean(), fit, split())
    assert row["params"] == 4 and row["train_seconds"] == 2.0
    assert row["seconds_per_epoch"] == 0.5
    assert row["inference_samples_per_s"] > 0 and row["peak_rss_mb"] > 0

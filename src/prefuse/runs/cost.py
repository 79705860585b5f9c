"""What a trained arm costs: parameters, training time, inference throughput, peak memory.

``cost_report(model, fit_result, split)`` gives the whole row for ``metrics.json``.
"""

from __future__ import annotations

import resource
import sys
import time

import torch
from torch import nn

from ..data.batching import TensorSplit
from ..engine.fit import FitResult


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def inference_throughput(model: nn.Module, data: TensorSplit, batch_size: int = 256,
                         repeats: int = 3) -> float:
    """Samples per second of ``model`` in eval mode over ``data``: the best of ``repeats``
    timed passes after one warm-up batch (the best, since other load only slows a pass)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batches = [batch.to(device) for batch in data.batches(batch_size)]
    model(batches[0])
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for batch in batches:
            model(batch)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    model.train(was_training)
    return len(data) / best


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a GPU runs asynchronously), so that a
    clock read after it times that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def peak_cuda_mb() -> float | None:
    """Peak GPU memory allocated by torch in MiB, or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / (1024 * 1024)


def cost_report(model: nn.Module, fit: FitResult, data: TensorSplit) -> dict:
    """The cost row of one trained arm: ``params``, ``train_seconds``,
    ``seconds_per_epoch``, ``inference_samples_per_s`` (on ``data``), ``peak_rss_mb``
    and, on a GPU, ``peak_cuda_mb``."""
    row = {
        "params": count_params(model),
        "train_seconds": fit.seconds,
        "seconds_per_epoch": fit.seconds / max(fit.epochs_run, 1),
        "inference_samples_per_s": inference_throughput(model, data),
        "peak_rss_mb": peak_rss_mb(),
    }
    cuda = peak_cuda_mb()
    if cuda is not None:
        row["peak_cuda_mb"] = cuda
    return row

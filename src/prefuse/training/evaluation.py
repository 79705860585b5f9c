"""A model's outputs and scores on one split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.batching import TensorSplit
from ..tasks import Task
from . import runtime


@dataclass
class Evaluation:
    """A model's outputs on one split, and its scores there; ``loss`` and ``metrics`` are
    None for a split without labels."""

    loss: float | None
    metrics: dict[str, float] | None
    predictions: np.ndarray
    scores: np.ndarray
    weights: np.ndarray


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorSplit, task: Task, batch_size: int = 256,
             present: dict[str, torch.Tensor] | None = None) -> Evaluation:
    """Run ``model`` on ``data`` and score it where ``data`` has labels (else ``loss`` and
    ``metrics`` are None). ``present`` optionally overrides modality presence (to mask
    modalities by hand)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if present is not None:
        present = {m: v.to(data.device) for m, v in present.items()}
    # Outputs and the loss sum stay on the device until the split is done: no batch waits
    # for the one before it. The sum is float64, as the Python float it replaces.
    logits, weights = [], []
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        index = torch.arange(start, stop, device=data.device)
        batch = data.batch(index, torch.arange(start, stop))
        if present is not None:
            batch.present = {m: batch.present[m] & present[m][index] for m in batch.present}
            batch.complete = frozenset()
        batch = batch.to(device)
        with runtime.autocast():
            out = model(batch)
        out = out.float()
        if data.labelled:
            total += task.loss(out.logits, batch.y).double() * len(batch)
        logits.append(out.logits)
        weights.append(out.weights)
    model.train(was_training)
    predictions, scores = task.decode(torch.cat(logits).cpu().numpy())
    return Evaluation(
        loss=float(total) / len(data) if data.labelled else None,
        metrics=task.metrics(predictions, data.y.cpu().numpy()) if data.labelled else None,
        predictions=predictions,
        scores=scores,
        weights=torch.cat(weights).cpu().numpy(),
    )

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
    logits, weights, losses = [], [], []
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)))
        batch = data.batch(index.to(data.device)).to(device)
        if present is not None:
            batch.present = {m: batch.present[m] & present[m][index].to(device)
                             for m in batch.present}
        with runtime.autocast():
            out = model(batch)
        out = out.float()
        if data.labelled:
            losses.append(task.loss(out.logits, batch.y).item() * len(batch))
        logits.append(out.logits.cpu().numpy())
        weights.append(out.weights.cpu().numpy())
    model.train(was_training)
    all_logits = np.concatenate(logits)
    predictions, scores = task.decode(all_logits)
    return Evaluation(
        loss=float(sum(losses) / len(data)) if data.labelled else None,
        metrics=task.metrics(predictions, data.y.cpu().numpy()) if data.labelled else None,
        predictions=predictions,
        scores=scores,
        weights=np.concatenate(weights),
    )

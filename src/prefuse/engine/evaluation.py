"""A model's outputs and scores on one split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data.batching import TensorSplit
from ..models.outputs import Request
from ..tasks import Task
from .runtime import Runtime


@dataclass
class Evaluation:
    """A model's outputs on one split, and its scores there; ``loss`` and ``metrics`` are
    None for a split without labels. ``kept`` holds the metrics with only each requested
    subset of modalities kept (see ``evaluate``)."""

    loss: float | None
    metrics: dict[str, float] | None
    predictions: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    kept: dict[tuple[str, ...], dict[str, float]] = field(default_factory=dict)


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorSplit, task: Task, runtime: Runtime,
             batch_size: int = 256, keep: tuple[tuple[str, ...], ...] = ()) -> Evaluation:
    """Run ``model`` on ``data`` and score it where ``data`` has labels (else ``loss`` and
    ``metrics`` are None). For each subset of modalities in ``keep``, ``kept[subset]``
    scores the model with every other modality masked in every sample; the network
    answers them in the same pass (the simple network encodes each batch once for all).
    Forward passes run under ``runtime``'s autocast; ``model`` stays where it is.

    With context windows the split is run window by window in a fixed order
    (``TensorSplit.batches`` without a generator) and every output is put back in the
    split's sample order (``TensorSplit.restore``), so that predictions line up with the
    samples whether the model uses context or not."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    request = Request(keep=keep)
    # Outputs and the loss sum stay on the device until the split is done: no batch waits
    # for the one before it. The sum is float64, as the Python float it replaces.
    logits, weights = [], []
    kept: dict[tuple[str, ...], list[torch.Tensor]] = {subset: [] for subset in keep}
    total = torch.zeros((), dtype=torch.float64, device=device)
    for batch in data.batches(batch_size):
        batch = batch.to(device)
        with runtime.autocast():
            out = model(batch, request)
        out = out.float()
        if data.labelled:
            total += task.loss(out.logits, batch.y).double() * len(batch)
        logits.append(out.logits)
        weights.append(out.weights)
        for subset in keep:
            kept[subset].append(out.kept_logits[subset])
    model.train(was_training)
    def joined(parts: list[torch.Tensor]) -> np.ndarray:
        return data.restore(torch.cat(parts)).cpu().numpy()

    predictions, scores = task.decode(joined(logits))
    y = data.y.cpu().numpy() if data.labelled else None
    return Evaluation(
        loss=float(total) / len(data) if data.labelled else None,
        metrics=task.metrics(predictions, y) if data.labelled else None,
        predictions=predictions,
        scores=scores,
        weights=joined(weights),
        kept={subset: task.metrics(task.decode(joined(parts))[0], y)
              for subset, parts in kept.items()} if data.labelled else {},
    )

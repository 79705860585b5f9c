"""Per-sample task losses, and the confidence they imply, for methods that score modalities.

Balancing methods rank modalities by how well each one's output fits the batch. The papers
use classification scores (OGM-GE: the softmax probability of the true class; AGM: its
negative log). Both are functions of the per-sample cross-entropy ``l``: ``p_true =
exp(-l)`` and ``-log p_true = l``. Taking the task's own per-sample loss therefore gives
the published scores exactly for binary and multiclass tasks, and a natural extension to
the other kinds: multilabel gets ``exp(-mean CE over labels)`` (the geometric mean of the
per-label true-class probabilities) and L1 regression gets ``exp(-|y - y_hat|)`` (a
Laplace likelihood kernel: 1 for a perfect prediction, falling with the error).
"""

from __future__ import annotations

import torch

from ..tasks import Task


def per_sample_loss(task: Task, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(B,)`` losses: ``task.loss`` applied to each sample alone.

    Vectorised with ``torch.func.vmap`` so the definition of the loss stays in the task;
    their mean equals ``task.loss(logits, y)``.
    """
    if len(logits) != len(y):
        raise ValueError(f"{len(logits)} outputs but {len(y)} labels")
    return torch.func.vmap(lambda z, t: task.loss(z.unsqueeze(0), t.unsqueeze(0)))(logits, y)


def confidence(losses: torch.Tensor) -> torch.Tensor:
    """``exp(-loss)``: the true-class probability for cross-entropy losses, in (0, 1]."""
    return torch.exp(-losses)

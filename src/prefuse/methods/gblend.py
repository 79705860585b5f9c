"""Gradient-Blending: loss weights from each branch's generalisation over its overfitting.

Wang, Tran and Feiszli, "What Makes Training Multi-modal Classification Networks Hard?",
CVPR 2020.

The network trains on ``L = sum_k w_k * loss_k`` over its branches ``k`` (each modality's
head and the fused head). For the weights, each branch's train and validation losses are
measured at two checkpoints ``n`` and ``n + dn`` (one super-epoch apart), and

    G_k = L^V_k(n) - L^V_k(n + dn)                         (generalisation: val-loss gain)
    O_k = (L^V_k(n + dn) - L^T_k(n + dn)) - (L^V_k(n) - L^T_k(n))   (overfitting growth)
    w_k = (G_k / O_k^2) / Z,        Z = sum_k G_k / O_k^2

(the paper's optimal blend ``w_k ~ <grad L*, v_k> / sigma_k^2``, estimated by ``G / O^2``).
Online G-Blend re-estimates the weights every super-epoch; the validation split supplies
``L^V`` (never the test split).

Edge cases, decided here because the paper is silent:
- ``G_k <= 0`` (the branch did not improve on validation): ``w_k = 0``. BalanceMM takes
  ``|G / O^2|`` instead, which would reward a branch whose validation loss rose.
- ``O_k ~ 0``: ``O_k^2`` is floored at ``eps`` only to avoid dividing by zero; a branch
  that generalises without overfitting then takes (nearly) all the weight, as the formula
  says.
- No branch improved: uniform weights, the neutral blend.

The method (``gblend``) is online G-Blend estimated inside the run: the paper trains a
throw-away copy of each branch alone for the super-epoch to measure its losses (BalanceMM
does the same: about M + 1 extra trainings per super-epoch); here each branch's losses are
those of the jointly trained network's own heads, measured one super-epoch apart, so the
estimate costs one pass over the validation split per super-epoch. ``L^T_k`` is the
epoch's mean training loss of branch ``k`` (summed across ranks), ``L^V_k`` its loss on
the whole validation split after the epoch (identical on every rank). Measurements are
taken after the first epoch and every ``super_epoch`` epochs after it; each one after the
first re-estimates the weights, which apply from the next epoch. Until then the weights
are uniform. Default ``super_epoch`` = 10, BalanceMM's (the paper's online setting could
not be verified).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..config import SearchParam
from ..data.batching import TensorSplit
from ..engine.guards import NonFinite
from ..models.outputs import Request
from .base import METHODS, EpochMean, Method, modality_losses, option

EPS = 1e-12


def blend_weights(train_before: Sequence[float], train_after: Sequence[float],
                  valid_before: Sequence[float], valid_after: Sequence[float],
                  eps: float = EPS) -> list[float]:
    """Per-branch loss weights, summing to 1, from losses at two checkpoints.

    Each argument holds one loss per branch, in the same branch order.
    """
    lists = [list(map(float, x)) for x in (train_before, train_after, valid_before,
                                            valid_after)]
    k = len(lists[0])
    if k == 0 or any(len(x) != k for x in lists):
        raise ValueError(f"need one loss per branch in each argument, got lengths "
                         f"{[len(x) for x in lists]}")
    if not all(math.isfinite(v) for x in lists for v in x):
        raise NonFinite(f"G-Blending losses {lists}")
    tb, ta, vb, va = lists
    raw = []
    for i in range(k):
        gain = vb[i] - va[i]
        overfit = (va[i] - ta[i]) - (vb[i] - tb[i])
        raw.append(gain / max(overfit * overfit, eps) if gain > 0 else 0.0)
    total = sum(raw)
    if total == 0.0:
        return [1.0 / k] * k
    return [r / total for r in raw]


@dataclass
class GblendOptions:
    """``super_epoch``: epochs between two re-estimates of the loss weights, in [1, 1000]
    (a re-estimate needs at least one epoch between its two measurements)."""

    super_epoch: int = option(10, low=1, high=1000)


@METHODS.register("gblend")
class GradientBlend(Method):
    """L = w_fused * l(z, y) + sum_m w_m * l(head_m(h_m), y), weights from ``blend_weights``.

    Source: Wang, Tran & Feiszli, "What Makes Training Multi-modal Classification
    Networks Hard?" (CVPR 2020), online G-Blend, with each branch's losses measured on the
    jointly trained network (module docstring); super-epoch 10 as BalanceMM. Branch order:
    the fused head, then the network's modalities. History columns
    ``gblend_weight_<branch>``: the weights each epoch trained with.
    """

    Options = GblendOptions
    search = {"super_epoch": SearchParam("int", 2, 10)}
    request = Request(unimodal_heads=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.modalities:
            raise ValueError("gblend needs the network's modalities")
        self.branches = ("fused", *self.modalities)
        self.weights = [1.0 / len(self.branches)] * len(self.branches)
        self.train_losses = [EpochMean() for _ in self.branches]
        # The previous measurement: {"epoch": int, "train": [...], "valid": [...]}.
        self.last: dict | None = None

    def branch_losses(self, out, batch) -> list[torch.Tensor]:
        """Each branch's loss on the batch, in branch order."""
        per_modality = modality_losses(self.task, out, batch)
        return [self.task.loss(out.logits, batch.y)] + [per_modality[m]
                                                         for m in self.modalities]

    def loss(self, out, batch):
        losses = self.branch_losses(out, batch)
        for mean, value in zip(self.train_losses, losses):
            # Weighted by the batch size even for a modality some samples lack: an
            # approximation that keeps logging free of device waits.
            mean.add(value, len(batch))
        return sum(w * value for w, value in zip(self.weights, losses))

    @torch.no_grad()
    def valid_losses(self, model: nn.Module, valid: TensorSplit, batch_size: int = 256
                     ) -> list[float]:
        """Each branch's loss over the whole validation split, in eval mode."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        totals, counts = [0.0] * len(self.branches), [0] * len(self.branches)
        # Whole context windows where the split has them; sums need no sample order.
        for batch in valid.batches(batch_size):
            batch = batch.to(device)
            sizes = [len(batch)] + [int(batch.present[m].sum()) for m in self.modalities]
            for k, (value, n) in enumerate(zip(self.branch_losses(model(batch, self.request),
                                                                  batch), sizes)):
                totals[k] += float(value) * n
                counts[k] += n
        model.train(was_training)
        return [t / n if n else 0.0 for t, n in zip(totals, counts)]

    def end_epoch(self, epoch, model, valid):
        used = list(self.weights)
        # Every epoch, on every rank: the means are summed across the ranks.
        train = [mean.mean(self.runtime) for mean in self.train_losses]
        if epoch == 1 or (epoch - 1) % self.options.super_epoch == 0:
            now = {"epoch": epoch, "train": train, "valid": self.valid_losses(model, valid)}
            if self.last is not None:
                self.weights = blend_weights(self.last["train"], now["train"],
                                             self.last["valid"], now["valid"])
            self.last = now
        return {f"gblend_weight_{b}": w for b, w in zip(self.branches, used)}

    def state_dict(self):
        return {"weights": list(self.weights), "last": self.last}

    def load_state_dict(self, state):
        if state:
            self.weights = [float(w) for w in state["weights"]]
            self.last = state["last"]

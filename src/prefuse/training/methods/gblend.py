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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
        raise ValueError("losses must be finite")
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

"""Unimodal ensemble (UME): the stage-1 models alone, their predictions combined.

Du, Teng, Li, Liu, Yuan, Wang, Yuan and Zhao, "On Uni-Modal Feature Learning in
Supervised Multi-Modal Learning", ICML 2023.

UME trains one model per modality and never trains them jointly; prediction combines
their outputs. The paper's exact combiner was not verified (it speaks of combining the
uni-modal predictions); here:

- classification (binary, multiclass): the mean of the models' class probabilities,
  turned back into logits (``log p`` per class, ``logit p`` for a single binary logit) so
  the task's own decoding applies. Averaging probabilities rather than logits keeps an
  over-confident model from outvoting the others by the scale of its logits alone.
- multilabel (prefuse's K present/absent pairs of logits): the mean per-label
  probability of each pair, back as pairs of log-probabilities.
- regression: a linear blend of the unimodal predictions with an intercept, fitted by
  ordinary least squares on the validation split (never test), one blend per target:
  ``y_hat = b + sum_m w_m * y_hat_m``. No regularisation: with M + 1 coefficients and
  hundreds of validation samples the fit is well determined; where predictions are
  collinear (or there are fewer samples than coefficients) ``numpy.linalg.lstsq``
  returns its minimum-norm solution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit, softmax

from ...registry import Registry

PROB_FLOOR = 1e-15  # keeps log/logit of an averaged probability of exactly 0 or 1 finite


def average_probabilities(probs: Sequence[np.ndarray]) -> np.ndarray:
    """The element-wise mean of the models' probability arrays (all the same shape)."""
    if not probs:
        raise ValueError("no predictions to average")
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probs])
    if not np.isfinite(stacked).all() or (stacked < 0).any() or (stacked > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    return stacked.mean(axis=0)


@dataclass(frozen=True)
class LinearBlend:
    """``y_hat[:, k] = intercept[k] + preds[:, :, k] @ coef[k]`` for M models, K targets."""

    coef: np.ndarray       # (K, M)
    intercept: np.ndarray  # (K,)

    def to_dict(self) -> dict:
        return {"coef": self.coef.tolist(), "intercept": self.intercept.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> LinearBlend:
        return cls(np.asarray(d["coef"], dtype=np.float64),
                   np.asarray(d["intercept"], dtype=np.float64))


def _as_3d(preds: np.ndarray) -> np.ndarray:
    p = np.asarray(preds, dtype=np.float64)
    if p.ndim == 2:
        p = p[:, :, None]
    if p.ndim != 3:
        raise ValueError(f"predictions must be (N, M) or (N, M, K), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("predictions must be finite")
    return p


def fit_blend(valid_preds: np.ndarray, y: np.ndarray) -> LinearBlend:
    """Least-squares weights and intercept per target from validation predictions.

    ``valid_preds`` is ``(N, M)`` (one target) or ``(N, M, K)``; ``y`` is ``(N,)`` or
    ``(N, K)``.
    """
    p = _as_3d(valid_preds)
    n, m, k = p.shape
    t = np.asarray(y, dtype=np.float64)
    if len(t) != n or t.reshape(n, -1).shape[1] != k:
        raise ValueError(f"labels of shape {t.shape} do not match predictions {p.shape}")
    t = t.reshape(n, k)
    if not np.isfinite(t).all():
        raise ValueError("labels must be finite")
    coef, intercept = np.empty((k, m)), np.empty(k)
    for j in range(k):
        design = np.column_stack([p[:, :, j], np.ones(n)])
        solution = np.linalg.lstsq(design, t[:, j], rcond=None)[0]
        coef[j], intercept[j] = solution[:m], solution[m]
    return LinearBlend(coef, intercept)


def apply_blend(blend: LinearBlend, preds: np.ndarray) -> np.ndarray:
    """The blended predictions, ``(N,)`` for ``(N, M)`` input or ``(N, K)`` for ``(N, M, K)``."""
    p = _as_3d(preds)
    if p.shape[1:] != blend.coef.T.shape:
        raise ValueError(f"predictions {p.shape} do not match a blend of "
                         f"{blend.coef.shape[1]} models and {blend.coef.shape[0]} targets")
    out = np.einsum("nmk,km->nk", p, blend.coef) + blend.intercept
    return out[:, 0] if np.ndim(preds) == 2 else out


class Combiner:
    """Turns the unimodal models' outputs (logits) into the ensemble's logits."""

    def fit(self, valid_outputs: Sequence[np.ndarray], valid_labels: np.ndarray
            ) -> Combiner:
        """Learn from validation outputs where the combiner has anything to learn."""
        return self

    def combine(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


COMBINERS: Registry[type[Combiner]] = Registry("ensemble combiner")


@COMBINERS.register("binary")
class MeanSigmoid(Combiner):
    """Mean of ``sigmoid(logit)`` over the models, back as one logit per sample."""

    def combine(self, outputs):
        p = average_probabilities([expit(np.asarray(z, dtype=np.float64)) for z in outputs])
        return logit(np.clip(p, PROB_FLOOR, 1 - PROB_FLOOR))


@COMBINERS.register("multiclass")
class MeanSoftmax(Combiner):
    """Mean of the softmax over each group of ``group`` logits, back as log-probabilities.

    ``group=None`` takes all of a sample's logits as one group (multiclass).
    """

    group: int | None = None

    def combine(self, outputs):
        zs = [np.asarray(z, dtype=np.float64) for z in outputs]
        n, width = zs[0].shape
        g = self.group or width
        p = average_probabilities([softmax(z.reshape(n, -1, g), axis=2) for z in zs])
        return np.log(np.clip(p, PROB_FLOOR, 1.0)).reshape(n, width)


@COMBINERS.register("multilabel")
class MeanPairSoftmax(MeanSoftmax):
    """Multilabel outputs are K (absent, present) logit pairs: average each pair's softmax."""

    group = 2


@COMBINERS.register("regression")
class LeastSquaresBlend(Combiner):
    """A linear blend with intercept per target, fitted on the validation split."""

    def __init__(self):
        self.blend: LinearBlend | None = None

    def fit(self, valid_outputs, valid_labels):
        self.blend = fit_blend(_stack_models(valid_outputs), valid_labels)
        return self

    def combine(self, outputs):
        if self.blend is None:
            raise ValueError("fit the regression blend on the validation split first")
        return apply_blend(self.blend, _stack_models(outputs))


def _stack_models(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, M, K)`` from M arrays of ``(N, K)`` (or ``(N,)``) predictions."""
    return np.stack([np.asarray(z, dtype=np.float64).reshape(len(z), -1) for z in outputs],
                    axis=1)

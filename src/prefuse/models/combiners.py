"""Combining the unimodal models' predictions (the unimodal ensemble, UME).

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

Missing modalities (``present``, ``(N, M)`` booleans): a classification average runs over
the models whose modality the sample has (over all of them when it has none); the
regression blend puts, in place of a missing model's prediction, that model's mean
prediction on the validation samples that have its modality, so a missing model adds
what it adds on average.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..registry import Registry

PROB_FLOOR = 1e-15  # keeps log/logit of an averaged probability of exactly 0 or 1 finite


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp(-log(1 + e^-z)): no overflow warning at either end, unlike 1 / (1 + e^-z).
    return np.exp(-np.logaddexp(0.0, -z))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _presence(present: np.ndarray | None, n: int, m: int) -> np.ndarray:
    """``(N, M)`` float weights of the models for each sample: 1 where the sample has the
    model's modality; a sample with none of them counts every model."""
    if present is None:
        return np.ones((n, m))
    mask = np.asarray(present, dtype=bool)
    if mask.shape != (n, m):
        raise ValueError(f"presence of shape {mask.shape} for {n} samples and {m} models")
    return np.where(mask.any(axis=1, keepdims=True), mask, True).astype(np.float64)


def average_probabilities(probs: Sequence[np.ndarray],
                          present: np.ndarray | None = None) -> np.ndarray:
    """The element-wise mean of the models' probability arrays (all the same shape,
    samples first), per sample over the models ``present`` marks (all by default)."""
    if not probs:
        raise ValueError("no predictions to average")
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probs])
    if not np.isfinite(stacked).all() or (stacked < 0).any() or (stacked > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    if stacked.ndim == 1 or present is None:
        return stacked.mean(axis=0)
    w = _presence(present, stacked.shape[1], len(probs)).T
    w = w.reshape(w.shape + (1,) * (stacked.ndim - 2))
    return (w * stacked).sum(axis=0) / w.sum(axis=0)


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


class Combiner(ABC):
    """Turns the unimodal models' outputs (logits) into the ensemble's logits.

    ``present`` (``(N, M)`` booleans, optional everywhere) marks which samples have each
    model's modality.
    """

    def fit(self, valid_outputs: Sequence[np.ndarray], valid_labels: np.ndarray,
            present: np.ndarray | None = None) -> Combiner:
        """Learn from validation outputs where the combiner has anything to learn."""
        return self

    @abstractmethod
    def combine(self, outputs: Sequence[np.ndarray],
                present: np.ndarray | None = None) -> np.ndarray:
        """The ensemble's logits from each model's ``outputs`` (absent models left out)."""

    def weights(self, present: np.ndarray) -> np.ndarray:
        """``(N, M)``: each present model's share of each sample's combined prediction;
        here equal shares. Like the fusions' weights, zero for an absent modality (and
        for every model of a sample that has none)."""
        mask = np.asarray(present, dtype=np.float64)
        return mask / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)

    def to_dict(self) -> dict:
        """What ``fit`` learned, as plain numbers (saved in ``model.json``)."""
        return {}

    def load_dict(self, state: dict) -> Combiner:
        """Restore what ``to_dict`` gave."""
        return self


COMBINERS: Registry[type[Combiner]] = Registry("ensemble combiner")


@COMBINERS.register("binary")
class MeanSigmoid(Combiner):
    """Mean of ``sigmoid(logit)`` over the models, back as one logit per sample."""

    def combine(self, outputs, present=None):
        p = average_probabilities([_sigmoid(np.asarray(z, dtype=np.float64)) for z in outputs],
                                  present)
        return _logit(np.clip(p, PROB_FLOOR, 1 - PROB_FLOOR))


@COMBINERS.register("multiclass")
class MeanSoftmax(Combiner):
    """Mean of the softmax over each group of ``group`` logits, back as log-probabilities.

    ``group=None`` takes all of a sample's logits as one group (multiclass).
    """

    group: int | None = None

    def combine(self, outputs, present=None):
        zs = [np.asarray(z, dtype=np.float64) for z in outputs]
        n, width = zs[0].shape
        g = self.group or width
        p = average_probabilities([_softmax(z.reshape(n, -1, g), axis=2) for z in zs], present)
        return np.log(np.clip(p, PROB_FLOOR, 1.0)).reshape(n, width)


@COMBINERS.register("multilabel")
class MeanPairSoftmax(MeanSoftmax):
    """Multilabel outputs are K (absent, present) logit pairs: average each pair's softmax."""

    group = 2


@COMBINERS.register("regression")
class LeastSquaresBlend(Combiner):
    """A linear blend with intercept per target, fitted on the validation split; a
    missing model's prediction is replaced by its mean validation prediction (``fill``)."""

    def __init__(self):
        self.blend: LinearBlend | None = None
        self.fill: np.ndarray | None = None  # (M, K)

    def fit(self, valid_outputs, valid_labels, present=None):
        preds = _stack_models(valid_outputs)
        n, m, k = preds.shape
        mask = np.ones((n, m), dtype=bool) if present is None else np.asarray(present, bool)
        counts = mask.sum(axis=0)[:, None]
        sums = np.einsum("nm,nmk->mk", mask, preds)
        self.fill = np.divide(sums, counts, out=np.zeros((m, k)), where=counts > 0)
        self.blend = fit_blend(self._filled(preds, present), valid_labels)
        return self

    def _filled(self, preds: np.ndarray, present: np.ndarray | None) -> np.ndarray:
        if present is None:
            return preds
        mask = np.asarray(present, dtype=bool)[:, :, None]
        return np.where(mask, preds, self.fill[None])

    def combine(self, outputs, present=None):
        if self.blend is None:
            raise ValueError("fit the regression blend on the validation split first")
        return apply_blend(self.blend, self._filled(_stack_models(outputs), present))

    def weights(self, present):
        """Each present model's share of the blend's absolute coefficients (averaged
        over targets); equal shares where those coefficients are all zero."""
        if self.blend is None:
            raise ValueError("fit the regression blend on the validation split first")
        mask = np.asarray(present, dtype=np.float64)
        w = mask * np.abs(self.blend.coef).mean(axis=0)
        total = w.sum(axis=1, keepdims=True)
        return np.where(total > 0, w / np.where(total > 0, total, 1.0),
                        super().weights(present))

    def to_dict(self):
        if self.blend is None:
            return {}
        return {**self.blend.to_dict(), "fill": self.fill.tolist()}

    def load_dict(self, state):
        if state:
            self.blend = LinearBlend.from_dict(state)
            self.fill = np.asarray(state["fill"], dtype=np.float64)
        return self


def _stack_models(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, M, K)`` from M arrays of ``(N, K)`` (or ``(N,)``) predictions."""
    return np.stack([np.asarray(z, dtype=np.float64).reshape(len(z), -1) for z in outputs],
                    axis=1)

"""Literature-standard metrics, named as MulT's and MMSA's evaluation code names them.

Every function takes numpy arrays of predictions and truth and returns ``{name: float}``.
"""

from __future__ import annotations

import numpy as np

# Metrics where a smaller value is better; every other metric is maximised.
LOWER_IS_BETTER_PREFIXES = ("mae", "loss")


def lower_is_better(name: str) -> bool:
    """Whether a metric called ``name`` improves as it falls (MAE, losses). The one place
    that decides; everything else goes through ``direction`` or ``is_better``."""
    return name.startswith(LOWER_IS_BETTER_PREFIXES)


def direction(name: str) -> float:
    """+1 where a larger ``name`` is better, -1 where a smaller one is: ``direction * value``
    always grows with quality."""
    return -1.0 if lower_is_better(name) else 1.0


def is_better(name: str, value: float, best: float | None) -> bool:
    """Whether ``value`` improves on ``best`` for metric ``name`` (NaN never improves)."""
    if value != value:  # NaN
        return False
    if best is None:
        return True
    return direction(name) * value > direction(name) * best


def _pearson(p: np.ndarray, t: np.ndarray) -> float:
    p = p.astype(np.float64) - p.mean()
    t = t.astype(np.float64) - t.mean()
    denom = np.sqrt((p * p).sum() * (t * t).sum())
    return float((p * t).sum() / denom) if denom > 0 else float("nan")


def _f1(truth: np.ndarray, pred: np.ndarray, average: str = "weighted") -> float:
    """F1 over every label seen in ``truth`` or ``pred``, averaged with weights equal to
    each label's true count (``weighted``) or equally (``macro``). A label's F1 is
    2 tp / (true count + predicted count), 0 where both counts are 0, as scikit-learn's
    ``f1_score(truth, pred, zero_division=0)`` scores it. Truth comes first: MulT's code
    swapped the two, which changes the weighted average."""
    truth, pred = np.asarray(truth).reshape(-1), np.asarray(pred).reshape(-1)
    labels, codes = np.unique(np.concatenate([truth, pred]), return_inverse=True)
    t, p = codes[:len(truth)], codes[len(truth):]
    true_count = np.bincount(t, minlength=len(labels))
    counts = true_count + np.bincount(p, minlength=len(labels))
    hits = np.bincount(t[t == p], minlength=len(labels))
    f1 = np.divide(2.0 * hits, counts, out=np.zeros(len(labels)), where=counts > 0)
    if average == "weighted":
        return float(np.average(f1, weights=true_count)) if true_count.any() else 0.0
    return float(f1.mean())


def sentiment_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MOSI/MOSEI sentiment scores on the [-3, 3] scale.

    ``acc2_non0``/``f1_non0`` drop samples whose truth is exactly 0 and compare p > 0 with
    t > 0 (MulT's reported convention); ``acc2_has0``/``f1_has0`` keep every sample and
    compare p >= 0 with t >= 0 (MMSA's). ``acc7``/``acc5`` round after clipping to
    [-3, 3]/[-2, 2] with numpy's half-to-even rounding.
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(truth, dtype=np.float64).reshape(-1)
    out = {
        "mae": float(np.mean(np.abs(p - t))),
        "corr": _pearson(p, t),
        "acc7": float(np.mean(np.round(np.clip(p, -3, 3)) == np.round(np.clip(t, -3, 3)))),
        "acc5": float(np.mean(np.round(np.clip(p, -2, 2)) == np.round(np.clip(t, -2, 2)))),
    }
    non0 = t != 0
    if non0.any():
        out["acc2_non0"] = float(np.mean((p[non0] > 0) == (t[non0] > 0)))
        out["f1_non0"] = _f1(t[non0] > 0, p[non0] > 0)
    else:
        out["acc2_non0"] = out["f1_non0"] = float("nan")
    out["acc2_has0"] = float(np.mean((p >= 0) == (t >= 0)))
    out["f1_has0"] = _f1(t >= 0, p >= 0)
    return out


def multitarget_regression_metrics(pred: np.ndarray, truth: np.ndarray,
                                   names: list[str]) -> dict[str, float]:
    """``mae``/``corr`` per target (``mae_<name>``) and their means (``mae``, ``corr``)."""
    out: dict[str, float] = {}
    for k, name in enumerate(names):
        out[f"mae_{name}"] = float(np.mean(np.abs(pred[:, k] - truth[:, k])))
        out[f"corr_{name}"] = _pearson(pred[:, k], truth[:, k])
    out["mae"] = float(np.mean([out[f"mae_{n}"] for n in names]))
    out["corr"] = float(np.nanmean([out[f"corr_{n}"] for n in names])) if names else float("nan")
    return out


def classification_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``acc``, ``f1_weighted`` and ``f1_macro`` of class predictions."""
    pred = np.asarray(pred).reshape(-1)
    truth = np.asarray(truth).reshape(-1)
    return {
        "acc": float(np.mean(pred == truth)),
        "f1_weighted": _f1(truth, pred, "weighted"),
        "f1_macro": _f1(truth, pred, "macro"),
    }


def multilabel_metrics(pred: np.ndarray, truth: np.ndarray,
                       names: list[str]) -> dict[str, float]:
    """Per label present/absent ``acc_<name>`` and weighted ``f1_<name>``, plus their means.

    This is IEMOCAP's convention: each emotion is its own binary task.
    """
    out: dict[str, float] = {}
    for k, name in enumerate(names):
        out[f"acc_{name}"] = float(np.mean(pred[:, k] == truth[:, k]))
        out[f"f1_{name}"] = _f1(truth[:, k], pred[:, k])
    out["acc_mean"] = float(np.mean([out[f"acc_{n}"] for n in names]))
    out["f1_mean"] = float(np.mean([out[f"f1_{n}"] for n in names]))
    return out

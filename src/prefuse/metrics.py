"""Literature-standard metrics, named and computed as MulT's and MMSA's evaluation code does.

Every function takes numpy arrays of predictions and truth and returns ``{name: float}``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

# Metrics where a smaller value is better; every other metric is maximised.
LOWER_IS_BETTER_PREFIXES = ("mae", "loss")


def lower_is_better(name: str) -> bool:
    """Whether a metric called ``name`` improves as it falls (MAE, losses)."""
    return name.startswith(LOWER_IS_BETTER_PREFIXES)


def _pearson(p: np.ndarray, t: np.ndarray) -> float:
    p = p.astype(np.float64) - p.mean()
    t = t.astype(np.float64) - t.mean()
    denom = np.sqrt((p * p).sum() * (t * t).sum())
    return float((p * t).sum() / denom) if denom > 0 else float("nan")


def _f1(truth: np.ndarray, pred: np.ndarray, average: str = "weighted") -> float:
    # sklearn's argument order is (y_true, y_pred); MulT's code swapped them.
    return float(f1_score(truth, pred, average=average, zero_division=0))


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

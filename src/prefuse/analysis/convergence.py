"""Learning curves from ``history.csv``: stage 1 per modality, and modality usage in joint
training, each as a mean over seeds with its spread."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..metrics import direction
from ..rundir import RunFiles, number


@dataclass
class Curve:
    """Per-epoch mean and std over seeds; epoch e holds the seeds that reached it (early
    stopping ends seeds at different epochs)."""

    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    seeds: int
    count: np.ndarray

    def settled(self) -> Curve:
        """The epochs that at least half the seeds reached: past them, a mean of the one
        or two longest-running seeds would jump and mislead."""
        keep = 2 * self.count >= self.seeds
        return Curve(self.epochs[keep], self.mean[keep], self.std[keep], self.seeds,
                     self.count[keep])


def _series(rows: list[dict[str, str]], column: str) -> list[np.ndarray]:
    """One value array per seed, in epoch order (index 0 = epoch 1)."""
    by_seed: dict[str, dict[int, float]] = defaultdict(dict)
    for row in rows:
        by_seed[row["seed"]][int(row["epoch"])] = number(row.get(column))
    out = []
    for epochs in by_seed.values():
        last = max(epochs)
        out.append(np.array([epochs.get(e, np.nan) for e in range(1, last + 1)]))
    return out


def mean_curve(series: list[np.ndarray]) -> Curve:
    """Mean and std over seeds at each epoch, ignoring seeds without a value there."""
    length = max(len(s) for s in series)
    table = np.full((len(series), length), np.nan)
    for i, s in enumerate(series):
        table[i, :len(s)] = s
    present = ~np.isnan(table)
    count = present.sum(axis=0)
    filled = np.where(present, table, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / count
        var = (np.where(present, table - mean, 0.0) ** 2).sum(axis=0) / count
    return Curve(epochs=np.arange(1, length + 1), mean=mean, std=np.sqrt(var),
                 seeds=len(series), count=count)


def normalise(values: np.ndarray, metric: str) -> np.ndarray:
    """0 at the first epoch, 1 at the best epoch, in the metric's direction of improvement.

    A run that never improves on its first epoch has no scale: all NaN (not drawn).
    """
    values = np.asarray(values, dtype=float)
    gain = direction(metric) * (values - values[0])
    best = np.nanmax(gain) if np.isfinite(gain).any() else np.nan
    if not best > 0:
        return np.full_like(values, np.nan)
    return gain / best


def _stage1_rows(run: RunFiles) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {m: [] for m in run.modalities}
    for row in run.history:
        if row.get("stage") == "pretrain" and row.get("modality") in rows:
            rows[row["modality"]].append(row)
    return {m: r for m, r in rows.items() if r}


def stage1_curves(run: RunFiles, column: str, normalised: bool = False) -> dict[str, Curve]:
    """Per modality, the stage-1 curve of ``column`` (e.g. ``valid_metric``,
    ``valid_loss``); ``normalised`` rescales each seed with :func:`normalise` first."""
    out = {}
    for modality, rows in _stage1_rows(run).items():
        series = _series(rows, column)
        if normalised:
            series = [normalise(s, run.primary) for s in series]
        if any(np.isfinite(s).any() for s in series):
            out[modality] = mean_curve(series)
    return out


def joint_arms(run: RunFiles) -> list[str]:
    """Arms with joint-training rows, in the order ``metrics.json`` lists them."""
    present = {row["arm"] for row in run.history if row.get("stage") == "joint"}
    return [a for a in run.summary["arms"] if a in present]


def usage_curves(run: RunFiles) -> dict[str, dict[str, Curve]]:
    """Per joint arm and modality, the validation metric with only that modality kept."""
    out: dict[str, dict[str, Curve]] = {}
    for arm in joint_arms(run):
        rows = [r for r in run.history if r.get("stage") == "joint" and r["arm"] == arm]
        curves = {}
        for modality in run.modalities:
            series = _series(rows, f"usage_{modality}")
            if any(np.isfinite(s).any() for s in series):
                curves[modality] = mean_curve(series)
        if curves:
            out[arm] = curves
    return out


def usage_summary(curves: dict[str, Curve], metric: str) -> dict:
    """Usage at epoch 1 and at the last epoch at least half the seeds reached (means over
    seeds), and the modality that leads at epoch 1: the measured "one modality dominates
    early"."""
    first = {m: float(c.mean[0]) for m, c in curves.items()}
    last = {m: float(c.settled().mean[-1]) for m, c in curves.items()}
    finite = {m: v for m, v in first.items() if np.isfinite(v)}
    leader = max(finite, key=lambda m: direction(metric) * finite[m]) if finite else None
    return {"first": first, "last": last, "leader": leader}


# history.csv's columns that every joint-training row has; any other column (besides
# ``usage_<m>``) is a value a training method logs.
FIXED_COLUMNS = {"seed", "stage", "arm", "modality", "epoch", "train_loss", "valid_loss",
                 "train_metric", "valid_metric"}


def method_values(run: RunFiles) -> dict[str, dict[str, float]]:
    """Per joint arm, each value its training method logs (history.csv's extra columns),
    at each seed's last epoch, averaged over seeds; arms that log nothing are left out."""
    out: dict[str, dict[str, float]] = {}
    for arm in joint_arms(run):
        rows = [r for r in run.history if r.get("stage") == "joint" and r["arm"] == arm]
        last: dict[str, dict[str, str]] = {}
        for row in rows:
            if row["seed"] not in last or int(row["epoch"]) >= int(last[row["seed"]]["epoch"]):
                last[row["seed"]] = row
        columns = [c for c in rows[0] if c not in FIXED_COLUMNS
                   and not c.startswith("usage_")]
        values = {c: float(np.mean([number(r.get(c)) for r in last.values()]))
                  for c in columns}
        values = {c: v for c, v in values.items() if np.isfinite(v)}
        if values:
            out[arm] = values
    return out

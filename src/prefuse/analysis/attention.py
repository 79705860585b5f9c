"""Modality attention on the test split, from ``attention.csv``: mean weights per arm,
their distributions, their means per class, the samples worth looking at, and (for data
with groups) a few groups followed utterance by utterance."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..metrics import direction
from ..rundir import RunFiles, number


def attention_arms(run: RunFiles) -> list[str]:
    """Arms of ``attention.csv`` whose modality weights are learned (``has_weights`` in
    ``metrics.json``), in ``metrics.json`` order."""
    present = {row["arm"] for row in run.attention}
    return [a for a, entry in run.summary["arms"].items()
            if a in present and entry.get("has_weights")]


def headline(run: RunFiles) -> str | None:
    """The arm ``metrics.json`` marks as the headline, if the run trained it."""
    return next((a for a, e in run.summary["arms"].items() if e.get("headline")), None)


def before_after(run: RunFiles) -> tuple[str, str] | None:
    """``(before, after)``: the headline arm and the arm ``metrics.json`` names as its
    attention before pre-training, where the run trained both."""
    after = headline(run)
    before = run.summary["arms"][after].get("before") if after else None
    return (before, after) if before in run.summary["arms"] else None


def rows_of(run: RunFiles, arm: str, seed: str | None = None) -> list[dict[str, str]]:
    """``attention.csv`` rows of one arm (and one seed if given), in file order."""
    return [r for r in run.attention
            if r["arm"] == arm and (seed is None or r["seed"] == seed)]


def weights(rows: list[dict[str, str]], modalities: list[str]) -> np.ndarray:
    """``(N, M)`` weights of ``rows``."""
    return np.array([[number(r[f"weight_{m}"]) for m in modalities] for r in rows],
                    dtype=float).reshape(len(rows), len(modalities))


def mean_weights(run: RunFiles, arm: str) -> tuple[dict[str, float], dict[str, float]]:
    """Mean weight per modality over the test split, then mean and std over seeds (so the
    mean matches ``metrics.json``'s ``mean_weights``)."""
    per_seed = defaultdict(list)
    for row in rows_of(run, arm):
        per_seed[row["seed"]].append(row)
    means = np.array([weights(rows, run.modalities).mean(axis=0)
                      for rows in per_seed.values()])
    return (dict(zip(run.modalities, means.mean(axis=0).tolist())),
            dict(zip(run.modalities, means.std(axis=0).tolist())))


def weight_samples(run: RunFiles, arm: str) -> dict[str, np.ndarray]:
    """Every test weight of each modality, all seeds pooled: the distributions."""
    w = weights(rows_of(run, arm), run.modalities)
    return {m: w[:, i] for i, m in enumerate(run.modalities)}


def _label_values(label: str) -> list[float]:
    return [float(v) for v in label.split(";")]


def class_groups(run: RunFiles, rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Boolean masks over ``rows`` by class. Classification: one group per label value;
    multilabel: one (overlapping) group per label present; regression: terciles of the
    (mean) target, or each value where there are at most three."""
    labels = [r["label"] for r in rows]
    kind = run.summary["task"]
    if kind == "multilabel":
        table = np.array([_label_values(v) for v in labels]).reshape(len(rows), -1)
        return {f"label {k} present": table[:, k] > 0.5 for k in range(table.shape[1])}
    if kind == "regression":
        values = np.array([np.mean(_label_values(v)) for v in labels])
        distinct = np.unique(values)
        if len(distinct) <= 3:
            return {f"{v:g}": values == v for v in distinct}
        edges = np.quantile(values, [1 / 3, 2 / 3])
        bins = np.digitize(values, edges)
        names = [f"low (< {edges[0]:.3g})", f"middle [{edges[0]:.3g}, {edges[1]:.3g})",
                 f"high (>= {edges[1]:.3g})"]
        return {names[b]: bins == b for b in range(3) if (bins == b).any()}
    ordered = sorted(set(labels), key=lambda v: (_sort_key(v), v))
    return {f"class {v}": np.array([label == v for label in labels]) for v in ordered}


def _sort_key(label: str) -> float:
    try:
        return float(label)
    except ValueError:
        return float("inf")


def dominant_groups(run: RunFiles, rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Boolean masks over ``rows`` by the modality that carries the label (``dominant``
    column; empty when the data does not record it)."""
    if not rows or "dominant" not in rows[0]:
        return {}
    dominant = np.array([int(r["dominant"]) for r in rows])
    return {m: dominant == k for k, m in enumerate(run.modalities)}


Grouping = Callable[[RunFiles, list[dict[str, str]]], dict[str, np.ndarray]]


def group_means(run: RunFiles, arm: str, grouping: Grouping = class_groups
                ) -> dict[str, tuple[dict[str, float], int]]:
    """Per group of ``grouping`` (by class unless given): mean weight per modality (all
    seeds pooled) and the number of rows."""
    rows = rows_of(run, arm)
    w = weights(rows, run.modalities)
    return {name: (dict(zip(run.modalities, w[mask].mean(axis=0).tolist())), int(mask.sum()))
            for name, mask in grouping(run, rows).items() if mask.any()}


def example_seed(run: RunFiles, arm: str) -> str:
    """The seed whose model ``prefuse run`` saved for ``arm``: best validation primary
    metric (first seed on ties), as ``prefuse run`` chooses."""
    seeds = run.summary["arms"][arm]["seeds"]
    metric = run.primary

    def score(seed: str) -> float:
        value = seeds[seed]["valid"].get(metric)
        return -np.inf if value is None else direction(metric) * value

    return max(seeds, key=score)


def top_examples(run: RunFiles, arm: str, seed: str, modality: str,
                 k: int = 5) -> list[dict[str, str]]:
    """The ``k`` test rows of ``arm``/``seed`` where ``modality`` weighs most (file order
    breaks ties)."""
    rows = rows_of(run, arm, seed)
    column = weights(rows, run.modalities)[:, run.modalities.index(modality)]
    order = np.argsort(-column, kind="stable")[:k]
    return [rows[i] for i in order]


def disagreements(run: RunFiles, seed: str, before_arm: str, after_arm: str,
                  k: int = 5) -> tuple[list[dict], int]:
    """Test samples whose top-weighted modality differs between ``before_arm`` and
    ``after_arm`` (same seed): the ``k`` with the largest weight shift (total variation
    distance), and how many samples disagree. Pairs rows by id."""
    before = {r["id"]: r for r in rows_of(run, before_arm, seed)}
    after = rows_of(run, after_arm, seed)
    pairs = [(before[r["id"]], r) for r in after if r["id"] in before]
    if not pairs:
        return [], 0
    wb = weights([b for b, _ in pairs], run.modalities)
    wa = weights([a for _, a in pairs], run.modalities)
    differ = np.flatnonzero(wb.argmax(axis=1) != wa.argmax(axis=1))
    shift = 0.5 * np.abs(wa - wb).sum(axis=1)
    order = differ[np.argsort(-shift[differ], kind="stable")][:k]
    out = [{"before": pairs[i][0], "after": pairs[i][1], "shift": float(shift[i]),
            "top_before": run.modalities[int(wb[i].argmax())],
            "top_after": run.modalities[int(wa[i].argmax())]} for i in order]
    return out, len(differ)


TIMELINE_GROUPS = 3  # how many test groups the report's timeline follows
TIMELINE_ARM = "pretrained+attention"  # the arm the timeline prefers


@dataclass
class Timeline:
    """One test group of one arm and seed, its utterances sorted by ``order``: their ids,
    labels and predictions as numbers (the mean of a vector label), and ``(N, M)``
    weights."""

    group: str
    order: np.ndarray
    ids: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    weights: np.ndarray


def timeline_arm(run: RunFiles) -> str | None:
    """The arm the timeline follows: ``pretrained+attention`` when it has learned weights,
    else the first arm that has them, else the headline or first arm of ``attention.csv``."""
    learned = attention_arms(run)
    if TIMELINE_ARM in learned:
        return TIMELINE_ARM
    if learned:
        return learned[0]
    present = [r["arm"] for r in run.attention]
    return headline(run) if headline(run) in present else next(iter(present), None)


def _mean_value(text: str) -> float:
    return float(np.mean(_label_values(text))) if text != "" else np.nan


def timelines(run: RunFiles, arm: str, seed: str | None = None,
              k: int = TIMELINE_GROUPS) -> list[Timeline]:
    """The ``k`` test groups with the most utterances (ties by group name) of ``arm`` and
    ``seed`` (the first seed of ``attention.csv`` unless given), each along ``order``.
    Empty when ``attention.csv`` has no groups."""
    rows = rows_of(run, arm)
    if not run.grouped or not rows:
        return []
    seed = rows[0]["seed"] if seed is None else seed
    by_group: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows_of(run, arm, seed):
        by_group[row["group"]].append(row)
    chosen = sorted(by_group, key=lambda g: (-len(by_group[g]), g))[:k]
    out = []
    for g in chosen:
        members = sorted(by_group[g], key=lambda r: int(r["order"]))
        out.append(Timeline(g, np.array([int(r["order"]) for r in members]),
                            [r["id"] for r in members],
                            np.array([_mean_value(r["label"]) for r in members]),
                            np.array([_mean_value(r["prediction"]) for r in members]),
                            weights(members, run.modalities)))
    return out

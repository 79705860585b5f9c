"""The report's tuning section, from ``tuning.json`` (written by ``prefuse tune``): each
arm's budget and best validation value, its best parameters, the optimisation history
and the parameter importances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from ..errors import PrefuseError
from ..rundir import TUNING_FILE
from .plots import _arm_colour, _png
from .render import Block, Figure, Heading, Table, Text


def load_tuning(run_dir: str | Path) -> dict | None:
    """``tuning.json`` of a run directory, or None for a run that was not tuned."""
    path = Path(run_dir) / TUNING_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PrefuseError(f"{path}: cannot read: {e}") from e


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _param(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def history_figure(arms: dict[str, dict]) -> bytes:
    """Per arm: each trial's validation value (pruned trials hollow, at their last
    reported value) and the best so far."""
    fig = MplFigure(figsize=(min(4.5 * len(arms), 16), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(arms), sharey=True))
    for k, (ax, (arm, entry)) in enumerate(zip(axes, arms.items())):
        colour = _arm_colour(k)
        trials = [t for t in entry["trials"] if t["value"] is not None]
        for state, face in (("complete", colour), ("pruned", "none")):
            shown = [t for t in trials if t["state"] == state]
            ax.scatter([t["number"] for t in shown], [t["value"] for t in shown],
                       facecolors=face, edgecolors=colour, label=state, s=22)
        complete = sorted((t for t in trials if t["state"] == "complete"),
                          key=lambda t: t["number"])
        if complete:
            pick = np.minimum if entry["direction"] == "minimize" else np.maximum
            best = pick.accumulate([t["value"] for t in complete])
            ax.step([t["number"] for t in complete], best, where="post", color=colour,
                    label="best so far")
        ax.set_title(arm, fontsize=9)
        ax.set_xlabel("trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if k == 0:
            ax.set_ylabel(f"valid {entry['metric']}")
            ax.legend(fontsize=8)
    return _png(fig)


def importance_figure(arms: dict[str, dict]) -> bytes:
    """Parameter importances (Optuna's evaluator), one bar per arm and parameter."""
    params = sorted({p for e in arms.values() for p in e["importances"]})
    fig = MplFigure(figsize=(7, 0.5 * len(params) + 1.5), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / max(len(arms), 1)
    for k, (arm, entry) in enumerate(arms.items()):
        y = np.arange(len(params)) + (k - (len(arms) - 1) / 2) * height
        ax.barh(y, [entry["importances"].get(p, 0.0) for p in params], height,
                color=_arm_colour(k), label=arm)
    ax.set_yticks(np.arange(len(params)), params)
    ax.set_xlabel("importance (share of the value's variation)")
    ax.legend(fontsize=8)
    return _png(fig)


def _design(doc: dict) -> str:
    """What the trials' design means for the comparison, in one or two sentences."""
    if doc.get("design", "independent") != "paired":
        return ("Each arm had a study of its own (independent design): trial n of two arms "
                "drew different configurations, and each arm's pruning was its own.")
    trials = doc.get("trials", [])
    shared = sum(1 for t in trials
                 if t["arms"] and all(a["state"] == "complete" for a in t["arms"].values()))
    return ("Trials were paired: each drew one configuration and every arm trained on it "
            "(a method's own options drawn for its arm), a trial was pruned for all arms "
            "together or not at all, and each arm's best is its best among the "
            f"{shared} of {len(trials)} trials that every arm completed.")


def tuning_section(run_dir: str | Path) -> list[Block]:
    """The report blocks for a tuned run; none for a run that was not tuned."""
    doc = load_tuning(run_dir)
    if doc is None:
        return []
    arms = doc["arms"]
    blocks: list[Block] = [Heading("Tuning"), Text(
        f"Every arm searched the same space with the same budget ({doc['trials_per_arm']} "
        f"trials; TPE sampler, pruned trials stopped early) on the validation split only, "
        f"each trial averaged over tune seeds {doc['tune_seeds']}. {_design(doc)} The test "
        "results above are those of each arm's best configuration, trained again on the "
        "run's seeds. config.toml is the untuned base; each arm's tuned config is "
        "arms/<arm>/config.toml in this directory.")]
    rows = []
    for arm, entry in arms.items():
        states = [t["state"] for t in entry["trials"]]
        best = entry.get("best", {})
        rows.append([arm, str(states.count("complete")), str(states.count("pruned")),
                     str(states.count("fail")), str(best.get("number", "n/a")),
                     _value(best.get("value"))])
    metric = next(iter(arms.values()))["metric"] if arms else "metric"
    blocks.append(Table(["arm", "complete", "pruned", "failed", "best trial",
                         f"best valid {metric}"], rows))
    params = sorted({p for e in arms.values() for p in e.get("best", {}).get("params", {})})
    if params:
        blocks.append(Table(["parameter"] + list(arms),
                            [[p] + [_param(e.get("best", {}).get("params", {}).get(p, "-"))
                                    for e in arms.values()] for p in params]))
    if arms:
        blocks.append(Figure("tuning_history", "Optimisation history per arm",
                             history_figure(arms)))
    if any(e["importances"] for e in arms.values()):
        blocks.append(Figure("tuning_importances", "Parameter importances per arm",
                             importance_figure(arms)))
    return blocks

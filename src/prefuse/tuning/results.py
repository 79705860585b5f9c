"""What a finished search leaves: ``tuning.json`` and one best config per arm.

``tuning.json`` holds, per arm, every trial (number, state, value, seed values,
parameters), the best trial and Optuna's parameter importances, so that the report draws
its figures from the file alone; and ``trials``, every trial with each arm's part of it,
so that anyone can check the pairing (an independent tune's arms share only a number).

A paired tune picks fairly: each arm's best is its best value among the trials that
every arm completed, so no arm is picked a configuration that another arm never finished.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..config import RunConfig, config_to_toml, replace
from ..fileio import write_json, write_text
from ..rundir import ARMS_FOLDER, BEST_FOLDER, TUNING_FILE
from .paired import STAGE1_ATTR, arm_attr, watched_arm
from .space import configure, paired_name


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _importances(study: optuna.Study) -> dict[str, float]:
    """PED-ANOVA importances; empty where they have too little to go on (fewer than two
    complete trials, or no parameter that varied)."""
    # Named, not Optuna's default: before Optuna 5 the default is fANOVA, which imports
    # scikit-learn, a package prefuse does not depend on.
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        with warnings.catch_warnings():
            # Few trials make the evaluator warn that all importances are equal; they are.
            warnings.simplefilter("ignore", UserWarning)
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}
    return {k: float(v) for k, v in importances.items()}


ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def arm_summary(study: optuna.Study, arm: str, metric: str) -> dict:
    """One arm's part of ``tuning.json`` (an independent tune: the arm's own study)."""
    trials = [{"number": t.number, "state": t.state.name.lower(), "value": _number(t.value),
               "params": t.params,
               "last_step": max(t.intermediate_values) if t.intermediate_values else None,
               "seed_values": t.user_attrs.get("seed_values", [])}
              for t in study.get_trials(deepcopy=False) if t.state in ENDED]
    complete = [t for t in trials if t["state"] == "complete"]
    out = {"study": study.study_name, "metric": metric,
           "direction": study.direction.name.lower(), "trials": trials,
           "importances": _importances(study) if complete else {}}
    if complete:
        best = study.best_trial
        out["best"] = {"number": best.number, "value": _number(best.value),
                       "params": best.params,
                       "seed_values": best.user_attrs.get("seed_values", [])}
    return out


def _arm_part(trial: optuna.trial.FrozenTrial, arm: str) -> dict:
    """``arm``'s part of a finished paired trial. An arm that never reported (its worker
    died, or the trial stopped before it) takes the trial's state, without a value."""
    part = dict(trial.user_attrs.get(arm_attr(arm), {}))
    if part.get("state") not in ("complete", "pruned", "fail"):
        part = {**part, "state": trial.state.name.lower(), "value": None}
    return {"state": part["state"], "value": _number(part.get("value")),
            "seed_values": part.get("seed_values", []), "params": part.get("params", {}),
            "last_step": part.get("last_step")}


def _pick(rows: list[dict], arm: str, direction: str) -> dict | None:
    """``arm``'s best among the trials every arm completed (the first, on a tie)."""
    best = None
    for row in rows:
        part = row["arms"][arm]
        if row["state"] != "complete" or part["value"] is None:
            continue
        if best is None or (part["value"] < best["value"] if direction == "minimize"
                            else part["value"] > best["value"]):
            best = {"number": row["number"], **part}
    return best


def _arm_view(study: optuna.Study, rows: list[dict], arm: str) -> optuna.Study:
    """An in-memory study of ``arm``'s values on the trials every arm completed, for its
    parameter importances."""
    view = optuna.create_study(direction=study.direction)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for row in rows:
        part = row["arms"][arm]
        if row["state"] == "complete" and part["value"] is not None:
            dists = by_number[row["number"]].distributions
            view.add_trial(optuna.trial.create_trial(
                params=part["params"], value=part["value"],
                distributions={k: dists[paired_name(arm, k)] for k in part["params"]}))
    return view


def paired_summaries(study: optuna.Study, arms: list[str],
                     metric: str) -> tuple[dict[str, dict], list[dict]]:
    """Each arm's part of ``tuning.json`` from the one study of a paired tune, in
    ``arm_summary``'s shape, and the list of trials with every arm's part."""
    rows = [{"number": t.number, "state": t.state.name.lower(), "value": _number(t.value),
             "params": t.params, "stage1": t.user_attrs.get(STAGE1_ATTR),
             "arms": {arm: _arm_part(t, arm) for arm in arms}}
            for t in study.get_trials(deepcopy=False) if t.state in ENDED]
    direction = study.direction.name.lower()
    # Only the watched arm reports to the pruner: where it was pruned, its last report.
    last = {t.number: max(t.intermediate_values) if t.intermediate_values else None
            for t in study.get_trials(deepcopy=False)}
    entries = {}
    for arm in arms:
        trials = [{"number": r["number"], **r["arms"][arm]} for r in rows]
        for t in trials:
            if t["last_step"] is None and arm == watched_arm(arms):
                t["last_step"] = last[t["number"]]
        entries[arm] = {"study": study.study_name, "metric": metric, "direction": direction,
                        "trials": trials, "importances": {}}
        best = _pick(rows, arm, direction)
        if best is not None:
            entries[arm]["importances"] = _importances(_arm_view(study, rows, arm))
            entries[arm]["best"] = {k: best[k] for k in ("number", "value", "params",
                                                         "seed_values")}
    return entries, rows


def independent_summaries(studies: dict[str, optuna.Study],
                          metric: str) -> tuple[dict[str, dict], list[dict]]:
    """Each arm's part of ``tuning.json`` from its own study, and the trials by number
    (each arm's trial of that number: they share the number only)."""
    entries = {arm: arm_summary(study, arm, metric) for arm, study in studies.items()}
    numbers = sorted({t["number"] for e in entries.values() for t in e["trials"]})
    rows = [{"number": n, "arms": {arm: {k: t[k] for k in ("state", "value", "seed_values",
                                                           "params", "last_step")}
                                   for arm, e in entries.items()
                                   for t in e["trials"] if t["number"] == n}}
            for n in numbers]
    return entries, rows


def best_config(config: RunConfig, arm: str, params: dict, out: str | Path) -> RunConfig:
    """``arm``'s tuned config: ``params`` applied, trained on the final seeds (the tune
    seeds when there are none), writing its run to ``out``."""
    seeds = config.tune.final_seeds or config.tune.tune_seeds
    return replace(configure(config, arm, params, seeds), out=str(out))


def write_results(config: RunConfig, tune_dir: str | Path, studies: dict[str, optuna.Study],
                  metric: str, run_dir: str | Path) -> tuple[dict, dict[str, RunConfig]]:
    """Write ``tuning.json`` and ``best/<arm>.toml`` (each ``prefuse run --config``
    ready; its run goes to ``run_dir/arms/<arm>``) from the tune's ``studies`` (by
    name, in ``study_names`` order); return the document and the best config of each
    arm that has a complete trial (a paired tune: one every arm completed)."""
    tune_dir = Path(tune_dir)
    if config.tune.design == "paired":
        entries, rows = paired_summaries(next(iter(studies.values())), config.arms, metric)
    else:
        entries, rows = independent_summaries(dict(zip(config.arms, studies.values())),
                                              metric)
    # What the studies hold, not what this call asked for: a continued study may hold
    # more trials than ``--trials``; the count every arm reached.
    held = min((len(e["trials"]) for e in entries.values()), default=0)
    doc = {"trials_per_arm": held, "tune_seeds": config.tune.tune_seeds,
           "design": config.tune.design, "arms": {}}
    best = {}
    for arm, entry in entries.items():
        if "best" in entry:
            best[arm] = best_config(config, arm, entry["best"]["params"],
                                    Path(run_dir) / ARMS_FOLDER / arm)
            path = tune_dir / BEST_FOLDER / f"{arm}.toml"
            write_text(path, config_to_toml(best[arm], runtime=False))
            entry["config"] = str(path)
        doc["arms"][arm] = entry
    doc["trials"] = rows
    write_json(tune_dir / TUNING_FILE, doc)
    return doc, best

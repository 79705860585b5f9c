"""What a finished search leaves: ``tuning.json`` and one best config per arm.

``tuning.json`` holds, per arm, every trial (number, state, value, parameters), the best
trial and Optuna's parameter importances, so that the report draws its figures from the
file alone.
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
from .space import configure


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


def arm_summary(study: optuna.Study, arm: str, metric: str) -> dict:
    """One arm's part of ``tuning.json``."""
    trials = [{"number": t.number, "state": t.state.name.lower(), "value": _number(t.value),
               "params": t.params,
               "last_step": max(t.intermediate_values) if t.intermediate_values else None}
              for t in study.get_trials(deepcopy=False)
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
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


def best_config(config: RunConfig, arm: str, params: dict, out: str | Path) -> RunConfig:
    """``arm``'s tuned config: ``params`` applied, trained on the final seeds (the tune
    seeds when there are none), writing its run to ``out``."""
    seeds = config.tune.final_seeds or config.tune.tune_seeds
    return replace(configure(config, arm, params, seeds), out=str(out))


def write_results(config: RunConfig, tune_dir: str | Path, studies: dict[str, optuna.Study],
                  metric: str, run_dir: str | Path) -> tuple[dict, dict[str, RunConfig]]:
    """Write ``tuning.json`` and ``best/<arm>.toml`` (each ``prefuse run --config``
    ready; its run goes to ``run_dir/arms/<arm>``); return the document and the best
    config of each arm that has a complete trial."""
    tune_dir = Path(tune_dir)
    entries = {arm: arm_summary(study, arm, metric) for arm, study in studies.items()}
    # What the studies hold, not what this call asked for: a continued study may hold
    # more trials than ``--trials``; the count every arm reached.
    held = min((len(e["trials"]) for e in entries.values()), default=0)
    doc = {"trials_per_arm": held, "tune_seeds": config.tune.tune_seeds, "arms": {}}
    best = {}
    for arm, entry in entries.items():
        if "best" in entry:
            best[arm] = best_config(config, arm, entry["best"]["params"],
                                    Path(run_dir) / ARMS_FOLDER / arm)
            path = tune_dir / BEST_FOLDER / f"{arm}.toml"
            write_text(path, config_to_toml(best[arm], runtime=False))
            entry["config"] = str(path)
        doc["arms"][arm] = entry
    write_json(tune_dir / TUNING_FILE, doc)
    return doc, best

"""The tuned arms trained on the final seeds, as one ordinary run directory.

Each arm's best config is an ordinary run of its own (``RUN/arms/<arm>/``, which
``prefuse run --config RUN/arms/<arm>/config.toml`` repeats); the run directory merges
their files: each arm's entry of ``metrics.json``, ``attention.csv`` rows and model, and
the stage-1 results (``unimodal``, stage-1 history rows) of the headline arm's run
(``rundir.merged_summary`` and ``rundir.write_merged_run``).
Running the ordinary path per arm, rather than teaching it per-arm configs, keeps
``run_experiment`` as it is and lets a finished arm be reused when a tune is repeated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..config import RunConfig, config_to_toml, load_config
from ..data.dataset import MultimodalDataset
from ..engine.checkpoint import config_differences
from ..errors import PrefuseError
from ..recipe.stages import Observer
from ..rundir import (
    CHECKPOINTS_FOLDER,
    CONFIG_FILE,
    METRICS_FILE,
    TUNING_FILE,
    merged_summary,
    write_merged_run,
)
from ..runs.experiment import run_experiment
from ..runs.summary import attention_shift, best_alone, headline_arm


def _train(config: RunConfig, dataset: MultimodalDataset, log, observe) -> dict:
    """Run ``config`` into ``config.out``: reuse it when complete with the same config,
    resume it when interrupted, start it otherwise."""
    out = Path(config.out)
    saved = out / CONFIG_FILE
    same = saved.is_file() and not config_differences(load_config(saved), config)
    unfinished = (out / CHECKPOINTS_FOLDER).is_dir()
    if same and (out / METRICS_FILE).is_file() and not unfinished:
        return json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))
    return run_experiment(config, dataset, log=log, resume=same and unfinished,
                          observe=observe)


def merge_runs(run_dir: str | Path, base: RunConfig, arm_dirs: dict[str, Path]) -> dict:
    """Write ``run_dir``'s ordinary files from the one-arm runs in ``arm_dirs``
    (``rundir.write_merged_run``); ``metrics.json`` last. Returns the merged document."""
    headline = headline_arm(list(arm_dirs))
    merged = merged_summary(arm_dirs, headline)
    merged["attention"] = attention_shift(merged["arms"])
    # As a run's summary has it: each fused arm's table row compares it with this arm.
    best = best_alone(merged["arms"], merged["primary_metric"])
    if best is not None:
        merged["best_alone"] = best
    write_merged_run(run_dir, arm_dirs, headline, config_to_toml(base), merged)
    return merged


def train_final(base: RunConfig, best: dict[str, RunConfig], dataset: MultimodalDataset,
                run_dir: str | Path, tune_dir: str | Path, log=print,
                observe: Observer | None = None) -> dict:
    """Train each arm's best config (``best[arm].out`` under ``run_dir/arms``), merge
    them into ``run_dir`` with ``tuning.json`` beside; return the merged document."""
    if not best:
        raise PrefuseError("no arm has a complete trial: nothing to train on the final seeds")
    arm_dirs = {}
    for arm, config in best.items():
        log(f"final: {arm} with its best config, seeds {config.seeds}")
        _train(config, dataset, log, observe)
        arm_dirs[arm] = Path(config.out)
    shutil.copyfile(Path(tune_dir) / TUNING_FILE, Path(run_dir) / TUNING_FILE)
    return merge_runs(run_dir, base, arm_dirs)

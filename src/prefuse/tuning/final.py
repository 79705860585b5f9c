"""The tuned arms trained on the final seeds, as one ordinary run directory.

Each arm's best config is an ordinary run of its own (``RUN/arms/<arm>/``, which
``prefuse run --config RUN/arms/<arm>/config.toml`` repeats); the run directory merges
their files: each arm's entry of ``metrics.json``, ``attention.csv`` rows and model, and
the stage-1 results (``unimodal``, stage-1 history rows) of the headline arm's run.
Running the ordinary path per arm, rather than teaching it per-arm configs, keeps
``run_experiment`` as it is and lets a finished arm be reused when a tune is repeated.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from ..config import RunConfig, config_to_toml, load_config
from ..data.dataset import MultimodalDataset
from ..engine.checkpoint import config_differences
from ..errors import PrefuseError
from ..fileio import write_json, write_text
from ..recipe.stages import Observer
from ..rundir import (
    ATTENTION_FILE,
    CHECKPOINTS_FOLDER,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILES,
    MODELS_FOLDER,
    TUNING_FILE,
)
from ..runs.experiment import run_experiment
from ..runs.summary import attention_shift, headline_arm


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


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _merged_csv(parts: list[tuple[list[str], list[dict[str, str]]]]) -> str:
    header: list[str] = []
    for columns, _ in parts:
        header += [c for c in columns if c not in header]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header, restval="", lineterminator="\n")
    writer.writeheader()
    for _, rows in parts:
        writer.writerows(rows)
    return buffer.getvalue()


def merge_runs(run_dir: str | Path, base: RunConfig, arm_dirs: dict[str, Path]) -> dict:
    """Write ``run_dir``'s ordinary files from the one-arm runs in ``arm_dirs``;
    ``metrics.json`` last. Returns the merged document."""
    run_dir = Path(run_dir)
    summaries = {arm: json.loads((d / METRICS_FILE).read_text(encoding="utf-8"))
                 for arm, d in arm_dirs.items()}
    headline = headline_arm(list(arm_dirs))
    merged = dict(summaries[headline])
    merged["arms"], robustness = {}, {}
    merged.pop("robustness", None)
    for arm, summary in summaries.items():
        merged["arms"][arm] = summary["arms"][arm]
        if arm in summary.get("robustness", {}):
            robustness[arm] = summary["robustness"][arm]
    merged["attention"] = attention_shift(merged["arms"])
    if robustness:
        merged["robustness"] = robustness
    history = []
    for arm, d in arm_dirs.items():
        columns, rows = _rows(d / HISTORY_FILE)
        # Stage 1 differs per tuned config; the run shows the headline arm's.
        history.append((columns, [r for r in rows if arm == headline or r["stage"] != "pretrain"]))
    write_text(run_dir / HISTORY_FILE, _merged_csv(history))
    write_text(run_dir / ATTENTION_FILE,
               _merged_csv([_rows(d / ATTENTION_FILE) for d in arm_dirs.values()]))
    for arm, d in arm_dirs.items():
        target = run_dir / MODELS_FOLDER / arm
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(d / MODELS_FOLDER / arm, target)
    for name in MODEL_FILES:
        shutil.copyfile(arm_dirs[headline] / name, run_dir / name)
    write_text(run_dir / CONFIG_FILE, config_to_toml(base))
    write_json(run_dir / METRICS_FILE, merged)
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

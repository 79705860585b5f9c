"""The run and tune directories: the names of their files, and a run directory read back.

Every module that writes or reads one of these directories takes its names from here (the
README's "Run directory" table). Plain paths, rows and dicts only: ``runs/files.py`` turns
a run's results into rows.

The report is rebuilt from a run directory's files alone, so every analysis takes a
``RunFiles``. ``metrics.json`` is required; the others may be absent (their sections are
skipped).
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PrefuseError
from .fileio import write_json, write_text

# A run directory.
CONFIG_FILE = "config.toml"
DATA_FILE = "data.json"  # the data's fingerprint, checked on --resume
METRICS_FILE = "metrics.json"  # written last: its presence marks a finished run
HISTORY_FILE = "history.csv"
ATTENTION_FILE = "attention.csv"
# Where a sample sits in its video or dialogue: columns of attention.csv and of the
# predictions file, after ``id``, only when the data has groups (so files of data without
# groups keep their columns).
GROUP_COLUMNS = ("group", "order")
MODEL_FILES = ("model.safetensors", "model.json")  # the headline arm's model
MODELS_FOLDER = "models"  # models/<arm>/: each arm's best model
CHECKPOINTS_FOLDER = "checkpoints"  # while a run is unfinished
# While ``--overwrite`` runs (``replacing.py``): the previous run's files, first
# while they are moved aside, then once all of them are; never counted as a run's files.
REPLACING_FOLDER = ".replacing"
REPLACED_FOLDER = ".replaced"
REPORT_FILES = ("report.html", "report.md")
FIGURES_FOLDER = "figures"
# What a run writes; a fresh run over any of these would mix two runs' results.
RUN_FILES = (CONFIG_FILE, DATA_FILE, METRICS_FILE, HISTORY_FILE, ATTENTION_FILE,
             *MODEL_FILES, MODELS_FOLDER, *REPORT_FILES, FIGURES_FOLDER, CHECKPOINTS_FOLDER)

# A tune directory.
STUDY_FILE = "study.db"  # the default (SQLite) storage
TUNING_FILE = "tuning.json"  # also copied into the final run directory
BEST_FOLDER = "best"  # best/<arm>.toml
FINAL_FOLDER = "final"  # the run directory of the final seeds
ARMS_FOLDER = "arms"  # final/arms/<arm>/: each tuned arm's own run


@dataclass
class RunFiles:
    """A run directory's contents, parsed. CSV rows are dicts of strings as written."""

    path: Path
    summary: dict
    history: list[dict[str, str]] = field(default_factory=list)
    attention: list[dict[str, str]] = field(default_factory=list)
    config: str = ""

    @property
    def modalities(self) -> list[str]:
        return list(self.summary["modalities"])

    @property
    def primary(self) -> str:
        return str(self.summary["primary_metric"])

    @property
    def grouped(self) -> bool:
        """Whether ``attention.csv`` places each test sample in its group (``GROUP_COLUMNS``)."""
        return bool(self.attention) and all(c in self.attention[0] for c in GROUP_COLUMNS)


def number(text: str | None) -> float:
    """A CSV cell as a float; empty or missing cells are NaN."""
    if text is None or text == "":
        return math.nan
    return float(text)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PrefuseError(f"{path}: cannot read: {e}") from e


def load_run(path: str | Path) -> RunFiles:
    """Parse the run directory at ``path``; a missing or broken ``metrics.json`` is an error
    naming it."""
    path = Path(path)
    metrics = path / METRICS_FILE
    if not metrics.is_file():
        raise PrefuseError(f"{metrics}: not found; is {path} a prefuse run directory?")
    try:
        summary = json.loads(metrics.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PrefuseError(f"{metrics}: cannot read: {e}") from e
    missing = [k for k in ("task", "modalities", "primary_metric", "arms", "unimodal")
               if k not in summary]
    if missing:
        raise PrefuseError(f"{metrics}: missing keys {', '.join(missing)}")
    config = path / CONFIG_FILE
    return RunFiles(path=path, summary=summary, history=_read_csv(path / HISTORY_FILE),
                    attention=_read_csv(path / ATTENTION_FILE),
                    config=config.read_text(encoding="utf-8") if config.is_file() else "")


def _csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
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


def merged_summary(arm_dirs: dict[str, Path], headline: str) -> dict:
    """The ``metrics.json`` of one-arm runs merged: the ``headline`` arm's run with every
    run's own arm entry and robustness row. Fields derived from several arms (such as
    ``attention``) are left as the headline run has them, for the caller to recompute."""
    summaries = {arm: json.loads((d / METRICS_FILE).read_text(encoding="utf-8"))
                 for arm, d in arm_dirs.items()}
    merged = dict(summaries[headline])
    merged["arms"], robustness = {}, {}
    merged.pop("robustness", None)
    for arm, summary in summaries.items():
        merged["arms"][arm] = summary["arms"][arm]
        if arm in summary.get("robustness", {}):
            robustness[arm] = summary["robustness"][arm]
    if robustness:
        merged["robustness"] = robustness
    return merged


def write_merged_run(run_dir: str | Path, arm_dirs: dict[str, Path], headline: str,
                     config_text: str, summary: dict) -> None:
    """Write ``run_dir``'s files from the one-arm runs in ``arm_dirs``: their history
    (stage 1 from the ``headline`` arm's run alone, since it differs per tuned config),
    attention rows and models, the headline model, ``config_text`` as ``config.toml``
    and ``summary`` as ``metrics.json``, last."""
    run_dir = Path(run_dir)
    history = []
    for arm, d in arm_dirs.items():
        columns, rows = _csv_rows(d / HISTORY_FILE)
        history.append((columns, [r for r in rows if arm == headline or r["stage"] != "pretrain"]))
    write_text(run_dir / HISTORY_FILE, _merged_csv(history))
    write_text(run_dir / ATTENTION_FILE,
               _merged_csv([_csv_rows(d / ATTENTION_FILE) for d in arm_dirs.values()]))
    for arm, d in arm_dirs.items():
        target = run_dir / MODELS_FOLDER / arm
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(d / MODELS_FOLDER / arm, target)
    for name in MODEL_FILES:
        shutil.copyfile(arm_dirs[headline] / name, run_dir / name)
    write_text(run_dir / CONFIG_FILE, config_text)
    write_json(run_dir / METRICS_FILE, summary)

"""Read a run directory back: ``metrics.json``, ``history.csv``, ``attention.csv``,
``config.toml``.

The report is rebuilt from these files alone, so every analysis takes a ``RunFiles``.
``metrics.json`` is required; the others may be absent (their sections are skipped).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PrefuseError


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
    metrics = path / "metrics.json"
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
    config = path / "config.toml"
    return RunFiles(path=path, summary=summary, history=_read_csv(path / "history.csv"),
                    attention=_read_csv(path / "attention.csv"),
                    config=config.read_text(encoding="utf-8") if config.is_file() else "")

"""Same seeds, same numbers: a tiny run and a tiny two-arm tune against the figures the code
gave before the engine, the run directory, the worker pool and the option table were
rebuilt (``tests/golden/``). A change that alters what is computed fails here; one that only
moves code passes.

``python tests/test_regression.py --write`` records the figures afresh: only for a change
that is meant to alter results, said so in its commit.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import pytest

from prefuse.cli import main

GOLDEN = Path(__file__).parent / "golden"
TINY = [f"--set={field}" for field in (
    "train.epochs=6", "train.pretrain_epochs=2", "train.patience=6", "model.width=8",
    "model.head_hidden=16", "data.synthetic.train=240", "data.synthetic.valid=80",
    "data.synthetic.test=120")]
RUN = ["run", "--seeds", "0", "1", "--device", "cpu",
       "--arms", "paper", "pretrained+attention+ogm-ge", "ensemble", *TINY]
# Independent: the golden figures are those of one study per arm.
TUNE_CONFIG = """\
[tune]
design = "independent"
trials = 3
startup_trials = 2
prune_after_trials = 1
prune_after_epochs = 2

[tune.space."train.lr"]
kind = "log"
low = 1e-3
high = 3e-2

[tune.space."train.pretrain_epochs"]
kind = "int"
low = 1
high = 3
stage1 = true
"""
# Where and how fast a run went: not what it computed.
MACHINE = {"train_seconds", "seconds_per_epoch", "inference_samples_per_s", "peak_rss_mb",
           "device", "runtime", "seconds"}


def _computed(obj):
    """``obj`` without the figures that depend on the machine."""
    if isinstance(obj, dict):
        return {k: _computed(v) for k, v in obj.items() if k not in MACHINE}
    if isinstance(obj, list):
        return [_computed(v) for v in obj]
    return obj


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if k not in MACHINE} for row in csv.DictReader(f)]


def _digest(rows: list[dict[str, str]]) -> str:
    """A short stand-in for many rows (every test sample's weights): equal or not."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def measure_run(out: Path) -> dict:
    """What a tiny run of the paper's arms, a method and the ensemble computes."""
    assert main([*RUN, "--out", str(out)]) == 0
    return {"metrics": _computed(json.loads((out / "metrics.json").read_text())),
            "history": _csv(out / "history.csv"),
            "attention": _digest(_csv(out / "attention.csv"))}


def measure_tune(out: Path) -> dict:
    """Every trial's parameters, state and value in a tiny two-arm tune."""
    config = out.parent / "tune.toml"
    config.write_text(TUNE_CONFIG)
    assert main(["tune", "--out", str(out), "--config", str(config),
                 "--arms", "scratch+concat", "pretrained+attention", *TINY]) == 0
    doc = json.loads((out / "tuning.json").read_text())
    return {arm: [{k: trial.get(k) for k in ("number", "state", "value", "params")}
                  for trial in entry["trials"]]
            for arm, entry in doc["arms"].items()}


def _golden(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def test_tiny_run_computes_what_it_did(tmp_path):
    got = measure_run(tmp_path / "run")
    want = _golden("run")
    assert got["metrics"] == want["metrics"]
    assert got["history"] == want["history"]
    assert got["attention"] == want["attention"]


def test_tiny_tune_computes_what_it_did(tmp_path):
    assert measure_tune(tmp_path / "tune") == _golden("tune")


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.mkdir(exist_ok=True)
        for name, measure in (("run", measure_run), ("tune", measure_tune)):
            doc = measure(Path(tmp) / name)
            (GOLDEN / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
            print(f"wrote {GOLDEN / name}.json")
elif __name__ == "__main__":
    pytest.main([__file__])

"""rundir: the merge of one-arm runs into one run directory, checked on hand-made runs."""

from __future__ import annotations

import json
from pathlib import Path

from prefuse.rundir import RUN_FILES, load_run, merged_summary, write_merged_run


def _one_arm_run(path: Path, arm: str, history: str, robust: float) -> Path:
    (path / "models" / arm).mkdir(parents=True)
    (path / "models" / arm / "model.json").write_text(json.dumps({"arm": arm}))
    for name in ("model.safetensors", "model.json"):
        (path / name).write_text(f"{arm} {name}")
    summary = {"task": "classification", "modalities": ["a", "b"], "primary_metric": "acc",
               "unimodal": {"a": {"acc": 0.5}}, "arms": {arm: {"mean": {"acc": robust}}},
               "attention": {}, "robustness": {arm: {"without_a": robust}}}
    (path / "metrics.json").write_text(json.dumps(summary))
    (path / "history.csv").write_text(history)
    (path / "attention.csv").write_text(f"arm,id,w_a\n{arm},0,0.25\n")
    return path


def test_one_arm_runs_merge_into_one_run_directory(tmp_path):
    dirs = {
        "p": _one_arm_run(tmp_path / "p", "p", "stage,arm,loss\npretrain,,1.0\njoint,p,0.5\n", 0.7),
        "s": _one_arm_run(tmp_path / "s", "s",
                          "stage,arm,loss,extra\npretrain,,9.0\njoint,s,0.4,3\n", 0.6),
    }
    merged = merged_summary(dirs, "p")
    assert merged["arms"] == {"p": {"mean": {"acc": 0.7}}, "s": {"mean": {"acc": 0.6}}}
    assert merged["robustness"] == {"p": {"without_a": 0.7}, "s": {"without_a": 0.6}}
    out = tmp_path / "merged"
    write_merged_run(out, dirs, "p", "seeds = [0]\n", merged)
    # Stage 1 comes from the headline arm's run only; the columns are the union.
    assert (out / "history.csv").read_text() == (
        "stage,arm,loss,extra\npretrain,,1.0,\njoint,p,0.5,\njoint,s,0.4,3\n")
    assert (out / "attention.csv").read_text() == "arm,id,w_a\np,0,0.25\ns,0,0.25\n"
    assert (out / "model.json").read_text() == "p model.json"
    assert json.loads((out / "models" / "s" / "model.json").read_text()) == {"arm": "s"}
    run = load_run(out)
    assert run.summary == merged and run.config == "seeds = [0]\n"
    assert {"metrics.json", "history.csv", "models"} <= set(RUN_FILES)

"""Reports of small real runs on every task kind, with raw text and without ``dominant``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from prefuse.analysis import attention as att
from prefuse.analysis.report import write_report
from prefuse.data.dataset import MultimodalDataset
from prefuse.rundir import load_run
from prefuse.runs.experiment import run_experiment

from .conftest import mixed_dataset, tiny_config

HOSTILE = "<img src=x onerror=alert(1)> & | pipe"


def _as_task(dataset: MultimodalDataset, kind: str) -> MultimodalDataset:
    """The mixed dataset with its class ids recast for ``kind``, and raw text."""
    splits = {}
    for name, split in dataset.splits.items():
        y = split.labels
        labels = {"regression": y.astype(np.float32) - 1.0,
                  "multilabel": np.eye(3, dtype=np.int64)[y],
                  "multiclass": y}[kind]
        text = np.array([f"{HOSTILE} {i}" for i in range(len(y))])
        splits[name] = replace(split, labels=labels, text_raw=text)
    # Regression has one label column here, so the three class names no longer apply.
    names = None if kind == "regression" else dataset.label_names
    return replace(dataset, splits=splits, task=kind, label_names=names)


@pytest.mark.parametrize("kind", ["regression", "multiclass", "multilabel"])
def test_report_for_every_task_kind(kind, tmp_path):
    out = tmp_path / "run"
    config = tiny_config(out, **{"train.epochs": 4, "train.pretrain_epochs": 2,
                                 "train.batch_size": 20})
    run_experiment(config, _as_task(mixed_dataset(n=40), kind), log=lambda *_: None)
    html_path, md_path = write_report(out)
    page = html_path.read_text(encoding="utf-8")
    assert HOSTILE not in page and "&lt;img src=x onerror=alert(1)&gt; &amp; | pipe" in page
    markdown = md_path.read_text(encoding="utf-8")
    assert "Where sensor weighs most" in markdown and "Where meta weighs most" in markdown
    assert "| id | text | label | prediction | weights sensor / meta |" in markdown
    assert "dominant" not in markdown.split("## Examples")[1]
    run = load_run(out)
    groups = att.class_groups(run, att.rows_of(run, "pretrained+attention"))
    expected = {"regression": ["-1", "0", "1"],
                "multiclass": ["class 0", "class 1", "class 2"],
                "multilabel": [f"label {k} present" for k in range(3)]}[kind]
    assert sorted(groups) == expected
    assert (out / "figures" / "attention_by_class.png").stat().st_size > 0
    assert not (out / "figures" / "attention_by_dominant.png").exists()

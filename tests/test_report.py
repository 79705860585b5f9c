"""The report's numbers against hand-computed values from small hand-written run
directories, and its robustness to runs of any shape."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from prefuse.analysis import attention as att
from prefuse.analysis import convergence as conv
from prefuse.analysis.report import write_report
from prefuse.cli import main
from prefuse.errors import PrefuseError
from prefuse.rundir import load_run

HOSTILE = '<script>alert("x")</script> | **bold**'


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _arm(valid: dict[str, float], weights: dict[str, float] | None = None,
         **traits) -> dict:
    entry = {"seeds": {s: {"valid": {"acc": v}, "test": {"acc": v}} for s, v in valid.items()},
             "mean": {"acc": 0.7}, "std": {"acc": 0.01}, "train_seconds": 1.0,
             "seconds_per_epoch": 0.1, "params": 100, **traits}
    if weights is not None:
        entry["mean_weights"] = weights
    return entry


# attention.csv of the hand-made run: (arm, seed, id, label, prediction, dominant, w_a, w_b)
SAMPLES = [
    ("scratch+attention", 0, "s1", "1", "1", 0, 0.9, 0.1),
    ("scratch+attention", 0, "s2", "0", "0", 1, 0.6, 0.4),
    ("scratch+attention", 0, "s3", "1", "0", 1, 0.2, 0.8),
    ("scratch+attention", 1, "s1", "1", "1", 0, 0.7, 0.3),
    ("scratch+attention", 1, "s2", "0", "1", 1, 0.5, 0.5),
    ("scratch+attention", 1, "s3", "1", "1", 1, 0.3, 0.7),
    ("pretrained+attention", 0, "s1", "1", "1", 0, 0.8, 0.2),
    ("pretrained+attention", 0, "s2", "0", "0", 1, 0.3, 0.7),
    ("pretrained+attention", 0, "s3", "1", "1", 1, 0.1, 0.9),
    ("pretrained+attention", 1, "s1", "1", "1", 0, 0.6, 0.4),
    ("pretrained+attention", 1, "s2", "0", "0", 1, 0.45, 0.55),
    ("pretrained+attention", 1, HOSTILE, "1", "1", 1, 0.35, 0.65),
]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Two modalities (a, b), two seeds, binary task; seed 1 of pretrained+attention has
    the better validation accuracy, so examples come from seed 1."""
    summary = {
        "dataset": "hand", "task": "binary", "modalities": ["a", "b"],
        "primary_metric": "acc", "chance": {"acc": 0.5},
        "arms": {"scratch+concat": _arm({"0": 0.6, "1": 0.6}),
                 "scratch+attention": _arm({"0": 0.7, "1": 0.6}, has_weights=True),
                 "pretrained+attention": _arm({"0": 0.7, "1": 0.8}, has_weights=True,
                                              headline=True, before="scratch+attention")},
        "unimodal": {"a": {"mean": {"acc": 0.6}, "std": {"acc": 0.0},
                           "epochs_to_converge": 2.0},
                     "b": {"mean": {"acc": 0.55}, "std": {"acc": 0.0},
                           "epochs_to_converge": 3.0}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(summary))
    header = ["seed", "stage", "arm", "modality", "epoch", "train_loss", "valid_loss",
              "train_metric", "valid_metric", "usage_a", "usage_b"]
    rows = []
    # Stage 1: a rises 0.5 -> 0.7 -> 0.9 (seed 0) and 0.6 -> 0.8 (seed 1, stopped early).
    for seed, values in ((0, [0.5, 0.7, 0.9]), (1, [0.6, 0.8])):
        for epoch, v in enumerate(values, 1):
            rows.append([seed, "pretrain", "unimodal", "a", epoch, 1 - v, 1 - v, v + 0.05, v,
                         "", ""])
    for seed, values in ((0, [0.5, 0.5, 0.6]), (1, [0.5, 0.55, 0.6])):
        for epoch, v in enumerate(values, 1):
            rows.append([seed, "pretrain", "unimodal", "b", epoch, 1 - v, 1 - v, v, v, "", ""])
    for arm in ("scratch+concat", "scratch+attention", "pretrained+attention"):
        for seed in (0, 1):
            for epoch, (ua, ub) in enumerate([(0.8, 0.5), (0.8, 0.6), (0.7, 0.7)], 1):
                rows.append([seed, "joint", arm, "all", epoch, 0.5, 0.5, 0.7, 0.7, ua, ub])
    _write_csv(tmp_path / "history.csv", header, rows)
    _write_csv(tmp_path / "attention.csv",
               ["arm", "seed", "id", "label", "prediction", "dominant", "text_raw",
                "weight_a", "weight_b"],
               [[a, s, i, y, p, d, f"raw {i}", wa, wb] for a, s, i, y, p, d, wa, wb in SAMPLES]
               + [["scratch+concat", s, i, y, p, d, "", 0.5, 0.5]
                  for _, s, i, y, p, d, _, _ in SAMPLES[:6]])
    return tmp_path


def test_normalise_runs_from_first_epoch_to_best():
    np.testing.assert_allclose(conv.normalise(np.array([0.5, 0.6, 0.7, 0.65]), "acc"),
                               [0, 0.5, 1, 0.75])
    np.testing.assert_allclose(conv.normalise(np.array([1.0, 0.8, 0.6, 0.9]), "mae"),
                               [0, 0.5, 1, 0.25])
    assert np.isnan(conv.normalise(np.array([0.7, 0.6, 0.7]), "acc")).all()


def test_stage1_curves_average_seeds_that_reached_each_epoch(run_dir):
    run = load_run(run_dir)
    curves = conv.stage1_curves(run, "valid_metric", normalised=True)
    # a: seed 0 -> [0, .5, 1], seed 1 -> [0, 1]; epoch 3 has seed 0 only.
    np.testing.assert_allclose(curves["a"].mean, [0, 0.75, 1])
    np.testing.assert_allclose(curves["a"].std, [0, 0.25, 0])
    # b: seed 0 -> [0, 0, 1], seed 1 -> [0, .5, 1].
    np.testing.assert_allclose(curves["b"].mean, [0, 0.25, 1])
    assert curves["a"].count.tolist() == [2, 2, 1]
    three = conv.mean_curve([np.array([1.0, 2, 3]), np.array([1.0, 2]), np.array([1.0])])
    assert three.settled().epochs.tolist() == [1, 2]
    raw = conv.stage1_curves(run, "train_metric")
    np.testing.assert_allclose(raw["a"].mean, [0.6, 0.8, 0.95])


def test_usage_summary_names_the_early_leader(run_dir):
    run = load_run(run_dir)
    usage = conv.usage_curves(run)
    assert list(usage) == ["scratch+concat", "scratch+attention", "pretrained+attention"]
    summary = conv.usage_summary(usage["scratch+attention"], "acc")
    assert summary["leader"] == "a"
    assert summary["first"] == pytest.approx({"a": 0.8, "b": 0.5})
    assert summary["last"] == pytest.approx({"a": 0.7, "b": 0.7})
    assert conv.usage_summary(usage["scratch+attention"], "mae")["leader"] == "b"


def test_mean_weights_are_means_of_per_seed_means(run_dir):
    run = load_run(run_dir)
    assert att.attention_arms(run) == ["scratch+attention", "pretrained+attention"]
    mean, std = att.mean_weights(run, "scratch+attention")
    seed0, seed1 = (0.9 + 0.6 + 0.2) / 3, (0.7 + 0.5 + 0.3) / 3
    assert mean["a"] == pytest.approx((seed0 + seed1) / 2)
    assert std["a"] == pytest.approx(abs(seed0 - seed1) / 2)
    assert mean["a"] + mean["b"] == pytest.approx(1.0)


def test_class_means_pool_seeds(run_dir):
    run = load_run(run_dir)
    groups = att.group_means(run, "pretrained+attention")
    assert list(groups) == ["class 0", "class 1"]
    mean0, n0 = groups["class 0"]
    assert n0 == 2 and mean0["a"] == pytest.approx((0.3 + 0.45) / 2)
    mean1, n1 = groups["class 1"]
    assert n1 == 4 and mean1["b"] == pytest.approx((0.2 + 0.9 + 0.4 + 0.65) / 4)


def test_dominant_groups_follow_the_dominant_column(run_dir):
    run = load_run(run_dir)
    groups = att.group_means(run, "scratch+attention", att.dominant_groups)
    mean_a, n_a = groups["a"]
    assert n_a == 2 and mean_a["a"] == pytest.approx((0.9 + 0.7) / 2)
    mean_b, n_b = groups["b"]
    assert n_b == 4 and mean_b["b"] == pytest.approx((0.4 + 0.8 + 0.5 + 0.7) / 4)
    assert att.dominant_groups(run, [{"label": "1"}]) == {}


def test_examples_come_from_the_saved_seed_and_rank_by_weight(run_dir):
    run = load_run(run_dir)
    assert att.example_seed(run, "pretrained+attention") == "1"
    assert att.example_seed(run, "scratch+attention") == "0"
    top_a = att.top_examples(run, "pretrained+attention", "1", "a", k=2)
    assert [r["id"] for r in top_a] == ["s1", "s2"]
    top_b = att.top_examples(run, "pretrained+attention", "0", "b", k=1)
    assert [r["id"] for r in top_b] == ["s3"]


def test_disagreements_pair_samples_by_id(run_dir):
    run = load_run(run_dir)
    # Seed 0: s1 a->a, s2 a->b (shift .3), s3 b->b: one disagreement.
    assert att.before_after(run) == ("scratch+attention", "pretrained+attention")
    pairs, count = att.disagreements(run, "0", "scratch+attention", "pretrained+attention")
    assert count == 1
    assert pairs[0]["after"]["id"] == "s2"
    assert (pairs[0]["top_before"], pairs[0]["top_after"]) == ("a", "b")
    assert pairs[0]["shift"] == pytest.approx(0.3)


def test_class_groups_for_multilabel_and_regression(run_dir):
    run = load_run(run_dir)
    run.summary["task"] = "multilabel"
    groups = att.class_groups(run, [{"label": "1;0"}, {"label": "1;1"}, {"label": "0;0"}])
    assert {k: v.tolist() for k, v in groups.items()} == {
        "label 0 present": [True, True, False], "label 1 present": [False, True, False]}
    run.summary["task"] = "regression"
    labels = [{"label": str(v)} for v in np.linspace(-3, 3, 9)]
    groups = att.class_groups(run, labels)
    assert [int(v.sum()) for v in groups.values()] == [3, 3, 3]
    assert list(att.class_groups(run, [{"label": "1.5"}, {"label": "-1"}])) == ["-1", "1.5"]


def test_report_escapes_untrusted_text_and_writes_figures(run_dir):
    html_path, md_path = write_report(run_dir)
    page = html_path.read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "src=\"http" not in page and "href=" not in page
    markdown = md_path.read_text(encoding="utf-8")
    assert "<script" not in markdown and "\\| **bold**" in markdown
    figures = sorted(p.name for p in (run_dir / "figures").glob("*.png"))
    assert figures == ["attention_by_class.png", "attention_by_dominant.png",
                       "attention_distributions.png",
                       "attention_means.png", "convergence.png", "stage1.png", "usage.png"]
    for name in figures:
        assert f"(figures/{name})" in markdown
    assert page.count('<img src="data:image/png;base64,') == len(figures)
    assert "pretrained+attention" in markdown and "Where b weighs most" in markdown
    assert "Configuration" not in markdown  # this run directory has no config.toml


def test_report_of_a_run_without_attention_dominant_or_stage1(run_dir):
    summary = json.loads((run_dir / "metrics.json").read_text())
    summary["arms"] = {"scratch+concat": summary["arms"]["scratch+concat"]}
    summary["unimodal"] = {}
    (run_dir / "metrics.json").write_text(json.dumps(summary))
    rows = list(csv.DictReader(open(run_dir / "history.csv", encoding="utf-8")))
    kept = [r for r in rows if r["arm"] == "scratch+concat"]
    _write_csv(run_dir / "history.csv", list(rows[0]), [list(r.values()) for r in kept])
    _write_csv(run_dir / "attention.csv", ["arm", "seed", "id", "label", "prediction",
                                           "weight_a", "weight_b"],
               [["scratch+concat", 0, "s1", "1", "1", 0.5, 0.5]])
    html_path, md_path = write_report(run_dir)
    markdown = md_path.read_text(encoding="utf-8")
    assert "No attention arm in attention.csv" in markdown
    assert "no stage-1 rows" in markdown
    assert "![Modality usage" in markdown


def test_missing_metrics_json_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(PrefuseError, match="metrics.json"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "metrics.json: not found" in capsys.readouterr().err


def test_report_compares_the_methods(run_dir):
    summary = json.loads((run_dir / "metrics.json").read_text())
    arms = summary["arms"]
    arms["pretrained+attention"]["mean"] = {"acc": 0.75}
    arms["pretrained+attention"]["mean_weights"] = {"a": 0.4, "b": 0.6}
    arms["scratch+concat"]["mean"] = {"acc": 0.6}
    arms["scratch+concat"]["seconds_per_epoch"] = 0.05
    (run_dir / "metrics.json").write_text(json.dumps(summary))
    # A value a training method logs: 0.1 per epoch for pretrained+attention only.
    rows = list(csv.DictReader(open(run_dir / "history.csv", encoding="utf-8")))
    for row in rows:
        row["toy_value"] = (f"{0.1 * int(row['epoch']):.1f}"
                            if row["arm"] == "pretrained+attention" else "")
    _write_csv(run_dir / "history.csv", list(rows[0]), [list(r.values()) for r in rows])
    _, md_path = write_report(run_dir)
    section = md_path.read_text(encoding="utf-8").split("## Methods compared")[1] \
        .split("## Modality attention")[0]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| rank | arm | method | test acc | Δ acc | s/epoch | cost | "
                               "only a | only b | attention a | attention b |")
    # Ranked by acc; the reference is the headline arm; -0.05 and -0.15 exceed 2 x 0.01.
    assert table[1] == ("| 1 | pretrained+attention | n/a | 0.750 ± 0.010 | ref | 0.10 | "
                        "1.00× | 0.700 | 0.700 | 0.40 | 0.60 |")
    assert table[2].startswith("| 2 | scratch+attention | n/a | 0.700 ± 0.010 | -0.050 * |")
    assert table[3] == ("| 3 | scratch+concat | n/a | 0.600 ± 0.010 | -0.150 * | 0.05 | "
                        "0.50× | 0.700 | 0.700 | – | – |")
    assert "twice" in section or "2× the larger" in section
    # What each method logs, at the last epoch (3), mean over both seeds.
    assert "| arm | toy_value |" in section
    assert "| pretrained+attention | 0.300 |" in section

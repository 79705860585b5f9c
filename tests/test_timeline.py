"""Groups made visible: ``group``/``order`` columns in attention.csv and the predictions
file, and the report's timeline of the longest test groups."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from prefuse.analysis import attention as att
from prefuse.analysis.render import Figure
from prefuse.analysis.report import build_report, write_report
from prefuse.cli import main
from prefuse.data.dataset import MultimodalDataset, Split
from prefuse.data.formats.npz import load_npz, save_npz
from prefuse.rundir import load_run
from prefuse.runs.files import attention_csv

# Test groups of the hand-made run, with their utterance counts: g2 is the longest; g0 and
# g1 tie for second, g0 first by name; g3 is left out.
GROUPS = {"g1": 3, "g3": 2, "g2": 4, "g0": 3}


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _arm(**traits) -> dict:
    seeds = {s: {"valid": {"acc": 0.7}, "test": {"acc": 0.7}} for s in ("0", "1")}
    return {"seeds": seeds, "mean": {"acc": 0.7}, "std": {"acc": 0.0}, "train_seconds": 1.0,
            "seconds_per_epoch": 0.1, "params": 100, **traits}


def _samples() -> list[tuple[str, int, int]]:
    """(group, order, label) of every test utterance, in a scrambled file order."""
    samples = [(g, o, (o + len(g)) % 2) for g, n in GROUPS.items() for o in range(n)]
    return [samples[i] for i in np.random.default_rng(0).permutation(len(samples))]


def _hand_run(path: Path, arms: dict[str, dict], grouped: bool = True,
              task: str = "binary") -> Path:
    """A run directory of two modalities, two seeds and the given arms; the attention
    weight of ``a`` is the utterance's order / 10 in seed 0 and 0.5 in seed 1, and the
    prediction the label except at order 1."""
    path.mkdir(parents=True, exist_ok=True)
    summary = {"dataset": "hand", "task": task, "modalities": ["a", "b"],
               "primary_metric": "acc", "arms": arms, "unimodal": {}}
    (path / "metrics.json").write_text(json.dumps(summary))
    place = ["group", "order"] if grouped else []
    rows = []
    for arm in arms:
        for seed in (0, 1):
            for g, o, y in _samples():
                w = o / 10 if seed == 0 else 0.5
                p = 1 - y if o == 1 else y
                rows.append([arm, seed, f"{g}_{o}"] + ([g, o] if grouped else [])
                            + [y, p, w, 1 - w])
    _write_csv(path / "attention.csv", ["arm", "seed", "id"] + place
               + ["label", "prediction", "weight_a", "weight_b"], rows)
    return path


ARMS = {"scratch+concat": _arm(),
        "scratch+attention": _arm(has_weights=True),
        "pretrained+attention": _arm(has_weights=True, headline=True)}


def test_timeline_follows_the_longest_groups_of_the_first_seed_along_order(tmp_path):
    run = load_run(_hand_run(tmp_path, ARMS))
    assert run.grouped
    assert att.timeline_arm(run) == "pretrained+attention"
    lines = att.timelines(run, "pretrained+attention")
    assert [line.group for line in lines] == ["g2", "g0", "g1"]
    assert [len(line.ids) for line in lines] == [4, 3, 3]
    longest = lines[0]
    np.testing.assert_array_equal(longest.order, [0, 1, 2, 3])
    assert longest.ids == ["g2_0", "g2_1", "g2_2", "g2_3"]
    # Seed 0's weights (order / 10), not seed 1's (0.5).
    np.testing.assert_allclose(longest.weights, [[0, 1], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    np.testing.assert_array_equal(longest.labels, [0, 1, 0, 1])
    np.testing.assert_array_equal(longest.predictions, [0, 0, 0, 1])
    assert len(att.timelines(run, "pretrained+attention", seed="1", k=10)) == 4


def test_timeline_arm_prefers_learned_weights(tmp_path):
    only_scratch = {a: ARMS[a] for a in ("scratch+concat", "scratch+attention")}
    assert att.timeline_arm(load_run(_hand_run(tmp_path / "a", only_scratch))) == \
        "scratch+attention"
    concat = {"scratch+concat": _arm(headline=True)}
    assert att.timeline_arm(load_run(_hand_run(tmp_path / "b", concat))) == "scratch+concat"


def test_timeline_of_vector_labels_plots_their_means(tmp_path):
    path = _hand_run(tmp_path, {"pretrained+attention": ARMS["pretrained+attention"]},
                     task="regression")
    rows = list(csv.DictReader(open(path / "attention.csv", encoding="utf-8")))
    for r in rows:
        r["label"], r["prediction"] = f"{r['order']};1", "0.5;1.5"
    _write_csv(path / "attention.csv", list(rows[0]), [list(r.values()) for r in rows])
    line = att.timelines(load_run(path), "pretrained+attention")[0]
    np.testing.assert_allclose(line.labels, [0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(line.predictions, [1.0] * 4)


def test_report_has_a_timeline_for_grouped_data_only(tmp_path):
    _, blocks = build_report(load_run(_hand_run(tmp_path / "grouped", ARMS)))
    figures = [b for b in blocks if isinstance(b, Figure)]
    assert [f.name for f in figures if f.name == "timeline"] == ["timeline"]
    markdown = write_report(tmp_path / "grouped")[1].read_text(encoding="utf-8")
    assert "## Timeline: test groups utterance by utterance" in markdown
    assert "(figures/timeline.png)" in markdown and "arm pretrained+attention" in markdown
    assert (tmp_path / "grouped" / "figures" / "timeline.png").stat().st_size > 0

    plain = _hand_run(tmp_path / "plain", ARMS, grouped=False)
    assert not load_run(plain).grouped
    assert att.timelines(load_run(plain), "pretrained+attention") == []
    markdown = write_report(plain)[1].read_text(encoding="utf-8")
    assert "Timeline" not in markdown and not (plain / "figures" / "timeline.png").exists()


def _dataset(grouped: bool) -> MultimodalDataset:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        group = np.array(["v1", "v0", "v1", "v0", "v1"][:n]) if grouped else None
        return Split(features={"a": rng.normal(size=(n, 2)).astype(np.float32),
                               "b": rng.normal(size=(n, 2)).astype(np.float32)},
                     labels=np.arange(n) % 2, ids=np.array([f"s{i}" for i in range(n)]),
                     group=group)

    return MultimodalDataset(splits={"train": split(5), "valid": split(5),
                                     "test": split(5)},
                             task="binary", modalities=["a", "b"], label_names=["yes"])


def test_attention_csv_has_group_columns_only_for_grouped_data():
    test = SimpleNamespace(predictions=np.array([0, 1, 1, 0, 1]),
                           weights=np.full((5, 2), 0.5))
    results = [SimpleNamespace(seed=0, arms={"pretrained+attention": SimpleNamespace(test=test)})]
    plain = list(csv.reader(attention_csv(_dataset(False), results).splitlines()))
    grouped = list(csv.reader(attention_csv(_dataset(True), results).splitlines()))
    assert plain[0] == ["arm", "seed", "id", "label", "prediction", "weight_a", "weight_b"]
    assert grouped[0] == ["arm", "seed", "id", "group", "order", "label", "prediction",
                          "weight_a", "weight_b"]
    # Order within each group is the file order: v1 holds s0, s2, s4.
    assert [row[3:5] for row in grouped[1:]] == [["v1", "0"], ["v0", "0"], ["v1", "1"],
                                                  ["v0", "1"], ["v1", "2"]]
    assert [row[:3] + row[5:] for row in grouped] == plain


@pytest.fixture(scope="module")
def context_run(tmp_path_factory):
    """A tiny ``prefuse run`` on ``prefuse data synth --context`` data, and that file."""
    root = tmp_path_factory.mktemp("timeline")
    data = root / "ctx.npz"
    assert main(["data", "synth", "--context", "--train", "120", "--valid", "40", "--test",
                 "60", "--out", str(data)]) == 0
    assert main(["run", "--data", str(data), "--out", str(root / "run"), "--seeds", "0",
                 "--epochs", "2", "--pretrain-epochs", "1", "--width", "8",
                 "--batch-size", "32", "--arms", "scratch+concat",
                 "pretrained+attention"]) == 0
    return root / "run", data


def test_run_on_context_data_writes_groups_and_a_timeline(context_run):
    run_dir, data = context_run
    test = load_npz(data)["test"]
    place = {i: (g, int(o)) for i, g, o in zip(test.ids, test.group, test.order)}
    run = load_run(run_dir)
    assert run.grouped and len(run.attention) == 2 * len(test)
    assert all(place[r["id"]] == (r["group"], int(r["order"])) for r in run.attention)
    names, counts = np.unique(test.group, return_counts=True)
    longest = sorted(zip(names, counts), key=lambda gc: (-gc[1], gc[0]))[:3]
    lines = att.timelines(run, att.timeline_arm(run))
    assert [(line.group, len(line.ids)) for line in lines] == \
        [(str(g), int(n)) for g, n in longest]
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "## Timeline" in markdown and (run_dir / "figures" / "timeline.png").is_file()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_predictions_carry_groups_when_the_data_has_them(context_run, tmp_path):
    run_dir, data = context_run
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run_dir), "--data", str(data), "--split", "test",
                 "--out", str(out)]) == 0
    rows = _rows(out)
    assert list(rows[0])[:5] == ["split", "id", "group", "order", "label"]
    test = load_npz(data)["test"]
    assert [(r["group"], int(r["order"])) for r in rows] == \
        list(zip(test.group.tolist(), test.order.tolist()))

    # Without groups (ids that name no video either), the file has no such columns.
    dataset = load_npz(data)
    plain = replace(dataset, splits={
        n: replace(s, group=None, order=None, ids=np.array([f"u{i}" for i in range(len(s))]))
        for n, s in dataset.splits.items()})
    save_npz(plain, tmp_path / "plain.npz")
    assert main(["predict", str(run_dir), "--data", str(tmp_path / "plain.npz"),
                 "--split", "test", "--out", str(tmp_path / "plain.csv")]) == 0
    plain_rows = _rows(tmp_path / "plain.csv")
    assert "group" not in plain_rows[0] and "order" not in plain_rows[0]
    assert [{k: v for k, v in r.items() if k not in ("id", "group", "order")} for r in rows] \
        == [{k: v for k, v in r.items() if k != "id"} for r in plain_rows]

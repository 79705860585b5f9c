"""The context benchmark: videos with a latent tendency, utterances whose cue is often missing."""

from __future__ import annotations

import numpy as np

from prefuse.cli import main
from prefuse.data.formats.npz import load_npz
from prefuse.data.synthetic import make_synthetic
from prefuse.data.synthetic_context import LONGEST, make_context_synthetic


def _direction(seed: int) -> np.ndarray:
    # The generator draws the text direction first from the seed's stream.
    d = np.random.default_rng(seed).normal(size=64)
    return d / np.linalg.norm(d)


def _own_text_accuracy(split, direction) -> float:
    """Accuracy of the sign of each utterance's mean text projection: its own cue alone."""
    score = split.features["text"].sum(axis=1) @ direction / split.lengths["text"]
    return float(((score > 0) == split.labels).mean())


def _neighbour_agreement(split) -> float:
    """How often the majority label of the rest of the video equals an utterance's label
    (ties and single-utterance videos count as half)."""
    hits = []
    for g in np.unique(split.group):
        y = split.labels[split.group == g]
        for i in range(len(y)):
            rest = np.delete(y, i)
            mean = rest.mean() if len(rest) else 0.5
            hits.append(0.5 if mean == 0.5 else float((mean > 0.5) == y[i]))
    return float(np.mean(hits))


def test_same_seed_same_data_and_another_seed_differs():
    a, b = make_context_synthetic(seed=4), make_context_synthetic(seed=4)
    c = make_context_synthetic(seed=5)
    for name in ("train", "valid", "test"):
        for m in a.modalities:
            np.testing.assert_array_equal(a[name].features[m], b[name].features[m])
        np.testing.assert_array_equal(a[name].group, b[name].group)
        np.testing.assert_array_equal(a[name].order, b[name].order)
    assert not np.array_equal(a["train"].features["text"], c["train"].features["text"])


def test_videos_are_whole_ordered_and_in_one_split():
    ds = make_context_synthetic(seed=0, train=500, valid=100, test=200)
    ds.validate()  # includes the leak check
    for name, n in (("train", 500), ("valid", 100), ("test", 200)):
        s = ds[name]
        assert len(s) == n
        names, sizes = np.unique(s.group, return_counts=True)
        assert sizes.max() <= LONGEST and (sizes >= 4).sum() >= len(sizes) - 1
        for g in names:
            assert sorted(s.order[s.group == g].tolist()) == list(range((s.group == g).sum()))
        assert all(g.startswith(f"{name}-v") for g in names)
        # rows are shuffled, not stored video by video
        assert (s.group[1:] != s.group[:-1]).sum() > len(names)


def test_labels_follow_the_video_and_the_control_does_not():
    tendency = make_context_synthetic(seed=0)["train"]
    control = make_context_synthetic(seed=0, follow=0.5)["train"]
    # follow 0.8 with videos of 4..12: the rest's majority is the tendency about 0.9 of
    # the time, so agreement is near 0.8 * 0.9 + 0.2 * 0.1 = 0.74
    assert _neighbour_agreement(tendency) > 0.7
    assert abs(_neighbour_agreement(control) - 0.5) < 0.05


def test_own_cue_is_missing_on_uncued_utterances():
    # cued on all: text alone is right on its dominant third, half right elsewhere (~0.67)
    full = make_context_synthetic(seed=0, cued=1.0)["train"]
    none = make_context_synthetic(seed=0, cued=0.0)["train"]
    half = make_context_synthetic(seed=0)["train"]
    assert _own_text_accuracy(full, _direction(0)) > 0.63
    assert abs(_own_text_accuracy(none, _direction(0)) - 0.5) < 0.04
    assert 0.54 < _own_text_accuracy(half, _direction(0)) < 0.63


def test_the_standard_benchmark_is_unchanged_and_has_no_groups():
    ds = make_synthetic(seed=0, train=30, valid=10, test=10)
    assert all(s.group is None for s in ds.splits.values())


def test_cli_writes_groups(tmp_path, capsys):
    out = tmp_path / "ctx.npz"
    assert main(["data", "synth", "--context", "--out", str(out), "--train", "60",
                 "--valid", "20", "--test", "20"]) == 0
    ds = load_npz(out)
    again = make_context_synthetic(seed=0, train=60, valid=20, test=20)
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(ds[name].group, again[name].group)
        np.testing.assert_array_equal(ds[name].order, again[name].order)
    assert main(["data", "inspect", str(out)]) == 0
    assert "groups: " in capsys.readouterr().out


def test_cli_writes_the_control_with_follow_and_refuses_follow_without_context(tmp_path,
                                                                              capsys):
    out = tmp_path / "control.npz"
    assert main(["data", "synth", "--context", "--follow", "0.5", "--out", str(out),
                 "--train", "60", "--valid", "20", "--test", "20"]) == 0
    control = make_context_synthetic(seed=0, train=60, valid=20, test=20, follow=0.5)
    np.testing.assert_array_equal(load_npz(out)["train"].labels, control["train"].labels)
    assert main(["data", "synth", "--follow", "0.5", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--context" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()

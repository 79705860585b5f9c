"""Groups (video or dialogue) and positions in every format, the leak check, inspect."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from prefuse.data.dataset import MultimodalDataset, Split
from prefuse.data.formats import load_dataset
from prefuse.data.formats.npz import dataset_arrays, load_npz, save_npz
from prefuse.data.groups import rank_within
from prefuse.data.inspect import convert, describe
from prefuse.errors import DataError

from .formats_fixtures import SIZES, write_csd, write_mmsa, write_mult


def quiet_load(path, format="auto", **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(path, format, **options)


def _split(n: int, offset: int = 0, **extra) -> Split:
    x = np.arange(offset, offset + n, dtype=np.float32).reshape(n, 1) + 1.0
    return Split(features={"a": x}, labels=np.arange(n) % 2, **extra)


def _dataset(train: Split, valid: Split, test: Split) -> MultimodalDataset:
    return MultimodalDataset(splits={"train": train, "valid": valid, "test": test},
                             task="binary", modalities=["a"], source="mem.npz")


def _grouped() -> MultimodalDataset:
    return _dataset(
        _split(5, group=np.array(["v1", "v1", "v2", "v1", "v2"]),
               order=np.array([2, 0, 0, 1, 1])),
        _split(2, group=np.array([7, 7])),  # integer groups, positions from file order
        _split(3, group=np.array(["t", "t", "u"]), order=np.array([1, 0, 0])))


def test_rank_within_hand_computed():
    group = np.array(["b", "a", "b", "a", "b"])
    np.testing.assert_array_equal(rank_within(group), [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(rank_within(group, np.array([5.0, 2.0, 1.0, 0.5, 3.0])),
                                  [2, 1, 0, 0, 1])


def test_npz_group_and_order_round_trip(tmp_path):
    ds = _grouped()
    ds.validate()
    assert ds["valid"].group.tolist() == ["7", "7"] and ds["valid"].order.tolist() == [0, 1]
    arrays = dataset_arrays(ds)
    assert arrays["train/group"].tolist() == ["v1", "v1", "v2", "v1", "v2"]
    assert arrays["train/order"].tolist() == [2, 0, 0, 1, 1]
    again = load_npz(save_npz(ds, tmp_path / "g.npz"))
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(again[name].group, ds[name].group)
        np.testing.assert_array_equal(again[name].order, ds[name].order)


def test_npz_integer_groups_without_order(tmp_path):
    arrays = dataset_arrays(_grouped())
    arrays["train/group"] = np.array([3, 3, 4, 3, 4])
    del arrays["train/order"]
    np.savez(tmp_path / "g.npz", **arrays)
    train = load_npz(tmp_path / "g.npz")["train"]
    assert train.group.tolist() == ["3", "3", "4", "3", "4"]
    assert train.order.tolist() == [0, 1, 0, 2, 1]


def test_npz_groups_from_numbered_ids(tmp_path):
    arrays = dataset_arrays(_grouped())
    for name in ("train", "valid", "test"):
        del arrays[f"{name}/group"], arrays[f"{name}/order"]
    arrays["train/ids"] = np.array(["vidA_3", "vidA_1", "vid_B_0", "vidA_2", "vid_B_1"])
    arrays["valid/ids"] = np.array(["x_0", "y"])  # one id does not fit: no groups
    np.savez(tmp_path / "g.npz", **arrays)
    ds = load_npz(tmp_path / "g.npz")
    assert ds["train"].group.tolist() == ["vidA", "vidA", "vid_B", "vidA", "vid_B"]
    assert ds["train"].order.tolist() == [3, 1, 0, 2, 1]
    assert ds["valid"].group is None and ds["test"].group is None


@pytest.mark.parametrize("edit,key,words", [
    (lambda a: a.update({"test/group": np.array(["v2", "t", "u"])}), "test/group",
     "group 'v2' is in both 'train' and 'test'"),
    (lambda a: a.update({"train/order": np.array([0, 0, 0, 1, 1])}), "train/order",
     "group 'v1' has two samples at position 0"),
    (lambda a: a.pop("test/group"), "test/order", "positions given without test/group"),
    (lambda a: a.update({"train/group": np.array(["v1", "v2"])}), "train/group",
     "expected 5 group names"),
    (lambda a: a.update({"train/order": np.array([0.5, 0, 0, 1, 1])}), "train/order",
     "positions must be whole numbers"),
])
def test_bad_groups_are_refused_naming_file_and_key(tmp_path, edit, key, words):
    arrays = dataset_arrays(_grouped())
    edit(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as e:
        quiet_load(path)
    assert str(path) in str(e.value) and f"[{key}]" in str(e.value) and words in str(e.value)


def test_carved_valid_takes_whole_groups(tmp_path):
    arrays = dataset_arrays(_dataset(
        _split(12, group=np.repeat(["a", "b", "c", "d"], 3)), _split(1), _split(2)))
    for key in [k for k in arrays if k.startswith("valid/")]:
        del arrays[key]
    np.savez(tmp_path / "c.npz", **arrays)
    ds = quiet_load(tmp_path / "c.npz", valid_fraction=0.5, seed=3)
    train, valid = set(ds["train"].group), set(ds["valid"].group)
    assert len(valid) == 2 and not train & valid and train | valid == set("abcd")
    assert len(ds["train"]) == len(ds["valid"]) == 6
    again = quiet_load(tmp_path / "c.npz", valid_fraction=0.5, seed=3)
    assert set(again["valid"].group) == valid


def test_mmsa_ids_give_video_and_clip(tmp_path):
    write_mmsa(tmp_path / "a.pkl")
    ds = quiet_load(tmp_path / "a.pkl")
    for split, n in SIZES.items():
        assert ds[split].group.tolist() == [f"{split}video{i // 3}" for i in range(n)]
        assert ds[split].order.tolist() == [i % 3 for i in range(n)]


def test_mmsa_ids_of_another_form_give_no_groups(tmp_path):
    write_mmsa(tmp_path / "a.pkl")
    with open(tmp_path / "a.pkl", "rb") as f:
        data = pickle.load(f)
    data["test"]["id"][0] = "no-clip-here"
    with open(tmp_path / "a.pkl", "wb") as f:
        pickle.dump(data, f, protocol=4)
    ds = quiet_load(tmp_path / "a.pkl")
    assert ds["test"].group is None and ds["train"].group is not None


def test_csd_segment_keys_give_video_and_position(tmp_path):
    info = write_csd(tmp_path / "mosi", "mosi")
    ds = quiet_load(tmp_path / "mosi")
    for split, videos in info["videos"].items():
        s = ds[split]
        assert set(s.group) == set(videos)
        for key, g, o in zip(s.ids, s.group, s.order, strict=True):
            assert key == f"{g}[{o}]"
    write_csd(tmp_path / "pom", "pom")
    assert quiet_load(tmp_path / "pom")["train"].group is None  # one entry per video


def test_mult_ids_give_video_and_start_order(tmp_path):
    write_mult(tmp_path / "m.pkl")
    with open(tmp_path / "m.pkl", "rb") as f:
        data = pickle.load(f)
    starts = [b"9.5", b"0.0", b"3.25", b"12", b"1.0", b"0.5", b"4", b"2", b"8", b"7"]
    data["train"]["id"] = np.array([[b"vidA" if i < 5 else b"vidB", s, b"99"]
                                    for i, s in enumerate(starts)])
    with open(tmp_path / "m.pkl", "wb") as f:
        pickle.dump(data, f, protocol=4)
    ds = quiet_load(tmp_path / "m.pkl")
    assert ds["train"].group.tolist() == ["vidA"] * 5 + ["vidB"] * 5
    # vidA starts 9.5, 0, 3.25, 12, 1 -> ranks 3 0 2 4 1; vidB 0.5, 4, 2, 8, 7 -> 0 2 1 4 3
    assert ds["train"].order.tolist() == [3, 0, 2, 4, 1, 0, 2, 1, 4, 3]
    assert ds["test"].group.tolist() == [f"vidtest{i}" for i in range(SIZES["test"])]


def test_mult_one_dimensional_numbered_ids(tmp_path):
    write_mult(tmp_path / "m.pkl")
    with open(tmp_path / "m.pkl", "rb") as f:
        data = pickle.load(f)
    for split, n in SIZES.items():
        data[split]["id"] = np.array([f"{split}v{i // 2}_{i % 2}" for i in range(n)])
    with open(tmp_path / "m.pkl", "wb") as f:
        pickle.dump(data, f, protocol=4)
    ds = quiet_load(tmp_path / "m.pkl")
    assert ds["valid"].group.tolist() == ["validv0", "validv0", "validv1", "validv1"]
    assert ds["valid"].order.tolist() == [0, 1, 0, 1]


def test_inspect_shows_groups(tmp_path):
    path = save_npz(_grouped(), tmp_path / "g.npz")
    report = describe(path)
    # train: v1 has 3 utterances, v2 2; test: t 2, u 1
    assert "groups: 2 (utterances per group: min 2, median 2.5, max 3)" in report
    assert "groups: 2 (utterances per group: min 1, median 1.5, max 2)" in report
    assert "validation: ok" in report
    write_mult(tmp_path / "m.pkl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = convert(tmp_path / "m.pkl", tmp_path / "m.npz")
    assert load_npz(out)["train"].group.tolist() == [f"vidtrain{i}" for i in range(10)]
    assert "groups: 10 (utterances per group: min 1, median 1, max 1)" in describe(out)


def test_ungrouped_file_reports_no_groups(tmp_path):
    ds = _dataset(_split(3), _split(2), _split(2))
    assert "groups: none" in describe(load_npz(save_npz(ds, tmp_path / "p.npz")))


def test_fingerprint_sees_groups_only_where_there_are_some():
    from prefuse.data.fingerprint import differences, fingerprint

    plain = fingerprint(_dataset(_split(3), _split(2), _split(2)))
    assert not any(k.endswith(("/group", "/order")) for k in plain)
    ds = _grouped()
    before = fingerprint(ds)
    ds["train"].order = np.array([0, 2, 0, 1, 1])
    assert differences(before, fingerprint(ds)) == ["train/order changed"]

from dataclasses import replace

import numpy as np
import pytest
import torch

from prefuse.data.batching import Batch
from prefuse.data.formats import load_dataset
from prefuse.data.formats.npz import dataset_arrays, save_npz
from prefuse.data.synthetic import make_synthetic
from prefuse.errors import DataError

from .conftest import mixed_dataset


def test_npz_round_trip_keeps_everything(tmp_path):
    original = mixed_dataset()
    path = save_npz(original, tmp_path / "d.npz")
    loaded = load_dataset(path)
    assert loaded.modalities == ["sensor", "meta"] and loaded.task == "multiclass"
    for split in ("train", "valid", "test"):
        for m in loaded.modalities:
            np.testing.assert_array_equal(loaded[split].features[m], original[split].features[m])
            np.testing.assert_array_equal(loaded[split].lengths[m], original[split].lengths[m])
        np.testing.assert_array_equal(loaded[split].labels, original[split].labels)


def test_missing_valid_split_is_carved_from_train_with_a_fixed_seed(tmp_path):
    arrays = dataset_arrays(mixed_dataset(n=50))
    arrays = {k: v for k, v in arrays.items() if not k.startswith("valid/")}
    np.savez(tmp_path / "d.npz", **arrays)
    a = load_dataset(tmp_path / "d.npz", valid_fraction=0.2)
    b = load_dataset(tmp_path / "d.npz", valid_fraction=0.2)
    assert len(a["valid"]) == 10 and len(a["train"]) == 40
    np.testing.assert_array_equal(a["valid"].ids, b["valid"].ids)


@pytest.mark.parametrize("drop, field", [
    ("test/labels", "test/labels"),
    ("valid/meta", "valid/meta"),
    ("meta/task", "meta/task"),
])
def test_missing_key_is_named(tmp_path, drop, field):
    arrays = dataset_arrays(mixed_dataset())
    del arrays[drop]
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert info.value.field == field and str(path) in str(info.value)


def test_wrong_shapes_are_named(tmp_path):
    arrays = dataset_arrays(mixed_dataset())
    arrays["train/meta"] = arrays["train/meta"][:-1]
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=r"\[train/meta\].*samples"):
        load_dataset(tmp_path / "d.npz")
    arrays = dataset_arrays(mixed_dataset())
    arrays["valid/meta"] = arrays["valid/meta"][:, :, None, None]
    np.savez(tmp_path / "e.npz", **arrays)
    with pytest.raises(DataError, match=r"\[valid/meta\]"):
        load_dataset(tmp_path / "e.npz")


def test_corrupt_file_is_a_data_error(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(DataError, match="bad.npz"):
        load_dataset(path, format="npz")


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    arrays = dataset_arrays(mixed_dataset())
    arrays["train/ids"] = np.array([{"x": 1}] * len(arrays["train/labels"]), dtype=object)
    np.savez(tmp_path / "obj.npz", **arrays)
    with pytest.raises(DataError, match=r"\[train/ids\]: holds Python objects") as error:
        load_dataset(tmp_path / "obj.npz")
    assert "pickle" not in str(error.value)  # never numpy's advice to load it unsafely


def test_synthetic_benchmark_is_deterministic_and_well_formed():
    a, b = make_synthetic(seed=3, train=50, valid=20, test=20), make_synthetic(seed=3, train=50,
                                                                             valid=20, test=20)
    a.validate()
    for m in a.modalities:
        np.testing.assert_array_equal(a["train"].features[m], b["train"].features[m])
        x, lengths = a["train"].features[m], a["train"].lengths[m]
        assert (x[np.arange(x.shape[1])[None, :] >= lengths[:, None]] == 0).all()
    assert set(np.unique(a["train"].dominant)) <= {0, 1, 2}
    c = make_synthetic(seed=4, train=50, valid=20, test=20)
    assert not np.array_equal(a["train"].features["text"], c["train"].features["text"])


def test_synthetic_cues_follow_the_label_only_where_their_modality_dominates():
    split = make_synthetic(seed=0, train=900, valid=10, test=10)["train"]
    sign = 2 * split.labels - 1

    def means(m):
        x, lengths = split.features[m], split.lengths[m]
        return x.sum(axis=1) / lengths[:, None]

    v = means("vision")
    vision_vote = np.sign(v[:, 0] * v[:, 1] * v[:, 2])  # the three-way XOR
    x, lengths = split.features["audio"][:, :, 0], split.lengths["audio"]
    steps = np.arange(x.shape[1])[None, :]
    audio_vote = np.sign(((steps - lengths[:, None] / 2) * x * (steps < lengths[:, None])).sum(1))
    for k, vote in ((1, audio_vote), (2, vision_vote)):
        agree = vote == sign
        assert agree[split.dominant == k].mean() > 0.9
        assert abs(agree[split.dominant != k].mean() - 0.5) < 0.1


def test_batch_map_applies_to_every_tensor_and_host_lengths_only_when_asked():
    batch = Batch(x={"a": torch.arange(8.0).reshape(4, 2)},
                  lengths={"a": torch.tensor([2, 1, 2, 1])},
                  present={"a": torch.tensor([True, False, True, True])},
                  y=torch.tensor([0, 1, 2, 3]), complete=frozenset(),
                  host_lengths={"a": torch.tensor([2, 1, 2, 1])})
    odd = batch.map(lambda t: t[1::2])
    assert odd.x["a"].tolist() == [[2.0, 3.0], [6.0, 7.0]]
    assert odd.lengths["a"].tolist() == [1, 1] and odd.present["a"].tolist() == [False, True]
    assert odd.y.tolist() == [1, 3] and odd.host_lengths is batch.host_lengths
    both = batch.map(lambda t: t[1::2], host=lambda t: t[1::2])
    assert both.host_lengths["a"].tolist() == [1, 1]
    assert batch.y.tolist() == [0, 1, 2, 3]  # the batch itself is left as it was
    kept = replace(batch, complete=frozenset({"a"})).to("cpu")
    assert kept.complete == frozenset({"a"}) and kept.host_lengths is batch.host_lengths

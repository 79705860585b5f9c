"""Each loader reads fixtures written in the exact public layouts, and refuses bad files."""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from prefuse.config import DataConfig, load_config
from prefuse.data.formats import FORMATS, config_options, detect_format, load_dataset
from prefuse.data.formats.npz import dataset_arrays, load_npz
from prefuse.data.inspect import convert, describe
from prefuse.data.synthetic import make_synthetic
from prefuse.errors import ConfigError, DataError

from .formats_fixtures import (
    MOSEI_LABELS,
    MULT_DIMS,
    POM_TRAITS,
    SIZES,
    write_csd,
    write_mmsa,
    write_mult,
    write_sequence,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def quiet_load(path, format="auto", **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(path, format, **options)


# --- MulT -----------------------------------------------------------------------------


@pytest.mark.parametrize("dataset,aligned", [("mosi", True), ("mosi", False),
                                             ("mosei", True)])
def test_mult_sentiment(tmp_path, dataset, aligned):
    path = tmp_path / f"{dataset}_data{'' if aligned else '_noalign'}.pkl"
    info = write_mult(path, dataset, aligned)
    raw = pickle.loads(path.read_bytes())
    assert detect_format(path) == "mult"
    with pytest.warns(UserWarning, match=r"train/audio: 2, valid/audio: 2, test/audio: 2"):
        ds = load_dataset(path)
    assert ds.task == "regression" and ds.modalities == ["text", "audio", "vision"]
    assert ds.dims() == dict(zip(ds.modalities, MULT_DIMS[dataset], strict=True))
    for split, n in SIZES.items():
        s = ds[split]
        np.testing.assert_array_equal(s.labels, info[split]["labels"])
        assert s.labels.shape == (n,) and s.labels.dtype == np.float32
        assert s.ids[0] == f"vid{split}0_0.0_1.5"
        for m in ds.modalities:
            x, lengths = s.features[m], info[split]["lengths"][m]
            assert x.dtype == np.float32
            assert x.shape[1] == (50 if aligned else {"text": 50, "audio": 375,
                                                      "vision": 500}[m])
            np.testing.assert_array_equal(s.lengths[m], lengths)
            for i, length in enumerate(lengths):
                # left padding moved to the right: valid steps first, zeros after
                stored = raw[split][m][i, -length:].astype(np.float32)
                stored[~np.isfinite(stored)] = 0
                np.testing.assert_array_equal(x[i, :length], stored)
                assert not x[i, length:].any()
        assert np.isfinite(s.features["audio"]).all()


def test_mult_iemocap_is_four_binary_tasks(tmp_path):
    path = tmp_path / "iemocap_data.pkl"
    info = write_mult(path, "iemocap")
    ds = quiet_load(path, "mult")
    assert ds.task == "multilabel"
    assert ds.label_names == ["Neutral", "Happy", "Sad", "Angry"]
    assert ds.num_targets() == 4
    for split in SIZES:
        assert ds[split].labels.dtype == np.int64
        np.testing.assert_array_equal(ds[split].labels, info[split]["labels"])


def test_nan_and_inf_are_zeroed_and_counted_per_split_and_modality(tmp_path):
    path = tmp_path / "mosi_data.pkl"
    write_mult(path, "mosi")
    data = pickle.loads(path.read_bytes())
    data["valid"]["vision"][0, -1, :5] = np.nan
    data["test"]["text"][1, -1, :3] = np.inf
    data["train"]["vision"][2] = 0.0  # a sample without vision: masked, not data
    path.write_bytes(pickle.dumps(data))
    with pytest.warns(UserWarning) as record:
        ds = load_dataset(path)
    message = str(record[0].message)
    assert str(path) in message
    for part in ("train/audio: 2", "valid/audio: 2", "valid/vision: 5", "test/audio: 2",
                 "test/text: 3"):
        assert part in message
    assert "train/vision" not in message
    assert ds["valid"].features["vision"][0, ds["valid"].lengths["vision"][0] - 1, 0] == 0
    assert ds["train"].lengths["vision"][2] == 0 and not ds["train"].present["vision"][2]


# --- MMSA -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant,steps,dims", [
    ("aligned", (50, 50, 50), (768, 5, 20)),
    ("unaligned", (50, 375, 500), (768, 5, 20)),
    ("sims", (39, 400, 55), (768, 33, 709)),
])
def test_mmsa(tmp_path, variant, steps, dims):
    path = tmp_path / f"{variant}.pkl"
    info = write_mmsa(path, variant)
    assert detect_format(path) == "mmsa"
    with pytest.warns(UserWarning, match=r"train/audio: 1"):
        ds = load_dataset(path)
    assert ds.task == "regression"
    assert ds.dims() == dict(zip(ds.modalities, dims, strict=True))
    for split, n in SIZES.items():
        s = ds[split]
        assert tuple(s.features[m].shape[1] for m in ds.modalities) == steps
        np.testing.assert_array_equal(s.labels, info[split]["labels"])
        # text lengths come from the BERT attention mask, not from zero rows
        np.testing.assert_array_equal(s.lengths["text"], info[split]["tokens"])
        for m in ("audio", "vision"):
            np.testing.assert_array_equal(s.lengths[m], info[split]["lengths"][m])
        assert s.ids[2] == f"{split}video0$_$2" and s.text_raw[0] == f"sentence {split} 0"
        assert len(s) == n


# --- CMU-MultimodalSDK ------------------------------------------------------------------


def test_csd_folder_sentiment(tmp_path):
    info = write_csd(tmp_path / "mosi", "mosi")
    assert detect_format(tmp_path / "mosi") == "csd"
    with pytest.warns(UserWarning) as record:
        ds = load_dataset(tmp_path / "mosi")
    messages = " ".join(str(w.message) for w in record)
    assert "train/audio: 3" in messages and "left out 1 labelled segments" in messages
    assert ds.task == "regression" and ds.modalities == ["text", "audio", "vision"]
    assert ds.dims() == {"text": 300, "audio": 74, "vision": 35}
    keys = info["keys"]
    assert list(ds["train"].ids) == [k for k in keys if k.startswith("trv") and k != keys[1]]
    assert list(ds["test"].ids) == [k for k in keys if k.startswith("tev")]
    for split in ("train", "valid", "test"):
        s = ds[split]
        for i, key in enumerate(s.ids):
            assert s.labels[i] == np.float32(info["labels"][key][0, 0])
            assert s.lengths["text"][i] == min(info["steps"][key], 50)
        assert s.features["text"].shape[1] == 50


def test_csd_mosei_seven_columns_and_max_steps(tmp_path):
    info = write_csd(tmp_path / "mosei", "mosei")
    ds = quiet_load(tmp_path / "mosei", "csd", label_columns=list(range(7)), max_steps=80)
    assert ds.label_names == MOSEI_LABELS and ds.num_targets() == 7
    s = ds["valid"]
    assert s.labels.shape == (len(s), 7) and s.features["audio"].shape[1] == 80
    np.testing.assert_allclose(s.labels[0], info["labels"][s.ids[0]][0], rtol=1e-6)
    np.testing.assert_array_equal(s.lengths["vision"],
                                  [info["steps"][k] for k in s.ids])


def test_csd_pom_files_named_in_config(tmp_path):
    folder = tmp_path / "pom"
    info = write_csd(folder, "pom")
    for m in ("text", "audio", "vision"):
        (folder / f"{m}.csd").rename(folder / f"POM_{m}.csd")
    (folder / "labels.csd").rename(folder / "POM_traits.csd")
    (folder / "folds.json").rename(folder / "standard_folds.json")
    data = DataConfig(path=str(folder), format="csd", label_columns=list(range(16)))
    data.csd.features = {m: f"POM_{m}.csd" for m in ("text", "audio", "vision")}
    data.csd.labels, data.csd.folds, data.csd.max_steps = ("POM_traits.csd",
                                                           "standard_folds.json", 20)
    ds = quiet_load(folder, "csd", **config_options(data))
    assert ds.label_names == POM_TRAITS
    assert list(ds["test"].ids) == info["videos"]["test"]
    assert ds["train"].labels.shape == (len(ds["train"]), 16)
    assert ds["train"].features["text"].shape[1] == 20


def test_csd_missing_valid_fold_is_carved(tmp_path):
    folder = tmp_path / "mosi"
    write_csd(folder, "mosi")
    folds = json.loads((folder / "folds.json").read_text())
    del folds["valid"]
    (folder / "folds.json").write_text(json.dumps(folds))
    ds = quiet_load(folder, valid_fraction=0.25)
    assert len(ds["valid"]) == 3 and len(ds["train"]) == 8


# --- the generic layout, inspect and convert ---------------------------------------------


def test_convert_round_trips_through_npz(tmp_path):
    write_mult(tmp_path / "mosi.pkl", "mosi")
    with pytest.warns(UserWarning, match="non-finite"):
        out = convert(tmp_path / "mosi.pkl", tmp_path / "mosi.npz")
    again = load_npz(out)
    original = quiet_load(tmp_path / "mosi.pkl")
    assert detect_format(out) == "npz"
    for split in SIZES:
        for m in original.modalities:
            np.testing.assert_array_equal(again[split].features[m],
                                          original[split].features[m])
            np.testing.assert_array_equal(again[split].lengths[m], original[split].lengths[m])
        np.testing.assert_array_equal(again[split].labels, original[split].labels)
        np.testing.assert_array_equal(again[split].ids, original[split].ids)


def test_describe_counts_raw_values(tmp_path):
    path = tmp_path / "mosi.pkl"
    write_mult(path, "mosi")
    data = pickle.loads(path.read_bytes())
    data["train"]["vision"][3] = 0.0  # an all-zero sample
    data["train"]["text"][4, -1, :5] = np.nan
    data["test"]["vision"][0, -1, 0] = 1e300  # finite in the file, inf as float32
    path.write_bytes(pickle.dumps(data))
    report = describe(path)
    assert "[train] 10 samples" in report
    # what the file stores: float64, with its own NaN/inf counts
    assert "audio: shape (10, 50, 5), dtype float64; NaN 0, +inf 0, -inf 2" in report
    assert "text: shape (10, 50, 300), dtype float64; NaN 5, +inf 0, -inf 0" in report
    assert "vision: shape (10, 50, 20), dtype float64; NaN 0, +inf 0, -inf 0, " \
           "all-zero samples 1" in report
    assert "vision: shape (6, 50, 20), dtype float64; NaN 0, +inf 0, -inf 0" in report
    assert "zeros 1" in report and "validation: ok" in report
    with pytest.warns(UserWarning, match="test/vision: 1"):
        loaded = load_dataset(path)
    in_memory = describe(loaded)
    assert "dtype float32; NaN 0, +inf 0, -inf 0" in in_memory and "-inf 2" not in in_memory
    assert "float64" not in in_memory


def test_each_fixture_is_claimed_by_exactly_one_format(tmp_path):
    write_mult(tmp_path / "mult.pkl")
    write_mmsa(tmp_path / "mmsa.pkl")
    write_csd(tmp_path / "csd")
    with pytest.warns(UserWarning):
        convert(tmp_path / "mult.pkl", tmp_path / "data.npz")
    for name, expected in (("mult.pkl", "mult"), ("mmsa.pkl", "mmsa"), ("csd", "csd"),
                           ("csd/text.csd", "csd"), ("data.npz", "npz")):
        claims = [f for f in FORMATS if FORMATS.get(f).sniff(tmp_path / name)]
        assert claims == [expected], name


# --- bad input: the file and the key are named ------------------------------------------


def _mult_file(tmp_path: Path, edit) -> Path:
    path = tmp_path / "mosi_data.pkl"
    write_mult(path, "mosi")
    data = pickle.loads(path.read_bytes())
    edit(data)
    path.write_bytes(pickle.dumps(data))
    return path


@pytest.mark.parametrize("edit,key,words", [
    (lambda d: d.pop("test"), "[test]", "split 'test' is missing"),
    (lambda d: d["valid"].pop("vision"), "[valid/vision]", "modality 'vision' is missing"),
    (lambda d: d["train"].__setitem__("audio", d["train"]["audio"][:, :, 0, None, None]),
     "[train/audio]", "got 4"),
    (lambda d: d["train"].__setitem__("audio", d["train"]["audio"][:-1]), "[train/audio]",
     "has 9 samples but text has 10"),
    (lambda d: d["test"].__setitem__("labels", d["test"]["labels"][:-2]), "[test/labels]",
     "has 4 labels"),
    (lambda d: d["train"].__setitem__("labels", np.zeros((10, 3, 3))), "[train/labels]",
     "expected (N, 1, 1) sentiment"),
    (lambda d: d["test"].__setitem__("labels", np.zeros((6, 4, 2))), "[test/labels]",
     "one-hot"),
    (lambda d: d["train"].__setitem__("text", np.array(["a"] * 10)), "[train/text]",
     "expected numbers"),
    (lambda d: d.__setitem__("valid", [1, 2]), "[valid]", "expected a dict"),
])
def test_mult_errors_name_file_and_key(tmp_path, edit, key, words):
    path = _mult_file(tmp_path, edit)
    with pytest.raises(DataError) as err:
        quiet_load(path, "mult")
    assert str(path) in str(err.value) and key in str(err.value)
    assert words in str(err.value)


def test_label_layout_must_match_across_splits(tmp_path):
    def edit(d):
        d["test"]["labels"] = np.stack([np.ones((6, 4)), np.zeros((6, 4))], axis=2)

    with pytest.raises(DataError, match=r"\[test/labels\].*differs from train"):
        quiet_load(_mult_file(tmp_path, edit), "mult")


def test_mmsa_errors_name_key(tmp_path):
    path = tmp_path / "aligned_50.pkl"
    write_mmsa(path)
    data = pickle.loads(path.read_bytes())
    data["train"]["audio_lengths"] = np.arange(3)
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(DataError, match=r"\[train/audio_lengths\]: expected 10 integer"):
        quiet_load(path)
    data["train"].pop("audio_lengths")
    data["valid"].pop("regression_labels")
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(DataError, match=r"\[valid/regression_labels\]: key .* is missing"):
        quiet_load(path)


@pytest.mark.parametrize("cut", [10, 1000, -7])
def test_truncated_pickle(tmp_path, cut):
    path = tmp_path / "mosi_data.pkl"
    write_mult(path, "mosi")
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(DataError, match="truncated or corrupt pickle") as err:
        load_dataset(path, "mult")
    assert str(path) in str(err.value)


def test_corrupt_hdf5_and_non_sequence_hdf5(tmp_path):
    folder = tmp_path / "mosi"
    write_csd(folder, "mosi")
    audio = folder / "audio.csd"
    audio.write_bytes(audio.read_bytes()[:3000])
    with pytest.raises(DataError, match="audio.csd: not a readable HDF5 file"):
        quiet_load(folder)
    with h5py.File(audio, "w") as f:
        f.create_group("COVAREP").create_dataset("features", data=np.zeros(3))
    with pytest.raises(DataError, match=r"audio.csd \[COVAREP/data\]: not a computational"):
        quiet_load(folder)
    with h5py.File(audio, "w") as f:
        f.create_dataset("a", data=np.zeros(3))
        f.create_dataset("b", data=np.zeros(3))
    with pytest.raises(DataError, match="expected one root group"):
        quiet_load(folder)


def test_csd_errors_name_file_and_key(tmp_path):
    folder = tmp_path / "mosi"
    info = write_csd(folder, "mosi")
    with pytest.raises(DataError, match=r"labels.csd \[Opinion Segment Labels/data/.*"
                                        r"label_columns asks for column 3"):
        quiet_load(folder, label_columns=[0, 3])
    key = info["keys"][5]
    write_sequence(folder / "text.csd", "glove_vectors",
                   {k: np.zeros((4, 300 if k != key else 7)) for k in info["keys"]})
    where = re.escape(f"text.csd [glove_vectors/data/{key}/features]: feature width 7")
    with pytest.raises(DataError, match=where):
        quiet_load(folder)
    write_sequence(folder / "text.csd", "glove_vectors",
                   {k: np.zeros(4) for k in info["keys"]})
    with pytest.raises(DataError, match=r"text.csd \[glove_vectors/data/.*\]: expected 2 dim"):
        quiet_load(folder)
    (folder / "folds.json").write_text(json.dumps({"train": ["trv0"], "valid": []}))
    with pytest.raises(DataError, match=r"folds.json \[test\]: split 'test' is missing"):
        quiet_load(folder)
    (folder / "folds.json").unlink()
    with pytest.raises(DataError, match="folds.json: folds file is missing"):
        quiet_load(folder)
    with pytest.raises(DataError, match="reads a folder"):
        quiet_load(folder / "text.csd", "csd")


def test_options_a_format_does_not_take(tmp_path):
    write_mult(tmp_path / "mosi.pkl")
    with pytest.raises(ConfigError, match="data.label_columns"):
        quiet_load(tmp_path / "mosi.pkl", label_columns=[0, 1])
    options = config_options(DataConfig())
    assert quiet_load(tmp_path / "mosi.pkl", **options).task == "regression"


def test_unknown_content_and_missing_path(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_dataset(path)
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "absent.pkl")


# --- the shipped configs ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["mosi", "mosei", "iemocap", "pom"])
def test_configs_load(name):
    config = load_config(CONFIGS / f"{name}.toml")
    assert config.data.path and config.data.format in ("mult", "mmsa", "csd", "npz")
    config_options(config.data)


def test_describe_a_file_to_predict_on(tmp_path):
    arrays = dataset_arrays(make_synthetic(seed=0, train=30, valid=10, test=20))
    keep = {k: v for k, v in arrays.items()
            if k.startswith(("meta/", "test/")) and k != "test/labels"}
    path = tmp_path / "new.npz"
    np.savez(path, **keep)
    report = describe(path)
    assert "[test] 20 samples" in report and "labels: none" in report
    assert "validation for training: FAILED" in report and "train/labels" in report
    assert "validation for prediction: ok" in report
    np.savez(path, **dict(keep, **{"test/audio": keep["test/audio"][:5]}))
    with pytest.raises(DataError, match="test/audio"):
        describe(path)

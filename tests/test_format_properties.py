"""Property tests: whatever the loaders are fed, only the project's own errors come out."""

from __future__ import annotations

import json
import pickle
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefuse.cli import main
from prefuse.data.formats import load_dataset
from prefuse.data.formats.npz import dataset_arrays
from prefuse.data.inspect import describe
from prefuse.data.synthetic import make_synthetic
from prefuse.errors import PrefuseError

from .formats_fixtures import write_csd, write_mult, write_sequence

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
FORMATS = ("auto", "mult", "mmsa", "npz", "csd")


def _load_or_refuse(path: Path, format: str) -> None:
    """Load and describe; a ``PrefuseError`` is a fine answer, any other exception fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for read in (load_dataset, describe):
            try:
                read(path, format)
            except PrefuseError:
                pass


@st.composite
def arrays(draw) -> np.ndarray:
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    kind = draw(st.sampled_from(["f8", "f4", "i8", "bool", "U3", "S3", "object"]))
    size = int(np.prod(shape))
    if kind == "object":
        return np.array([draw(st.one_of(st.text(max_size=3), st.integers(), st.none()))
                         for _ in range(size)], dtype=object).reshape(shape)
    values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32),
                           min_size=size, max_size=size))
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.array(values, dtype=np.float64).reshape(shape)
        if kind in ("i8", "bool"):
            return np.nan_to_num(a).clip(-5, 5).astype(kind)
        return a.astype(kind)


KEYS = ["text", "audio", "vision", "labels", "id", "regression_labels", "raw_text",
        "text_bert", "audio_lengths", "vision_lengths"]
values = st.one_of(arrays(), st.integers(), st.text(max_size=4), st.none(),
                   st.lists(st.integers(), max_size=4))
splits = st.dictionaries(st.sampled_from(KEYS), values, max_size=len(KEYS))
structures = st.one_of(
    st.dictionaries(st.sampled_from(["train", "valid", "test", "other"]),
                    st.one_of(splits, values), max_size=4),
    values,
)


@SETTINGS
@given(data=st.binary(max_size=300), format=st.sampled_from(FORMATS))
def test_garbage_bytes(tmp_path, data, format):
    path = tmp_path / "garbage.bin"
    path.write_bytes(data)
    _load_or_refuse(path, format)


@SETTINGS
@given(data=st.binary(max_size=200), prefix=st.sampled_from([b"\x80\x04", b"\x80\x02",
                                                              b"PK\x03\x04",
                                                              b"\x89HDF\r\n\x1a\n"]),
       format=st.sampled_from(FORMATS))
def test_garbage_behind_real_signatures(tmp_path, data, prefix, format):
    path = tmp_path / "garbage.npz"
    path.write_bytes(prefix + data)
    _load_or_refuse(path, format)


@SETTINGS
@given(obj=structures, format=st.sampled_from(["auto", "mult", "mmsa"]))
def test_random_pickled_structures(tmp_path, obj, format):
    path = tmp_path / "structure.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    _load_or_refuse(path, format)


@st.composite
def mult_shapes(draw) -> dict:
    """MulT-like splits with random (often inconsistent) sizes, steps and label shapes."""
    out = {}
    for split in draw(st.sets(st.sampled_from(["train", "valid", "test"]), min_size=1)):
        n = draw(st.integers(0, 4))
        entry = {m: np.ones((draw(st.integers(0, 4)) if draw(st.booleans()) else n,
                             *draw(st.lists(st.integers(0, 2), min_size=0, max_size=3))))
                 for m in ("text", "audio", "vision")}
        label_shape = draw(st.sampled_from([(n, 1, 1), (n, 4, 2), (n,), (n, 2, 2), (n + 1,)]))
        entry["labels"] = draw(st.sampled_from([np.zeros, np.ones]))(label_shape)
        out[split] = entry
    return out


@SETTINGS
@given(obj=mult_shapes())
def test_random_mult_shapes(tmp_path, obj):
    path = tmp_path / "mosi_data.pkl"
    path.write_bytes(pickle.dumps(obj))
    _load_or_refuse(path, "mult")


_MULT = Path(tempfile.mkdtemp()) / "mosi_data.pkl"
write_mult(_MULT, "mosi")
_MULT_BYTES = _MULT.read_bytes()


@SETTINGS
@given(cuts=st.lists(st.tuples(st.integers(0, len(_MULT_BYTES) - 1), st.integers(0, 255)),
                     min_size=1, max_size=8),
       truncate=st.integers(1, len(_MULT_BYTES)))
def test_damaged_mult_pickle(tmp_path, cuts, truncate):
    data = bytearray(_MULT_BYTES)
    for where, byte in cuts:
        data[where] = byte
    path = tmp_path / "mosi_data.pkl"
    path.write_bytes(bytes(data[:truncate]))
    _load_or_refuse(path, "mult")


_CSD = Path(tempfile.mkdtemp()) / "mosi"
write_csd(_CSD, "mosi")


@st.composite
def hdf5_layouts(draw) -> list[tuple[str, tuple[int, ...], str]]:
    """(path, shape, dtype) of datasets in a random HDF5 tree near the CSD layout."""
    roots = draw(st.lists(st.sampled_from(["glove_vectors", "x"]), min_size=1, max_size=2,
                          unique=True))
    items = []
    for root in roots:
        for _ in range(draw(st.integers(0, 3))):
            middle = draw(st.sampled_from(["data/trv0[0]", "data/trv1[1]", "data/tev0[0]",
                                           "metadata", "data"]))
            leaf = draw(st.sampled_from(["features", "intervals", "dimension names"]))
            shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
            dtype = draw(st.sampled_from(["f8", "i4", "S2"]))
            items.append((f"{root}/{middle}/{leaf}", shape, dtype))
    return items


@SETTINGS
@given(layout=hdf5_layouts())
def test_random_hdf5_in_a_csd_folder(tmp_path, layout):
    folder = tmp_path / "csd"
    folder.mkdir(exist_ok=True)
    for name in ("audio.csd", "vision.csd", "labels.csd", "folds.json"):
        (folder / name).write_bytes((_CSD / name).read_bytes())
    with h5py.File(folder / "text.csd", "w") as f:
        for where, shape, dtype in layout:
            if where not in f:
                try:
                    f.create_dataset(where, data=np.zeros(shape, dtype=dtype))
                except (ValueError, TypeError):  # a group already sits on this path
                    pass
    _load_or_refuse(folder, "csd")


@SETTINGS
@given(folds=st.one_of(
    st.dictionaries(st.sampled_from(["train", "valid", "test"]),
                    st.one_of(st.lists(st.sampled_from(["trv0", "tev1", "nope", "vav0"]),
                                       max_size=4), st.integers(), st.lists(st.integers())),
                    max_size=3),
    st.lists(st.text(max_size=3)), st.text(max_size=5)),
    labels=st.sampled_from([(1, 1), (1, 0), (0, 1), (2, 3), (1,)]))
def test_random_folds_and_label_rows(tmp_path, folds, labels):
    folder = tmp_path / "csd"
    folder.mkdir(exist_ok=True)
    for name in ("text.csd", "audio.csd", "vision.csd"):
        (folder / name).write_bytes((_CSD / name).read_bytes())
    keys = [f"{v}[{k}]" for v in ("trv0", "tev1", "vav0") for k in range(3)]
    write_sequence(folder / "labels.csd", "labels", {k: np.ones(labels) for k in keys})
    (folder / "folds.json").write_text(json.dumps(folds))
    _load_or_refuse(folder, "csd")


_BASE = dataset_arrays(make_synthetic(seed=0, train=8, valid=4, test=4))
_BASE["train/present/audio"] = np.arange(8) % 3 > 0
_BASE["valid/present/text"] = np.ones(4, dtype=bool)
# Hypothesis reports the drawn arrays; their size is not a problem here.
quiet = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
_PER_SAMPLE = ["train/dominant", "test/dominant", "train/present/audio", "valid/present/text",
               "train/labels", "test/labels", "train/lengths/vision", "train/ids", "test/text",
               "train/audio"]


@st.composite
def npz_layouts(draw) -> dict[str, np.ndarray]:
    """The generic layout with some keys replaced: per-sample arrays of random length,
    dtype and values (``dominant``, ``present``, labels, lengths, features), random label
    names and modality lists, or keys removed."""
    arrays = dict(_BASE)
    for key in draw(st.lists(st.sampled_from(_PER_SAMPLE), max_size=3, unique=True)):
        choice = draw(st.sampled_from(["random", "drop", "resize", "retype"]))
        if choice == "random":
            arrays[key] = draw(npz_arrays())
        elif choice == "drop":
            arrays.pop(key)
        elif choice == "resize":
            arrays[key] = np.resize(arrays[key], (draw(st.integers(0, 10)),
                                                  *arrays[key].shape[1:]))
        else:
            kind = draw(st.sampled_from(["f8", "i1", "u8", "bool", "U2", "c8", "f2"]))
            source = arrays[key]
            if source.dtype.kind == "U" and kind != "U2":  # ids: no number to cast to
                source = np.arange(len(source))
            with np.errstate(invalid="ignore", over="ignore"):
                arrays[key] = source.astype(kind)
    if draw(st.booleans()):
        arrays["meta/label_names"] = np.array(draw(st.lists(st.sampled_from(["a", "b", "c"]),
                                                            max_size=4)), dtype=str)
    if draw(st.booleans()):
        arrays["meta/modalities"] = np.array(draw(st.lists(
            st.sampled_from(["text", "audio", "vision", "other"]), max_size=4)), dtype=str)
    if draw(st.booleans()):
        arrays["meta/task"] = np.array([draw(st.sampled_from(
            ["binary", "multiclass", "regression", "multilabel", "x"]))])
    return arrays


@st.composite
def npz_arrays(draw) -> np.ndarray:
    a = draw(arrays())
    return a if a.dtype != object else a.astype(str)  # np.savez would pickle objects


@quiet
@SETTINGS
@given(layout=npz_layouts())
def test_random_generic_npz_layouts(tmp_path, layout):
    path = tmp_path / "layout.npz"
    np.savez(path, **layout)
    _load_or_refuse(path, "auto")


@quiet
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=npz_layouts())
def test_the_cli_on_random_generic_npz_layouts(tmp_path, capsys, layout):
    """End to end: ``prefuse run`` either trains or says what is wrong; never a traceback."""
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = folder / "layout.npz"
    np.savez(path, **layout)
    rc = main(["run", "--data", str(path), "--out", str(folder / "run"), "--seeds", "0",
               "--arms", "scratch+concat", "--epochs", "2", "--pretrain-epochs", "1",
               "--width", "8"])
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    assert rc == 0 or (rc == 2 and err.count("prefuse: error: ") == 1), err
    if rc == 2:
        assert str(path) in err or "config field" in err, err

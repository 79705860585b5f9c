"""The restricted unpickler: numpy arrays and containers load, code does not run."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess

import numpy as np
import pytest

from prefuse.data.formats import load_dataset
from prefuse.data.safe_pickle import load_pickle
from prefuse.errors import DataError


class _Payload:
    """Pickles as a call of ``func(*args)``: what a hostile file does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _write(path, obj, protocol=4):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_numpy_and_containers_load(tmp_path, protocol):
    obj = {"train": {"x": np.arange(12, dtype=np.float64).reshape(3, 4),
                     "ids": np.array([b"a", b"b"]), "text": np.array(["x", 3], dtype=object),
                     "scalar": np.float32(1.5), "list": [1, 2.0, "s", None, True],
                     "tuple": (1, (2, 3)), "set": {1, 2}, "frozen": frozenset({3}),
                     "bytes": b"\x00\xff", "complex": 1 + 2j,
                     "fortran": np.asfortranarray(np.ones((2, 3), dtype=np.int16))}}
    back = load_pickle(_write(tmp_path / "ok.pkl", obj, protocol))
    np.testing.assert_array_equal(back["train"]["x"], obj["train"]["x"])
    assert back["train"]["x"].dtype == np.float64
    assert back["train"]["ids"].tolist() == [b"a", b"b"]
    assert back["train"]["text"].tolist() == ["x", 3]
    assert back["train"]["scalar"] == np.float32(1.5)
    for key in ("list", "tuple", "set", "frozen", "bytes", "complex"):
        assert back["train"][key] == obj["train"][key]
    np.testing.assert_array_equal(back["train"]["fortran"], obj["train"]["fortran"])


def _touch_code(marker):
    return f"open({str(marker)!r}, 'w').close()"


@pytest.mark.parametrize("make,name", [
    (lambda m: _Payload(os.system, f"touch {m}"), "system"),
    (lambda m: _Payload(subprocess.Popen, ["touch", str(m)]), "subprocess.Popen"),
    (lambda m: _Payload(builtins.eval, _touch_code(m)), "builtins.eval"),
    (lambda m: _Payload(builtins.exec, _touch_code(m)), "builtins.exec"),
    (lambda m: _Payload(builtins.getattr, _Payload(builtins.__import__, "os"), "system"),
     "builtins.getattr"),
    (lambda m: _Payload(builtins.__import__, "os"), "builtins.__import__"),
])
def test_hostile_pickles_are_refused_and_nothing_runs(tmp_path, make, name):
    marker = tmp_path / "pwned"
    path = _write(tmp_path / "mosi_data.pkl",
                  {"train": {"text": np.zeros((2, 3)), "labels": make(marker)}})
    with pytest.raises(DataError, match="refused to load the global") as err:
        load_pickle(path)
    assert name in str(err.value) and str(path) in str(err.value)
    with pytest.raises(DataError, match="refused"):
        load_dataset(path, "mult")
    assert not marker.exists()


def test_hand_written_global_opcode_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    # protocol 0: GLOBAL 'posix system', MARK, STRING, TUPLE, REDUCE, STOP
    path = tmp_path / "evil.pkl"
    path.write_bytes(f"cposix\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(DataError, match="posix.system"):
        load_pickle(path)
    assert not marker.exists()


class Plain:
    """An ordinary class: unpickling it would import this module."""


@pytest.mark.parametrize("protocol,name", [(1, "copy_reg._reconstructor"),
                                           (4, f"{Plain.__module__}.Plain")])
def test_arbitrary_classes_are_refused(tmp_path, protocol, name):
    path = _write(tmp_path / "obj.pkl", {"x": Plain()}, protocol=protocol)
    with pytest.raises(DataError, match=f"refused to load the global '{name}'"):
        load_pickle(path)


@pytest.mark.parametrize("data", [b"", b"\x80\x04", b"\x80\x04\x95\x10\x00\x00", b"garbage",
                                  b"\x80\x05\x95\x00\x00\x00\x00\x00\x00\x00\x00(."])
def test_corrupt_pickles_are_data_errors(tmp_path, data):
    path = tmp_path / "bad.pkl"
    path.write_bytes(data)
    with pytest.raises(DataError, match="bad.pkl"):
        load_pickle(path)


def test_numpy_reconstruct_with_bad_state_is_a_data_error(tmp_path):
    good = pickle.dumps(np.arange(4, dtype=np.float64), protocol=2)
    broken = good.replace(b"f8", b"q9")  # an impossible dtype string
    path = tmp_path / "broken.pkl"
    path.write_bytes(broken)
    with pytest.raises(DataError, match="truncated or corrupt pickle"):
        load_pickle(path)


def test_pickles_written_by_numpy_1_load(tmp_path):
    # The public releases were pickled by numpy 1.x, which names numpy.core, not _core.
    data = pickle.dumps({"a": np.arange(3.0), "s": np.float32(2)}, protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old
    path = tmp_path / "old.pkl"
    path.write_bytes(old)
    back = load_pickle(path)
    np.testing.assert_array_equal(back["a"], [0.0, 1.0, 2.0])
    assert back["s"] == np.float32(2)

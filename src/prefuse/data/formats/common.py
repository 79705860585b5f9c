"""Checks and conversions shared by the format loaders; each failure names file and key."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..clean import carve_valid, left_align, lengths_from_padding
from ..dataset import Split


def mapping(value: object, path: Path, key: str | None) -> Mapping:
    """``value`` if it is a dict-like, else a ``DataError`` naming ``key``."""
    if not isinstance(value, Mapping):
        raise DataError(path, f"expected a dict, got {type(value).__name__}", key)
    return value


def entry(container: Mapping, name: str, path: Path, key: str, what: str = "key") -> object:
    """``container[name]``, or a ``DataError`` saying the ``what`` at ``key`` is missing."""
    if name not in container:
        raise DataError(path, f"{what} '{name}' is missing", key)
    return container[name]


def features(value: object, path: Path, key: str) -> np.ndarray:
    """A real-valued ``(N, D)`` or ``(N, T, D)`` array, still in its stored dtype.

    ``load_dataset`` makes features float32 afterwards, so ``inspect`` sees what the file
    holds (dtype, and values beyond float32's range that the cast turns into inf).
    """
    if not isinstance(value, np.ndarray):
        raise DataError(path, f"expected a numpy array, got {type(value).__name__}", key)
    if value.dtype.kind not in "biuf":
        raise DataError(path, f"expected numbers, got dtype {value.dtype}", key)
    if value.ndim not in (2, 3):
        raise DataError(path, f"expected 2 dimensions (N, D) or 3 (N, T, D), got "
                        f"{value.ndim} with shape {value.shape}", key)
    if value.shape[-1] == 0 or (value.ndim == 3 and value.shape[1] == 0):
        raise DataError(path, f"shape {value.shape} has no time steps or no features", key)
    return value


def infer_lengths(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x with valid steps first, lengths)`` from all-zero padding rows on either side.

    Encoders expect right padding; MulT pads on the left, so its steps are moved.
    """
    lengths = lengths_from_padding(x)
    return left_align(x, lengths), lengths


def given_lengths(value: object, x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Stored lengths as int64 ``(N,)``, capped at the stored steps.

    Releases record a sequence's original length even where its features were cut to a
    fixed number of steps, so a length beyond the array means "all steps".
    """
    a = np.asarray(value)
    if a.dtype.kind not in "biuf" or a.shape != (x.shape[0],):
        raise DataError(path, f"expected {x.shape[0]} integer lengths, got shape {a.shape} "
                        f"dtype {a.dtype}", key)
    if not np.isfinite(a).all() or (a < 0).any():
        raise DataError(path, "lengths must be finite and >= 0", key)
    return np.minimum(a.astype(np.int64), x.shape[1])


def _text(item: object) -> str:
    if isinstance(item, bytes | np.bytes_):
        return bytes(item).decode("utf-8", errors="replace")
    return str(item)


def strings(value: object, n: int, path: Path, key: str) -> np.ndarray:
    """``(N,)`` strings; bytes are decoded and the columns of an ``(N, k)`` id array are
    joined with ``_`` (MulT stores video id, start and end)."""
    try:
        a = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)
    except (ValueError, TypeError) as e:
        raise DataError(path, f"expected an array of strings ({e})", key) from None
    if a.ndim == 0 or a.shape[0] != n or a.ndim > 2:
        raise DataError(path, f"expected {n} entries (N,) or (N, k), got shape {a.shape}", key)
    rows = a.reshape(n, -1)
    return np.array(["_".join(_text(v) for v in row) for row in rows], dtype=str)


def assemble(splits: dict[str, Split], path: Path, valid_fraction: float, seed: int,
             key_prefix: str = "") -> dict[str, Split]:
    """Require train and test; carve valid from train when the file has none."""
    for name in ("train", "test"):
        if name not in splits:
            raise DataError(path, f"split '{name}' is missing", f"{key_prefix}{name}")
    if "valid" not in splits:
        splits["train"], splits["valid"] = carve_valid(splits["train"], valid_fraction, seed,
                                                       path)
    return {name: splits[name] for name in ("train", "valid", "test")}


@functools.lru_cache(maxsize=16)
def _markers(path: str, size: int, mtime: int, needles: tuple[bytes, ...]) -> frozenset[bytes]:
    found: set[bytes] = set()
    overlap = max(len(n) for n in needles) - 1
    tail = b""
    with open(path, "rb") as f:
        while len(found) < len(needles):
            chunk = f.read(1 << 24)
            if not chunk:
                break
            window = tail + chunk
            found.update(n for n in needles if n in window)
            tail = window[-overlap:] if overlap else b""
    return frozenset(found)


def file_markers(path: Path, needles: tuple[bytes, ...]) -> frozenset[bytes]:
    """Which of ``needles`` occur anywhere in the file (one streaming pass, cached)."""
    stat = path.stat()
    return _markers(str(path), stat.st_size, stat.st_mtime_ns, needles)

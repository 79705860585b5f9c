"""prefuse's own generic NPZ layout (docs/formats.md describes it): read and write.

Keys: ``<split>/<modality>``, ``<split>/lengths/<modality>``, ``<split>/present/<modality>``,
``<split>/labels``, ``<split>/ids``, ``<split>/text_raw``, ``<split>/dominant``,
``<split>/group`` (strings or integers), ``<split>/order`` (integers), ``meta/task``,
``meta/modalities``, ``meta/label_names``, ``meta/name``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...fileio import atomic_path
from ..clean import carve_valid
from ..dataset import SPLITS, MultimodalDataset, Split
from ..groups import parse_ids
from .common import features
from .registry import Format, register_format


def _is_npz(path: Path) -> bool:
    """A zip archive whose members are ``.npy`` arrays: what ``np.savez`` writes,
    whatever the file is called."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return False
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def _sniff(path: Path) -> bool:
    return path.is_file() and _is_npz(path)


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(path, "not a file (an NPZ file is one zip archive)")
    if not _is_npz(path):
        raise DataError(path, "not an NPZ file (expected a zip archive of .npy arrays, "
                        "as numpy.savez writes)")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                try:
                    arrays[key] = z[key]
                except ValueError as e:
                    # numpy's own message suggests loading with pickle, which prefuse
                    # never does (a pickled member could run code): never repeat it.
                    if "pickle" not in str(e):
                        raise DataError(path, "cannot read this array", key) from None
                    raise DataError(path, "holds Python objects (an object array), which "
                                    "prefuse does not read; store numbers or strings",
                                    key) from None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise DataError(path, f"not a readable NPZ file ({type(e).__name__})") from None
    return arrays


def _strings(arrays: dict, key: str, path: Path) -> list[str] | None:
    if key not in arrays:
        return None
    a = arrays[key]
    if a.dtype.kind not in "US":
        raise DataError(path, f"expected a string array, got dtype {a.dtype}", key)
    return [x.decode() if isinstance(x, bytes) else str(x) for x in a.reshape(-1)]


def _samples(a: np.ndarray, path: Path, key: str) -> int:
    """The sample count of a per-sample array (its first axis)."""
    if a.ndim == 0:
        raise DataError(path, "expected one entry per sample, got a single value (0-d)", key)
    return len(a)


def _whole(a: np.ndarray, n: int, path: Path, key: str, what: str) -> np.ndarray:
    """``(n,)`` whole numbers as int64 (integer or whole-valued float storage)."""
    if a.dtype.kind not in "biuf":
        raise DataError(path, f"expected {what} as integers, got dtype {a.dtype}", key)
    if a.shape != (n,):
        raise DataError(path, f"expected {n} {what} (shape ({n},)), got shape {a.shape}", key)
    if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise DataError(path, f"{what} must be whole numbers", key)
    return a.astype(np.int64)


def _present(a: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    """``(n,)`` booleans; integers must be 0 or 1."""
    if a.dtype.kind != "b":
        flags = _whole(a, n, path, key, "presence flags")
        if not np.isin(flags, (0, 1)).all():
            raise DataError(path, "presence flags must be 0/1 or True/False", key)
        return flags.astype(bool)
    if a.shape != (n,):
        raise DataError(path, f"expected {n} presence flags (shape ({n},)), got shape "
                        f"{a.shape}", key)
    return a


def load_npz(path: Path, valid_fraction: float = 0.1, seed: int = 0,
             allow_missing: bool = False) -> MultimodalDataset:
    """Read a generic NPZ file; carve ``valid`` from ``train`` when it is absent.

    ``allow_missing`` (for using a trained model) accepts a modality whose arrays are
    absent: absent from every split, it is left out of the dataset; absent from some,
    it is marked missing for every sample of those splits. It also accepts any non-empty
    subset of the splits, and a split without ``<split>/labels``: that split is
    unlabelled (``labels`` None), its size given by its modalities' arrays.

    Every array is checked for dtype and sample count as it is read; features keep
    their stored dtype (``load_dataset`` makes them float32).
    """
    arrays = _read(path)
    task_list = _strings(arrays, "meta/task", path)
    if not task_list:
        raise DataError(path, "missing", "meta/task")
    modalities = _strings(arrays, "meta/modalities", path)
    if not modalities:
        raise DataError(path, "missing", "meta/modalities")
    label_names = _strings(arrays, "meta/label_names", path)
    name_list = _strings(arrays, "meta/name", path)
    task = task_list[0]
    if allow_missing:
        modalities = [m for m in modalities if any(f"{s}/{m}" in arrays for s in SPLITS)]

    splits: dict[str, Split] = {}
    for s in SPLITS:
        split = _split(arrays, s, modalities, task, path, allow_missing)
        if split is not None:
            splits[s] = split
    if not splits:
        raise DataError(path, "no split has labels or modality arrays")
    # Data to predict on is predicted whole: carving would hide a tenth of its train split.
    if "valid" not in splits and not allow_missing:
        splits["train"], splits["valid"] = carve_valid(splits["train"], valid_fraction, seed,
                                                       path)
    return MultimodalDataset(
        splits=splits, task=task, modalities=modalities, label_names=label_names,
        name=name_list[0] if name_list else path.stem, source=str(path),
    )


def _count(arrays: dict[str, np.ndarray], s: str, given: list[str], path: Path) -> tuple[int, str]:
    """``(samples, the key that counts them)`` of split ``s``: its labels, else its first
    modality; every modality's array must agree."""
    sizes = {key: _samples(features(arrays[key], path, key), path, key) for key in given}
    if f"{s}/labels" in arrays:
        counted = f"{s}/labels"
        n = _samples(arrays[counted], path, counted)
        if sizes and len(set(sizes.values())) == 1 and n not in sizes.values():
            # Every modality agrees: the labels are the odd one out.
            raise DataError(path, f"has {n} entries, the features "
                            f"{next(iter(sizes.values()))} samples", counted)
    else:
        counted = given[0]
        n = sizes[counted]
    for key, size in sizes.items():
        if size != n:
            raise DataError(path, f"has {size} samples, {counted} {n}", key)
    return n, counted


def _split(arrays: dict[str, np.ndarray], s: str, modalities: list[str], task: str,
           path: Path, allow_missing: bool) -> Split | None:
    """Split ``s`` of the file, or None where it may be absent."""
    given = [f"{s}/{m}" for m in modalities if f"{s}/{m}" in arrays]
    labelled = f"{s}/labels" in arrays
    if not labelled and not (allow_missing and given):
        if allow_missing or (s == "valid" and "train/labels" in arrays):
            return None
        raise DataError(path, f"split '{s}' is missing", f"{s}/labels")
    n, counted = _count(arrays, s, given, path)
    feats, lengths, present = {}, {}, {}
    for m in modalities:
        key = f"{s}/{m}"
        if key not in arrays and allow_missing:
            feats[m], lengths[m], present[m] = _absent(arrays, m, n)
            continue
        if key not in arrays:
            raise DataError(path, f"modality '{m}' is missing", key)
        feats[m] = arrays[key]
        if f"{s}/lengths/{m}" in arrays:
            lengths[m] = _whole(arrays[f"{s}/lengths/{m}"], n, path, f"{s}/lengths/{m}",
                                "lengths")
        if f"{s}/present/{m}" in arrays:
            present[m] = _present(arrays[f"{s}/present/{m}"], n, path, f"{s}/present/{m}")
    texts = {}
    for key in ("ids", "text_raw"):
        value = _strings(arrays, f"{s}/{key}", path)
        if value is not None and len(value) != n:
            raise DataError(path, f"has {len(value)} entries, "
                            f"{'labels' if labelled else counted} {n}", f"{s}/{key}")
        texts[key] = None if value is None else np.array(value)
    dominant = f"{s}/dominant"
    group, order = _groups(arrays, s, n, texts["ids"], path)
    return Split(
        features=feats, labels=_labels(arrays, f"{s}/labels", task, path) if labelled else None,
        lengths=lengths, present=present, ids=texts["ids"], text_raw=texts["text_raw"],
        dominant=_whole(arrays[dominant], n, path, dominant, "modality indices")
        if dominant in arrays else None,
        group=group, order=order)


def _groups(arrays: dict[str, np.ndarray], s: str, n: int, ids: np.ndarray | None,
            path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``<split>/group`` and ``<split>/order``; without them, groups from ids of the form
    ``<video>_<n>``; else none."""
    key, order_key = f"{s}/group", f"{s}/order"
    if key not in arrays:
        if order_key in arrays:
            raise DataError(path, f"positions given without {key}", order_key)
        parsed = None if ids is None else parse_ids(ids, "numbered")
        return parsed if parsed is not None else (None, None)
    group = arrays[key]
    if group.dtype.kind not in "USiu" or group.shape != (n,):
        raise DataError(path, f"expected {n} group names or numbers (shape ({n},)), got "
                        f"shape {group.shape} dtype {group.dtype}", key)
    if group.dtype.kind == "S":
        group = np.char.decode(group, "utf-8")
    order = _whole(arrays[order_key], n, path, order_key, "positions") \
        if order_key in arrays else None
    return group, order


def _labels(arrays: dict[str, np.ndarray], key: str, task: str, path: Path) -> np.ndarray:
    """``key``'s labels as float32 (regression) or int64 (whole numbers required)."""
    labels = arrays[key]
    if labels.dtype.kind not in "biuf":
        raise DataError(path, f"expected numeric labels, got dtype {labels.dtype}", key)
    if task == "regression":
        return labels.astype(np.float32)
    if labels.dtype.kind == "f" and (not np.all(np.isfinite(labels))
                                     or not np.all(labels == np.round(labels))):
        raise DataError(path, f"{task} labels must be whole numbers", key)
    return labels.astype(np.int64)


def _absent(arrays: dict[str, np.ndarray], modality: str,
            n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Placeholder features shaped like another split's, length 0, present nowhere."""
    like = next(arrays[f"{s}/{modality}"] for s in SPLITS if f"{s}/{modality}" in arrays)
    return (np.zeros((n,) + like.shape[1:], dtype=np.float32), np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=bool))


def dataset_arrays(dataset: MultimodalDataset) -> dict[str, np.ndarray]:
    """The generic-layout arrays of ``dataset`` (what ``save_npz`` writes)."""
    out: dict[str, np.ndarray] = {
        "meta/task": np.array([dataset.task]),
        "meta/modalities": np.array(dataset.modalities),
        "meta/name": np.array([dataset.name]),
    }
    if dataset.label_names:
        out["meta/label_names"] = np.array(dataset.label_names)
    for s, split in dataset.splits.items():
        for m in dataset.modalities:
            out[f"{s}/{m}"] = split.features[m].astype(np.float32)
            if split.features[m].ndim == 3:
                out[f"{s}/lengths/{m}"] = split.lengths[m].astype(np.int64)
            if not split.present[m].all():
                out[f"{s}/present/{m}"] = split.present[m]
        if split.labelled:
            out[f"{s}/labels"] = split.labels
        out[f"{s}/ids"] = np.asarray(split.ids).astype(str)
        if split.text_raw is not None:
            out[f"{s}/text_raw"] = np.asarray(split.text_raw).astype(str)
        if split.dominant is not None:
            out[f"{s}/dominant"] = split.dominant.astype(np.int64)
        if split.group is not None:
            out[f"{s}/group"] = np.asarray(split.group).astype(str)
            out[f"{s}/order"] = split.order.astype(np.int64)
    return out


def save_npz(dataset: MultimodalDataset, path: str | Path) -> Path:
    """Write ``dataset`` in the generic layout, atomically (temp file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **dataset_arrays(dataset))
    return path


FORMAT = register_format(Format("npz", _sniff, load_npz))

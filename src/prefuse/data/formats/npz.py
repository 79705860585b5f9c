"""prefuse's own generic NPZ layout (DESIGN section 3): read and write.

Keys: ``<split>/<modality>``, ``<split>/lengths/<modality>``, ``<split>/present/<modality>``,
``<split>/labels``, ``<split>/ids``, ``<split>/text_raw``, ``<split>/dominant``,
``meta/task``, ``meta/modalities``, ``meta/label_names``, ``meta/name``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...fileio import atomic_path
from ..clean import carve_valid
from ..dataset import SPLITS, MultimodalDataset, Split
from . import Format, register_format


def _sniff(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" and path.suffix == ".npz"


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:  # object arrays need pickle: refused
        raise DataError(path, f"cannot read without pickle (object arrays?): {e}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(path, f"not a readable NPZ file ({type(e).__name__}: {e})") from None


def _strings(arrays: dict, key: str, path: Path) -> list[str] | None:
    if key not in arrays:
        return None
    a = arrays[key]
    if a.dtype.kind not in "US":
        raise DataError(path, f"expected a string array, got dtype {a.dtype}", key)
    return [x.decode() if isinstance(x, bytes) else str(x) for x in a.reshape(-1)]


def load_npz(path: Path, valid_fraction: float = 0.1, seed: int = 0,
             allow_missing: bool = False) -> MultimodalDataset:
    """Read a generic NPZ file; carve ``valid`` from ``train`` when it is absent.

    ``allow_missing`` (for using a trained model) accepts a modality whose arrays are
    absent: absent from every split, it is left out of the dataset; absent from some,
    it is marked missing for every sample of those splits. It also accepts any non-empty
    subset of the splits, and a split without ``<split>/labels``: that split is
    unlabelled (``labels`` None), its size given by its modalities' arrays.
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
        given = [f"{s}/{m}" for m in modalities if f"{s}/{m}" in arrays]
        labelled = f"{s}/labels" in arrays
        if not labelled and not (allow_missing and given):
            if allow_missing or (s == "valid" and "train/labels" in arrays):
                continue
            raise DataError(path, f"split '{s}' is missing", f"{s}/labels")
        # The key the split's size comes from, for the messages.
        counted = f"{s}/labels" if labelled else given[0]
        n = len(arrays[counted])
        if not labelled:
            # No labels to count by: the placeholders for absent modalities need one size.
            for key in given[1:]:
                if len(arrays[key]) != n:
                    raise DataError(path, f"has {len(arrays[key])} samples, {counted} {n}",
                                    key)
        features, lengths, present = {}, {}, {}
        for m in modalities:
            key = f"{s}/{m}"
            if key not in arrays and allow_missing:
                features[m], lengths[m], present[m] = _absent(arrays, m, n)
                continue
            if key not in arrays:
                raise DataError(path, f"modality '{m}' is missing", key)
            features[m] = np.ascontiguousarray(arrays[key], dtype=np.float32)
            if f"{s}/lengths/{m}" in arrays:
                lengths[m] = arrays[f"{s}/lengths/{m}"].astype(np.int64)
            if f"{s}/present/{m}" in arrays:
                present[m] = arrays[f"{s}/present/{m}"].astype(bool)
        labels = _labels(arrays, f"{s}/labels", task, path) if labelled else None
        ids = _strings(arrays, f"{s}/ids", path)
        text = _strings(arrays, f"{s}/text_raw", path)
        splits[s] = Split(
            features=features,
            labels=labels,
            lengths=lengths,
            present=present,
            ids=None if ids is None else np.array(ids),
            text_raw=None if text is None else np.array(text),
            dominant=arrays[f"{s}/dominant"].astype(np.int64)
            if f"{s}/dominant" in arrays else None,
        )
        for key, value in (("ids", ids), ("text_raw", text)):
            if value is not None and len(value) != n:
                raise DataError(path, f"has {len(value)} entries, "
                                f"{'labels' if labelled else counted} {n}", f"{s}/{key}")
    if not splits:
        raise DataError(path, "no split has labels or modality arrays")
    # Data to predict on is predicted whole: carving would hide a tenth of its train split.
    if "valid" not in splits and not allow_missing:
        splits["train"], splits["valid"] = carve_valid(splits["train"], valid_fraction, seed)
    return MultimodalDataset(
        splits=splits, task=task, modalities=modalities, label_names=label_names,
        name=name_list[0] if name_list else path.stem, source=str(path),
    )


def _labels(arrays: dict[str, np.ndarray], key: str, task: str, path: Path) -> np.ndarray:
    """``key``'s labels as float32 (regression) or int64 (whole numbers required)."""
    labels = arrays[key]
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
    return out


def save_npz(dataset: MultimodalDataset, path: str | Path) -> Path:
    """Write ``dataset`` in the generic layout, atomically (temp file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **dataset_arrays(dataset))
    return path


FORMAT = register_format(Format("npz", _sniff, load_npz))

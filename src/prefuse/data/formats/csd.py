"""CMU-MultimodalSDK computational sequences (``.csd``, HDF5); docs/formats.md describes the layout.

A sequence file holds ``/<root>/data/<key>/features`` ``(m, n)`` and ``.../intervals``
``(m, 2)``, plus ``/<root>/metadata/<name>`` JSON strings. After the SDK's alignment to
the label intervals, keys are segments ``vid[k]``; unsegmented data (POM) is keyed by the
video id itself. A dataset is one sequence per modality, a label sequence whose rows are
the label values, and a folds file ``{"train": [video ids], "valid": [...], "test": [...]}``
(the standard folds cannot be downloaded, so the user supplies them).
"""

from __future__ import annotations

import json
import re
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np

from ...errors import DataError, warn
from ..dataset import MultimodalDataset, Split
from ..groups import parse_ids
from .common import assemble
from .registry import Format, register_format

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
LABELS_FILE = "labels.csd"
FOLDS_FILE = "folds.json"
MODALITY_ORDER = ("text", "audio", "vision")
# What h5py raises for a link it cannot follow (a soft-link loop, a dangling external link).
LINK_ERRORS = (RuntimeError, KeyError, OSError, ValueError)
_SEGMENT = re.compile(r"(.*)\[(\d+)\]")


def _sniff(path: Path) -> bool:
    if path.is_dir():
        return any(path.glob("*.csd"))
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def _video(key: str) -> str:
    match = _SEGMENT.fullmatch(key)
    return match.group(1) if match else key


def _groups(keys: list[str]) -> dict[str, np.ndarray | None]:
    """Segment keys ``vid[k]`` make video ``vid`` the group and ``k`` the position;
    unsegmented data (one entry per video) has no groups."""
    parsed = parse_ids(np.array(keys, dtype=str), "csd")
    return {"group": None, "order": None} if parsed is None else \
        {"group": parsed[0], "order": parsed[1]}


def _order(key: str) -> tuple[str, int]:
    match = _SEGMENT.fullmatch(key)
    return (match.group(1), int(match.group(2))) if match else (key, -1)


class Sequence:
    """One open computational sequence: its root name, segment keys and metadata."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.file = h5py.File(path, "r")
        except OSError as e:
            raise DataError(path, f"not a readable HDF5 file ({e})") from None
        try:
            self.root, self.data = self._open()
        except DataError:
            self.close()
            raise
        except LINK_ERRORS as e:
            self.close()
            raise DataError(path, f"cannot follow the file's structure ({e})") from None

    def _open(self) -> tuple[str, h5py.Group]:
        roots = list(self.file.keys())
        if len(roots) != 1 or not isinstance(self.file[roots[0]], h5py.Group):
            raise DataError(self.path, f"not a computational sequence: expected one root "
                            f"group, found {roots}")
        data = self.file[roots[0]].get("data")
        if not isinstance(data, h5py.Group):
            raise DataError(self.path, "not a computational sequence: no 'data' group",
                            f"{roots[0]}/data")
        return roots[0], data

    def __enter__(self) -> Sequence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def keys(self) -> list[str]:
        try:
            return list(self.data.keys())
        except LINK_ERRORS as e:
            raise DataError(self.path, f"cannot list the segments ({e})",
                            f"{self.root}/data") from None

    def features(self, key: str, max_rows: int | None = None) -> np.ndarray:
        """``features`` of one segment, ``(m, n)`` in its stored dtype (first ``max_rows``)."""
        where = f"{self.root}/data/{key}/features"
        try:
            group = self.data.get(key)
            dataset = group.get("features") if isinstance(group, h5py.Group) else None
        except LINK_ERRORS as e:
            raise DataError(self.path, f"cannot follow the file's structure ({e})",
                            where) from None
        if not isinstance(dataset, h5py.Dataset):
            raise DataError(self.path, "missing", where)
        if dataset.ndim != 2:
            raise DataError(self.path, f"expected 2 dimensions (m, n), got shape "
                            f"{dataset.shape}", where)
        if dataset.dtype.kind not in "biuf":
            raise DataError(self.path, f"expected numbers, got dtype {dataset.dtype}", where)
        try:
            return np.asarray(dataset[:max_rows])
        except (OSError, ValueError, TypeError) as e:
            raise DataError(self.path, f"cannot read ({e})", where) from None

    def dimension_names(self) -> list[str] | None:
        """The ``dimension names`` metadata, when it is a JSON list of strings."""
        try:
            meta = self.file[self.root].get("metadata")
            item = meta.get("dimension names") if isinstance(meta, h5py.Group) else None
        except LINK_ERRORS:
            return None
        if not isinstance(item, h5py.Dataset) or item.size < 1:
            return None
        try:
            raw = item[()].reshape(-1)[0] if item.shape else item[()]
            names = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        except (ValueError, TypeError, OSError):
            return None
        if isinstance(names, list) and all(isinstance(s, str) for s in names):
            return names
        return None


def _folds(path: Path) -> dict[str, list[str]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "folds file is missing (JSON {\"train\": [video ids], "
                        "\"valid\": [...], \"test\": [...]})") from None
    except (OSError, ValueError) as e:
        raise DataError(path, f"not a readable JSON folds file ({e})") from None
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object of split -> list of video ids")
    folds = {}
    for split in ("train", "valid", "test"):
        if split not in raw:
            if split == "valid":
                continue
            raise DataError(path, f"split '{split}' is missing", split)
        ids = raw[split]
        if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
            raise DataError(path, "expected a list of video id strings", split)
        folds[split] = ids
    return folds


def _labels(seq: Sequence, keys: list[str], columns: list[int]) -> np.ndarray:
    """``(N, len(columns))`` labels; a segment with several label rows gets their mean."""
    rows = []
    for key in keys:
        y = seq.features(key)
        if y.shape[0] == 0:
            raise DataError(seq.path, "no label rows", f"{seq.root}/data/{key}/features")
        if y.shape[1] <= max(columns):
            raise DataError(seq.path, f"has {y.shape[1]} label columns; label_columns asks "
                            f"for column {max(columns)}", f"{seq.root}/data/{key}/features")
        rows.append(y.mean(axis=0)[columns])
    return np.asarray(rows, dtype=np.float32).reshape(len(keys), len(columns))


def _modality(seq: Sequence, keys: list[str], max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Segments right-padded with zeros (or cut) to ``max_steps``, and their lengths."""
    parts = [seq.features(key, max_steps) for key in keys]
    width = parts[0].shape[1]
    if width == 0:
        raise DataError(seq.path, "segments have no features", f"{seq.root}/data/{keys[0]}"
                        "/features")
    for key, part in zip(keys, parts, strict=True):
        if part.shape[1] != width:
            raise DataError(seq.path, f"feature width {part.shape[1]} differs from "
                            f"{width}", f"{seq.root}/data/{key}/features")
    x = np.zeros((len(keys), max_steps, width), dtype=np.result_type(*parts))
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    for i, part in enumerate(parts):
        x[i, : len(part)] = part
    return x, lengths


def _files(folder: Path, features: dict[str, str] | None, labels: str | None,
           folds: str | None) -> tuple[dict[str, Path], Path, Path]:
    if not folder.is_dir():
        raise DataError(folder, "the csd format reads a folder holding one <modality>.csd per "
                        f"modality, {LABELS_FILE} and {FOLDS_FILE} (or files named in the "
                        "config's [data.csd] table, relative to that folder)")
    if features:
        files = {m: folder / name for m, name in features.items()}
    else:
        rank = {m: i for i, m in enumerate(MODALITY_ORDER)}
        found = sorted((p for p in folder.glob("*.csd") if p.name != LABELS_FILE),
                       key=lambda p: (rank.get(p.stem, len(rank)), p.stem))
        files = {p.stem: p for p in found}
    if not files:
        raise DataError(folder, "no <modality>.csd feature files")
    for m, file in files.items():
        if not file.is_file():
            raise DataError(file, f"feature file of modality '{m}' is missing")
    label_file = folder / (labels or LABELS_FILE)
    if not label_file.is_file():
        raise DataError(label_file, "label sequence is missing")
    return files, label_file, folder / (folds or FOLDS_FILE)


def load_csd(path: Path, features: dict[str, str] | None = None, labels: str | None = None,
             folds: str | None = None, max_steps: int = 50,
             label_columns: list[int] | None = None, valid_fraction: float = 0.1,
             seed: int = 0) -> MultimodalDataset:
    """Read a folder of computational sequences.

    ``features`` maps modality -> file, ``labels``/``folds`` name the other two files
    (defaults: every ``<modality>.csd``, ``labels.csd``, ``folds.json``). Each segment is
    cut or zero-padded to ``max_steps``. ``label_columns`` picks label columns (default
    ``[0]``: sentiment on MOSI/MOSEI); several columns make a multi-target regression
    (MOSEI's 7 columns, POM's traits).
    """
    if max_steps < 1:
        raise DataError(path, f"max_steps must be >= 1, got {max_steps}", "max_steps")
    columns = list(label_columns) if label_columns else [0]
    if min(columns) < 0:
        raise DataError(path, f"label columns must be >= 0, got {columns}", "label_columns")
    files, label_file, folds_file = _files(path, features, labels, folds)
    fold_ids = _folds(folds_file)
    split_of = {vid: split for split, vids in fold_ids.items() for vid in vids}

    splits = {}
    with ExitStack() as stack:
        seq = stack.enter_context(Sequence(label_file))
        opened = {m: stack.enter_context(Sequence(f)) for m, f in files.items()}
        names = seq.dimension_names()
        available = set.intersection(*(set(s.keys()) for s in opened.values()))
        by_split: dict[str, list[str]] = {}
        incomplete = 0
        for key in seq.keys():
            split = split_of.get(_video(key))
            if split is not None and key in available:
                by_split.setdefault(split, []).append(key)
            elif split is not None:
                incomplete += 1
        if incomplete:
            warn(f"{path}: left out {incomplete} labelled segments that some modality lacks")
        for split in fold_ids:
            ks = sorted(by_split.get(split, []), key=_order)
            if not ks:
                if split == "valid":
                    continue
                raise DataError(label_file, f"no segment of the '{split}' videos in "
                                f"{folds_file.name} has labels and every modality", split)
            y = _labels(seq, ks, columns)
            feats, lengths = {}, {}
            for m, s in opened.items():
                feats[m], lengths[m] = _modality(s, ks, max_steps)
            splits[split] = Split(features=feats, labels=y[:, 0] if len(columns) == 1 else y,
                                  lengths=lengths, ids=np.array(ks, dtype=str),
                                  **_groups(ks))
    label_names = None
    if len(columns) > 1:
        label_names = [names[c] if names and len(names) > c else f"label{c}" for c in columns]
    return MultimodalDataset(
        splits=assemble(splits, folds_file, valid_fraction, seed), task="regression",
        modalities=list(files), label_names=label_names, name=path.name, source=str(path))


FORMAT = register_format(Format("csd", _sniff, load_csd))

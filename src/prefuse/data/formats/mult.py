"""MulT's processed pickles (``mosi_data.pkl``, ``mosei_senti_data.pkl``, ``iemocap_data.pkl``
and the unaligned ``*_data_noalign.pkl``); docs/formats.md describes them.

A dict of splits, each with ``text``, ``audio``, ``vision`` ``(N, T, D)`` (often float64,
padded on the left), ``labels`` and an optional ``id``. Labels ``(N, 1, 1)`` are sentiment
in [-3, 3] (regression); ``(N, 4, 2)`` are IEMOCAP's emotions, last axis one-hot with index 1
meaning present (multilabel). Ids ``(N, 3)`` (video, start, end) make the video the group
and the start time the order; ids ``(N,)`` of the form ``<video>_<n>`` group as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import MultimodalDataset, Split
from ..groups import parse_ids, rank_within
from ..safe_pickle import load_pickle, looks_like_pickle
from .common import assemble, entry, features, file_markers, infer_lengths, mapping, strings
from .mmsa import MMSA_MARKERS, PICKLE_KEYS
from .registry import Format, register_format

MODALITIES = ("text", "audio", "vision")
IEMOCAP_EMOTIONS = ["Neutral", "Happy", "Sad", "Angry"]


def _sniff(path: Path) -> bool:
    # One streaming pass over the file (shared with MMSA's sniff); --format skips it.
    if not looks_like_pickle(path):
        return False
    found = file_markers(path, PICKLE_KEYS)
    return b"labels" in found and not found & set(MMSA_MARKERS)


def _labels(value: object, n: int, path: Path, key: str) -> tuple[str, np.ndarray]:
    """``(task, labels)`` from MulT's sentiment or emotion layout."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise DataError(path, "expected a numeric array of labels", key)
    if value.shape[:1] != (n,):
        raise DataError(path, f"has {value.shape[0] if value.ndim else 0} labels but the "
                        f"modalities have {n} samples", key)
    if value.ndim == 3 and value.shape[2] == 2 and value.shape[1] > 1:
        if not np.isin(value, (0, 1)).all() or not (value.sum(axis=2) == 1).all():
            raise DataError(path, "emotion labels (N, K, 2) must be one-hot on the last axis",
                            key)
        return "multilabel", value.argmax(axis=2).astype(np.int64)
    if value.size == n:  # (N,), (N, 1) or (N, 1, 1) sentiment
        return "regression", value.reshape(n).astype(np.float32)
    raise DataError(path, f"labels of shape {value.shape}: expected (N, 1, 1) sentiment or "
                    "(N, K, 2) one-hot emotions", key)


def _split(raw: object, name: str, path: Path) -> tuple[str, Split]:
    data = mapping(raw, path, name)
    feats, lengths = {}, {}
    for m in MODALITIES:
        key = f"{name}/{m}"
        x = features(entry(data, m, path, key, "modality"), path, key)
        if x.ndim == 3:
            x, lengths[m] = infer_lengths(x)
        feats[m] = x
    n = feats["text"].shape[0]
    for m, x in feats.items():
        if x.shape[0] != n:
            raise DataError(path, f"has {x.shape[0]} samples but text has {n}", f"{name}/{m}")
    task, labels = _labels(entry(data, "labels", path, f"{name}/labels"), n, path,
                           f"{name}/labels")
    ids = strings(data["id"], n, path, f"{name}/id") if "id" in data else None
    group, order = _groups(data.get("id"), ids, n, path, f"{name}/id")
    return task, Split(features=feats, labels=labels, lengths=lengths, ids=ids,
                       group=group, order=order)


def _groups(raw: object, ids: np.ndarray | None, n: int, path: Path,
            key: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Video and position from the ids: columns (video, start, ...), ordered by start
    time (file order where a start is not a number), or ids ``<video>_<n>``."""
    if ids is None:
        return None, None
    columns = np.asarray(raw).reshape(n, -1) if np.ndim(raw) == 2 else None
    if columns is None or columns.shape[1] < 2:
        return parse_ids(ids, "numbered") or (None, None)
    group = strings(columns[:, 0], n, path, key)
    try:
        start = strings(columns[:, 1], n, path, key).astype(np.float64)
    except ValueError:
        start = None
    return group, rank_within(group, start)


def load_mult(path: Path, valid_fraction: float = 0.1, seed: int = 0) -> MultimodalDataset:
    """Read a MulT pickle through the restricted unpickler."""
    top = mapping(load_pickle(path), path, None)
    splits, tasks = {}, {}
    for name in ("train", "valid", "test"):
        if name in top:
            tasks[name], splits[name] = _split(top[name], name, path)
    splits = assemble(splits, path, valid_fraction, seed)
    task = tasks["train"]
    for name, t in tasks.items():
        if t != task or splits[name].labels.shape[1:] != splits["train"].labels.shape[1:]:
            raise DataError(path, f"label layout {splits[name].labels.shape[1:]} ({t}) differs "
                            f"from train's", f"{name}/labels")
    names = None
    if task == "multilabel":
        k = splits["train"].labels.shape[1]
        names = IEMOCAP_EMOTIONS if k == 4 else [f"label{i}" for i in range(k)]
    return MultimodalDataset(splits=splits, task=task, modalities=list(MODALITIES),
                             label_names=names, name=path.stem, source=str(path))


FORMAT = register_format(Format("mult", _sniff, load_mult))

"""MMSA's feature pickles (``aligned_50.pkl``, ``unaligned_50.pkl``, SIMS ``unaligned_39.pkl``);
docs/formats.md describes them.

A dict of splits, each with BERT ``text`` features ``(N, L, 768)``, ``text_bert`` token
ids/mask/segments ``(N, 3, L)``, ``audio`` and ``vision`` ``(N, T, d)``, optional
``audio_lengths``/``vision_lengths``, ``regression_labels`` ``(N,)``, ``raw_text`` and
``id`` (``video$_$clip``: the video is the sample's group, the clip its position). The
BERT features are the text modality; labels are the regression labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import MultimodalDataset, Split
from ..groups import parse_ids
from ..safe_pickle import load_pickle, looks_like_pickle
from .common import (
    assemble,
    entry,
    features,
    file_markers,
    given_lengths,
    infer_lengths,
    mapping,
    strings,
)
from .registry import Format, register_format

MODALITIES = ("text", "audio", "vision")
# Keys only MMSA's pickles hold: they tell its files from MulT's. Both formats' sniffs
# look for the same needles, so one cached pass over a file answers both.
MMSA_MARKERS = (b"regression_labels", b"text_bert", b"raw_text")
PICKLE_KEYS = (b"labels", *MMSA_MARKERS)


def _sniff(path: Path) -> bool:
    return looks_like_pickle(path) and bool(file_markers(path, PICKLE_KEYS) & set(MMSA_MARKERS))


def _text_lengths(data: Mapping, x: np.ndarray, path: Path, key: str) -> np.ndarray | None:
    """Token counts from ``text_bert``'s attention mask (row 1), when it fits ``x``.

    BERT features of padding tokens are not zero, so the mask, not zero rows, tells
    where the text ends.
    """
    bert = data.get("text_bert")
    if not isinstance(bert, np.ndarray) or bert.ndim != 3 or bert.shape[1] != 3 \
            or bert.shape[0] != x.shape[0] or x.ndim != 3 or bert.shape[2] != x.shape[1]:
        return None
    return given_lengths(bert[:, 1, :].sum(axis=1), x, path, key)


def _split(raw: object, name: str, path: Path) -> Split:
    data = mapping(raw, path, name)
    labels_key = f"{name}/regression_labels"
    labels = entry(data, "regression_labels", path, labels_key)
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "biuf" \
            or labels.ndim not in (1, 2) or labels.size != labels.shape[0]:
        raise DataError(path, "expected numeric regression labels of shape (N,)", labels_key)
    labels = labels.reshape(-1).astype(np.float32)
    n = len(labels)
    feats, lengths = {}, {}
    for m in MODALITIES:
        key = f"{name}/{m}"
        x = features(entry(data, m, path, key, "modality"), path, key)
        if x.shape[0] != n:
            raise DataError(path, f"has {x.shape[0]} samples but regression_labels has {n}",
                            key)
        if x.ndim == 3:
            if m in ("audio", "vision") and f"{m}_lengths" in data:
                lengths[m] = given_lengths(data[f"{m}_lengths"], x, path, f"{name}/{m}_lengths")
            elif m == "text" and (from_mask := _text_lengths(data, x, path,
                                                             f"{name}/text_bert")) is not None:
                lengths[m] = from_mask
            else:
                x, lengths[m] = infer_lengths(x)
        feats[m] = x
    ids = strings(data["id"], n, path, f"{name}/id") if "id" in data else None
    text = strings(data["raw_text"], n, path, f"{name}/raw_text") if "raw_text" in data \
        else None
    group, order = (None, None) if ids is None else parse_ids(ids, "mmsa") or (None, None)
    return Split(features=feats, labels=labels, lengths=lengths, ids=ids, text_raw=text,
                 group=group, order=order)


def load_mmsa(path: Path, valid_fraction: float = 0.1, seed: int = 0) -> MultimodalDataset:
    """Read an MMSA pickle through the restricted unpickler."""
    top = mapping(load_pickle(path), path, None)
    splits = {name: _split(top[name], name, path) for name in ("train", "valid", "test")
              if name in top}
    return MultimodalDataset(splits=assemble(splits, path, valid_fraction, seed),
                             task="regression", modalities=list(MODALITIES),
                             name=path.stem, source=str(path))


FORMAT = register_format(Format("mmsa", _sniff, load_mmsa))

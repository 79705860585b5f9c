"""Clean-up every loader gets: non-finite values, lengths from padding, a carved valid split."""

from __future__ import annotations

import numpy as np

from ..errors import DataError, warn
from .dataset import MultimodalDataset, Split


def replace_nonfinite(dataset: MultimodalDataset) -> dict[str, int]:
    """Set NaN and +-inf feature values to 0, warn with counts per split/modality.

    COVAREP audio features hold -inf for silent frames; treating them as 0 is what
    MulT and MMSA do. Returns the counts, keyed ``"<split>/<modality>"``.
    """
    counts: dict[str, int] = {}
    for split_name, split in dataset.splits.items():
        for m, x in split.features.items():
            bad = ~np.isfinite(x)
            n_bad = int(bad.sum())
            if n_bad:
                x[bad] = 0.0
                counts[f"{split_name}/{m}"] = n_bad
    if counts:
        listed = ", ".join(f"{k}: {v}" for k, v in counts.items())
        warn(f"{dataset.source}: replaced non-finite feature values with 0 ({listed})")
    return counts


def lengths_from_padding(x: np.ndarray) -> np.ndarray:
    """Valid steps of zero-padded ``(N, T, D)`` sequences, padding on either side.

    A step is padding when all its features are 0. MulT pads on the left, others on the
    right; counting the span from the first to the last non-zero step handles both.
    Sequences that are all zeros get length 0.
    """
    nonzero = np.any(x != 0, axis=2)  # (N, T)
    any_step = nonzero.any(axis=1)
    first = np.argmax(nonzero, axis=1)
    last = x.shape[1] - 1 - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(any_step, last - first + 1, 0).astype(np.int64)


def left_align(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Move each sequence's valid span to the start (models expect right padding)."""
    nonzero = np.any(x != 0, axis=2)
    first = np.where(nonzero.any(axis=1), np.argmax(nonzero, axis=1), 0)
    if not first.any():
        return x
    out = np.zeros_like(x)
    for i in np.flatnonzero(first):
        out[i, : lengths[i]] = x[i, first[i] : first[i] + lengths[i]]
    keep = first == 0
    out[keep] = x[keep]
    return out


def carve_valid(train: Split, fraction: float, seed: int,
                source: object = "<memory>") -> tuple[Split, Split]:
    """Split ``fraction`` of train off as a validation split, with a fixed seed.

    Grouped samples move by whole groups (``fraction`` of the groups), so no video ends
    up in both splits.
    """
    if train.group is not None:
        return _carve_groups(train, fraction, seed, source)
    n = len(train)
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, int(round(n * fraction)))
    return train.subset(np.sort(order[n_valid:])), train.subset(np.sort(order[:n_valid]))


def _carve_groups(train: Split, fraction: float, seed: int,
                  source: object) -> tuple[Split, Split]:
    names = np.unique(train.group)
    if len(names) < 2:
        raise DataError(source, f"cannot carve a validation split from a single "
                        f"group ('{names[0]}'); give the file a valid split", "train/group")
    order = np.random.default_rng(seed).permutation(len(names))
    n_valid = min(len(names) - 1, max(1, int(round(len(names) * fraction))))
    to_valid = np.isin(train.group, names[order[:n_valid]])
    return train.subset(np.flatnonzero(~to_valid)), train.subset(np.flatnonzero(to_valid))

"""Groups of samples: the video or dialogue an utterance belongs to, and its position there.

The utterances of one video are not independent, so a group never spans two splits, and
``order`` (an integer per sample, unique within its group) says where each one sits.
Formats without explicit group keys derive groups from ids (``ID_PATTERNS``).
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import DataError

# How the public releases name an utterance of a video: ``<pattern>`` must match the whole
# id with the video as group 1 and the utterance's number as group 2.
ID_PATTERNS = {
    "mmsa": re.compile(r"(.+)\$_\$(\d+)"),  # MMSA: 03bSnISJMiM$_$11
    "csd": re.compile(r"(.+)\[(\d+)\]"),  # CMU-MultimodalSDK segment keys: 03bSnISJMiM[11]
    "numbered": re.compile(r"(.+)_(\d+)"),  # any other file: <video>_<n>
}


def rank_within(group: np.ndarray, key: np.ndarray | None = None) -> np.ndarray:
    """Each sample's position in its group, sorted by ``key`` (ties, or no key: file order)."""
    n = len(group)
    index = np.arange(n)
    sort = np.lexsort((index, index if key is None else key, group))
    ordered = group[sort]
    starts = np.r_[True, ordered[1:] != ordered[:-1]] if n else np.zeros(0, dtype=bool)
    first = np.maximum.accumulate(np.where(starts, index, 0))
    out = np.empty(n, dtype=np.int64)
    out[sort] = index - first
    return out


def parse_ids(ids: np.ndarray, pattern: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(group, order)`` from ids that all match ``ID_PATTERNS[pattern]``, else None
    (one id that does not fit means the file does not name its utterances that way)."""
    regex = ID_PATTERNS[pattern]
    matches = [regex.fullmatch(str(i)) for i in ids]
    if not matches or not all(matches):
        return None
    group = np.array([m.group(1) for m in matches], dtype=str)
    order = np.array([int(m.group(2)) for m in matches], dtype=np.int64)
    return group, order


def group_sizes(group: np.ndarray) -> np.ndarray:
    """How many samples each group holds (groups in sorted order)."""
    return np.unique(group, return_counts=True)[1]


def check_split_groups(source: str, split_name: str, group: np.ndarray | None,
                       order: np.ndarray | None, n: int) -> None:
    """Shapes of one split's ``group``/``order``, and no position used twice in a group."""
    if group is None:
        if order is not None:
            raise DataError(source, "positions given without groups", f"{split_name}/order")
        return
    if group.shape != (n,):
        raise DataError(source, f"expected {n} groups (shape ({n},)), got shape {group.shape}",
                        f"{split_name}/group")
    if order is None or order.shape != (n,) or not np.issubdtype(order.dtype, np.integer):
        shape = None if order is None else (order.shape, order.dtype)
        raise DataError(source, f"expected {n} integer positions, got {shape}",
                        f"{split_name}/order")
    pairs = np.unique(np.stack([group, order.astype(str)], axis=1), axis=0, return_counts=True)
    twice = pairs[1] > 1
    if twice.any():
        g, o = pairs[0][np.argmax(twice)]
        raise DataError(source, f"group '{g}' has two samples at position {o}",
                        f"{split_name}/order")


def check_no_leak(source: str, groups: dict[str, np.ndarray | None]) -> None:
    """Refuse a group found in two splits: its utterances would be trained on and scored."""
    seen: dict[str, str] = {}
    for split_name, group in groups.items():
        if group is None:
            continue
        for g in np.unique(group):
            if g in seen:
                raise DataError(source, f"group '{g}' is in both '{seen[g]}' and "
                                f"'{split_name}' (a leak: the utterances of one video or "
                                "dialogue must stay in one split)", f"{split_name}/group")
            seen[str(g)] = split_name

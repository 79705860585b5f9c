"""Cutting groups of utterances (a video, a dialogue) into context windows.

A group's utterances, sorted by their position (``order``), are cut into
``ceil(n / W)`` consecutive windows of near-equal length, never more than ``W`` long: a
group of 70 with ``W = 32`` gives windows of 24, 23 and 23 (the first ``n mod k`` windows
are one longer). A group of at most ``W`` utterances is one window. Every utterance is in
exactly one window; a context layer sees a window as a sequence, so equal lengths waste
no padding and no window is left with one or two utterances and almost no context.

A sample whose group is the empty name has none: it is a window of its own, without
context (``prefuse predict`` gives every sample of a split without groups that name).

Batches are made of whole windows (``pack``): windows go into a batch in the order given
while each brings the batch nearer to the batch size than it was without it (a window of
``L`` joins a batch of ``f`` utterances when ``f + L / 2 <= batch_size``). Batches then
hold the batch size on average, as without context, so an epoch takes about as many
steps; stopping short of the batch size instead would leave videos of 25 utterances in
batches of 50 out of 64 and make an epoch a quarter longer. No window is ever cut: one
longer than the batch size is a batch of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ModelConfig


def window_for(model: ModelConfig) -> int:
    """The window length batches are cut to for ``model``: its ``context_window`` when it
    uses context, 0 (no windows, plain batches) when it does not."""
    return model.context_window if model.context != "none" else 0


def window_lengths(n: int, size: int) -> np.ndarray:
    """Lengths of the ``ceil(n / size)`` near-equal windows of a group of ``n``
    utterances: they sum to ``n``, none exceeds ``size``, and they differ by at most one
    (the longer ones first)."""
    if size < 1:
        raise ValueError(f"window size must be at least 1, got {size}")
    count = -(-n // size)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.full(count, n // count, dtype=np.int64)
    lengths[: n % count] += 1
    return lengths


@dataclass(frozen=True)
class WindowPlan:
    """A split cut into windows: window ``k`` holds the samples
    ``index[starts[k]:starts[k + 1]]``, in their order within the group; windows come
    group after group (groups sorted by name), each group's in order."""

    index: np.ndarray
    starts: np.ndarray

    @property
    def count(self) -> int:
        return len(self.starts) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)

    def windows(self) -> list[np.ndarray]:
        """Each window's sample indices, in plan order."""
        return [self.index[a:b] for a, b in zip(self.starts[:-1], self.starts[1:])]


def plan_windows(group: np.ndarray, order: np.ndarray, size: int) -> WindowPlan:
    """The windows of ``size`` (at most) of a split whose samples lie in ``group`` at
    position ``order``; a sample whose group is ``""`` is a window of its own. Ties in
    ``order`` keep file order."""
    n = len(group)
    group = np.asarray(group).astype(str)
    _, codes = np.unique(group, return_inverse=True)
    codes = codes.astype(np.int64).reshape(n)
    alone = group == ""
    if alone.any():
        codes = codes.copy()
        codes[alone] = codes.max(initial=-1) + 1 + np.arange(int(alone.sum()))
    index = np.lexsort((np.arange(n), np.asarray(order, dtype=np.int64), codes))
    sorted_codes = codes[index]
    group_starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) \
        if n else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[group_starts, n])
    lengths = [window_lengths(int(s), size) for s in sizes]
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    return WindowPlan(index=index.astype(np.int64),
                      starts=np.r_[0, np.cumsum(all_lengths)].astype(np.int64))


@dataclass(frozen=True)
class Packing:
    """Windows laid out one after another (``order``: sample indices) and cut into
    batches: batch ``b`` is ``order[bounds[b]:bounds[b + 1]]``. ``window`` is each
    position's window counted over the whole layout, ``slot`` its place in its window."""

    order: np.ndarray
    bounds: np.ndarray
    window: np.ndarray
    slot: np.ndarray
    window_bounds: np.ndarray


def pack(plan: WindowPlan, sequence: np.ndarray, batch_size: int) -> Packing:
    """The windows of ``plan`` taken in the order ``sequence`` (window numbers) and packed
    into batches of whole windows, each as near ``batch_size`` samples as whole windows
    allow (the rule is in the module docstring)."""
    lengths = plan.lengths[sequence]
    order = np.concatenate([plan.index[plan.starts[k]:plan.starts[k + 1]] for k in sequence]) \
        if len(sequence) else np.zeros(0, dtype=np.int64)
    window_bounds = [0]
    filled = 0
    for k, length in enumerate(lengths):
        if filled and filled + length / 2 > batch_size:
            window_bounds.append(k)
            filled = 0
        filled += int(length)
    window_bounds.append(len(lengths))
    starts = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    window = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    slot = np.arange(len(order), dtype=np.int64) - np.repeat(starts[:-1], lengths)
    bounds = starts[np.array(window_bounds, dtype=np.int64)]
    return Packing(order=order.astype(np.int64), bounds=bounds, window=window, slot=slot,
                   window_bounds=np.array(window_bounds, dtype=np.int64))

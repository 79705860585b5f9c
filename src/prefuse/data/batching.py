"""Whole splits as tensors, and batches as index slices: no per-sample Python work per step."""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from .dataset import SPLITS, MultimodalDataset, Split
from .windows import Packing, WindowPlan, pack, plan_windows

if TYPE_CHECKING:
    from ..tasks import Task


@dataclass(frozen=True)
class Windows:
    """Where each utterance of a batch sits in its group's context: the batch holds
    ``count`` whole windows (consecutive utterances of one group, in order), and utterance
    ``i`` is at position ``slot[i]`` of window ``window[i]``; ``size`` is the longest
    window's length. Models see utterances as rows ``(B, ...)`` and use these to scatter
    them to ``(count, size, ...)`` and gather them back."""

    window: torch.Tensor
    slot: torch.Tensor
    count: int
    size: int

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Windows:
        return replace(self, window=fn(self.window), slot=fn(self.slot))


@dataclass
class Batch:
    """A batch: features, lengths and presence ``(B,)`` per modality, and labels.

    ``complete`` names modalities known, on the host, to be present in every sample, so
    that a step can take the whole batch without asking the device (empty: not known);
    ``host_lengths`` are the lengths on the host where the batch knows them (recurrent
    encoders pack sequences there), so they need no copy back from the device.
    """

    x: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    y: torch.Tensor
    complete: frozenset[str] = field(default_factory=frozenset)
    host_lengths: dict[str, torch.Tensor] = field(default_factory=dict)
    windows: Windows | None = None

    def __len__(self) -> int:
        return len(self.y)

    def keeping(self, keep: Collection[str]) -> Batch:
        """This batch with every modality outside ``keep`` marked absent in every sample
        (the modalities in ``keep`` stay as each sample has them)."""
        return replace(self, present={m: p if m in keep else torch.zeros_like(p)
                                      for m, p in self.present.items()},
                       complete=self.complete & frozenset(keep))

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor],
            host: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Batch:
        """This batch with ``fn`` applied to each of its tensors (features, lengths,
        presence, labels) and ``host`` to its host lengths (None: kept as they are)."""
        def each(f, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {m: f(v) for m, v in tensors.items()}

        return replace(self, x=each(fn, self.x), lengths=each(fn, self.lengths),
                       present=each(fn, self.present), y=fn(self.y),
                       host_lengths=self.host_lengths if host is None
                       else each(host, self.host_lengths),
                       windows=None if self.windows is None else self.windows.map(fn))

    def to(self, device: torch.device | str) -> Batch:
        """This batch on ``device``; its host lengths stay on the host."""
        return self.map(lambda t: t.to(device))


class TensorSplit:
    """A split held as tensors in modality order; ``batch(index)`` slices all of them.

    An unlabelled split gets zeros for ``y`` (so that batches know their size) and
    ``labelled`` False: those zeros must never be scored.

    ``context_window`` > 0 cuts each group of the split (``split.group``, which it then
    needs) into windows of at most that many utterances (``windows.plan_windows``), and
    ``batches`` are made of whole windows, each batch carrying its ``Batch.windows``;
    ``restore`` puts the outputs of a pass in fixed order back in sample order. 0: no
    windows, plain batches of utterances.
    """

    def __init__(self, split: Split, modalities: list[str], regression: bool,
                 context_window: int = 0):
        self.plan: WindowPlan | None = None
        if context_window > 0:
            if split.group is None:
                raise ValueError("context windows need the split's groups")
            self.plan = plan_windows(split.group, split.order, context_window)
        self.modalities = list(modalities)
        self.x = {m: torch.from_numpy(np.ascontiguousarray(split.features[m], np.float32))
                  for m in modalities}
        self.lengths = {m: torch.from_numpy(split.lengths[m].astype(np.int64)) for m in modalities}
        # Kept on the host wherever the split goes: see ``Batch.host_lengths``.
        self.host_lengths = self.lengths
        self.present = {m: torch.from_numpy(split.present[m].astype(bool)) for m in modalities}
        self.complete = frozenset(m for m in modalities if split.present[m].all())
        self.labelled = split.labelled
        dtype = np.float32 if regression else np.int64
        y = split.labels.astype(dtype) if split.labelled else np.zeros(len(split), dtype)
        self.y = torch.from_numpy(y)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def device(self) -> torch.device:
        return self.y.device

    def to(self, device: torch.device | str) -> TensorSplit:
        """This split with every tensor on ``device`` (itself if they are there already),
        so that batches are sliced where the model runs, with no copy per step."""
        if self.y.device == torch.device(device):
            return self
        moved = copy.copy(self)
        moved.x = {m: v.to(device) for m, v in self.x.items()}
        moved.lengths = {m: v.to(device) for m, v in self.lengths.items()}
        moved.present = {m: v.to(device) for m, v in self.present.items()}
        moved.y = self.y.to(device)
        return moved

    def batch(self, index: torch.Tensor, host_index: torch.Tensor | None = None) -> Batch:
        """The samples at ``index``; ``host_index``, the same index on the host where
        ``index`` is not, gives the batch its ``host_lengths`` without a copy from the
        device."""
        lengths = {m: v[index] for m, v in self.lengths.items()}
        if self.device.type == "cpu":
            host_lengths = lengths
        else:
            if host_index is None and index.device.type == "cpu":
                host_index = index
            host_lengths = {} if host_index is None else \
                {m: v[host_index] for m, v in self.host_lengths.items()}
        return Batch(
            x={m: v[index] for m, v in self.x.items()},
            lengths=lengths,
            present={m: v[index] for m, v in self.present.items()},
            y=self.y[index],
            complete=self.complete,
            host_lengths=host_lengths,
        )

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                drop_modality: float = 0.0) -> Iterator[Batch]:
        """Batches in order, or shuffled by ``generator``.

        With context windows, batches hold whole windows, at most ``batch_size`` samples
        (a longer window is a batch of its own): ``generator`` shuffles the windows, not
        the samples, and without it the windows come in plan order (group by group), which
        ``restore`` undoes.

        ``drop_modality`` masks each present modality of each sample with that
        probability (keeping at least one), to train for missing modalities.
        """
        n = len(self)
        layout = None
        if self.plan is None:
            # Drawn on the CPU wherever the data lives: the same seed gives the same order
            # on every device.
            host_order = torch.randperm(n, generator=generator) if generator is not None \
                else torch.arange(n)
            parts = [slice(start, start + batch_size) for start in range(0, n, batch_size)]
        else:
            sequence = torch.randperm(self.plan.count, generator=generator).numpy() \
                if generator is not None else np.arange(self.plan.count)
            layout = _Layout(pack(self.plan, sequence, batch_size), self.device)
            host_order, parts = layout.host_order, layout.parts
        order = host_order.to(self.device)
        if drop_modality > 0:
            # The epoch's masking draws at once, after the order: the numbers that drawing
            # batch by batch gives, copied to the device once rather than once a step.
            draws = torch.rand((n, len(self.modalities)), generator=generator).to(self.device)
        for b, part in enumerate(parts):
            batch = self.batch(order[part], host_order[part])
            if layout is not None:
                batch.windows = layout.windows(b)
            if drop_modality > 0:
                batch.present = _drop(batch.present, draws[part], drop_modality)
                batch.complete = frozenset()
            yield batch

    def restore(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows``, one per sample in the order of a pass over ``batches`` without a
        generator, in the split's sample order (itself without context windows)."""
        if self.plan is None:
            return rows
        out = torch.empty_like(rows)
        out[torch.from_numpy(self.plan.index).to(rows.device)] = rows
        return out


class _Layout:
    """One pass's windows packed into batches (``windows.pack``), the window and slot of
    every position on the split's device, copied there once per pass."""

    def __init__(self, packing: Packing, device: torch.device):
        self.host_order = torch.from_numpy(packing.order)
        self.parts = [slice(int(a), int(b))
                      for a, b in zip(packing.bounds[:-1], packing.bounds[1:])]
        self.window = torch.from_numpy(packing.window).to(device)
        self.slot = torch.from_numpy(packing.slot).to(device)
        self.window_bounds = packing.window_bounds.tolist()
        self.longest = [int(packing.slot[part].max()) + 1 if part.stop > part.start else 0
                        for part in self.parts]

    def windows(self, b: int) -> Windows:
        """Batch ``b``'s windows, numbered from 0 within the batch."""
        part = self.parts[b]
        first, last = self.window_bounds[b], self.window_bounds[b + 1]
        return Windows(window=self.window[part] - first, slot=self.slot[part],
                       count=last - first, size=self.longest[b])


def to_device_async(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host tensor ``t`` on ``device``; to a GPU through pinned memory, so the host goes on
    without waiting for the kernels queued before the copy."""
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def _drop(present: dict[str, torch.Tensor], draws: torch.Tensor,
          p: float) -> dict[str, torch.Tensor]:
    """``present`` with each modality masked where its uniform draw is below ``p``; a
    sample left with none keeps what it had."""
    names = list(present)
    stacked = torch.stack([present[m] for m in names], dim=1)
    keep = (draws >= p) & stacked
    # A select, not a masked write: that would wait for the device to count the rows.
    keep = torch.where(keep.any(dim=1, keepdim=True), keep, stacked)
    return {m: keep[:, i] for i, m in enumerate(names)}


class Tensors:
    """The splits as tensors, built once per experiment; a split the dataset lacks is
    None (tuning's datasets hold no test split)."""

    def __init__(self, dataset: MultimodalDataset, task: Task, context_window: int = 0):
        regression = task.kind == "regression"
        self.train, self.valid, self.test = (
            TensorSplit(dataset[s], dataset.modalities, regression, context_window)
            if s in dataset.splits else None for s in SPLITS)

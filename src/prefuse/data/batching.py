"""Whole splits as tensors, and batches as index slices: no per-sample Python work per step."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .dataset import SPLITS, MultimodalDataset, Split

if TYPE_CHECKING:
    from ..tasks import Task


@dataclass
class Batch:
    """A batch: features, lengths and presence ``(B,)`` per modality, and labels.

    ``complete`` names modalities known, on the host, to be present in every sample, so
    that a step can take the whole batch without asking the device (empty: not known).
    """

    x: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    y: torch.Tensor
    complete: frozenset[str] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            x={k: v.to(device) for k, v in self.x.items()},
            lengths={k: v.to(device) for k, v in self.lengths.items()},
            present={k: v.to(device) for k, v in self.present.items()},
            y=self.y.to(device),
            complete=self.complete,
        )


class TensorSplit:
    """A split held as tensors in modality order; ``batch(index)`` slices all of them.

    An unlabelled split gets zeros for ``y`` (so that batches know their size) and
    ``labelled`` False: those zeros must never be scored.
    """

    def __init__(self, split: Split, modalities: list[str], regression: bool):
        self.modalities = list(modalities)
        self.x = {m: torch.from_numpy(np.ascontiguousarray(split.features[m], np.float32))
                  for m in modalities}
        self.lengths = {m: torch.from_numpy(split.lengths[m].astype(np.int64)) for m in modalities}
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

    def batch(self, index: torch.Tensor) -> Batch:
        return Batch(
            x={m: v[index] for m, v in self.x.items()},
            lengths={m: v[index] for m, v in self.lengths.items()},
            present={m: v[index] for m, v in self.present.items()},
            y=self.y[index],
            complete=self.complete,
        )

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                drop_modality: float = 0.0) -> Iterator[Batch]:
        """Batches in order, or shuffled by ``generator``.

        ``drop_modality`` masks each present modality of each sample with that
        probability (keeping at least one), to train for missing modalities.
        """
        n = len(self)
        # Drawn on the CPU wherever the data lives: the same seed gives the same order on
        # every device.
        order = torch.randperm(n, generator=generator) if generator is not None \
            else torch.arange(n)
        order = order.to(self.device)
        if drop_modality > 0:
            # The epoch's masking draws at once, after the order: the numbers that drawing
            # batch by batch gives, copied to the device once rather than once a step.
            draws = torch.rand((n, len(self.modalities)), generator=generator).to(self.device)
        for start in range(0, n, batch_size):
            batch = self.batch(order[start:start + batch_size])
            if drop_modality > 0:
                batch.present = _drop(batch.present, draws[start:start + batch_size],
                                      drop_modality)
                batch.complete = frozenset()
            yield batch


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

    def __init__(self, dataset: MultimodalDataset, task: Task):
        regression = task.kind == "regression"
        self.train, self.valid, self.test = (
            TensorSplit(dataset[s], dataset.modalities, regression)
            if s in dataset.splits else None for s in SPLITS)


def presence(modalities: list[str], n: int, keep: set[str]) -> dict[str, torch.Tensor]:
    """A ``present`` override for ``evaluate``: the modalities in ``keep`` present for all
    ``n`` samples, the others masked."""
    return {k: torch.full((n,), k in keep) for k in modalities}

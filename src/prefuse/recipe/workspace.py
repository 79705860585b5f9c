"""What one process trains with: the dataset, its task, its splits as tensors on the
device, and the runtime they were placed for.

A run, each ``--jobs`` worker, each tune worker's trials and the bench build it here, so
they cannot drift apart (trials once skipped the placement and copied every batch from
the host while a run kept its splits on the GPU). The recipe's stages take it whole:
what they train on and where.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.batching import Tensors
from ..data.dataset import MultimodalDataset
from ..engine import runtime as runtimes
from ..tasks import Task, task_for


@dataclass
class Workspace:
    """A process's dataset, task, device-placed tensors and runtime."""

    dataset: MultimodalDataset
    task: Task
    data: Tensors
    runtime: runtimes.Runtime


def build_workspace(dataset: MultimodalDataset, runtime: runtimes.Runtime,
                    test: bool = True, context_window: int = 0) -> Workspace:
    """``dataset``'s workspace on ``runtime``: its splits as tensors, each placed on the
    runtime's device when it fits (``runtime.place_splits``), cut into context windows of
    ``context_window`` (0: none; ``windows.window_for`` a config's model). ``test=False``
    leaves the test split out (None), so nothing that trains in this process can score
    it."""
    task = task_for(dataset)
    data = Tensors(dataset, task, context_window)
    if not test:
        data.test = None
    runtimes.place_splits(data, runtime)
    return Workspace(dataset, task, data, runtime)

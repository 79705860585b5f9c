"""The seam of the training step: ``Method`` is the plain step, and every balancing method
(``prefuse.methods``) is a subclass that overrides what it changes. It lives here, beside
the step that calls it, so that the engine needs nothing from the methods built on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import SearchParam
from ..data.batching import Batch, TensorSplit
from ..models.outputs import PLAIN, NetworkOutput, Request
from ..tasks import Task
from .runtime import Runtime


@dataclass
class NoOptions:
    """A method without options."""


class Method:
    """The plain step: the task's loss on the fused logits, gradients untouched.

    Subclasses override what they change. Class attributes: ``Options`` (the dataclass of
    the method's ``[methods.<name>]`` table), ``request`` (extra outputs of forward),
    ``uses_stage1`` (the method needs the stage-1 networks, given as ``stage1``; their
    epochs then count against the arm's budget) and ``search`` (the range ``prefuse tune``
    searches for each of its own options, around the published default) and
    ``min_modalities`` (the fewest modalities the data must have for the method to work).
    ``modalities`` are the network's, in the order of its outputs' modality axis.
    """

    Options: ClassVar[type] = NoOptions
    request: ClassVar[Request] = PLAIN
    uses_stage1: ClassVar[bool] = False
    search: ClassVar[dict[str, SearchParam]] = {}
    min_modalities: ClassVar[int] = 1
    # Where ``fit`` trains: set by ``start`` (subclasses overriding it call it first).
    runtime: Runtime | None = None

    def __init__(self, task: Task, options=None, *, modalities: tuple[str, ...] = (),
                 stage1: dict[str, nn.Module] | None = None):
        self.task = task
        self.options = options if options is not None else self.Options()
        self.modalities = tuple(modalities)
        self.stage1 = stage1 or {}

    def start(self, model: nn.Module, seed: int, runtime: Runtime) -> None:
        """Called by ``fit`` before its first step, with the network it trains (never a DDP
        wrapper), its seed and the runtime it trains on (for a method that sums its own
        statistics over the ranks); a resumed fit restores ``state_dict`` after this
        call."""
        self.runtime = runtime

    def loss(self, out: NetworkOutput, batch: Batch) -> torch.Tensor:
        """The loss to back-propagate."""
        return self.task.loss(out.logits, batch.y)

    def after_backward(self, model: nn.Module) -> None:
        """Change gradients (already averaged across ranks) before clipping and the step."""

    def end_epoch(self, epoch: int, model: nn.Module, valid: TensorSplit) -> dict[str, float]:
        """Values to log for the epoch (and a chance to update state)."""
        return {}

    def state_dict(self) -> dict:
        """State that resuming needs: tensors and plain containers only."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` gave."""

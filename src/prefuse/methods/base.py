"""Training methods: what changes in the training step beyond "fused loss, backward, step".

The step (``prefuse.engine.step.train_step``) runs, in order::

    out  = network(batch, method.request)      # named outputs, extras as requested
    loss = method.loss(out, batch)             # fused loss plus whatever the method adds
                                               # (these two: step.Objective's forward)
    loss.backward()
    method.after_backward(model)               # per-encoder gradient changes
    clip gradients; optimizer step

``fit`` first calls ``method.start(model, seed)`` (a method that needs the network's
parameters inside ``loss``, or a seeded generator, takes them there), and after every
epoch ``method.end_epoch(epoch, model, valid)`` may update the method's state and return
values that ``history.csv`` keeps under their own names.

Adding a method is one file in this package, imported by ``methods/__init__.py``::

    from dataclasses import dataclass
    from .base import METHODS, Method

    @dataclass
    class HalfOptions:
        weight: float = 0.5            # defaults: the source's, cited in the docstring

    @METHODS.register("half")
    class Half(Method):
        \"\"\"The fused loss scaled by ``weight`` (source: ...).\"\"\"

        Options = HalfOptions

        def loss(self, out, batch):
            return self.options.weight * self.task.loss(out.logits, batch.y)

It is then an arm (``pretrained+attention+half``) and part of ``--arms balance``; its
options are the ``[methods.half]`` table of the run config.

Rules a method keeps: everything it reads from the network comes out of the one forward
(declare it in ``request``), so DistributedDataParallel averages every gradient (a loss
may leave parameters out on some steps, such as the head of a modality the batch lacks:
DDP looks for them from the loss, see ``step.Objective``); anything
it computes from the batch to change gradients (scores, ratios) is reduced across ranks
with ``prefuse.engine.distributed.sum_all`` so every rank changes its gradients alike;
state that matters for resuming goes through ``state_dict``/``load_state_dict`` as tensors
and plain containers (checkpoints load with ``weights_only=True``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import RunConfig, table_to
from ..data.batching import Batch
from ..engine import distributed
from ..engine.method import Method
from ..errors import ConfigError
from ..models.outputs import NetworkOutput
from ..registry import Registry
from ..tasks import Task


class EpochMean:
    """The epoch's sample-weighted mean of a value logged every step, over all ranks.

    Kept as a tensor on the value's device, so logging never waits for the device; every
    rank must call ``add`` at every step (``mean`` sums across ranks).
    """

    def __init__(self):
        self.total: torch.Tensor | float = 0.0
        self.count = 0

    def add(self, value: torch.Tensor, count: int) -> None:
        """Log a batch's mean ``value`` over ``count`` samples."""
        self.total = self.total + value.detach() * count
        self.count += count

    def mean(self) -> float:
        """The mean so far over every rank; then start again at zero."""
        total, count = distributed.sum_all([float(self.total), float(self.count)])
        self.total, self.count = 0.0, 0
        return total / count if count else float("nan")


METHODS: Registry[type[Method]] = Registry("method")
METHODS.register("none")(Method)


def modality_losses(task: Task, out: NetworkOutput, batch: Batch) -> dict[str, torch.Tensor]:
    """The task's loss on each modality's ``unimodal_logits``, over the samples that have
    that modality (zero for a modality missing from the whole batch).

    Only a batch whose presence the host does not know (``Batch.complete``) waits for the
    device, to pick the samples: a mean over a subset chosen on the device is not the
    same number as the task's loss on that subset."""
    losses = {}
    for modality, logits in out.unimodal_logits.items():
        present = batch.present[modality]
        if modality in batch.complete or present.all():
            losses[modality] = task.loss(logits, batch.y)
        elif present.any():
            losses[modality] = task.loss(logits[present], batch.y[present])
        else:
            losses[modality] = out.logits.new_zeros(())
    return losses


def unimodal_losses(task: Task, out: NetworkOutput, batch: Batch) -> torch.Tensor:
    """The sum over modalities of ``modality_losses``."""
    return sum(modality_losses(task, out, batch).values(), out.logits.new_zeros(()))


def build_method(name: str, task: Task, config: RunConfig, modalities: list[str],
                 stage1: dict[str, nn.Module] | None = None) -> Method:
    """The registered method ``name`` for a network over ``modalities``, with its options
    from ``config.methods`` (and the stage-1 networks where it uses them)."""
    cls = METHODS.get(name, "arms")
    options = table_to(cls.Options, config.methods.get(name, {}), f"methods.{name}")
    return cls(task, options, modalities=tuple(modalities), stage1=stage1)


def require_positive(field: str, value: float) -> None:
    """A method option that must be > 0: a ``ConfigError`` naming ``field`` otherwise."""
    if not value > 0:
        raise ConfigError(field, f"must be positive, got {value}")


def check_options(config: RunConfig) -> None:
    """Every ``[methods.<name>]`` table names a registered method and fits its options."""
    for name, table in config.methods.items():
        table_to(METHODS.get(name, f"methods.{name}").Options, table, f"methods.{name}")

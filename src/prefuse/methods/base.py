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
    from .base import METHODS, Method, option

    @dataclass
    class HalfOptions:
        # The source's default, cited in the docstring, and the range a config may set.
        weight: float = option(0.5, low=0.0, high=10.0)

    @METHODS.register("half")
    class Half(Method):
        \"\"\"The fused loss scaled by ``weight`` (source: ...).\"\"\"

        Options = HalfOptions

        def loss(self, out, batch):
            return self.options.weight * self.task.loss(out.logits, batch.y)

It is then an arm (``pretrained+attention+half``) and part of ``--arms balance``; its
options are the ``[methods.half]`` table of the run config. Every number option declares
a finite range with ``option``: a config outside it is refused when it is read, naming the
field, before any data is loaded. A method that needs more of the data than one modality
says so in ``min_modalities``; ``check_data`` refuses its arm right after the data is
loaded, before anything trains.

Rules a method keeps: everything it reads from the network comes out of the one forward
(declare it in ``request``), so DistributedDataParallel averages every gradient (a loss
may leave parameters out on some steps, such as the head of a modality the batch lacks:
DDP looks for them from the loss, see ``step.Objective``); anything
it computes from the batch to change gradients (scores, ratios) is reduced across ranks
with ``prefuse.engine.distributed.sum_all`` (on ``self.runtime``, which ``start`` sets)
so every rank changes its gradients alike;
state that matters for resuming goes through ``state_dict``/``load_state_dict`` as tensors
and plain containers (checkpoints load with ``weights_only=True``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import field, fields

import torch
from torch import nn

from ..config import RunConfig, table_to
from ..data.batching import Batch
from ..engine import distributed
from ..engine.method import Method
from ..engine.runtime import Runtime
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

    def mean(self, runtime: Runtime) -> float:
        """The mean so far over every rank of ``runtime``; then start again at zero."""
        total, count = distributed.sum_all([float(self.total), float(self.count)], runtime)
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


def option(default: float, low: float, high: float):
    """A dataclass field for a number option: its default and the finite closed range
    ``[low, high]`` a config may set it to (``check_bounds`` enforces it)."""
    if not (math.isfinite(low) and math.isfinite(high) and low <= default <= high):
        raise ValueError(f"option range [{low}, {high}] must be finite and hold the "
                         f"default {default}")
    return field(default=default, metadata={"bounds": (low, high)})


def check_bounds(options: object, prefix: str) -> None:
    """Every number option of the dataclass ``options`` within its declared range; a
    ``ConfigError`` naming ``prefix.<option>`` otherwise (NaN and inf never fit)."""
    for f in fields(options):
        value = getattr(options, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if "bounds" not in f.metadata:
            raise TypeError(f"{type(options).__name__}.{f.name} declares no range: "
                            "use methods.base.option")
        low, high = f.metadata["bounds"]
        if not low <= value <= high:
            raise ConfigError(f"{prefix}.{f.name}",
                              f"must lie in [{low:g}, {high:g}], got {value}")


def options_for(name: str, table: dict, field_name: str = "arms"):
    """The options of method ``name`` from its ``[methods.<name>]`` table, keys, types
    and ranges checked (an unknown method is a ``ConfigError`` naming ``field_name``)."""
    cls = METHODS.get(name, field_name)
    options = table_to(cls.Options, table, f"methods.{name}")
    check_bounds(options, f"methods.{name}")
    return options


def check_data(methods: Iterable[tuple[str, str]], modalities: list[str],
               source: object) -> None:
    """Each ``(arm, method)`` pair's method gets what it needs of the data (at least its
    ``min_modalities``); a ``ConfigError`` naming ``arms`` and ``source`` otherwise."""
    for arm, name in methods:
        need = METHODS.get(name, "arms").min_modalities
        if len(modalities) < need:
            raise ConfigError("arms", f"{arm}: {name} needs data with at least {need} "
                              f"modalities; {source} has {len(modalities)} "
                              f"({', '.join(modalities)})")


def build_method(name: str, task: Task, config: RunConfig, modalities: list[str],
                 stage1: dict[str, nn.Module] | None = None) -> Method:
    """The registered method ``name`` for a network over ``modalities``, with its options
    from ``config.methods`` (and the stage-1 networks where it uses them)."""
    options = options_for(name, config.methods.get(name, {}))
    check_data([(name, name)], modalities, "the network")
    cls = METHODS.get(name, "arms")
    return cls(task, options, modalities=tuple(modalities), stage1=stage1)


def check_options(config: RunConfig) -> None:
    """Every ``[methods.<name>]`` table names a registered method and fits its options
    (keys, types and each number's range)."""
    for name, table in config.methods.items():
        options_for(name, table, f"methods.{name}")

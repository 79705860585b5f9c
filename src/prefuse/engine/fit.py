"""The training loop: ``fit`` (epochs, early stopping, checkpoints, device,
DistributedDataParallel) around ``step.train_step``.

The model's own optimizer (``configure_optimizer``), gradient clipping, early stopping
on the validation primary metric with patience, the best weights restored at the end.
``FitState`` is where a fit stands after an epoch, what its checkpoint saves.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..config import TrainConfig
from ..data.batching import Tensors
from ..metrics import is_better
from ..tasks import Task
from . import distributed
from .checkpoint import StageCheckpoint, restore_training, training_state
from .evaluation import evaluate
from .guards import check_finite, stops_on_divergence
from .method import Method
from .runtime import Runtime
from .step import Objective, may_skip_parameters, train_step


@dataclass
class FitResult:
    """What ``fit`` returns: the best epoch's validation scores and the per-epoch history."""

    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    device: str = ""


# Called after every epoch with (epoch, model, history row so far); the columns it
# returns join the row, so a later hook sees them.
Hook = Callable[[int, nn.Module, dict], "dict | None"]


@dataclass
class FitState:
    """Where a fit stands after ``epoch``: the best epoch so far (its validation value,
    weights and scores), the epochs since it, the history and the seconds spent. The
    checkpoint saves it beside the model, optimizer, data order, RNG and method state."""

    best_state: dict
    epoch: int = 0
    best_value: float | None = None
    best_epoch: int = 0
    best_valid: dict = field(default_factory=dict)
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def progress(self) -> dict:
        """The fields as the checkpoint's keys (no copies: it writes them at once)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_saved(cls, saved: dict) -> FitState:
        """The state a checkpoint saved with ``progress``."""
        return cls(**{f.name: saved[f.name] for f in fields(cls)})

    def record(self, epoch: int, row: dict, valid: dict[str, float], metric: str,
               model: nn.Module) -> None:
        """Add epoch ``epoch``'s ``row``; keep ``model``'s weights if its ``valid``
        scores are the best on ``metric`` so far."""
        self.epoch = epoch
        self.history.append(row)
        if is_better(metric, valid[metric], self.best_value):
            self.best_value, self.best_epoch, self.best_valid = valid[metric], epoch, valid
            self.best_state = copy.deepcopy(model.state_dict())
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1


@dataclass
class _Training:
    """What every epoch of one fit works with."""

    objective: Objective
    net: nn.Module | None  # the DistributedDataParallel wrapper under torchrun
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    encoders: list[nn.Parameter]
    data: Tensors
    task: Task
    train: TrainConfig
    runtime: Runtime
    desc: str

    @property
    def model(self) -> nn.Module:
        return self.objective.model


def _start(model: nn.Module, method: Method, data: Tensors, task: Task, train: TrainConfig,
           runtime: Runtime, seed: int, desc: str) -> _Training:
    optimizer = model.configure_optimizer(train)
    generator = torch.Generator().manual_seed(seed)
    # Distributed: same seed on all ranks, so each rank can take its slice of each batch.
    distributed.init(runtime)
    model.to(runtime.device)
    objective = Objective(model, method, runtime)
    net = None
    if runtime.distributed:
        net = DistributedDataParallel(objective, find_unused_parameters=may_skip_parameters(
            data.train, train.freeze_epochs, train.modality_dropout))
    method.start(model, seed, runtime)
    encoders = list(model.encoders.parameters()) if hasattr(model, "encoders") else []
    return _Training(objective, net, optimizer, generator, encoders, data, task, train,
                     runtime, desc)


def _train_epoch(t: _Training, epoch: int) -> tuple[float, float]:
    """One pass over the training split: its mean loss and its primary metric."""
    frozen = epoch <= t.train.freeze_epochs
    for p in t.encoders:
        p.requires_grad_(not frozen)
    t.model.train()
    device = next(t.model.parameters()).device
    # Nothing in a step waits for the device: the loss sum, the outputs and the
    # finiteness check are read back once per epoch. The sum is float64, as the
    # Python float it replaces (float32 losses widened), so it is the same number.
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    # The epoch's own outputs give the train metric without a second pass.
    seen_logits, seen_y = [], []
    with stops_on_divergence(t.desc, epoch):
        for batch in t.data.train.batches(t.train.batch_size, t.generator,
                                          t.train.modality_dropout):
            if len(batch) < t.runtime.world_size:  # some rank would get no sample
                continue
            batch = distributed.shard(batch, t.runtime).to(device)
            loss, out = train_step(t.objective, batch, t.optimizer, t.train.grad_clip, t.net)
            seen_logits.append(out.logits)
            seen_y.append(batch.y)
            total += loss.detach().double() * len(batch)
            count += len(batch)
    total, count = distributed.sum_all([float(total), count], t.runtime)
    # A non-finite step loss makes the sum non-finite; checked before anything of
    # this epoch is scored or saved, so the last checkpoint holds finite weights.
    check_finite(total / count, t.desc, epoch)
    predictions, _ = t.task.decode(torch.cat(seen_logits).cpu().numpy())
    return total / count, t.task.metrics(predictions, torch.cat(seen_y).cpu().numpy())[
        t.task.primary]


def _epoch(t: _Training, epoch: int, hooks: Sequence[Hook]) -> tuple[dict, dict]:
    """Train one epoch and score it: its history row and its validation scores."""
    train_loss, train_metric = _train_epoch(t, epoch)
    result = evaluate(t.model, t.data.valid, t.task, t.runtime)
    metric = t.task.primary
    row = {"epoch": epoch, "train_loss": train_loss, "valid_loss": result.loss,
           "train_metric": train_metric, "valid_metric": result.metrics[metric]}
    with stops_on_divergence(t.desc, epoch):
        row.update(t.objective.method.end_epoch(epoch, t.model, t.data.valid))
    for hook in hooks:
        row.update(hook(epoch, t.model, row) or {})
    return row, result.metrics


def fit(model: nn.Module, method: Method | None, data: Tensors, task: Task,
        train: TrainConfig, runtime: Runtime, *, seed: int,
        checkpoint: StageCheckpoint | None = None, hooks: Sequence[Hook] = (),
        desc: str = "train") -> FitResult:
    """Train ``model`` on ``data.train`` for at most ``train.epochs`` epochs; keep the
    best on ``data.valid``.

    ``train`` gives the optimisation (the model's ``configure_optimizer`` reads its
    learning rates), the batch size, patience, clipping, modality dropout and
    ``freeze_epochs`` (the encoders held fixed for the first epochs). Every hook may add
    columns to the epoch's history row. ``method`` (None: the plain step) shapes every
    step and adds its ``end_epoch`` values to the row. Data order comes from ``seed``
    alone. With ``checkpoint``, training continues after its last saved epoch, and every
    epoch is saved, so an interrupted fit resumes to exactly the same result.

    The model moves to ``runtime``'s device and stays there (splits already there are
    sliced in place, see ``runtime.place``); forward passes run under the runtime's
    autocast (bf16 or none), the loss in fp32. Under torchrun (``runtime.distributed``)
    each rank trains a DistributedDataParallel copy on its slice of every batch; the
    model ends identical on all ranks.
    """
    t = _start(model, method or Method(task), data, task, train, runtime, seed, desc)
    state = FitState(best_state=copy.deepcopy(model.state_dict()))
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        restore_training(saved, model, t.optimizer, t.generator)
        t.objective.method.load_state_dict(saved.get("method", {}))
        state = FitState.from_saved(saved)
    earlier, start_time = state.seconds, time.perf_counter()
    # A fit saved just as early stopping ended it has no epochs left.
    first = state.epoch + 1 if state.bad_epochs < train.patience else train.epochs + 1
    bar = tqdm(range(first, train.epochs + 1), desc=desc, leave=False,
               disable=not sys.stderr.isatty() or not runtime.is_main)
    for epoch in bar:
        row, valid = _epoch(t, epoch, hooks)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}",
                        **{task.primary: f"{row['valid_metric']:.3f}"})
        state.record(epoch, row, valid, task.primary, model)
        state.seconds = earlier + time.perf_counter() - start_time
        if checkpoint is not None:
            checkpoint.save(training_state(model, t.optimizer, t.generator,
                                           method=t.objective.method.state_dict(),
                                           **state.progress()))
        if state.bad_epochs >= train.patience:
            break
    for p in t.encoders:
        p.requires_grad_(True)
    model.load_state_dict(state.best_state)
    return FitResult(best_epoch=state.best_epoch, best_valid=state.best_valid,
                     epochs_run=len(state.history),
                     seconds=earlier + time.perf_counter() - start_time,
                     history=state.history, device=str(runtime.device))

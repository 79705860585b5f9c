"""The training loop: ``fit`` (epochs, early stopping, checkpoints, device,
DistributedDataParallel) around ``step.train_step``.

Adam, gradient clipping, early stopping on the validation primary metric with patience,
the best weights restored at the end.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..data.batching import TensorSplit
from ..metrics import is_better
from ..tasks import Task
from . import distributed, runtime
from .checkpoint import StageCheckpoint, restore_training, training_state
from .evaluation import evaluate
from .guards import check_finite, stops_on_divergence
from .method import Method
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


def fit(model: nn.Module, train: TensorSplit, valid: TensorSplit, task: Task, *,
        epochs: int, lr: float, seed: int, batch_size: int = 64, patience: int = 8,
        grad_clip: float = 1.0, weight_decay: float = 0.0, encoder_lr: float = 0.0,
        freeze_epochs: int = 0, modality_dropout: float = 0.0,
        on_epoch: Callable[[int, nn.Module, dict], dict | None] | None = None,
        desc: str = "train", checkpoint: StageCheckpoint | None = None,
        method: Method | None = None) -> FitResult:
    """Train ``model`` for at most ``epochs`` epochs; keep the best on validation.

    ``encoder_lr`` (0 = same as ``lr``) applies to ``model.encoders``; ``freeze_epochs``
    holds the encoders fixed for the first epochs. ``on_epoch(epoch, model, row)`` may
    add columns to the epoch's history row. ``method`` (default: the plain step) shapes
    every step and adds its ``end_epoch`` values to the row. Data order comes from
    ``seed`` alone.
    With ``checkpoint``, training continues after its last saved epoch, and every
    epoch is saved, so an interrupted fit resumes to exactly the same result.

    The model moves to the runtime's device (``runtime.current()``) and stays there
    (splits already there are sliced in place, see ``runtime.place``); forward passes run
    under the runtime's autocast (bf16 or none), the loss in fp32.
    Under torchrun (``distributed.active()``) each rank trains a DistributedDataParallel
    copy on its slice of every batch; the model ends identical on all ranks.
    """
    method = method or Method(task)
    encoder_params = list(model.encoders.parameters()) if hasattr(model, "encoders") else []
    encoder_ids = {id(p) for p in encoder_params}
    other_params = [p for p in model.parameters() if id(p) not in encoder_ids]
    groups = [{"params": other_params, "lr": lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": encoder_lr or lr})
    optimizer = torch.optim.Adam(groups, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    # Distributed: same seed on all ranks, so each rank can take its slice of each batch.
    distributed.init()
    where = runtime.current().device
    model.to(where)
    objective = Objective(model, method)
    net = None
    if distributed.active():
        net = DistributedDataParallel(objective, find_unused_parameters=may_skip_parameters(
            train, freeze_epochs, modality_dropout))
    device = next(model.parameters()).device
    method.start(model, seed)

    metric = task.primary
    best_value: float | None = None
    best_state = copy.deepcopy(model.state_dict())
    best_epoch, best_valid, bad_epochs = 0, {}, 0
    history: list[dict] = []
    first_epoch, earlier_seconds = 1, 0.0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        restore_training(saved, model, optimizer, generator)
        method.load_state_dict(saved.get("method", {}))
        best_value, best_state, best_epoch = saved["best_value"], saved["best_state"], \
            saved["best_epoch"]
        best_valid, bad_epochs, history = saved["best_valid"], saved["bad_epochs"], \
            saved["history"]
        earlier_seconds = saved["seconds"]
        # A fit saved just as early stopping ended it has no epochs left.
        first_epoch = saved["epoch"] + 1 if bad_epochs < patience else epochs + 1
    start_time = time.perf_counter()
    bar = tqdm(range(first_epoch, epochs + 1), desc=desc, leave=False,
               disable=not sys.stderr.isatty() or not distributed.is_main())
    for epoch in bar:
        frozen = epoch <= freeze_epochs
        for p in encoder_params:
            p.requires_grad_(not frozen)
        model.train()
        # Nothing in a step waits for the device: the loss sum, the outputs and the
        # finiteness check are read back once per epoch. The sum is float64, as the
        # Python float it replaces (float32 losses widened), so it is the same number.
        total = torch.zeros((), dtype=torch.float64, device=device)
        count = 0
        # The epoch's own outputs give the train metric without a second pass.
        seen_logits, seen_y = [], []
        with stops_on_divergence(desc, epoch):
            for batch in train.batches(batch_size, generator, modality_dropout):
                if len(batch) < distributed.world_size():  # some rank would get no sample
                    continue
                batch = distributed.shard(batch).to(device)
                loss, out = train_step(objective, batch, optimizer, grad_clip, net)
                seen_logits.append(out.logits)
                seen_y.append(batch.y)
                total += loss.detach().double() * len(batch)
                count += len(batch)
        total, count = distributed.sum_all([float(total), count])
        # A non-finite step loss makes the sum non-finite; checked before anything of
        # this epoch is scored or saved, so the last checkpoint holds finite weights.
        check_finite(total / count, desc, epoch)
        result = evaluate(model, valid, task)
        train_predictions, _ = task.decode(torch.cat(seen_logits).cpu().numpy())
        train_metric = task.metrics(train_predictions, torch.cat(seen_y).cpu().numpy())[metric]
        row = {"epoch": epoch, "train_loss": total / count, "valid_loss": result.loss,
               "train_metric": train_metric, "valid_metric": result.metrics[metric]}
        with stops_on_divergence(desc, epoch):
            row.update(method.end_epoch(epoch, model, valid))
        if on_epoch is not None:
            row.update(on_epoch(epoch, model, row) or {})
        history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", **{metric: f"{row['valid_metric']:.3f}"})
        if is_better(metric, result.metrics[metric], best_value):
            best_value, best_epoch, best_valid = result.metrics[metric], epoch, result.metrics
            best_state = copy.deepcopy(model.state_dict())
            bad_epochs = 0
        else:
            bad_epochs += 1
        if checkpoint is not None:
            checkpoint.save(training_state(
                model, optimizer, generator, epoch=epoch, best_value=best_value,
                best_state=best_state, best_epoch=best_epoch, best_valid=best_valid,
                bad_epochs=bad_epochs, history=history, method=method.state_dict(),
                seconds=earlier_seconds + time.perf_counter() - start_time))
        if bad_epochs >= patience:
            break
    for p in encoder_params:
        p.requires_grad_(True)
    model.load_state_dict(best_state)
    return FitResult(best_epoch=best_epoch, best_valid=best_valid, epochs_run=len(history),
                     seconds=earlier_seconds + time.perf_counter() - start_time,
                     history=history, device=str(where))

"""One trial: train an arm with sampled parameters on train/valid, score it on valid.

Trials never see the test split: they get a dataset that holds only train and valid,
so no code path inside a trial can read test data.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable

import optuna

from ..config import RunConfig
from ..data.dataset import MultimodalDataset
from ..data.windows import window_for
from ..engine import runtime
from ..metrics import is_better, lower_is_better
from ..recipe.arms import arm as arm_named
from ..recipe.stages import EpochEvent, Observer, StageResult, pretrain, train_arm
from ..recipe.workspace import Workspace, build_workspace
from ..runs.tensorboard import TensorBoardLog
from .space import configure, sample
from .study import TICKET


class SurplusTrial(Exception):
    """A trial the study's budget holds no ticket for (two workers raced for the last
    one); it is failed before it trains anything."""


def without_test(dataset: MultimodalDataset) -> MultimodalDataset:
    """``dataset`` with its train and valid splits only."""
    return MultimodalDataset(splits={s: dataset.splits[s] for s in ("train", "valid")},
                             task=dataset.task, modalities=list(dataset.modalities),
                             label_names=dataset.label_names, name=dataset.name,
                             source=dataset.source)


def train_on_valid(arm: str, space: Workspace, config: RunConfig, seed: int,
                   observe: Observer | None = None, usage: bool = True) -> StageResult:
    """``arm`` trained for ``seed`` as ``prefuse run`` trains it (stage 1 first where the
    arm has one), on a workspace without test split; ``usage=False`` skips the per-epoch
    modality-usage probe."""
    unimodal = pretrain(space, config, seed, observe=observe) \
        if arm_named(arm).uses_stage1 else None
    return train_arm(arm, space, config, seed, unimodal, observe=observe, usage=usage)


class Pruning:
    """Reports each joint-training epoch's best-so-far validation value to the trial and
    stops the fit (``optuna.TrialPruned``) when the pruner says so. Steps count epochs of
    the budget, stage 1 included, seed after seed, so trials compare at equal cost."""

    def __init__(self, trial: optuna.Trial, metric: str, offset: int):
        self.trial, self.metric, self.offset = trial, metric, offset
        self.best: float | None = None

    def __call__(self, event: EpochEvent) -> None:
        if event.stage != "joint":
            return
        value = event.row["valid_metric"]
        if is_better(self.metric, value, self.best):
            self.best = value
        self.trial.report(self.best, self.offset + event.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {event.epoch}")


def _both(first: Observer | None, second: Observer) -> Observer:
    if first is None:
        return second

    def observe(event: EpochEvent) -> None:
        first(event)
        second(event)

    return observe


class Objective:
    """The value of one trial of ``arm``: the validation primary metric averaged over
    ``tune.tune_seeds``, trained on the runtime ``where``. With ``tensorboard``, every
    epoch is also written there under ``<arm>/trial<number>/``."""

    def __init__(self, config: RunConfig, arm: str, dataset: MultimodalDataset,
                 tensorboard: TensorBoardLog | None = None,
                 log: Callable[[str], None] = print, *, where: runtime.Runtime):
        self.config, self.arm, self.log = config, arm, log
        # Placed on the device as a run's splits are.
        self.space = build_workspace(without_test(dataset), where,
                                     context_window=window_for(config.model))
        self.task = self.space.task
        self.tensorboard = tensorboard

    def __call__(self, trial: optuna.Trial) -> float:
        if not trial.user_attrs.get(TICKET):
            raise SurplusTrial(f"trial {trial.number}: no ticket left")
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        seeds = self.config.tune.tune_seeds
        config = configure(self.config, self.arm, sample(trial, self.config, self.arm), seeds)
        stage1 = config.train.pretrain_epochs if arm_named(self.arm).uses_stage1 else 0
        metric = self.task.primary
        values = []
        extra = self.tensorboard.observer(f"{self.arm}/trial{trial.number}") \
            if self.tensorboard else None
        for k, seed in enumerate(seeds):
            observe = _both(extra, Pruning(trial, metric, k * config.train.epochs + stage1))
            # The usage probe costs a validation pass per modality and epoch; in a trial
            # only TensorBoard shows it.
            result = train_on_valid(self.arm, self.space, config, seed, observe,
                                    usage=self.tensorboard is not None)
            values.append(result.valid.metrics[metric])
        trial.set_user_attr("seed_values", values)
        value = sum(values) / len(values)
        self.log(f"{self.arm} trial {trial.number}: valid {metric} {value:.4f}")
        if math.isnan(value):  # a diverged trial is the worst, not a failure to re-run
            return math.inf if lower_is_better(metric) else -math.inf
        return value

"""One paired trial: one configuration of the shared space, every arm trained on it.

The trial's parameters are drawn once (``space.sample_paired``); each arm then trains on
them (plus its own method options), seed after seed, and its result is recorded on the
trial as the user attribute ``arm:<arm>``: ``state`` (complete, pruned, fail), ``value``,
``seed_values`` and the ``params`` it used. Stage 1 reads no arm-specific field, so it is
trained once per (trial, seed) and shared by every arm that uses it, as a run shares it.
The trial's value, what the sampler optimises, is the mean of the arms' values: every arm
counts alike, so the search goes where the arms do well together, not where one does.

Pruning stops the whole trial, never one arm: the pruner watches the epochs of the first
arm with joint training, which trains first; when it says stop, no other arm trains on
that configuration and every arm of the trial is recorded pruned.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable

import optuna

from ..config import RunConfig, computed_fields
from ..data.dataset import MultimodalDataset
from ..engine import runtime
from ..metrics import lower_is_better
from ..recipe.arms import arm as arm_named
from ..recipe.stages import Observer, StageResult, pretrain, train_arm
from ..runs.tensorboard import TensorBoardLog
from .objective import Objective, Pruning, SurplusTrial, _both
from .space import configure, sample_paired
from .study import TICKET

STAGE1_ATTR = "stage1"


def arm_attr(arm: str) -> str:
    """The user attribute of a paired trial that holds ``arm``'s result."""
    return f"arm:{arm}"


def watched_arm(arms: list[str]) -> str | None:
    """The arm whose epochs the pruner watches: the first with joint training."""
    return next((a for a in arms if arm_named(a).joint), None)


def _stage1_key(config: RunConfig) -> str:
    # What stage 1 (``pretrain``) reads: the data, model and training tables. An arm whose
    # own parameters changed one of them would get a stage 1 of its own.
    raw = computed_fields(config)
    return json.dumps({k: raw[k] for k in ("data", "model", "train")}, sort_keys=True)


class Stage1:
    """One trial's stage-1 networks, trained once per (config it reads, seed) and handed to
    every arm that asks for the same; counts what it trained, what it shared, and the
    seconds training took."""

    def __init__(self, objective: Objective):
        self.objective = objective
        self.done: dict[tuple[str, int], dict[str, StageResult]] = {}
        self.trained = self.shared = 0
        self.seconds = 0.0

    def get(self, config: RunConfig, seed: int,
            observe: Observer | None) -> dict[str, StageResult]:
        key = (_stage1_key(config), seed)
        if key in self.done:
            self.shared += 1
            return self.done[key]
        start = time.perf_counter()
        self.done[key] = pretrain(self.objective.space, config, seed, observe=observe)
        self.seconds += time.perf_counter() - start
        self.trained += 1
        return self.done[key]

    def record(self) -> dict:
        return {"trained": self.trained, "shared": self.shared,
                "seconds": round(self.seconds, 3)}


class PairedObjective:
    """The value of one paired trial: the mean over arms of each arm's validation
    primary metric (averaged over ``tune.tune_seeds``). With ``tensorboard``, every epoch
    is also written there under ``<arm>/trial<number>/``."""

    def __init__(self, config: RunConfig, dataset: MultimodalDataset,
                 tensorboard: TensorBoardLog | None = None,
                 log: Callable[[str], None] = print, *, where: runtime.Runtime):
        self.config, self.tensorboard, self.log = config, tensorboard, log
        # The splits placed once, as any one arm's trial places them; every arm reads them.
        self.placed = Objective(config, config.arms[0], dataset, tensorboard, log,
                                where=where)
        first = watched_arm(config.arms)
        self.order = [a for a in config.arms if a == first] + \
            [a for a in config.arms if a != first]

    def __call__(self, trial: optuna.Trial) -> float:
        if not trial.user_attrs.get(TICKET):
            raise SurplusTrial(f"trial {trial.number}: no ticket left")
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        params = sample_paired(trial, self.config)
        # A trial run again after its worker died inherits that worker's records: every
        # arm starts over.
        for arm in self.order:
            _record(trial, arm, params[arm], "waiting")
        stage1, values = Stage1(self.placed), {}
        try:
            for arm in self.order:
                values[arm] = self._arm(trial, arm, params[arm], stage1)
        except BaseException as e:
            state = "pruned" if isinstance(e, optuna.TrialPruned) else "fail"
            for arm in self.order:
                if arm not in values and trial.user_attrs[arm_attr(arm)]["state"] == "waiting":
                    _record(trial, arm, params[arm], state)
            raise
        finally:
            trial.set_user_attr(STAGE1_ATTR, stage1.record())
        return sum(values.values()) / len(values)

    def _arm(self, trial: optuna.Trial, arm: str, params: dict, stage1: Stage1) -> float:
        """Train ``arm`` on ``params`` for every tune seed; record and return its value."""
        seeds = self.config.tune.tune_seeds
        config = configure(self.config, arm, params, seeds)
        spec, metric = arm_named(arm), self.placed.task.primary
        before = config.train.pretrain_epochs if spec.uses_stage1 else 0
        extra = self.tensorboard.observer(f"{arm}/trial{trial.number}") \
            if self.tensorboard else None
        values: list[float] = []
        for k, seed in enumerate(seeds):
            pruning = Pruning(trial, metric, k * config.train.epochs + before) \
                if arm == self.order[0] and spec.joint else None
            observe = _both(extra, pruning) if pruning else extra
            unimodal = stage1.get(config, seed, observe) if spec.uses_stage1 else None
            try:
                result = train_arm(arm, self.placed.space, config, seed, unimodal,
                                   observe=observe, usage=self.tensorboard is not None)
            except optuna.TrialPruned:
                _record(trial, arm, params, "pruned", pruning.best, values)
                raise
            values.append(result.valid.metrics[metric])
        value = sum(values) / len(values)
        self.log(f"{arm} trial {trial.number}: valid {metric} {value:.4f}")
        if math.isnan(value):  # a diverged arm is the worst, not a failure to re-run
            value = math.inf if lower_is_better(metric) else -math.inf
        # In the pruner's steps: the budget's epochs, stage 1 included, seed after seed.
        last = (len(seeds) - 1) * config.train.epochs + before + result.fit.epochs_run \
            if spec.joint else None
        _record(trial, arm, params, "complete", value, values, last)
        return value


def _record(trial: optuna.Trial, arm: str, params: dict, state: str,
            value: float | None = None, seed_values: list[float] | None = None,
            last_step: int | None = None) -> None:
    trial.set_user_attr(arm_attr(arm), {"state": state, "value": value,
                                        "seed_values": list(seed_values or []),
                                        "params": params, "last_step": last_step})

"""The paper's recipe and its ablation.

Stage 1 pre-trains each modality's encoder alone (own head, early stopping); stage 2
trains each arm's fused network, from those encoders where its init says so. Every arm
gets the same total epoch budget: arms that use stage-1 networks (to start from, or as
teachers) spend ``pretrain_epochs`` of it in stage 1; the unimodal ensemble spends only
those, as it trains nothing after stage 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from ..config import RunConfig, TrainConfig
from ..data.batching import TensorSplit
from ..data.dataset import MultimodalDataset
from ..data.windows import window_for
from ..engine.checkpoint import RunCheckpoints, StageCheckpoint
from ..engine.evaluation import Evaluation, evaluate
from ..engine.fit import FitResult, Hook, fit
from ..engine.method import Method
from ..engine.runtime import Runtime
from ..methods import build_method
from ..metrics import direction
from ..models.network import MultimodalNetwork, NetworkSpec
from ..tasks import Task
from .arms import arm as arm_named
from .workspace import Workspace


@dataclass
class StageResult:
    """One trained network: its fit, its validation and test evaluations, and (fused
    networks) the test metrics with each single modality removed. ``test`` is None when
    the data holds no test split (tuning never gets one)."""

    model: nn.Module
    fit: FitResult
    valid: Evaluation
    test: Evaluation | None
    robustness: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


@dataclass
class SeedResult:
    """All arms and all stage-1 networks trained with one seed."""

    seed: int
    unimodal: dict[str, StageResult] = field(default_factory=dict)
    arms: dict[str, StageResult] = field(default_factory=dict)


def network_spec(dataset: MultimodalDataset, config: RunConfig, task: Task,
                 fusion: str, unimodal_heads: bool = False) -> NetworkSpec:
    """The network for ``dataset`` as ``config`` describes it (with auxiliary per-modality
    heads if ``unimodal_heads``)."""
    m = config.model
    sequence = dataset.is_sequence()
    encoders = {mod: m.encoders.get(mod, m.encoder if sequence[mod] else m.vector_encoder)
                for mod in dataset.modalities}
    return NetworkSpec(modalities=list(dataset.modalities), dims=dataset.dims(),
                       sequence=sequence, encoders=encoders, fusion=fusion,
                       out_dim=task.out_dim, width=m.width, layers=m.layers,
                       dropout=m.dropout, head_hidden=m.head_hidden,
                       unimodal_heads=unimodal_heads, context=m.context,
                       context_window=window_for(m))


@dataclass
class EpochEvent:
    """One finished epoch of one stage, as an epoch observer sees it: ``stage`` is
    ``pretrain`` (``name`` the modality) or ``joint`` (``name`` the arm); ``row`` is the
    epoch's history row, usage columns included; ``runtime`` is where the stage trains."""

    seed: int
    stage: str
    name: str
    epoch: int
    model: nn.Module
    row: dict
    valid: TensorSplit
    task: Task
    runtime: Runtime


# Sees every epoch of every stage (live logging, tuning's pruner); may raise to stop.
Observer = Callable[[EpochEvent], None]



def usage_probe(space: Workspace, modalities: list[str]) -> Hook:
    """A ``fit`` hook measuring how much the network uses each modality: the
    validation metric with only that modality kept (the others masked)."""
    alone = tuple((m,) for m in modalities)
    task = space.task

    def probe(epoch: int, model: nn.Module, row: dict) -> dict:
        kept = evaluate(model, space.data.valid, task, space.runtime, keep=alone).kept
        return {f"usage_{m}": kept[(m,)][task.primary] for m in modalities}

    return probe


def without_each(model: nn.Module, split: TensorSplit, task: Task,
                 runtime: Runtime) -> dict[str, dict[str, float]]:
    """``{"without_<m>": metrics}``: ``model`` scored on ``split`` with modality m masked
    for every sample (attention renormalised over the rest)."""
    rest = {m: tuple(k for k in split.modalities if k != m) for m in split.modalities}
    kept = evaluate(model, split, task, runtime, keep=tuple(rest.values())).kept
    return {f"without_{m}": kept[subset] for m, subset in rest.items()}


def _observing(observe: Observer | None, seed: int, stage: str, name: str,
               space: Workspace) -> list[Hook]:
    """A ``fit`` hook handing ``observe`` every epoch's full row (none without one)."""
    if observe is None:
        return []

    def on_epoch(epoch: int, model: nn.Module, row: dict) -> None:
        observe(EpochEvent(seed, stage, name, epoch, model, dict(row), space.data.valid,
                           space.task, space.runtime))

    return [on_epoch]


def _scored(model: nn.Module, fitted: FitResult, space: Workspace) -> StageResult:
    """``model`` with its validation and (where the data has one) test evaluations."""
    data, task, where = space.data, space.task, space.runtime
    return StageResult(model, fitted, evaluate(model, data.valid, task, where),
                       evaluate(model, data.test, task, where) if data.test is not None
                       else None)


def _train(model: nn.Module, method: Method | None, space: Workspace, train: TrainConfig,
           seed: int, desc: str, stage: StageCheckpoint | None,
           hooks: list[Hook]) -> StageResult:
    model.to(space.runtime.device)
    if stage is not None and (done := stage.load_done()) is not None:
        # Finished before an interruption: its weights and fit are kept; the evaluations
        # are deterministic, so recomputing them gives the original numbers.
        model.load_state_dict(done["model"])
        result = FitResult(**done["fit"])
    else:
        result = fit(model, method, space.data, space.task, train, space.runtime, seed=seed,
                     checkpoint=stage, hooks=hooks, desc=desc)
        if stage is not None:
            stage.save_done(model, result)
    return _scored(model, result, space)


def _assemble(model: nn.Module, space: Workspace) -> StageResult:
    """An arm with no joint training (the unimodal ensemble): its network, holding the
    stage-1 networks, only calibrates on the validation split; it runs no epochs."""
    where = space.runtime.device
    model.to(where)
    start = time.perf_counter()
    model.calibrate(space.data.valid, space.task)
    fitted = FitResult(best_epoch=0, best_valid={}, epochs_run=0,
                       seconds=time.perf_counter() - start, device=str(where))
    return _scored(model, fitted, space)


def pretrain(space: Workspace, config: RunConfig, seed: int,
             checkpoints: RunCheckpoints | None = None,
             observe: Observer | None = None) -> dict[str, StageResult]:
    """Stage 1 on ``space``: each modality's encoder with its own head, trained alone
    (resumed from ``checkpoints`` where given; ``observe`` sees every epoch)."""
    dataset = space.dataset
    base = network_spec(dataset, config, space.task, "concat")
    # Encoders trained alone: no encoder group of their own, none frozen.
    train = replace(config.train, epochs=config.train.pretrain_epochs, encoder_lr=0.0,
                    freeze_epochs=0)
    out = {}
    for modality in dataset.modalities:
        torch.manual_seed(seed)
        model = MultimodalNetwork(base.only(modality))
        model.fit_standardization(dataset["train"])
        stage = checkpoints.stage(seed, "pretrain", modality) if checkpoints else None
        out[modality] = _train(model, None, space, train, seed,
                               f"seed {seed} pretrain {modality}", stage,
                               _observing(observe, seed, "pretrain", modality, space))
    return out


def train_arm(arm: str, space: Workspace, config: RunConfig, seed: int,
              unimodal: dict[str, StageResult] | None = None,
              checkpoints: RunCheckpoints | None = None,
              observe: Observer | None = None, usage: bool = True) -> StageResult:
    """Stage 2 for one arm on ``space``: build its network, start from stage-1 encoders if
    its init says so, train it with its method within what is left of the budget (resumed
    from ``checkpoints`` where given; ``observe`` sees every epoch; an arm without joint
    training only calibrates on the validation split), then score it on the test split
    (where the data has one) with each modality removed. ``usage=False`` skips the
    per-epoch modality-usage probe (one validation pass per modality), and with it the
    ``usage_<m>`` history columns."""
    spec = arm_named(arm)
    if spec.uses_stage1 and not unimodal:
        raise ValueError(f"arm {arm} needs stage-1 networks")
    dataset, data, task = space.dataset, space.data, space.task
    stage1 = {m: r.model for m, r in (unimodal or {}).items()} if spec.uses_stage1 else None
    method = build_method(spec.method, task, config, dataset.modalities, stage1)
    torch.manual_seed(seed)
    model = spec.build(network_spec(dataset, config, task, spec.fusion,
                                    method.request.unimodal_heads))
    model.fit_standardization(dataset["train"])
    if spec.loads_stage1:
        for modality, network in stage1.items():
            model.load_pretrained(modality, network)
    if spec.joint:
        stage = checkpoints.stage(seed, "arm", arm) if checkpoints else None
        hooks = [usage_probe(space, list(data.train.modalities))] \
            if usage and len(dataset.modalities) > 1 else []
        hooks += _observing(observe, seed, "joint", arm, space)
        result = _train(model, method, space, spec.training(config.train), seed,
                        f"seed {seed} {arm}", stage, hooks)
    else:
        result = _assemble(model, space)
    # A one-modality network (``alone-<m>``) has no modality to remove.
    if len(result.model.spec.modalities) > 1 and data.test is not None:
        result.robustness = without_each(result.model, data.test, task, space.runtime)
    return result


@dataclass(frozen=True)
class Unit:
    """One seed's stage 1 (``arm`` None) or one seed's arm: what trains as one piece."""

    seed: int
    arm: str | None = None

    def __str__(self) -> str:
        return f"seed {self.seed} {self.arm or 'stage 1'}"


def units(config: RunConfig, seed: int) -> list[Unit]:
    """``seed``'s units in training order: stage 1 (where there is one), then the arms."""
    first = [Unit(seed)] if config.train.pretrain_epochs > 0 else []
    return first + [Unit(seed, arm) for arm in config.arms]


def run_unit(unit: Unit, space: Workspace, config: RunConfig, result: SeedResult,
             checkpoints: RunCheckpoints | None = None,
             observe: Observer | None = None) -> None:
    """Train ``unit`` on ``space`` (or load it, where ``checkpoints`` hold it done) and
    score it into ``result``, which must already hold the seed's stage 1 for an arm that
    uses it."""
    if unit.arm is None:
        result.unimodal = pretrain(space, config, unit.seed, checkpoints, observe)
    else:
        result.arms[unit.arm] = train_arm(unit.arm, space, config, unit.seed,
                                          result.unimodal, checkpoints, observe)


def run_seed(space: Workspace, config: RunConfig, seed: int,
             checkpoints: RunCheckpoints | None = None,
             observe: Observer | None = None) -> SeedResult:
    """Stage 1 (always: it also gives the unimodal table) and every configured arm, on
    ``space``; stages finished before an interruption are taken from ``checkpoints``;
    ``observe`` sees every epoch."""
    result = SeedResult(seed)
    for unit in units(config, seed):
        run_unit(unit, space, config, result, checkpoints, observe)
    return result


def epochs_to_converge(history: list[dict], metric: str) -> float:
    """First epoch whose validation metric reaches 95% of the run's best improvement
    over the first epoch."""
    values = np.array([row["valid_metric"] for row in history], dtype=float)
    if len(values) == 0 or np.isnan(values).all():
        return float("nan")
    gain = direction(metric) * (values - values[0])
    best = np.nanmax(gain)
    if best <= 0:
        return 1.0
    return float(np.argmax(gain >= 0.95 * best) + 1)

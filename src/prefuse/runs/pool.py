"""``--jobs N``: train a run's independent stages in N worker processes at once.

A unit is one seed's stage 1 (every modality's pre-training) or one seed's arm; an arm
that starts from stage-1 encoders waits for its seed's stage 1. N worker processes
(spawned, so they share nothing with the parent) each take units in turn and train them
through the ordinary recipe, with the run's checkpoints: a unit writes its stages'
``.done.pt`` files and nothing else. The
parent loads and scores each unit as soon as it is trained, while the workers go on, and
writes the run directory once. So the results are those of ``--jobs 1`` (every stage is
seeded by its seed and name alone, not by what ran before it), a unit killed part-way
leaves its epoch checkpoint for ``--resume``, and a unit that fails stops the run with
its error.

Workers on the CPU use the runtime's thread count each (one by default); on GPUs each
job slot takes the GPUs in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..config import RunConfig
from ..data.dataset import MultimodalDataset
from ..data.windows import window_for
from ..engine import runtime
from ..engine.checkpoint import RunCheckpoints
from ..recipe.arms import arm as arm_named
from ..recipe.stages import SeedResult, Unit, run_unit, units
from ..recipe.workspace import build_workspace
from .workers import WorkerPool


def plan(config: RunConfig) -> dict[Unit, Unit | None]:
    """Every unit of ``config``'s run and the unit it waits for (None: none), stage 1
    first so that arms waiting for it can start early."""
    every = [unit for seed in config.seeds for unit in units(config, seed)]
    out: dict[Unit, Unit | None] = {unit: None for unit in every if unit.arm is None}
    for unit in every:
        if unit.arm is not None:
            stage1 = Unit(unit.seed)
            out[unit] = stage1 if stage1 in out and arm_named(unit.arm).uses_stage1 else None
    return out


def _serve(slot: int, config: RunConfig,
           dataset: MultimodalDataset) -> Callable[[Unit], None]:
    """A worker process: set up once, then train each unit the parent sends into the
    run's checkpoints (see ``workers.WorkerPool``)."""
    train = replace(config.train, device=runtime.slot_device(config.train.device, slot))
    where = runtime.apply(runtime.resolve(train))
    # Workers only train: with no test split, the stages skip their test scores and
    # robustness table, which the main process computes from the checkpoints anyway.
    space = build_workspace(dataset, where, test=False, context_window=window_for(config.model))
    checkpoints = RunCheckpoints(config.out, where)
    waits_for = plan(config)

    def train_unit(unit: Unit) -> None:
        result = SeedResult(unit.seed)
        if (stage1 := waits_for[unit]) is not None:
            # Done already: this only loads the encoders the arm starts from.
            run_unit(stage1, space, config, result, checkpoints)
        run_unit(unit, space, config, result, checkpoints)

    return train_unit


def train_in_workers(config: RunConfig, dataset: MultimodalDataset, jobs: int,
                     log: Callable[[str], None] = print,
                     unit_done: Callable[[Unit], None] = lambda unit: None) -> None:
    """Train every unit of ``config`` in ``jobs`` worker processes, into the checkpoints
    of ``config.out`` (already started). ``unit_done(unit)`` is called in this process for
    each unit once it is trained (a seed's stage 1 before its arms), while the workers go
    on with the others. Raises ``PrefuseError`` with the first failing unit's error,
    after stopping the other workers."""
    waiting = plan(config)
    total = len(waiting)
    count = min(jobs, total)
    busy: dict[int, Unit] = {}
    done: set[Unit] = set()
    unreported: list[Unit] = []
    log(f"training {total} stages in {count} worker processes")
    with WorkerPool(_serve, [(slot, config, dataset) for slot in range(count)],
                    name="--jobs worker") as pool:
        while waiting or busy or unreported:
            ready = [u for u, need in waiting.items() if need is None or need in done]
            for worker, unit in zip(pool.idle(), ready):
                pool.send(worker, unit, doing=f"--jobs worker training {unit}")
                busy[worker] = unit
                del waiting[unit]
            # With every worker busy, this process scores the units already trained, in
            # the order they finished (a seed's stage 1 before its arms).
            while unreported:
                unit_done(unreported.pop(0))
            if not busy:
                continue
            for worker in pool.answers():
                unit = busy.pop(worker)
                done.add(unit)
                unreported.append(unit)
                log(f"  {unit}: trained ({len(done)} of {total})")

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

import multiprocessing
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection, wait

from ..config import RunConfig
from ..data.dataset import MultimodalDataset
from ..engine import runtime
from ..engine.checkpoint import RunCheckpoints
from ..errors import PrefuseError
from ..recipe.arms import arm as arm_named
from ..recipe.stages import SeedResult, Unit, run_unit, units
from ..recipe.workspace import build_workspace


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


def _serve(slot: int, config: RunConfig, dataset: MultimodalDataset,
           orders: Connection) -> None:
    """A worker process: set up once, then train each unit the parent sends into the
    run's checkpoints and answer None (trained) or the error's text; stop on None."""
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    try:
        train = replace(config.train, device=runtime.slot_device(config.train.device, slot))
        where = runtime.apply(runtime.resolve(train))
        # Workers only train: with no test split, the stages skip their test scores and
        # robustness table, which the main process computes from the checkpoints anyway.
        space = build_workspace(dataset, where, test=False)
        checkpoints = RunCheckpoints(config.out, where)
    except BaseException as e:  # noqa: B036 - whatever stops a worker must reach the parent
        orders.send(_describe(e))
        return
    waits_for = plan(config)
    while (unit := orders.recv()) is not None:
        try:
            result = SeedResult(unit.seed)
            if (stage1 := waits_for[unit]) is not None:
                # Done already: this only loads the encoders the arm starts from.
                run_unit(stage1, space, config, result, checkpoints)
            run_unit(unit, space, config, result, checkpoints)
        except BaseException as e:  # noqa: B036
            orders.send(_describe(e))
            return
        orders.send(None)


def _exit_with_parent() -> None:
    # A parent killed outright must not leave workers training into its checkpoints,
    # where a resumed run would meet them.
    wait([multiprocessing.parent_process().sentinel])
    os._exit(1)


def _describe(error: BaseException) -> str:
    if isinstance(error, PrefuseError):
        return str(error)
    return f"{type(error).__name__}: {error}\n{traceback.format_exc()}"


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
    workers: list[tuple[multiprocessing.Process, Connection]] = []
    busy: dict[Connection, Unit] = {}
    done: set[Unit] = set()
    unreported: list[Unit] = []
    log(f"training {total} stages in {min(jobs, total)} worker processes")
    ok = False
    try:
        workers += _start(config, dataset, min(jobs, total))
        while waiting or busy or unreported:
            idle = [conn for _, conn in workers if conn not in busy]
            ready = [u for u, need in waiting.items() if need is None or need in done]
            for conn, unit in zip(idle, ready):
                try:
                    conn.send(unit)
                except OSError:
                    pass  # the worker has ended: what it said last is read below
                busy[conn] = unit
                del waiting[unit]
            # With every worker busy, this process scores the units already trained, in
            # the order they finished (a seed's stage 1 before its arms).
            while unreported:
                unit_done(unreported.pop(0))
            if not busy:
                continue
            for conn in wait(list(busy)):
                unit = busy.pop(conn)
                try:
                    message = conn.recv()
                except EOFError:  # the worker ended without a word: killed
                    message = "the worker process died"
                if message is not None:
                    raise PrefuseError(f"--jobs worker training {unit} failed: {message}")
                done.add(unit)
                unreported.append(unit)
                log(f"  {unit}: trained ({len(done)} of {total})")
        ok = True
    finally:
        _stop(workers, ok)


def _start(config: RunConfig, dataset: MultimodalDataset,
           count: int) -> list[tuple[multiprocessing.Process, Connection]]:
    """``count`` spawned workers (``_serve``), each with the parent's end of its pipe."""
    context = multiprocessing.get_context("spawn")
    workers = []
    for slot in range(count):
        here, there = context.Pipe()
        process = context.Process(target=_serve, args=(slot, config, dataset, there),
                                  name=f"prefuse worker {slot}")
        process.start()
        there.close()
        workers.append((process, here))
    return workers


def _stop(workers: list[tuple[multiprocessing.Process, Connection]], ok: bool) -> None:
    """Tell the workers to stop after a run that went well; kill them after one that
    failed."""
    for process, conn in workers:
        if ok:
            try:
                conn.send(None)
            except OSError:
                pass  # already gone, with nothing left to do
            # Not joined: a worker's exit (about a second with torch loaded) need
            # not hold up the run directory; multiprocessing joins it at exit.
        else:
            process.kill()
            process.join()
        conn.close()


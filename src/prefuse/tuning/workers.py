"""Workers: processes that take waiting trials from the tune's studies until none is left.

Any number of workers, on this machine (``--jobs``) or others (the same command and
storage URL), share the studies; each runs one trial at a time: a paired trial trains
every arm, an independent one (one study per arm) one arm, arm after arm.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import optuna
from optuna.trial import TrialState

from ..config import RunConfig
from ..data.dataset import MultimodalDataset
from ..engine import runtime
from ..errors import PrefuseError
from ..runs.tensorboard import TensorBoardLog
from ..runs.workers import run_workers
from .objective import Objective, SurplusTrial
from .paired import PairedObjective
from .study import FINISHED, counts, load_named, load_study, open_storage, quiet

POLL_SECONDS = 1.0
START_SECONDS = 300.0


def work(config: RunConfig, tune_dir: str, dataset: MultimodalDataset,
         tensorboard: TensorBoardLog | None = None,
         log: Callable[[str], None] = print) -> None:
    """Run waiting trials until each of the tune's studies (the paired one, or each arm's)
    has ``tune.trials`` finished (complete or pruned) trials. Trials running elsewhere are
    waited for; one whose worker died is failed once its heartbeat is stale, and comes
    back as a waiting trial with the same parameters. ``tensorboard`` receives every
    trial's epochs. The trials train on the runtime ``config.train`` resolves to (device,
    threads), as a run would."""
    with runtime.applied(runtime.resolve(config.train)) as where:
        _work(config, tune_dir, dataset, tensorboard, log, where)


def _work(config: RunConfig, tune_dir: str, dataset: MultimodalDataset,
          tensorboard: TensorBoardLog | None, log: Callable[[str], None],
          where: runtime.Runtime) -> None:
    storage = open_storage(config.tune, tune_dir)
    if config.tune.design == "paired":  # one study, each trial trains every arm
        name = config.tune.study
        studies = {name: load_named(storage, config.tune, name)}
        objectives = {name: PairedObjective(config, dataset, tensorboard, log, where=where)}
    else:
        studies = {arm: load_study(storage, config.tune, arm) for arm in config.arms}
        objectives = {arm: Objective(config, arm, dataset, tensorboard, log, where=where)
                      for arm in config.arms}
    while True:
        state = {arm: counts(study) for arm, study in studies.items()}
        arm = next((a for a in studies if state[a][TrialState.WAITING]), None)
        if arm is not None:
            with quiet():  # optimize fails stale trials (experimental) before each trial
                studies[arm].optimize(objectives[arm], n_trials=1, catch=(SurplusTrial,))
            continue
        unfinished = [a for a in studies
                      if sum(state[a][s] for s in FINISHED) < config.tune.trials]
        if not unfinished:
            return
        if not any(state[a][TrialState.RUNNING] for a in unfinished):
            raise PrefuseError(f"study of {unfinished[0]}: trials failed and none is left "
                               "to run; see the error above, then run the same command again")
        with quiet():
            for a in unfinished:
                optuna.storages.fail_stale_trials(studies[a])
        time.sleep(POLL_SECONDS)


def _worker(slot: int, config: RunConfig, tune_dir: str, dataset: MultimodalDataset,
            tensorboard: str, start) -> None:
    """A worker process (``runs.workers.run_workers``): ``work`` on slot ``slot``."""
    # Workers begin together (after their slow imports), so the first one up does not
    # take a head start of trials that the others would have shared.
    try:
        start.wait(timeout=START_SECONDS)
    except threading.BrokenBarrierError:
        pass  # a worker that never came up must not hold the others back
    # Each slot its own GPU where there are several, as a run's --jobs workers.
    config = replace(config, train=replace(
        config.train, device=runtime.slot_device(config.train.device, slot)))
    work(config, tune_dir, dataset, TensorBoardLog(tensorboard) if tensorboard else None)


def work_in_processes(config: RunConfig, tune_dir: str, dataset: MultimodalDataset,
                      jobs: int, tensorboard: str = "") -> None:
    """``work`` in ``jobs`` processes. The first worker to fail stops the others and is
    raised (``PrefuseError``: "tune worker K failed: ...")."""
    start = multiprocessing.get_context("spawn").Barrier(jobs)
    run_workers(_worker, [(slot, config, tune_dir, dataset, tensorboard, start)
                          for slot in range(jobs)], name="tune worker")

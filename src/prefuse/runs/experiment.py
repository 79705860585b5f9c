"""One ``prefuse run``: load the data, train every arm for every seed, write the run directory.

Run directory (the README's "Run directory" table): ``config.toml``, ``data.json``,
``metrics.json`` (``summary``), ``history.csv`` and ``attention.csv`` (``runfiles``), the
headline model (``model.safetensors`` + ``model.json``) and each arm's best model under
``models/<arm>/``. While it runs, ``checkpoints/`` holds what ``--resume`` needs (see
``checkpoint``); it is deleted once ``metrics.json`` is written.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace
from pathlib import Path

from .. import replacing, rundir
from ..config import RunConfig, check_modalities, config_to_toml
from ..data.batching import Tensors
from ..data.dataset import MultimodalDataset
from ..data.fingerprint import fingerprint
from ..data.source import load_data
from ..data.windows import window_for
from ..engine import runtime
from ..engine.checkpoint import RunCheckpoints
from ..fileio import write_json, write_text
from ..locks import hold
from ..models.saving import save_model
from ..recipe.checks import check_arms_data, check_config, check_runtime
from ..recipe.stages import Observer, SeedResult, Unit, run_seed, run_unit
from ..recipe.workspace import build_workspace
from ..tasks import Task
from .files import attention_csv, history_csv
from .pool import train_in_workers
from .summary import best_seed, headline_arm, summarize


def write_run(out: Path, config: RunConfig, dataset: MultimodalDataset, task: Task,
              results: list[SeedResult], data: Tensors | None = None,
              where: runtime.Runtime | None = None) -> dict:
    """Write every file of the run directory; ``metrics.json`` last."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / rundir.CONFIG_FILE, config_to_toml(config))
    write_text(out / rundir.HISTORY_FILE, history_csv(results, dataset.modalities))
    write_text(out / rundir.ATTENTION_FILE, attention_csv(dataset, results))
    headline = headline_arm(config.arms)
    for arm in config.arms:
        best = best_seed(results, arm, task.primary)
        extra = {"seed": best.seed, "dataset": dataset.name, "config": asdict(config)}
        save_model(best.arms[arm].model, arm, task, out / rundir.MODELS_FOLDER / arm, extra)
        if arm == headline:
            save_model(best.arms[arm].model, arm, task, out, extra)
    summary = summarize(dataset, task, results, data)
    if where is not None:
        summary["runtime"] = {**where.describe(), "jobs": config.train.jobs}
    write_json(out / rundir.METRICS_FILE, _finite(summary))
    return summary


def _finite(obj):
    """JSON has no NaN: undefined values (e.g. a correlation of constants) become null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def run_experiment(config: RunConfig, dataset: MultimodalDataset | None = None,
                   log=print, resume: bool = False, overwrite: bool = False,
                   observe: Observer | None = None,
                   where: runtime.Runtime | None = None) -> dict:
    """Train every arm of ``config`` for every seed and write the run directory.

    Every epoch is checkpointed; ``resume`` continues an interrupted run of the same
    config in ``config.out`` and ends with the same results; a fresh run refuses a
    directory that holds a run unless ``overwrite``, which keeps that run aside until the
    new one is written and puts it back if the new one fails or is interrupted
    (``replacing``). Returns the ``metrics.json`` document. Under torchrun every rank
    trains its share and returns the document; only the main rank logs and writes the run
    directory and checkpoints. ``observe`` sees every epoch of every stage (e.g. a
    TensorBoard writer). ``where`` is the runtime this process resolved for
    ``config.train`` (default: resolved here).
    """
    config = check_config(config)
    where = where or runtime.resolve(config.train)
    check_runtime(config, where)
    # Ranks share the directory and only the main rank writes it: it alone holds it.
    owner = hold(config.out) if where.is_main else nullcontext()
    with runtime.applied(where), owner:
        return _run(config, dataset, log, resume, overwrite, observe, where)


@contextmanager
def _undone_on_failure(checkpoints: RunCheckpoints, resume: bool):
    """A fresh run that fails before any stage saved a checkpoint removes the files it
    began the directory with, so the corrected command needs no --overwrite. Ctrl-C is
    not a failure: it leaves the run for --resume, as the interrupt message says."""
    try:
        yield
    except Exception:
        if not resume and checkpoints.runtime.is_main and \
                not any(checkpoints.directory.glob("*.pt")):
            shutil.rmtree(checkpoints.directory, ignore_errors=True)
            for name in (rundir.DATA_FILE, rundir.CONFIG_FILE):
                (checkpoints.out / name).unlink(missing_ok=True)
        raise


def _run(config: RunConfig, dataset: MultimodalDataset | None, log, resume: bool,
         overwrite: bool, observe: Observer | None, where: runtime.Runtime) -> dict:
    if dataset is None:
        dataset = load_data(config)
    else:
        dataset.validate()  # one built in memory has not been through a loader's checks
    # After loading, so that data that cannot be read leaves no run directory behind.
    check_modalities(config, dataset.modalities, dataset.source)
    config = check_arms_data(config, dataset.modalities, dataset.source, dataset.splits)
    # Only the main rank touches the files, the previous run's included.
    kept = replacing.kept_until_done(config.out) if where.is_main else nullcontext()
    with kept:
        checkpoints = RunCheckpoints(config.out, where).start(config, resume,
                                                              fingerprint(dataset), overwrite)
        with _undone_on_failure(checkpoints, resume):
            return _train_and_write(config, dataset, log, observe, where, checkpoints)


def _train_and_write(config: RunConfig, dataset: MultimodalDataset, log,
                     observe: Observer | None, where: runtime.Runtime,
                     checkpoints: RunCheckpoints) -> dict:
    space = build_workspace(dataset, where, context_window=window_for(config.model))
    task, data = space.task, space.data
    by_seed: dict[int, SeedResult] = {}
    if config.train.jobs > 1:
        def score(unit: Unit) -> None:
            # The workers left the unit done in the checkpoints: this loads and scores
            # it, here, while they train the others.
            result = by_seed.setdefault(unit.seed, SeedResult(unit.seed))
            run_unit(unit, space, config, result, checkpoints, observe)

        train_in_workers(config, dataset, config.train.jobs, log, unit_done=score)
    for seed in config.seeds:
        if seed not in by_seed:
            if where.is_main:
                log(f"seed {seed}: training {len(config.arms)} arms on {dataset.name}")
            by_seed[seed] = run_seed(space, config, seed, checkpoints, observe)
    # Scored as they finished: the arms go back into the configured order.
    results = [replace(by_seed[seed], arms={arm: by_seed[seed].arms[arm]
                                            for arm in config.arms})
               for seed in config.seeds]
    if not where.is_main:
        return summarize(dataset, task, results)
    summary = write_run(Path(config.out), config, dataset, task, results, data, where)
    checkpoints.remove()
    return summary

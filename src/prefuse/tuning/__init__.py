"""``prefuse tune``: every arm searched with the same budget on the validation split, then
(optionally) its best configuration trained on the final seeds.

Layout of a tune directory: ``study.db`` (the default storage), ``tuning.json`` (every
trial, the best per arm, parameter importances), ``best/<arm>.toml`` (each arm's best
config, ``prefuse run --config`` ready) and, with final seeds, ``final/``: an ordinary
run directory (the names: ``prefuse.rundir``). The CLI then writes its report, which has
a tuning section.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import RunConfig, replace
from ..data.dataset import MultimodalDataset
from ..locks import hold
from ..metrics import lower_is_better
from ..recipe.checks import check_arms_data
from ..redact import mask
from ..rundir import FINAL_FOLDER
from ..runs.experiment import load_data
from ..runs.tensorboard import TensorBoardLog
from ..tasks import task_for
from .final import train_final
from .results import write_results
from .space import check_tune, fit_to_budget
from .study import (
    data_shape,
    load_named,
    open_storage,
    prepare_named,
    storage_errors,
    storage_url,
    study_names,
)
from .workers import work, work_in_processes


def tune(config: RunConfig, tune_dir: str | Path, dataset: MultimodalDataset | None = None,
         log: Callable[[str], None] = print, tensorboard: str = "") -> dict:
    """Search every arm of ``config`` (``config.tune``), write the results into
    ``tune_dir`` and, with ``tune.final_seeds``, train the best configs into
    ``tune_dir/final`` (its report: ``analysis.report.write_report``, as the CLI does).

    Repeating the same call continues an interrupted tune; other workers (``--jobs``, or
    other machines on the same ``tune.storage``) may join at any time. Returns the
    ``tuning.json`` document.
    """
    config = fit_to_budget(config.validate())
    check_tune(config)
    if dataset is None:
        dataset = load_data(config)
    else:
        dataset.validate()
    config = check_arms_data(config, dataset.modalities, dataset.source, dataset.splits)
    tune_dir = str(tune_dir)
    # Workers (--jobs) are this process's children and take no lock of their own. A
    # database that fails mid-tune ends in one line too, its password masked.
    with hold(tune_dir), storage_errors(storage_url(config.tune, tune_dir)):
        return _tune(config, tune_dir, dataset, log, tensorboard)


def _tune(config: RunConfig, tune_dir: str, dataset: MultimodalDataset,
          log: Callable[[str], None], tensorboard: str) -> dict:
    metric = task_for(dataset).primary
    direction = "minimize" if lower_is_better(metric) else "maximize"
    storage = open_storage(config.tune, tune_dir)
    names = study_names(config.tune, config.arms)
    for name in names:
        prepare_named(storage, config, name, direction, data_shape(dataset))
    trials = f"{config.tune.trials} paired trials" if config.tune.design == "paired" \
        else f"{config.tune.trials} trials each"
    log(f"tuning {len(config.arms)} arms, {trials}, on "
        f"{dataset.name} (valid {metric}); storage {mask(storage.url)}")
    board = TensorBoardLog(tensorboard) if tensorboard else None
    if config.tune.jobs > 1:
        work_in_processes(config, tune_dir, dataset, config.tune.jobs, tensorboard)
    else:
        work(config, tune_dir, dataset, board, log)
    run_dir = Path(tune_dir) / FINAL_FOLDER
    # What is written (best/<arm>.toml, final/) never holds the storage's password.
    config = replace(config, tune=replace(config.tune, storage=mask(config.tune.storage)))
    studies = {name: load_named(storage, config.tune, name) for name in names}
    doc, best = write_results(config, tune_dir, studies, metric, run_dir)
    if config.tune.final_seeds:
        base = replace(config, arms=list(best), seeds=list(config.tune.final_seeds),
                       out=str(run_dir))
        train_final(base, best, dataset, run_dir, tune_dir, log,
                    board.observer(f"{FINAL_FOLDER}/") if board else None)
    if board is not None:
        board.close()
    return doc

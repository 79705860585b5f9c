"""Studies: where trials are stored, how they are sampled and pruned, and the budget.

A paired tune (``tune.design = "paired"``) keeps one Optuna study, named ``<tune.study>``,
whose every trial trains every arm; an independent one keeps one study per arm, named
``<tune.study>:<arm>``. Either lives in any storage Optuna's RDB layer takes (SQLite in
the tune directory by default; PostgreSQL or MySQL for several machines). The budget is a
set of *tickets*: ``trials`` waiting trials enqueued when the study is set up. Workers
only ever run a waiting trial, so however many workers share a study, exactly ``trials``
trials finish. A trial whose worker died (no heartbeat within the grace period) is
failed and put back in the queue with its parameters.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import optuna
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from ..config import RunConfig, TuneConfig, computed_fields
from ..data.dataset import MultimodalDataset
from ..errors import PrefuseError
from ..redact import mask
from ..registry import Registry
from ..rundir import STUDY_FILE

TICKET = "prefuse_ticket"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
LIVE = FINISHED + (TrialState.RUNNING, TrialState.WAITING)
OPEN_ATTEMPTS = 5

optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence Optuna's experimental-feature warnings: the heartbeat and the retry of
    dead trials are marked experimental, and they are the point here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def storage_url(tune: TuneConfig, tune_dir: str | Path) -> str:
    """The storage URL: ``tune.storage``, or SQLite at ``TUNE_DIR/study.db``."""
    return tune.storage or f"sqlite:///{(Path(tune_dir) / STUDY_FILE).resolve()}"


def open_storage(tune: TuneConfig, tune_dir: str | Path) -> RDBStorage:
    """Connect to the study storage (creating a SQLite file if needed)."""
    url = storage_url(tune, tune_dir)
    sqlite = url.startswith("sqlite")
    if sqlite:
        Path(tune_dir).mkdir(parents=True, exist_ok=True)
        path = _sqlite_file(url)
        if path and Path(path).is_dir():
            raise PrefuseError(f"{path}: is a directory, not a study database; remove it, "
                               "or tune into another --out")
    for attempt in range(OPEN_ATTEMPTS):
        try:
            with quiet():
                # SQLite has no row locks: without driver transactions (isolation_level
                # None) and BEGIN IMMEDIATE below, two workers could take one waiting trial.
                storage = RDBStorage(
                    url, engine_kwargs={"connect_args": {"timeout": 120,
                                                         "isolation_level": None}}
                    if sqlite else None,
                    heartbeat_interval=tune.heartbeat_seconds, grace_period=tune.grace_seconds,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback())
            break
        except Exception as e:  # any driver or URL error: name the storage, no traceback
            # Workers that open a new database at once race to create its tables and
            # first rows; the loser finds them made on its next attempt.
            if isinstance(e, (OperationalError, IntegrityError)) and \
                    attempt + 1 < OPEN_ATTEMPTS:
                time.sleep(0.5)
                continue
            raise storage_failure(url, e, "cannot open") from None
    if sqlite:
        from sqlalchemy import event

        event.listen(storage.engine, "begin",
                     lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return storage


def _sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL (``file:`` URIs too), else None."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: no file to name
        return None
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    return parsed.database.removeprefix("file:")


def storage_failure(url: str, error: BaseException, doing: str = "failed") -> PrefuseError:
    """One line for a storage that refused a read or write: the innermost cause (Optuna
    and SQLAlchemy wrap the driver's error twice), the file or URL named, no password."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    reason = str(root).splitlines()[0] if str(root) else type(root).__name__
    path = _sqlite_file(url)
    if path is not None and "readonly" in reason:
        return PrefuseError(f"{path}: the study database is read-only ({reason}): no "
                            "permission to write it; make it writable, or tune into "
                            "another --out")
    if isinstance(root, ModuleNotFoundError):
        # SQLAlchemy picks the driver from the URL: since 2.1 postgresql:// means psycopg
        # 3, so psycopg2 installed alone is not found.
        return PrefuseError(mask(f"storage {url}: {doing}: the URL's database driver is not "
                                 f"installed ({reason}); install it, or name an installed "
                                 "driver in the URL (postgresql+psycopg2://, "
                                 "mysql+pymysql://)", url))
    return PrefuseError(mask(f"storage {url}: {doing} ({type(root).__name__}: {reason})", url))


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Storage errors (the database refused a read or write) as one ``PrefuseError``."""
    try:
        yield
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise storage_failure(url, e) from None


def study_name(tune: TuneConfig, arm: str) -> str:
    """The arm's study name, the same on every machine that joins the tune."""
    return f"{tune.study}:{arm}"


# Each design's study names: the paired one's has no colon, so it never meets an arm's.
DESIGNS: Registry = Registry("tune design")
DESIGNS.register("paired")(lambda tune, arms: [tune.study])
DESIGNS.register("independent")(lambda tune, arms: [study_name(tune, a) for a in arms])


def study_names(tune: TuneConfig, arms: list[str]) -> list[str]:
    """The studies of a tune of ``arms``, as ``tune.design`` lays them out."""
    return DESIGNS.get(tune.design, "tune.design")(tune, arms)


def _other_design(storage: RDBStorage, tune: TuneConfig, name: str) -> str | None:
    """The other design, where the storage holds a study of this tune (``tune.study``)
    laid out by it rather than by ``name``'s design; else None."""
    names = {s.study_name for s in storage.get_all_studies()}
    if name != tune.study and tune.study in names:
        return "paired"
    if name == tune.study and any(n.startswith(f"{tune.study}:") for n in names):
        return "independent"
    return None


def _search_settings(config: RunConfig, data: dict) -> dict:
    """What fixes a study's search: the data's shape (``data``; its path may differ from
    machine to machine) and the config, less where it runs (``RUNTIME_FIELDS``), where
    results go, the final seeds and the budget (which may grow)."""
    raw = computed_fields(config)
    for key in ("out", "seeds"):
        raw.pop(key)
    raw["data"].pop("path")
    raw["data_shape"] = data
    for key in ("final_seeds", "trials"):
        raw["tune"].pop(key)
    # Studies made before tunes had a design were independent: they continue as such.
    if raw["tune"]["design"] == "independent":
        raw["tune"].pop("design")
    return raw


def data_shape(dataset: MultimodalDataset) -> dict:
    """What identifies the data to a study: name, task, split sizes, modality widths."""
    return {"name": dataset.name, "task": dataset.task,
            "sizes": {s: len(split) for s, split in dataset.splits.items()},
            "dims": dataset.dims()}


def prepare_study(storage: RDBStorage, config: RunConfig, arm: str, direction: str,
                  data: dict) -> optuna.Study:
    """Create or load ``arm``'s study and enqueue tickets up to ``tune.trials`` live
    trials (finished, running or waiting). A study made with other search settings or
    other data (``data_shape``) is refused: its trials would not answer this search."""
    return prepare_named(storage, config, study_name(config.tune, arm), direction, data)


def prepare_named(storage: RDBStorage, config: RunConfig, name: str, direction: str,
                  data: dict) -> optuna.Study:
    """``prepare_study`` for the study called ``name`` (one of ``study_names``). A tune
    of this ``tune.study`` made with the other ``tune.design`` is refused."""
    with storage_errors(storage.url):
        other = _other_design(storage, config.tune, name)
        if other is not None:
            raise PrefuseError(
                f"study {config.tune.study} in {mask(storage.url)} was made with tune.design "
                f"= \"{other}\"; continue it with --set "
                f"tune.design={other}, or use another --out, --storage or --set "
                "tune.study=NAME")
        return _prepare(storage, config, name, direction, data)


def _prepare(storage: RDBStorage, config: RunConfig, name: str, direction: str,
             data: dict) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=name, direction=direction,
                                load_if_exists=True)
    settings = _search_settings(config, data)
    saved = study.user_attrs.get("settings")
    if saved is None:
        study.set_user_attr("settings", settings)
    elif saved != settings:
        raise PrefuseError(f"study {name} in {mask(storage.url)} was made with other settings "
                           "(data, model, training or search space); use another --out, "
                           "--storage or --set tune.study=NAME")
    if study.direction.name.lower() != direction:
        raise PrefuseError(f"study {name} optimises in the other direction")
    live = len(study.get_trials(deepcopy=False, states=LIVE))
    for _ in range(config.tune.trials - live):
        study.enqueue_trial({}, user_attrs={TICKET: True})
    return study


def counts(study: optuna.Study) -> dict[TrialState, int]:
    """How many of the study's trials are in each state."""
    out = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        out[trial.state] += 1
    return out


class TrialSeededSampler(BaseSampler):
    """TPE seeded afresh for each trial from (seed, trial number): one worker gives the
    same trials as before, and workers that share a study never draw alike."""

    def __init__(self, seed: int, startup_trials: int):
        self.seed = seed
        self.startup_trials = startup_trials
        self._tpe = self._make(0)

    def _make(self, number: int) -> TPESampler:
        seed = int(np.random.SeedSequence([self.seed, number]).generate_state(1)[0])
        # The constant liar keeps parallel workers away from each other's running trials.
        return TPESampler(seed=seed, n_startup_trials=self.startup_trials, constant_liar=True)

    def before_trial(self, study, trial):
        self._tpe = self._make(trial.number)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        self._tpe.after_trial(study, trial, state, values)


PRUNERS: Registry = Registry("pruner")
PRUNERS.register("median")(lambda t: optuna.pruners.MedianPruner(
    n_startup_trials=t.prune_after_trials, n_warmup_steps=t.prune_after_epochs))
PRUNERS.register("none")(lambda t: optuna.pruners.NopPruner())


def load_study(storage: RDBStorage, tune: TuneConfig, arm: str) -> optuna.Study:
    """``arm``'s study (set up by ``prepare_study``) with this tune's sampler and pruner."""
    return load_named(storage, tune, study_name(tune, arm))


def load_named(storage: RDBStorage, tune: TuneConfig, name: str) -> optuna.Study:
    """The study called ``name`` (set up by ``prepare_named``) with this tune's sampler
    and pruner."""
    return optuna.load_study(study_name=name, storage=storage,
                             sampler=TrialSeededSampler(tune.seed, tune.startup_trials),
                             pruner=PRUNERS.get(tune.pruner, "tune.pruner")(tune))

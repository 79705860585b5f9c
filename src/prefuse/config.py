"""Typed run configuration: dataclasses, loaded from and saved as TOML.

A config file holds the tables ``[data]``, ``[model]``, ``[train]``, ``[methods.<name>]``
and ``[tune]`` (only ``prefuse tune`` reads it) plus top-level ``out``, ``seeds`` and
``arms``. Unknown keys and wrong types are errors naming the field. This module checks
types and ranges only; names that registries own (arms, encoders, methods) are checked by
``prefuse.recipe.checks``, which can see them.
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import tomli_w
import tomllib

from .errors import ConfigError

# The paper's 2x2 ablation: the default arms.
ARMS = ("scratch+concat", "scratch+attention", "pretrained+concat", "pretrained+attention")
DEVICES = re.compile(r"auto|cpu|cuda(:\d+)?")
PRECISIONS = ("fp32", "bf16")
# Where a run trains, not what it computes: a run resumes, and a study continues, with
# other values of these, and a tuned arm's best config holds none of them. Precision is
# not one: bf16 changes the numbers, so it is part of what a run computes.
RUNTIME_FIELDS = ("train.device", "train.threads", "train.jobs", "tune.jobs", "tune.storage",
                  "tune.heartbeat_seconds", "tune.grace_seconds")


@dataclass
class SyntheticConfig:
    """The built-in benchmark's size and seed (see ``prefuse.data.synthetic``)."""

    seed: int = 0
    train: int = 2400
    valid: int = 600
    test: int = 1200


@dataclass
class CsdConfig:
    """CMU-MultimodalSDK files named one by one, relative to the ``data.path`` folder.

    Empty values mean the folder layout: every ``<modality>.csd``, ``labels.csd`` and
    ``folds.json``. ``max_steps`` = 0 means the loader's default (50).
    """

    features: dict[str, str] = field(default_factory=dict)
    labels: str = ""
    folds: str = ""
    max_steps: int = 0


@dataclass
class DataConfig:
    """Where the data comes from. An empty ``path`` means the built-in benchmark.

    ``label_columns`` picks label columns where a format has several (``.csd`` labels:
    MOSEI's 7, POM's traits); empty means the format's default.
    """

    path: str = ""
    format: str = "auto"
    valid_fraction: float = 0.1
    label_columns: list[int] = field(default_factory=list)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    csd: CsdConfig = field(default_factory=CsdConfig)


@dataclass
class ModelConfig:
    """The simple network: one encoder per modality, a fusion, a small head.

    ``context`` (``none``, ``gru``, ``lstm``, ``transformer``) adds context over each
    group's utterances (a video or dialogue), per modality and after fusion; groups longer
    than ``context_window`` utterances are cut into windows of at most that many.
    """

    encoder: str = "lstm"
    vector_encoder: str = "mlp"
    encoders: dict[str, str] = field(default_factory=dict)
    width: int = 32
    layers: int = 1
    dropout: float = 0.1
    head_hidden: int = 64
    context: str = "none"
    context_window: int = 32


@dataclass
class TrainConfig:
    """Optimisation. ``epochs`` is every arm's total budget; pre-training counts against it.

    ``encoder_lr`` = 0 means "same as ``lr``"; ``freeze_epochs`` keeps pre-trained
    encoders fixed for the first k end-to-end epochs.

    Where it runs (``RUNTIME_FIELDS``: a resume or a tune may change them): ``device`` is
    ``auto`` (a GPU when CUDA is available), ``cpu``, ``cuda`` or ``cuda:N``; ``threads``
    is torch's CPU thread count per process (0 = one per process, safe on a busy
    machine); ``jobs`` trains that many independent stages at once in worker processes.
    ``precision`` ``fp32`` or ``bf16`` (autocast, GPU only) changes the numbers, so it is
    part of what a run computes, not where.
    """

    epochs: int = 40
    pretrain_epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr: float = 0.0
    freeze_epochs: int = 0
    patience: int = 8
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    modality_dropout: float = 0.0
    device: str = "auto"
    precision: str = "fp32"
    threads: int = 0
    jobs: int = 1


@dataclass
class SearchParam:
    """One dimension of the search space, keyed in ``[tune.space]`` by the dotted config
    field it sets (``"train.lr"``).

    ``kind``: ``log`` (float, log-uniform in [low, high]), ``float`` (uniform), ``int``
    (integers in [low, high]) or ``choice`` (one of ``choices``). ``stage1``: the field
    only matters to arms with a stage 1 (pre-trained encoders), so only they search it.
    """

    kind: str = "float"
    low: float = 0.0
    high: float = 0.0
    choices: list[str | int | float | bool] = field(default_factory=list)
    stage1: bool = False


def default_space() -> dict[str, SearchParam]:
    """The search space ``prefuse tune`` uses where the config declares none."""
    return {
        "train.lr": SearchParam("log", 1e-4, 1e-2),
        "train.batch_size": SearchParam("choice", choices=[32, 64, 128]),
        "model.width": SearchParam("choice", choices=[16, 32, 64]),
        "model.layers": SearchParam("int", 1, 2),
        "model.encoder": SearchParam("choice", choices=["lstm", "gru", "transformer", "conv"]),
        "model.dropout": SearchParam("float", 0.0, 0.5),
        "train.encoder_lr": SearchParam("log", 1e-5, 1e-2, stage1=True),
        "train.pretrain_epochs": SearchParam("int", 5, 25, stage1=True),
        "train.freeze_epochs": SearchParam("int", 0, 5, stage1=True),
    }


@dataclass
class TuneConfig:
    """``prefuse tune``: the same search, ``trials`` trials, for every arm.

    The objective is the validation primary metric averaged over ``tune_seeds``;
    ``final_seeds`` (empty: none) train the best configurations afterwards. ``seed``
    seeds the TPE sampler, whose first ``startup_trials`` trials are random. ``pruner``
    (``median`` or ``none``) starts pruning after ``prune_after_trials`` finished trials
    and ``prune_after_epochs`` epochs of a trial. ``storage`` is an Optuna storage URL
    (empty: SQLite in the tune directory); ``study`` names the paired study (prefixes
    each arm's study name, independent).
    ``jobs`` worker processes share the machine. A trial whose worker stops sending a
    heartbeat (every ``heartbeat_seconds``) for ``grace_seconds`` is run again.
    ``design`` is ``paired`` (one study: each trial's configuration trains every arm) or
    ``independent`` (one study per arm, each with its own sampler and pruner).
    """

    trials: int = 30
    design: str = "paired"
    seed: int = 0
    tune_seeds: list[int] = field(default_factory=lambda: [0])
    final_seeds: list[int] = field(default_factory=list)
    startup_trials: int = 10
    pruner: str = "median"
    prune_after_trials: int = 5
    prune_after_epochs: int = 5
    storage: str = ""
    study: str = "prefuse"
    jobs: int = 1
    heartbeat_seconds: int = 30
    grace_seconds: int = 90
    space: dict[str, SearchParam] = field(default_factory=default_space)


@dataclass
class RunConfig:
    """Everything one ``prefuse run`` needs. ``arms`` may hold the groups ``paper``,
    ``balance`` and ``all``; ``methods`` maps a method's name to its options (defaults
    for those not given come from the method's own options dataclass)."""

    out: str = "runs/default"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: dict[str, dict[str, int | float | bool | str]] = field(default_factory=dict)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def validate(self) -> RunConfig:
        """Check values; raise ``ConfigError`` naming the first bad field."""
        for name, value in _floats(self):
            if not math.isfinite(value):
                raise ConfigError(name, f"must be a finite number, got {value}")
        t, m = self.train, self.model
        positive = {"train.epochs": t.epochs, "train.batch_size": t.batch_size,
                    "train.jobs": t.jobs,
                    "train.lr": t.lr, "train.patience": t.patience, "model.width": m.width,
                    "model.layers": m.layers, "model.head_hidden": m.head_hidden,
                    "data.synthetic.train": self.data.synthetic.train,
                    "data.synthetic.valid": self.data.synthetic.valid,
                    "data.synthetic.test": self.data.synthetic.test}
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(name, f"must be > 0, got {value}")
        non_negative = {"train.pretrain_epochs": t.pretrain_epochs,
                        "train.encoder_lr": t.encoder_lr, "train.freeze_epochs": t.freeze_epochs,
                        "train.grad_clip": t.grad_clip, "train.weight_decay": t.weight_decay,
                        "train.threads": t.threads}
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(name, f"must be >= 0, got {value}")
        if self.data.csd.max_steps < 0:
            raise ConfigError("data.csd.max_steps", f"must be >= 0, got {self.data.csd.max_steps}")
        if any(c < 0 for c in self.data.label_columns):
            raise ConfigError("data.label_columns", f"must be >= 0, got {self.data.label_columns}")
        for name, value in (("model.dropout", m.dropout),
                            ("train.modality_dropout", t.modality_dropout),
                            ("data.valid_fraction", self.data.valid_fraction)):
            if not 0 <= value < 1:
                raise ConfigError(name, f"must lie in [0, 1), got {value}")
        if not DEVICES.fullmatch(t.device):
            raise ConfigError("train.device", f"unknown device {t.device!r}; use auto, cpu, "
                              "cuda or cuda:N")
        if t.precision not in PRECISIONS:
            raise ConfigError("train.precision", f"unknown precision {t.precision!r}; use "
                              f"{' or '.join(PRECISIONS)}")
        if not self.seeds:
            raise ConfigError("seeds", "needs at least one seed")
        _check_seeds(self)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds", f"seeds repeat: {self.seeds}")
        if not self.arms:
            raise ConfigError("arms", "needs at least one arm")
        return self


def _check_seeds(config: RunConfig) -> None:
    """Every seed of the config in numpy's range (it refuses negative seeds; torch takes
    the same), so that a bad one is refused here rather than inside a trial."""
    t = config.tune
    named = [("seeds", config.seeds), ("tune.tune_seeds", t.tune_seeds),
             ("tune.final_seeds", t.final_seeds),
             ("data.synthetic.seed", [config.data.synthetic.seed]), ("tune.seed", [t.seed])]
    for name, seeds in named:
        for seed in seeds:
            if not 0 <= seed < 2**32:
                raise ConfigError(name, f"a seed must lie in [0, 2**32 - 1], got {seed}")


def check_modalities(config: RunConfig, modalities: list[str], source: object) -> None:
    """Raise ``ConfigError`` when ``[model.encoders]`` names a modality the data lacks
    (a typo there would otherwise be ignored and the default encoder used)."""
    for name in config.model.encoders:
        if name not in modalities:
            raise ConfigError(f"model.encoders.{name}", f"no modality '{name}' in {source}; "
                              f"its modalities: {', '.join(modalities)}")


def _floats(node: object, prefix: str = "") -> list[tuple[str, float]]:
    """Every float field of a config tree, with its dotted name."""
    out = []
    for f in fields(node):
        value = getattr(node, f.name)
        if is_dataclass(value):
            out.extend(_floats(value, f"{prefix}{f.name}."))
        elif isinstance(value, float):
            out.append((f"{prefix}{f.name}", value))
    return out


def _check_type(name: str, value: object, annotation: object, source: object) -> object:
    """Coerce ``value`` to ``annotation`` (dataclass, list, dict, scalars) or raise."""
    if is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(name, f"expected a table, got {type(value).__name__}", source)
        return _from_dict(annotation, value, source, prefix=f"{name}.")
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(name, f"expected a list, got {type(value).__name__}", source)
        (inner,) = typing.get_args(annotation)[:1]
        return [_check_type(f"{name}[{i}]", v, inner, source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(name, f"expected a table, got {type(value).__name__}", source)
        _, inner = typing.get_args(annotation)
        return {str(k): _check_type(f"{name}.{k}", v, inner, source) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _check_type(name, value, option, source)
            except ConfigError:
                continue
        raise ConfigError(name, f"value {value!r} fits none of {annotation}", source)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool):
        if type(value) is not annotation:
            raise ConfigError(name, f"expected {annotation.__name__}, got {value!r}", source)
        return value
    raise ConfigError(name, f"unsupported type {annotation}", source)


def _from_dict(cls, raw: dict, source: object = None, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{prefix}{key}", f"unknown key; known keys: {sorted(known)}",
                              source)
    values = {k: _check_type(f"{prefix}{k}", v, hints[k], source) for k, v in raw.items()}
    return cls(**values)


def table_to(cls, raw: dict, prefix: str, source: object = None):
    """The dataclass ``cls`` filled from the table ``raw`` (keys and types checked; errors
    name ``prefix.<key>``)."""
    return _from_dict(cls, raw, source, prefix=f"{prefix}.")


def config_from_dict(raw: dict, source: object = None) -> RunConfig:
    """Build and validate a ``RunConfig`` from a parsed TOML dict."""
    return _from_dict(RunConfig, raw, source).validate()


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML config file; errors name the file and the field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("<file>", "no such config file", path) from None
    except IsADirectoryError:
        raise ConfigError("<file>", "is a directory; give a TOML file", path) from None
    except OSError as e:
        raise ConfigError("<file>", f"cannot read ({e.strerror or e})", path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("<file>", f"not valid TOML: {e}", path) from None
    try:
        return config_from_dict(raw, path)
    except ConfigError as e:
        if e.source is None:
            raise ConfigError(e.field, str(e).split(": ", 1)[-1], path) from None
        raise


def config_to_toml(config: RunConfig, runtime: bool = True) -> str:
    """The resolved config as TOML text (what each run writes to ``config.toml``);
    without the ``RUNTIME_FIELDS`` unless ``runtime``."""
    return tomli_w.dumps(asdict(config) if runtime else computed_fields(config))


def computed_fields(config: RunConfig) -> dict:
    """``config`` as a nested dict less the ``RUNTIME_FIELDS``: what decides the numbers
    a run computes."""
    raw = asdict(config)
    for dotted in RUNTIME_FIELDS:
        table, leaf = dotted.split(".")
        raw[table].pop(leaf)
    return raw


def with_overrides(config: RunConfig, overrides: dict[str, object]) -> RunConfig:
    """A copy of ``config`` with dotted-key overrides (``"train.lr": 0.01``) applied; a key
    under ``methods`` creates its method's table (``"methods.umt.weight": 5.0``)."""
    raw = asdict(config)
    for dotted, value in overrides.items():
        node, cls = raw, RunConfig
        *parents, leaf = dotted.split(".")
        for p in parents:
            # A method's table may be absent until a key of it is set.
            if node is raw["methods"] and p not in node:
                node[p] = {}
            if not isinstance(node.get(p), dict):
                raise ConfigError(dotted, "no such config table")
            node, cls = node[p], typing.get_type_hints(cls).get(p) if cls else None
            cls = cls if is_dataclass(cls) else None
        # A table of free keys (``model.encoders``) takes new ones; a dataclass does not.
        if leaf not in node and cls is not None:
            raise ConfigError(dotted, "no such config field")
        node[leaf] = value
    return config_from_dict(raw)


__all__ = ["ARMS", "RunConfig", "DataConfig", "CsdConfig", "ModelConfig", "TrainConfig",
           "SyntheticConfig", "TuneConfig", "SearchParam", "default_space", "load_config",
           "table_to", "check_modalities", "config_to_toml", "computed_fields",
           "config_from_dict", "RUNTIME_FIELDS",
           "with_overrides", "replace"]

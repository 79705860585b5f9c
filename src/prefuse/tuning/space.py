"""The search space: each ``[tune.space]`` entry is a config field and a distribution.

Every arm searches the same entries, except those marked ``stage1``, which only arms
with a stage 1 search (the others never read them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import optuna

from ..config import RunConfig, SearchParam, TrainConfig, default_space, with_overrides
from ..errors import ConfigError
from ..methods import METHODS
from ..recipe.arms import arm as arm_named
from ..recipe.checks import check_config
from ..registry import Registry
from .study import DESIGNS, PRUNERS

Suggest = Callable[[optuna.Trial, str, SearchParam], object]

DISTRIBUTIONS: Registry[Suggest] = Registry("search distribution")


@DISTRIBUTIONS.register("log")
def _log(trial: optuna.Trial, name: str, p: SearchParam) -> float:
    return trial.suggest_float(name, p.low, p.high, log=True)


@DISTRIBUTIONS.register("float")
def _uniform(trial: optuna.Trial, name: str, p: SearchParam) -> float:
    return trial.suggest_float(name, p.low, p.high)


@DISTRIBUTIONS.register("int")
def _int(trial: optuna.Trial, name: str, p: SearchParam) -> int:
    return trial.suggest_int(name, int(p.low), int(p.high))


@DISTRIBUTIONS.register("choice")
def _choice(trial: optuna.Trial, name: str, p: SearchParam) -> object:
    return trial.suggest_categorical(name, p.choices)


def arm_space(config: RunConfig, arm: str) -> dict[str, SearchParam]:
    """The entries ``arm`` searches: the config's (less the stage-1 ones for arms without
    stage 1, and less other methods' options), plus its own method's ``search`` ranges
    for the options the config's space leaves out."""
    spec = arm_named(arm)
    own = f"methods.{spec.method}."
    space = {k: p for k, p in config.tune.space.items()
             if (spec.uses_stage1 or not p.stage1)
             and (not k.startswith("methods.") or k.startswith(own))}
    for option, param in METHODS.get(spec.method, "arms").search.items():
        space.setdefault(own + option, param)
    return space


# The budget the built-in space's epoch ranges were written for.
DEFAULT_BUDGET = TrainConfig().epochs


def fit_to_budget(config: RunConfig) -> RunConfig:
    """``config`` with the built-in space's epoch ranges scaled to ``train.epochs``:
    stage-1 epochs within [1, epochs - 1], freeze epochs no more than the stage-2 epochs
    the longest stage 1 leaves, less one; the base values of the fields so searched are
    brought into those ranges (no trial trains with them). The built-in space less the
    fields that flags fixed (``--width 16``, ``--pretrain-epochs 3``: their values are the
    flags') counts as built-in; a space the config writes (any other) is kept as written,
    so a range of it that cannot fit is refused by ``check_tune``."""
    built_in, space, train = default_space(), dict(config.tune.space), config.train
    if any(built_in.get(k) != v for k, v in space.items()):
        return config
    epochs = train.epochs
    pre, frozen = "train.pretrain_epochs", "train.freeze_epochs"
    longest = train.pretrain_epochs
    if space.get(pre) == built_in[pre]:
        low = max(1, int(built_in[pre].low) * epochs // DEFAULT_BUDGET)
        high = max(low, min(epochs - 1, int(built_in[pre].high) * epochs // DEFAULT_BUDGET))
        space[pre] = replace(built_in[pre], low=low, high=high)
        train = replace(train, pretrain_epochs=min(max(train.pretrain_epochs, low), high))
        longest = high
    elif pre in space:
        longest = int(space[pre].high)
    if space.get(frozen) == built_in[frozen]:
        high = max(0, min(int(built_in[frozen].high) * epochs // DEFAULT_BUDGET,
                          epochs - longest - 1))
        space[frozen] = replace(built_in[frozen], high=high)
        train = replace(train, freeze_epochs=min(train.freeze_epochs, high))
    return replace(config, train=train, tune=replace(config.tune, space=space))


def check_tune(config: RunConfig) -> None:
    """Raise ``ConfigError`` naming the first bad ``tune`` field, or the first
    ``tune.space`` entry that cannot be searched: an unknown kind or field, a reversed
    range, a value the config refuses."""
    t = config.tune
    positive = {"tune.trials": t.trials, "tune.jobs": t.jobs,
                "tune.heartbeat_seconds": t.heartbeat_seconds,
                "tune.grace_seconds": t.grace_seconds}
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(name, f"must be > 0, got {value}")
    for name, value in (("tune.startup_trials", t.startup_trials),
                        ("tune.prune_after_trials", t.prune_after_trials),
                        ("tune.prune_after_epochs", t.prune_after_epochs)):
        if value < 0:
            raise ConfigError(name, f"must be >= 0, got {value}")
    for name, seeds in (("tune.tune_seeds", t.tune_seeds), ("tune.final_seeds", t.final_seeds)):
        if len(set(seeds)) != len(seeds):
            raise ConfigError(name, f"seeds repeat: {seeds}")
    if not t.tune_seeds:
        raise ConfigError("tune.tune_seeds", "needs at least one seed")
    if not t.study:
        raise ConfigError("tune.study", "needs a name")
    PRUNERS.get(t.pruner, "tune.pruner")
    DESIGNS.get(t.design, "tune.design")
    for key, p in config.tune.space.items():
        field = f"tune.space.{key}"
        if key in ("model.context", "model.context_window"):
            # The splits are cut into windows once per worker, for all its trials.
            raise ConfigError(field, "cannot be searched: every trial of a tune uses the "
                              "same context windows; set it with --context or "
                              "--context-window")
        DISTRIBUTIONS.get(p.kind, f"{field}.kind")
        if p.kind == "choice":
            if not p.choices:
                raise ConfigError(f"{field}.choices", "a choice needs at least one value")
            extremes = list(p.choices)
        else:
            if not p.low <= p.high:
                raise ConfigError(field, f"needs low <= high, got [{p.low}, {p.high}]")
            if p.kind == "log" and p.low <= 0:
                raise ConfigError(f"{field}.low", f"a log range needs low > 0, got {p.low}")
            if p.kind == "int" and (p.low != int(p.low) or p.high != int(p.high)):
                raise ConfigError(field, f"an int range needs whole bounds, got "
                                  f"[{p.low}, {p.high}]")
            cast = int if p.kind == "int" else float
            extremes = [cast(p.low), cast(p.high)]
        for value in extremes:
            try:
                check_config(with_overrides(config, {key: value}))
            except ConfigError as e:
                raise ConfigError(field, f"value {value!r} is refused: {e}") from None


def sample(trial: optuna.Trial, config: RunConfig, arm: str) -> dict[str, object]:
    """Draw ``arm``'s parameters for ``trial``: ``{dotted field: value}``."""
    return {key: DISTRIBUTIONS.get(p.kind)(trial, key, p)
            for key, p in arm_space(config, arm).items()}


def paired_name(arm: str, key: str) -> str:
    """The trial parameter that holds ``arm``'s value of ``key`` in a paired trial: the
    shared entries under their own name, a method's options under ``<arm>/<key>``, so two
    arms of one method draw their own."""
    return f"{arm}/{key}" if _own(key) else key


def _own(key: str) -> bool:
    """Whether ``key`` is a method's option: an arm's own, not shared in a paired trial."""
    return key.startswith("methods.")


def sample_paired(trial: optuna.Trial, config: RunConfig) -> dict[str, dict[str, object]]:
    """Draw every arm's parameters for one paired ``trial``: ``{arm: {field: value}}``.
    The shared entries (``tune.space`` less method options) are drawn once, in the
    space's order, and every arm that searches one reads the same value."""
    spaces = {arm: arm_space(config, arm) for arm in config.arms}
    shared = {k: p for k, p in config.tune.space.items()
              if not _own(k) and any(k in space for space in spaces.values())}
    drawn = {k: DISTRIBUTIONS.get(p.kind)(trial, k, p) for k, p in shared.items()}
    return {arm: {k: drawn[k] if k in drawn
                  else DISTRIBUTIONS.get(p.kind)(trial, paired_name(arm, k), p)
                  for k, p in space.items()}
            for arm, space in spaces.items()}


def configure(config: RunConfig, arm: str, params: dict[str, object],
              seeds: list[int]) -> RunConfig:
    """``config`` for ``arm`` alone with ``params`` applied, trained on ``seeds``."""
    return with_overrides(config, {**params, "arms": [arm], "seeds": list(seeds)})

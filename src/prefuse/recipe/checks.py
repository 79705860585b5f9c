"""Checks of a run config that need the registries (arms, encoders, methods): the config
module itself checks only types and ranges, since it sits below every registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..config import RunConfig
from ..data.dataset import Split
from ..engine.runtime import Runtime
from ..errors import ConfigError, DataError
from ..methods import check_data, check_options
from ..models.context import CONTEXTS
from ..models.encoders import ENCODERS
from . import arms as arm_registry


def _check_training(arm: arm_registry.Arm, config: RunConfig) -> None:
    """``arm``'s own training config (``Arm.training``) checked as a config's would be."""
    try:
        train = arm.training(config.train)
    except TypeError:  # an override that names no TrainConfig field
        raise ConfigError("arms", f"arm {arm.name}: train_overrides "
                          f"{sorted(arm.train_overrides)} name no train field") from None
    try:
        replace(config, train=train).validate()
    except ConfigError as e:
        raise ConfigError(e.field, f"arm {arm.name}: {str(e).split(': ', 1)[-1]}") from None


def check_runtime(config: RunConfig, runtime: Runtime) -> None:
    """Raise ``ConfigError`` where ``config`` cannot train on ``runtime``: context under
    torchrun, whose sharding takes every n-th row of a batch and would cut the context
    windows apart."""
    if config.model.context != "none" and runtime.distributed:
        raise ConfigError("model.context", f"context ({config.model.context}) trains in one "
                          f"process only, not {runtime.world_size} (torchrun): each rank "
                          "takes every n-th row of a batch, which would cut the context "
                          "windows apart")


def _check_context(config: RunConfig) -> None:
    """What context (``model.context``) needs before any data: a window of at least one
    utterance and arms whose networks can take it (``check_runtime`` adds: one process)."""
    m = config.model
    if m.context_window < 1:
        raise ConfigError("model.context_window", "must be at least 1 (utterances per "
                          f"context window), got {m.context_window}")
    if m.context == "none":
        return
    CONTEXTS.get(m.context, "model.context")
    for name in arm_registry.known_arms(config.arms):
        reason = arm_registry.arm(name).no_context
        if reason is not None:
            raise ConfigError("model.context", f"arm {name} cannot use context "
                              f"({m.context}): {reason}; leave it out of the arms or train "
                              "without context")



def check_config(config: RunConfig, source: object = None) -> RunConfig:
    """``config`` with its arm groups expanded, once every registered name in it and the
    stage-1 budget are checked; a ``ConfigError`` naming ``source`` and the field otherwise."""
    try:
        config = replace(config.validate(), arms=arm_registry.expand(config.arms))
        m, t = config.model, config.train
        ENCODERS.get(m.encoder, "model.encoder")
        ENCODERS.get(m.vector_encoder, "model.vector_encoder")
        for modality, kind in m.encoders.items():
            ENCODERS.get(kind, f"model.encoders.{modality}")
        _check_context(config)
        check_options(config)
        if any(arm_registry.arm(a).uses_stage1
               for a in arm_registry.known_arms(config.arms)) and \
                not 0 < t.pretrain_epochs < t.epochs:
            raise ConfigError("train.pretrain_epochs",
                              f"must lie in [1, epochs-1] = [1, {t.epochs - 1}] for arms that "
                              "use stage-1 networks (it counts against the budget), got "
                              f"{t.pretrain_epochs}")
        for name in arm_registry.known_arms(config.arms):
            _check_training(arm_registry.arm(name), config)
    except ConfigError as e:
        if source is None or e.source is not None:
            raise
        raise ConfigError(e.field, str(e).split(": ", 1)[-1], source) from None
    return config


def _check_groups(context: str, splits: Mapping[str, Split], source: object) -> None:
    """With ``context``, every split must give each sample's group."""
    if context == "none":
        return
    for name, split in splits.items():
        if split.group is None:
            raise DataError(source, f"context ({context}) runs over the utterances of each "
                            f"video or dialogue, but split '{name}' does not say which "
                            "group each sample belongs to (no group field, nor ids of the "
                            "form <video>_<n>)", f"{name}/group")


def check_arms_data(config: RunConfig, modalities: list[str], source: object,
                    splits: Mapping[str, Split] | None = None) -> RunConfig:
    """``config`` with its data groups (``alone``) expanded for the data's ``modalities``,
    once every arm is known to get what it needs of the data: the modality of an
    ``alone-<m>`` arm, and its method's ``min_modalities``. Run right after the data is
    loaded, so that no arm trains (nor stage 1 for it) before one that cannot use the data
    is refused; a ``ConfigError`` naming ``arms`` and ``source`` otherwise. With context
    (``model.context``), every split of ``splits`` must say which group (video or
    dialogue) each sample belongs to: a ``DataError`` naming ``source`` and the split's
    ``group`` field otherwise."""
    _check_groups(config.model.context, splits or {}, source)
    arms = arm_registry.expand(config.arms, modalities)
    for name in arms:
        arm = arm_registry.arm(name)
        if arm.alone is not None and arm.alone not in modalities:
            raise ConfigError("arms", f"arm {name}: no modality '{arm.alone}' in {source}; "
                              f"its modalities: {', '.join(modalities)}")
        if len(modalities) < arm.min_modalities:
            raise ConfigError("arms", f"arm {name} needs data with at least "
                              f"{arm.min_modalities} modalities; {source} has "
                              f"{len(modalities)} ({', '.join(modalities)})")
    check_data([(name, arm_registry.arm(name).method) for name in arms], modalities, source)
    return replace(config, arms=arms)

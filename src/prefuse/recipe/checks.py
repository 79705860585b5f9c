"""Checks of a run config that need the registries (arms, encoders, methods): the config
module itself checks only types and ranges, since it sits below every registry."""

from __future__ import annotations

from dataclasses import replace

from ..config import RunConfig
from ..errors import ConfigError
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
        if m.context != "none":
            CONTEXTS.get(m.context, "model.context")
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


def check_arms_data(config: RunConfig, modalities: list[str], source: object) -> RunConfig:
    """``config`` with its data groups (``alone``) expanded for the data's ``modalities``,
    once every arm is known to get what it needs of the data: the modality of an
    ``alone-<m>`` arm, and its method's ``min_modalities``. Run right after the data is
    loaded, so that no arm trains (nor stage 1 for it) before one that cannot use the data
    is refused; a ``ConfigError`` naming ``arms`` and ``source`` otherwise."""
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

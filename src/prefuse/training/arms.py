"""The arms of the ablation: how each builds its network and whether it is pre-trained.

A new arm (another fusion, another architecture) is one ``register_arm`` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..models.network import MultimodalNetwork, NetworkSpec
from ..registry import Registry


@dataclass(frozen=True)
class ArmSpec:
    """An arm: ``build(spec)`` makes its network from the shared ``NetworkSpec``.

    ``train_overrides`` replaces training options for this arm only (e.g. a published
    baseline's own learning rate); the epoch budget and early stopping stay shared.
    """

    name: str
    fusion: str
    pretrained: bool
    build: Callable[[NetworkSpec], nn.Module] = MultimodalNetwork
    train_overrides: dict = field(default_factory=dict)


ARM_SPECS: Registry[ArmSpec] = Registry("arm")


def register_arm(spec: ArmSpec) -> ArmSpec:
    return ARM_SPECS.register(spec.name)(spec)


for _fusion in ("concat", "attention"):
    register_arm(ArmSpec(f"scratch+{_fusion}", _fusion, pretrained=False))
    register_arm(ArmSpec(f"pretrained+{_fusion}", _fusion, pretrained=True))

# MulT registers its arm on import; imported last because mult.py imports register_arm.
from ..models import mult  # noqa: E402, F401

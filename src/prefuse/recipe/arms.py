"""Arms: ``<init>+<fusion>[+<method>]``, each part from its own registry, or a named arm.

- init (``INITS``): ``scratch``; ``pretrained`` (stage-1 encoders, then trained: the
  paper); ``frozen`` (stage-1 encoders kept fixed; only fusion and head train).
- fusion: any registered fusion (``prefuse.models.fusion.FUSIONS``).
- method (``prefuse.methods.METHODS``): ``none`` when absent.

A whole architecture that is not such a composition (MulT, the unimodal ensemble) is a
named arm in ``NAMED_ARMS``; ``alone-<modality>`` is one modality's encoder and head (the
stage-1 network) trained as an arm, the single-modality baseline. Every arm declares its
traits (``Arm``); no code reads them off its name. The groups ``paper`` (the 2x2
ablation), ``balance`` (the unimodal ensemble and each method on the headline arm) and
``all`` expand to lists of arms; ``alone`` (every modality alone) depends on the data, so
it expands once the data is known (``expand`` with the data's modalities).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from ..config import ARMS, TrainConfig
from ..errors import ConfigError
from ..methods import METHODS
from ..models.ensemble import UnimodalEnsemble
from ..models.fusion import FUSIONS
from ..models.mult import MulT
from ..models.network import MultimodalNetwork, NetworkSpec
from ..registry import Registry


@dataclass(frozen=True)
class Init:
    """How an arm's encoders start: from stage-1 networks (``loads``), kept fixed for the
    whole fit (``frozen``); ``before`` is the init whose arm shows the attention before
    pre-training."""

    loads: bool
    frozen: bool = False
    before: str | None = None


INITS: Registry[Init] = Registry("init")
INITS.register("scratch")(Init(loads=False))
INITS.register("pretrained")(Init(loads=True, before="scratch"))
INITS.register("frozen")(Init(loads=True, frozen=True, before="scratch"))


@dataclass(frozen=True)
class Arm:
    """One arm of the comparison and its traits.

    ``build(spec)`` makes its network; ``train_overrides`` replaces ``TrainConfig`` fields
    for this arm only (a published baseline's own learning rate; the epoch budget and early
    stopping stay shared; see ``training``). ``has_weights``: its modality weights are
    learned (worth analysing). ``headline``: the arm a run saves at its top level.
    ``before``: the arm whose attention is this one's "before pre-training".
    ``uses_stage1``: it needs the stage-1 networks, whose epochs then count against its
    budget. ``joint``: False for an arm that trains nothing after stage 1 (its network is
    assembled from the stage-1 networks and calibrated on the validation split).
    ``balance``: a named arm that is a balancing method, so part of the ``balance`` group.
    ``alone``: the one modality the arm sees (a single-modality baseline), None for a
    fused arm. ``min_modalities``: what its architecture needs of the data (MulT's
    cross-modal attention pairs modalities); its method may need more. ``no_context``:
    why its network cannot take utterance context (``model.context``), None where it can.
    """

    name: str
    init: str
    fusion: str
    method: str = "none"
    build: Callable[[NetworkSpec], nn.Module] = MultimodalNetwork
    train_overrides: dict = field(default_factory=dict)
    has_weights: bool = False
    headline: bool = False
    before: str | None = None
    joint: bool = True
    balance: bool = False
    alone: str | None = None
    min_modalities: int = 1
    no_context: str | None = None

    @property
    def loads_stage1(self) -> bool:
        return INITS.get(self.init).loads

    @property
    def frozen(self) -> bool:
        return INITS.get(self.init).frozen

    @property
    def uses_stage1(self) -> bool:
        return self.loads_stage1 or METHODS.get(self.method).uses_stage1

    def training(self, train: TrainConfig) -> TrainConfig:
        """``train`` as this arm trains with it in stage 2: its epochs less stage 1's
        where it uses stage 1; the encoders' own learning rate and frozen epochs only
        where it loads stage-1 encoders (a frozen init keeps them fixed for every epoch);
        then its own ``train_overrides``."""
        epochs = train.epochs - (train.pretrain_epochs if self.uses_stage1 else 0)
        encoders = {"encoder_lr": 0.0, "freeze_epochs": 0}
        if self.loads_stage1:
            encoders = {"encoder_lr": train.encoder_lr,
                        "freeze_epochs": epochs if self.frozen else train.freeze_epochs}
        return replace(train, epochs=epochs, **{**encoders, **self.train_overrides})

    def parts(self) -> dict[str, str]:
        """What ``metrics.json`` records of the arm."""
        return {"init": self.init, "fusion": self.fusion, "method": self.method}


def compose(init: str, fusion: str, method: str = "none") -> Arm:
    """The arm made of these parts (each checked against its registry)."""
    INITS.get(init, "arms")
    learns = getattr(FUSIONS.get(fusion, "arms"), "learns_weights", False)
    METHODS.get(method, "arms")
    name = "+".join([init, fusion] + ([method] if method != "none" else []))
    before = INITS.get(init).before
    return Arm(name, init, fusion, method, has_weights=learns,
               before=f"{before}+{fusion}" if learns and before else None)


NAMED_ARMS: Registry[Arm] = Registry("arm")
NAMED_ARMS.register("mult")(Arm(
    "mult", init="scratch", fusion="mult", build=MulT, min_modalities=2,
    train_overrides={"lr": 1e-3, "batch_size": 24, "grad_clip": 0.8},
    no_context="its cross-modal transformers attend over the time steps within one "
               "utterance, and prefuse has no level of context across utterances for it"))
# UME (Du et al. 2023): the stage-1 models, frozen, their predictions combined.
NAMED_ARMS.register("ensemble")(Arm(
    "ensemble", init="frozen", fusion="ensemble", build=UnimodalEnsemble, joint=False,
    balance=True))

ALONE = "alone-"


def alone(modality: str) -> Arm:
    """``alone-<modality>``: the stage-1 network of ``modality`` (its encoder and head)
    trained as a stage-2 arm, with every arm's budget, early stopping and seeds, so it
    compares like with like (the stage-1 table has a shorter budget)."""
    return Arm(ALONE + modality, init="scratch", fusion="concat", alone=modality,
               build=lambda spec: MultimodalNetwork(spec.only(modality)))


# The paper's recipe, the arm a run leads with; balancing methods are tried on top of it.
HEADLINE = ("pretrained", "attention")


def arm(name: str) -> Arm:
    """The arm called ``name``: a named arm or a composition; a ``ConfigError`` naming
    ``arms`` and the choices otherwise."""
    if name in NAMED_ARMS:
        return NAMED_ARMS.get(name)
    if name.startswith(ALONE) and len(name) > len(ALONE):
        return alone(name[len(ALONE):])
    parts = name.split("+")
    if len(parts) in (2, 3) and parts[0] in INITS and parts[1] in FUSIONS and \
            (len(parts) == 2 or (parts[2] in METHODS and parts[2] != "none")):
        return replace(compose(*parts), headline=tuple(parts) == HEADLINE)
    raise ConfigError("arms", f"unknown arm '{name}'; an arm is <init>+<fusion>[+<method>] "
                      f"with init in {INITS.names()}, fusion in {FUSIONS.names()}, method in "
                      f"{[m for m in METHODS.names() if m != 'none']}, or one of "
                      f"{NAMED_ARMS.names() + sorted(GROUPS) + sorted(DATA_GROUPS)}, or "
                      f"{ALONE}<modality>")


def _balance() -> list[str]:
    named = [n for n in NAMED_ARMS.names() if NAMED_ARMS.get(n).balance]
    return named + ["+".join((*HEADLINE, m)) for m in METHODS.names() if m != "none"]


GROUPS: dict[str, Callable[[], list[str]]] = {
    "paper": lambda: list(ARMS),
    "balance": _balance,
    "all": lambda: list(ARMS) + NAMED_ARMS.names() + _balance(),
}


# Groups whose arms depend on the data: given its modalities.
DATA_GROUPS: dict[str, Callable[[list[str]], list[str]]] = {
    "alone": lambda modalities: [ALONE + m for m in modalities],
}


def expand(names: list[str], modalities: list[str] | None = None) -> list[str]:
    """``names`` with groups replaced by their arms, duplicates dropped, each checked.
    Without ``modalities`` (the data not known yet) a data group stays as its name."""
    out: list[str] = []
    for name in names:
        if name in DATA_GROUPS:
            arms = [name] if modalities is None else DATA_GROUPS[name](modalities)
        else:
            arms = GROUPS[name]() if name in GROUPS else [name]
        for each in arms:
            if each not in DATA_GROUPS:
                arm(each)
            if each not in out:
                out.append(each)
    return out


def known_arms(names: list[str]) -> list[str]:
    """The arms of ``names`` that are known before the data is (data groups left out)."""
    return [n for n in names if n not in DATA_GROUPS]

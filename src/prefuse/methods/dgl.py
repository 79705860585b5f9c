"""DGL, disentangled gradient learning: encoders learn from unimodal losses only."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import SearchParam
from ..models.outputs import Request
from .base import METHODS, option
from .multiloss import Multiloss


@dataclass
class DglOptions:
    """``weight``: alpha on the summed unimodal losses, in [0, 1000] (at 0 no gradient
    reaches the encoders; 1000 is 250 times the published 4)."""

    weight: float = option(4.0, low=0.0, high=1000.0)


@METHODS.register("dgl")
class Dgl(Multiloss):
    """L = l(head(fusion(sg[H])), y) + alpha * sum_m l(sg[head](sg[fusion](h_m alone)), y).

    Source: Wei, Luo & Luo, "Boosting Multimodal Learning via Disentangled Gradient
    Learning" (ICCV 2025). The fused loss trains fusion and head on detached encoder
    features, so no gradient of it reaches the encoders; each encoder learns from its own
    modality's loss through the same fusion and head with the other modalities masked, and
    those losses send no gradient into fusion or head. alpha = 4, the paper's lower CREMA-D
    setting. The loss has multi-loss's form; what differs is where its gradients go (the
    ``request``), and the weight.
    """

    Options = DglOptions
    search = {"weight": SearchParam("log", 0.5, 16.0)}
    request = Request(shared_unimodal=True, detach_fused=True)

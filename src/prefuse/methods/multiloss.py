"""Multi-loss: the fused loss plus one auxiliary loss per modality head."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import SearchParam
from ..models.outputs import Request
from .base import METHODS, EpochMean, Method, option, unimodal_losses


@dataclass
class MultilossOptions:
    """``weight``: lambda on the summed per-modality losses, in [0, 1000] (0: the fused
    loss alone; 1000 is a thousand times the published 1)."""

    weight: float = option(1.0, low=0.0, high=1000.0)


@METHODS.register("multiloss")
class Multiloss(Method):
    """L = l(z, y) + lambda * sum_m l(head_m(h_m), y), one auxiliary head per modality.

    Source: the "uniform baseline" of Wei & Hu, MMPareto (ICML 2024), lambda = 1. With a
    pre-trained init the auxiliary heads start from the stage-1 heads.
    """

    Options = MultilossOptions
    search = {"weight": SearchParam("log", 0.1, 10.0)}
    request = Request(unimodal_heads=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unimodal = EpochMean()

    def loss(self, out, batch):
        unimodal = unimodal_losses(self.task, out, batch)
        self.unimodal.add(unimodal, len(batch))
        return self.task.loss(out.logits, batch.y) + self.options.weight * unimodal

    def end_epoch(self, epoch, model, valid):
        """``unimodal_loss``: the epoch's mean of the summed per-modality losses."""
        return {"unimodal_loss": self.unimodal.mean(self.runtime)}

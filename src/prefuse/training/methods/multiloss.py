"""Multi-loss: the fused loss plus one auxiliary loss per modality head."""

from __future__ import annotations

from dataclasses import dataclass

from ...models.outputs import Request
from .base import METHODS, Method, unimodal_losses


@dataclass
class MultilossOptions:
    """``weight``: lambda on the summed per-modality losses."""

    weight: float = 1.0


@METHODS.register("multiloss")
class Multiloss(Method):
    """L = l(z, y) + lambda * sum_m l(head_m(h_m), y), one auxiliary head per modality.

    Source: the "uniform baseline" of Wei & Hu, MMPareto (ICML 2024), lambda = 1. With a
    pre-trained init the auxiliary heads start from the stage-1 heads.
    """

    Options = MultilossOptions
    request = Request(unimodal_heads=True)

    def loss(self, out, batch):
        fused = self.task.loss(out.logits, batch.y)
        return fused + self.options.weight * sum(unimodal_losses(self.task, out, batch))

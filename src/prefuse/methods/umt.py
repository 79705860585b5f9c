"""UMT, the uni-modal teacher: encoder features distilled from the stage-1 encoders."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..config import SearchParam
from .base import METHODS, EpochMean, Method, option


@dataclass
class UmtOptions:
    """``weight``: lambda on the summed feature distances, in [0, 1000] (0: the term off;
    1000 is a hundred times the published 10)."""

    weight: float = option(10.0, low=0.0, high=1000.0)


@METHODS.register("umt")
class Umt(Method):
    """L = l(z, y) + lambda * sum_m ||h_m - h_m^T||^2, teachers the frozen stage-1 encoders.

    Source: Du et al., "On Uni-Modal Feature Learning in Supervised Multi-Modal
    Learning" (ICML 2023); lambda = 10 as in BalanceMM's UMT trainer. The distance is the
    squared error averaged over feature units and the samples that have the modality (the
    trainer's MSE). The extra loss depends on encoder features alone, so its gradient
    reaches only the encoders.
    """

    Options = UmtOptions
    search = {"weight": SearchParam("log", 1.0, 100.0)}
    uses_stage1 = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.modalities or set(self.stage1) != set(self.modalities):
            raise ValueError("umt needs a stage-1 network (teacher) for every modality")
        # Copies: moving a teacher to the training device must not move the stage-1 result.
        self.teachers = {m: copy.deepcopy(net).eval().requires_grad_(False)
                         for m, net in self.stage1.items()}
        self.distance = EpochMean()

    @torch.no_grad()
    def _teacher_features(self, modality: str, batch) -> torch.Tensor:
        teacher = self.teachers[modality].to(batch.y.device)
        return teacher.encode(batch)[:, 0]

    def distillation(self, features: torch.Tensor, batch) -> torch.Tensor:
        """sum_m of the mean squared distance of student features ``(B, M, m)`` to the
        teachers', over the samples that have modality m."""
        total = features.new_zeros(())
        for k, modality in enumerate(self.modalities):
            present = batch.present[modality]
            # Known complete on the host (``Batch.complete``): no wait for the device.
            whole = modality in batch.complete
            if whole or present.any():
                gap = features[:, k] - self._teacher_features(modality, batch)
                total = total + (gap if whole else gap[present]).pow(2).mean()
        return total

    def loss(self, out, batch):
        distance = self.distillation(out.features, batch)
        self.distance.add(distance, len(batch))
        return self.task.loss(out.logits, batch.y) + self.options.weight * distance

    def end_epoch(self, epoch, model, valid):
        """``umt_distance``: the epoch's mean summed distance to the teachers."""
        return {"umt_distance": self.distance.mean(self.runtime)}

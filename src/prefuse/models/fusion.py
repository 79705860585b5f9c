"""Fusion of the M modality features ``H (B, M, m)`` into one vector ``z (B, M*m)``.

Both fusions take a presence mask ``(B, M)`` and return ``(z, weights)``; a missing
modality contributes nothing and gets weight 0. ``learns_weights`` says whether the
weights are learned (worth analysing) or fixed by presence alone.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

FUSIONS: Registry[type[nn.Module]] = Registry("fusion")


@FUSIONS.register("attention")
class ModalityAttention(nn.Module):
    """The paper's modality attention (not self-attention).

    alpha = softmax(W_a flatten(H) + b_a) gives one weight per modality; each feature
    is scaled by its weight and the results are concatenated. Missing modalities are
    zeroed before scoring and excluded from the softmax, so alpha renormalises over the
    modalities present; a sample with no modality present gets zero weights and z = 0
    (not the NaN of a softmax over nothing), so a method may mask any subset.
    """

    learns_weights = True

    def __init__(self, modalities: int, width: int):
        super().__init__()
        self.score = nn.Linear(modalities * width, modalities)

    def forward(self, h: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = h * present.unsqueeze(-1).to(h.dtype)
        scores = self.score(h.flatten(1)).masked_fill(~present, float("-inf"))
        # Rows with nothing present score 0 everywhere, and the presence mask zeroes them.
        scores = torch.where(present.any(dim=1, keepdim=True), scores, 0.0)
        alpha = torch.softmax(scores, dim=1) * present.to(h.dtype)
        return (alpha.unsqueeze(-1) * h).flatten(1), alpha


@FUSIONS.register("concat")
class Concatenation(nn.Module):
    """Plain concatenation; reports equal weights over the present modalities."""

    learns_weights = False

    def __init__(self, modalities: int, width: int):
        super().__init__()

    def forward(self, h: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = present.to(h.dtype)
        weights = mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return (h * mask.unsqueeze(-1)).flatten(1), weights

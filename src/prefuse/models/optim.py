"""The optimizer every network trains with: Adam, the encoders in a group of their own so
that pre-trained encoders can learn at ``train.encoder_lr``."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig


def adam(model: nn.Module, train: TrainConfig,
         encoders: nn.Module | None = None) -> torch.optim.Adam:
    """Adam over ``model``'s parameters with ``train.weight_decay``: those of ``encoders``
    (a part of ``model``) at ``train.encoder_lr`` (0: ``train.lr``), the rest at
    ``train.lr``. The groups keep ``model.parameters()``'s order, rest first."""
    own = list(encoders.parameters()) if encoders is not None else []
    ids = {id(p) for p in own}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr": train.lr}]
    if own:
        groups.append({"params": own, "lr": train.encoder_lr or train.lr})
    return torch.optim.Adam(groups, weight_decay=train.weight_decay)

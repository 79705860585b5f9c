"""Checks that stop training before it produces numbers that mean nothing."""

from __future__ import annotations

import math

import torch

from ..errors import RunError


def check_finite(loss: torch.Tensor | float, where: str, epoch: int) -> None:
    """Raise ``RunError`` if ``loss`` is NaN or infinite.

    A non-finite loss makes every later weight and score meaningless, yet training would
    go on and print plausible tables; stopping in the epoch it happens (``fit`` checks the
    epoch's mean loss, which is non-finite when any step's is, before that epoch is scored
    or saved) keeps what earlier stages finished (their checkpoints) and says where it
    happened (``where``: the stage, with its seed and arm).
    """
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        raise RunError(f"training diverged: the loss became {value} in {where}, epoch "
                       f"{epoch}; the stages finished before it are kept in checkpoints/. "
                       "Lower the learning rate (train.lr) or clip gradients "
                       "(train.grad_clip), and run again with --overwrite")

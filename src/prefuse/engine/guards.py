"""Checks that stop training before it produces numbers that mean nothing."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

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
        raise _diverged(f"the loss became {value}", where, epoch)


class NonFinite(ValueError):
    """A value a training method computes from the losses (scores, ratios, blend
    weights) is NaN or infinite: the training has diverged. ``stops_on_divergence`` turns
    it into the same error a non-finite loss gives."""


@contextmanager
def stops_on_divergence(where: str, epoch: int) -> Iterator[None]:
    """Within the block, a ``NonFinite`` raised by a method stops the run as a non-finite
    loss does (a method may meet the divergence inside a step, before ``check_finite``
    sees the epoch's loss)."""
    try:
        yield
    except NonFinite as e:
        raise _diverged(f"a training method's values became non-finite ({e})", where,
                        epoch) from None


def _diverged(what: str, where: str, epoch: int) -> RunError:
    return RunError(f"training diverged: {what} in {where}, epoch {epoch}; the stages "
                    "finished before it are kept in checkpoints/. Lower the learning rate "
                    "(train.lr) or clip gradients (train.grad_clip), and run again with "
                    "--overwrite")

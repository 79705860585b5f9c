"""In-place gradient edits shared by the methods that modulate encoders after backward."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def with_grad(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The parameters that received a gradient in the last backward, in order."""
    return [p for p in params if p.grad is not None]


def scale_grads_(params_by_modality: Sequence[Iterable[torch.nn.Parameter]],
                 coeffs: torch.Tensor) -> None:
    """Multiply every gradient of modality ``m``'s parameters by ``coeffs[m]``, in place."""
    if len(params_by_modality) != len(coeffs):
        raise ValueError(f"{len(params_by_modality)} parameter groups but "
                         f"{len(coeffs)} coefficients")
    with torch.no_grad():
        for params, k in zip(params_by_modality, coeffs.tolist()):
            for p in with_grad(params):
                p.grad.mul_(k)


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One vector holding every tensor's entries, in order."""
    return torch.cat([t.reshape(-1) for t in tensors])

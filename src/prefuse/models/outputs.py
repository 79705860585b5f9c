"""What a network's forward returns, and what a training method may ask it to add.

Everything a training method needs comes out of the one forward call, so that under
DistributedDataParallel every gradient (auxiliary heads included) is averaged across ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from ..data.batching import Batch


@dataclass(frozen=True)
class Request:
    """Extra outputs a training method asks of ``forward``.

    ``unimodal_heads``: per-modality logits from the auxiliary heads (the network must be
    built with ``NetworkSpec.unimodal_heads``); with ``detach_unimodal`` the heads see
    detached encoder features, so their losses train the heads alone.
    ``shared_unimodal``: per-modality logits from the network's own fusion and head with
    the other modalities masked, their gradient reaching only the encoders.
    ``detach_fused``: the fused logits see detached encoder features, so the fused loss
    trains fusion and head only. ``keep``: fused logits with only the listed modalities
    present (of those the sample has), one entry per tuple; the empty tuple gives the
    network's output with every modality masked.
    """

    unimodal_heads: bool = False
    detach_unimodal: bool = False
    shared_unimodal: bool = False
    detach_fused: bool = False
    keep: tuple[tuple[str, ...], ...] = ()


PLAIN = Request()


@dataclass
class NetworkOutput:
    """Named outputs: ``logits (B, out)``, modality ``weights (B, M)``, the stacked
    encoder ``features (B, M, m)`` (None for architectures without per-modality
    features), ``unimodal_logits`` per modality and ``kept_logits`` per kept subset
    (empty unless requested)."""

    logits: torch.Tensor
    weights: torch.Tensor
    features: torch.Tensor | None = None
    unimodal_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    kept_logits: dict[tuple[str, ...], torch.Tensor] = field(default_factory=dict)

    def float(self) -> NetworkOutput:
        """The same outputs in fp32 (a forward under bf16 autocast gives bf16 logits;
        losses and scores are computed in fp32)."""
        return self.map(torch.Tensor.float)

    def detach(self) -> NetworkOutput:
        """The same outputs cut from the autograd graph."""
        return self.map(torch.Tensor.detach)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> NetworkOutput:
        """The outputs with ``fn`` applied to every tensor."""
        return NetworkOutput(
            logits=fn(self.logits), weights=fn(self.weights),
            features=None if self.features is None else fn(self.features),
            unimodal_logits={m: fn(v) for m, v in self.unimodal_logits.items()},
            kept_logits={k: fn(v) for k, v in self.kept_logits.items()})


def only_keep(request: Request) -> bool:
    """Whether ``request`` asks for nothing but ``keep`` subsets (which every network
    answers; the other extras need per-modality features)."""
    return replace(request, keep=()) == PLAIN


def kept_by_masking(forward: Callable[[Batch], NetworkOutput], batch: Batch,
                    keep: tuple[tuple[str, ...], ...]) -> dict[tuple[str, ...], torch.Tensor]:
    """``kept_logits`` for a network without a cheaper way: one ``forward`` per subset,
    on the batch with the other modalities marked absent."""
    return {subset: forward(batch.keeping(subset)).logits for subset in keep}

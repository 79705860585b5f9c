"""The simple network of the paper: per-modality encoders -> fusion -> head.

    x_i --standardise--> encoder_i --> h_i (m)        one sub-network per modality
    H = stack(h_1..h_M)                (B, M, m)
    z, alpha = fusion(H, present)      (B, M*m), (B, M)
    y = head(z)                        FC -> ReLU -> FC

With ``spec.context`` (and a batch that carries ``windows``), each h_i passes through its
modality's own context layer over the utterances of its window (absent modalities' vectors
zeroed first), before the fusion, and z through one more before the head; the attention
weights stay one per utterance and modality. Without context nothing of this is built.

``forward`` returns a ``NetworkOutput``; a training method's ``Request`` adds auxiliary
per-modality logits, logits with modalities masked, or a fused path on detached features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..config import TrainConfig
from ..data.batching import Batch, Windows
from ..data.dataset import Split
from ..registry import Registry
from .context import CONTEXTS, alone, contextualise
from .encoders import ENCODERS, step_mask
from .fusion import FUSIONS
from .optim import adam
from .outputs import PLAIN, NetworkOutput, Request


@dataclass
class NetworkSpec:
    """Everything needed to rebuild a network (saved in ``model.json``)."""

    modalities: list[str]
    dims: dict[str, int]
    sequence: dict[str, bool]
    encoders: dict[str, str]
    fusion: str
    out_dim: int
    width: int = 32
    layers: int = 1
    dropout: float = 0.1
    head_hidden: int = 64
    unimodal_heads: bool = False
    context: str = "none"
    context_window: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def only(self, modality: str) -> NetworkSpec:
        """The spec of a one-modality network (used for stage-1 pre-training)."""
        return NetworkSpec(
            modalities=[modality], dims={modality: self.dims[modality]},
            sequence={modality: self.sequence[modality]},
            encoders={modality: self.encoders[modality]}, fusion="concat",
            out_dim=self.out_dim, width=self.width, layers=self.layers, dropout=self.dropout,
            head_hidden=self.head_hidden, context=self.context,
            context_window=self.context_window)


class Standardize(nn.Module):
    """Feature standardisation with train-split statistics, kept as buffers so a saved
    model carries them. Padded steps stay exactly zero."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: np.ndarray, lengths: np.ndarray, present: np.ndarray) -> None:
        """Set mean/std from the valid steps of present samples of ``x``."""
        if x.ndim == 3:
            mask = step_mask(torch.from_numpy(lengths), x.shape[1]).numpy() & present[:, None]
            rows = x[mask]
        else:
            rows = x[present]
        if len(rows) == 0:
            return
        std = rows.std(axis=0)
        self.mean.copy_(torch.from_numpy(rows.mean(axis=0).astype(np.float32)))
        # Constant features (std 0) are centred but left unscaled.
        self.std.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0).astype(np.float32)))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        if x.dim() == 3:
            z = z * step_mask(lengths, x.shape[1]).unsqueeze(-1).to(z.dtype)
        return z


# Whole architectures by name: what ``model.json`` records to rebuild a saved network.
NETWORKS: Registry[type[nn.Module]] = Registry("network")


def _head(width: int, spec: NetworkSpec) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, spec.head_hidden), nn.ReLU(), nn.Dropout(spec.dropout),
                         nn.Linear(spec.head_hidden, spec.out_dim))


def _detached(module: nn.Module, *args):
    """``module(*args)`` with its parameters detached: gradients flow to ``args`` only."""
    params = {k: v.detach() for k, v in module.named_parameters()}
    return functional_call(module, params, args)


class Contextual(nn.Module):
    """A modality's encoder and its own context layer as one module, in the network's
    ``encoders``: whatever treats a modality's encoder as its sub-network (stage-1
    loading, the encoder learning rate and freezing, the methods that scale or modulate a
    modality's gradients) then takes its context layer along."""

    def __init__(self, encoder: nn.Module, context: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.context = context


def _encoder(modality: str, spec: NetworkSpec) -> nn.Module:
    encoder = ENCODERS.get(spec.encoders[modality], f"model.encoders.{modality}")(
        spec.dims[modality], spec.width, spec.layers, spec.dropout)
    if spec.context == "none":
        return encoder
    return Contextual(encoder, CONTEXTS.get(spec.context, "model.context")(spec.width,
                                                                           spec.dropout))


@NETWORKS.register("simple")
class MultimodalNetwork(nn.Module):
    """Encoders, a fusion and a head (and, with ``spec.unimodal_heads``, one auxiliary
    head per modality shaped like a stage-1 head; with ``spec.context``, context layers:
    see the module's docstring). ``forward`` returns a ``NetworkOutput``."""

    architecture = "simple"

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        self.modalities = list(spec.modalities)
        self.standardize = nn.ModuleDict({m: Standardize(spec.dims[m]) for m in self.modalities})
        self.encoders = nn.ModuleDict({m: _encoder(m, spec) for m in self.modalities})
        self.fusion = FUSIONS.get(spec.fusion, "fusion")(len(self.modalities), spec.width)
        self.head = _head(len(self.modalities) * spec.width, spec)
        if spec.unimodal_heads:
            self.unimodal_heads = nn.ModuleDict({m: _head(spec.width, spec)
                                                 for m in self.modalities})
        if spec.context != "none":
            # Over the fused vectors; a stage-1 network has one too, but this one always
            # starts fresh (``load_pretrained`` leaves it).
            self.fused_context = CONTEXTS.get(spec.context, "model.context")(
                len(self.modalities) * spec.width, spec.dropout)

    def configure_optimizer(self, train: TrainConfig) -> torch.optim.Optimizer:
        """Adam, the encoders at ``train.encoder_lr`` (see ``optim.adam``)."""
        return adam(self, train, self.encoders)

    def fit_standardization(self, train: Split) -> None:
        """Take normalisation statistics from the training split only."""
        for m in self.modalities:
            self.standardize[m].fit(train.features[m], train.lengths[m], train.present[m])

    def encode(self, batch: Batch) -> torch.Tensor:
        """``H``: the stacked modality features ``(B, M, m)``, each modality's through its
        context layer where the network has them (all modalities' in one call:
        recurrent ones then step together)."""
        h = [self._encode(m, batch) for m in self.modalities]
        windows = self._windows(batch)
        if windows is not None:
            h = contextualise([self.encoders[m].context for m in self.modalities], h, windows)
        return torch.stack(h, dim=1)

    def _windows(self, batch: Batch) -> Windows | None:
        """The batch's windows for the context layers: None without context; a batch
        without windows is read as utterances each alone in its window (what the layers
        give an utterance with no neighbour)."""
        if self.spec.context == "none":
            return None
        return batch.windows if batch.windows is not None else alone(len(batch), batch.y.device)

    def _encode(self, modality: str, batch: Batch) -> torch.Tensor:
        encoder, lengths = self.encoders[modality], batch.lengths[modality]
        windows = self._windows(batch)
        if windows is not None:
            encoder = encoder.encoder
        x = self.standardize[modality](batch.x[modality], lengths)
        if getattr(encoder, "uses_host_lengths", False):
            h = encoder(x, lengths, batch.host_lengths.get(modality))
        else:
            h = encoder(x, lengths)
        if windows is None:
            return h
        # An absent modality's vector (the encoding of zeros) must tell its neighbours
        # nothing.
        return h * batch.present[modality].unsqueeze(-1).to(h.dtype)

    def forward(self, batch: Batch, request: Request = PLAIN) -> NetworkOutput:
        present = torch.stack([batch.present[m] for m in self.modalities], dim=1)
        h, windows = self.encode(batch), self._windows(batch)
        z, weights = self.fusion(h.detach() if request.detach_fused else h, present)
        out = NetworkOutput(self._classify(z, windows), weights, h)
        if request.unimodal_heads:
            seen = h.detach() if request.detach_unimodal else h
            out.unimodal_logits = {m: self.unimodal_heads[m](seen[:, k] * present[:, k, None])
                                   for k, m in enumerate(self.modalities)}
        if request.shared_unimodal:
            # Modality k alone, even where it is missing (a softmax over no modality is
            # NaN); the caller's loss skips the samples that lack it.
            for k, m in enumerate(self.modalities):
                only = (torch.arange(len(self.modalities), device=h.device) == k).expand_as(present)
                out.unimodal_logits[m] = self._classify(_detached(self.fusion, h, only)[0],
                                                        windows, detached=True)
        positions = torch.arange(len(self.modalities), device=h.device)
        for keep in request.keep:
            # Made on the device: a mask built on the host is a copy that waits for it.
            mask = torch.zeros_like(positions, dtype=torch.bool)
            for k in (k for k, m in enumerate(self.modalities) if m in keep):
                mask |= positions == k
            out.kept_logits[keep] = self._classify(self.fusion(h, present & mask)[0], windows)
        return out

    def _classify(self, z: torch.Tensor, windows: Windows | None,
                  detached: bool = False) -> torch.Tensor:
        """The head's logits for fused vectors ``z``, through the fused context layer first
        where there is one (``windows`` not None); ``detached``: with their parameters
        detached, so gradients flow to ``z`` only."""
        if windows is not None:
            z = _detached(self.fused_context, z, windows) if detached \
                else self.fused_context(z, windows)
        return _detached(self.head, z) if detached else self.head(z)

    def load_pretrained(self, modality: str, unimodal: MultimodalNetwork) -> None:
        """Start ``modality``'s encoder (its context layer included, where there is one)
        and its statistics from a stage-1 network; its head starts the auxiliary head
        where there is one, else it is dropped, and so is its fused context layer."""
        self.encoders[modality].load_state_dict(unimodal.encoders[modality].state_dict())
        self.standardize[modality].load_state_dict(unimodal.standardize[modality].state_dict())
        if self.spec.unimodal_heads:
            self.unimodal_heads[modality].load_state_dict(unimodal.head.state_dict())

"""The simple network of the paper: per-modality encoders -> fusion -> head.

    x_i --standardise--> encoder_i --> h_i (m)        one sub-network per modality
    H = stack(h_1..h_M)                (B, M, m)
    z, alpha = fusion(H, present)      (B, M*m), (B, M)
    y = head(z)                        FC -> ReLU -> FC
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ..data.batching import Batch
from ..data.dataset import Split
from .encoders import ENCODERS, step_mask
from .fusion import FUSIONS


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
            head_hidden=self.head_hidden)


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


class MultimodalNetwork(nn.Module):
    """Encoders, a fusion and a head. ``forward`` returns ``(logits, weights (B, M))``."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        self.modalities = list(spec.modalities)
        self.standardize = nn.ModuleDict({m: Standardize(spec.dims[m]) for m in self.modalities})
        self.encoders = nn.ModuleDict({
            m: ENCODERS.get(spec.encoders[m], f"model.encoders.{m}")(
                spec.dims[m], spec.width, spec.layers, spec.dropout)
            for m in self.modalities
        })
        self.fusion = FUSIONS.get(spec.fusion, "fusion")(len(self.modalities), spec.width)
        self.head = nn.Sequential(
            nn.Linear(len(self.modalities) * spec.width, spec.head_hidden),
            nn.ReLU(),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.head_hidden, spec.out_dim),
        )

    def fit_standardization(self, train: Split) -> None:
        """Take normalisation statistics from the training split only."""
        for m in self.modalities:
            self.standardize[m].fit(train.features[m], train.lengths[m], train.present[m])

    def encode(self, batch: Batch) -> torch.Tensor:
        """``H``: the stacked modality features ``(B, M, m)``."""
        return torch.stack([
            self.encoders[m](self.standardize[m](batch.x[m], batch.lengths[m]), batch.lengths[m])
            for m in self.modalities
        ], dim=1)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        present = torch.stack([batch.present[m] for m in self.modalities], dim=1)
        z, weights = self.fusion(self.encode(batch), present)
        return self.head(z), weights

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoders.parameters())

    def load_pretrained(self, modality: str, unimodal: MultimodalNetwork) -> None:
        """Start ``modality``'s encoder (and its statistics) from a stage-1 network;
        the stage-1 head is dropped."""
        self.encoders[modality].load_state_dict(unimodal.encoders[modality].state_dict())
        self.standardize[modality].load_state_dict(unimodal.standardize[modality].state_dict())

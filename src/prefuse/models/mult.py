"""The Multimodal Transformer (MulT; Tsai et al., ACL 2019), the heavyweight baseline.

Written from the paper and the public description of its repository defaults:

    x_i --standardise--> Conv1d (kernel 1) --> (B, T_i, d)              per modality
    for each target t and each source s != t:
        crossmodal stack s->t: queries from t, keys/values from s      (B, T_t, d)
    concat over sources --> self-attention stack per target            (B, T_t, (M-1) d)
    last valid step of each target, concatenated                       (B, M (M-1) d)
    z + proj2(dropout(relu(proj1(z)))) --> output layer                (B, out_dim)

Every stack embeds its inputs as ``sqrt(width) * x + sinusoidal positions`` with
embedding dropout, runs pre-LN layers (layer norm before attention and before the 4x
feed-forward block) and ends with a layer norm. In a crossmodal layer the same layer
norm normalises the queries and the keys/values, as in the repository.

Defaults (repository): d=30, 5 layers in every stack, 5 heads, attention dropout 0.1,
ReLU dropout 0.1, residual dropout 0.1, embedding dropout 0.25, output dropout 0.0, no
causal mask: about 1.07 M parameters at text 300, audio 74, vision 35, one output. The
repository's per-modality attention dropouts (0.1/0.0/0.0) are one value here, and its
extra input dropout on the text features is left out, since prefuse's modalities have no
fixed roles.

Sequences are right-padded with lengths (unaligned inputs, a different T per modality,
work as they are); vector ``(B, D)`` modalities are sequences of one step. Padding is
masked as attention keys everywhere and the output is read at each target's last valid
step, so padding never changes the output.

Missing modalities (``batch.present`` false): MulT has no notion of them, so prefuse
zeroes their inputs, masks all their steps as attention keys (a target whose source is
missing gets a zero attention output from it, leaving its residual stream unchanged) and
zeroes the missing target's final vector before the MLP. MulT has no modality weights:
the weights it reports are uniform over the present modalities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..data.batching import Batch
from ..data.dataset import Split
from .encoders import sinusoidal_positions, step_mask
from .network import NETWORKS, NetworkSpec, Standardize
from .optim import adam
from .outputs import PLAIN, NetworkOutput, Request, kept_by_masking, only_keep

DEFAULTS = {"width": 30, "layers": 5, "heads": 5, "kernel": 1, "attn_dropout": 0.1,
            "relu_dropout": 0.1, "res_dropout": 0.1, "embed_dropout": 0.25,
            "out_dropout": 0.0}


class Attention(nn.Module):
    """Multi-head attention with a key padding mask.

    A sample with no valid key at all (a missing modality) gets a zero output instead of
    the NaN a softmax over nothing would give.
    """

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"MulT width {width} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        return x.view(b, t, self.heads, w // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, source: torch.Tensor,
                key_valid: torch.Tensor) -> torch.Tensor:
        empty = ~key_valid.any(dim=1)
        mask = (key_valid | empty[:, None])[:, None, None, :]
        h = F.scaled_dot_product_attention(
            self._split(self.query(x)), self._split(self.key(source)),
            self._split(self.value(source)), attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0)
        h = self.out(h.transpose(1, 2).flatten(2))
        return h.masked_fill(empty[:, None, None], 0.0)


class Layer(nn.Module):
    """Pre-LN transformer layer: attention from ``x`` to ``source`` (itself when
    ``source`` is None), then a ReLU feed-forward block of width 4x."""

    def __init__(self, width: int, heads: int, attn_dropout: float, relu_dropout: float,
                 res_dropout: float):
        super().__init__()
        self.norm_attn = nn.LayerNorm(width)
        self.attn = Attention(width, heads, attn_dropout)
        self.norm_ff = nn.LayerNorm(width)
        self.ff_in = nn.Linear(width, 4 * width)
        self.ff_out = nn.Linear(4 * width, width)
        self.relu_dropout, self.res_dropout = relu_dropout, res_dropout

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor,
                source: torch.Tensor | None = None) -> torch.Tensor:
        q = self.norm_attn(x)
        kv = q if source is None else self.norm_attn(source)
        x = x + F.dropout(self.attn(q, kv, key_valid), self.res_dropout, self.training)
        h = F.dropout(F.relu(self.ff_in(self.norm_ff(x))), self.relu_dropout, self.training)
        return x + F.dropout(self.ff_out(h), self.res_dropout, self.training)


class Stack(nn.Module):
    """A transformer stack: crossmodal when called with a source, self-attention otherwise."""

    def __init__(self, width: int, layers: int, heads: int, attn_dropout: float,
                 relu_dropout: float, res_dropout: float, embed_dropout: float):
        super().__init__()
        self.width, self.embed_dropout = width, embed_dropout
        self.layers = nn.ModuleList([
            Layer(width, heads, attn_dropout, relu_dropout, res_dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(width)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        positions = sinusoidal_positions(x.shape[1], self.width).to(x)
        return F.dropout(math.sqrt(self.width) * x + positions, self.embed_dropout,
                         self.training)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, source: torch.Tensor | None = None,
                source_valid: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(x)
        if source is not None:
            source, valid = self.embed(source), source_valid
        for layer in self.layers:
            x = layer(x, valid, source)
        return self.norm(x)


@NETWORKS.register("mult")
class MulT(nn.Module):
    """The Multimodal Transformer for any M >= 2 modalities.

    Options come from ``spec.extra`` (keys of ``DEFAULTS``; the simple network's
    ``spec.width`` and ``spec.layers`` do not apply). ``forward`` returns a
    ``NetworkOutput`` with uniform weights over present modalities and no per-modality
    features, so it takes no training method's ``Request``.
    """

    architecture = "mult"

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        if len(spec.modalities) < 2:
            raise ValueError("MulT needs at least two modalities")
        o = {k: spec.extra.get(k, v) for k, v in DEFAULTS.items()}
        self.spec = spec
        self.modalities = list(spec.modalities)
        d, m = o["width"], len(self.modalities)
        dropouts = dict(attn_dropout=o["attn_dropout"], relu_dropout=o["relu_dropout"],
                        res_dropout=o["res_dropout"], embed_dropout=o["embed_dropout"])
        self.out_dropout = o["out_dropout"]
        self.standardize = nn.ModuleDict({k: Standardize(spec.dims[k]) for k in self.modalities})
        self.project = nn.ModuleDict({
            k: nn.Conv1d(spec.dims[k], d, o["kernel"], padding="same", bias=False)
            for k in self.modalities})
        self.crossmodal = nn.ModuleDict({
            target: nn.ModuleDict({source: Stack(d, o["layers"], o["heads"], **dropouts)
                                   for source in self.modalities if source != target})
            for target in self.modalities})
        self.self_attention = nn.ModuleDict({
            target: Stack((m - 1) * d, o["layers"], o["heads"], **dropouts)
            for target in self.modalities})
        combined = m * (m - 1) * d
        self.proj1 = nn.Linear(combined, combined)
        self.proj2 = nn.Linear(combined, combined)
        self.out = nn.Linear(combined, spec.out_dim)

    def configure_optimizer(self, train: TrainConfig) -> torch.optim.Optimizer:
        """Adam over every parameter alike (see ``optim.adam``)."""
        return adam(self, train)

    def fit_standardization(self, train: Split) -> None:
        """Take normalisation statistics from the training split only."""
        for k in self.modalities:
            self.standardize[k].fit(train.features[k], train.lengths[k], train.present[k])

    def embed_inputs(self, batch: Batch) -> tuple[dict, dict, dict]:
        """Per modality: projected sequence ``(B, T, d)``, valid steps ``(B, T)`` and
        lengths, with missing modalities reduced to zero valid steps."""
        seqs, valid, lengths = {}, {}, {}
        for k in self.modalities:
            x, n = batch.x[k], batch.lengths[k]
            if x.dim() == 2:
                x, n = x.unsqueeze(1), torch.ones_like(n)
            n = torch.where(batch.present[k], n, torch.zeros_like(n))
            # Standardize zeroes padded steps (and so all of a missing modality), which
            # keeps a wider convolution's windows blind to how much padding follows.
            x = self.standardize[k](x, n)
            seqs[k] = self.project[k](x.transpose(1, 2)).transpose(1, 2)
            valid[k], lengths[k] = step_mask(n, x.shape[1]), n
        return seqs, valid, lengths

    def forward(self, batch: Batch, request: Request = PLAIN) -> NetworkOutput:
        if not only_keep(request):
            raise ValueError("MulT has no per-modality features for a training method")
        seqs, valid, lengths = self.embed_inputs(batch)
        last = []
        for target in self.modalities:
            h = torch.cat([stack(seqs[target], valid[target], seqs[source], valid[source])
                           for source, stack in self.crossmodal[target].items()], dim=-1)
            h = self.self_attention[target](h, valid[target])
            n = lengths[target]
            step = h[torch.arange(len(h), device=h.device), (n - 1).clamp(min=0)]
            last.append(step * (n > 0)[:, None].to(step.dtype))
        z = torch.cat(last, dim=-1)
        z = z + self.proj2(F.dropout(F.relu(self.proj1(z)), self.out_dropout, self.training))
        present = torch.stack([lengths[k] > 0 for k in self.modalities], dim=1).to(z.dtype)
        weights = present / present.sum(dim=1, keepdim=True).clamp(min=1.0)
        return NetworkOutput(self.out(z), weights,
                             kept_logits=kept_by_masking(self, batch, request.keep))

"""Per-modality encoders: each maps ``(x, lengths)`` to one feature vector of width ``m``.

``x`` is ``(B, T, D)`` zero-padded on the right (valid steps first) or ``(B, D)``.
Padding never influences the output: recurrent encoders pack by length, the others mask.
An encoder with ``uses_host_lengths`` also takes ``host_lengths``, the lengths on the host
(packing happens there), so that it never waits for the device to send them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import invert_permutation, pack_padded_sequence

from ..data.batching import to_device_async
from ..registry import Registry

ENCODERS: Registry[type[nn.Module]] = Registry("encoder")


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(B, T)`` True on valid steps."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the valid steps of ``(B, T, D)``; zero for empty sequences."""
    mask = step_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
    return (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class _Recurrent(nn.Module):
    cell: type[nn.RNNBase] = nn.LSTM
    uses_host_lengths = True

    def __init__(self, input_dim: int, width: int, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.rnn = self.cell(input_dim, width, num_layers=layers, batch_first=True,
                             dropout=dropout if layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                host_lengths: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
            host_lengths = torch.ones(len(x), dtype=torch.int64)
        elif host_lengths is None:
            # Packing needs the lengths on the host; a batch that lacks them there (built
            # by hand) waits for the device once to get them.
            host_lengths = lengths.cpu()
        # Empty (missing) sequences are masked by the fusion; pack needs length >= 1.
        # Sorted on the host as pack_padded_sequence sorts (so the same numbers), but only
        # the order goes to the device, without a wait.
        sorted_lengths, order = torch.sort(host_lengths.clamp(min=1), descending=True)
        order = to_device_async(order, x.device)
        packed = pack_padded_sequence(x.index_select(0, order), sorted_lengths,
                                      batch_first=True)
        _, state = self.rnn(packed)
        hidden = state[0] if isinstance(state, tuple) else state
        return hidden[-1].index_select(0, invert_permutation(order))


@ENCODERS.register("lstm")
class LSTMEncoder(_Recurrent):
    """LSTM over the valid steps; the last layer's final hidden state."""

    cell = nn.LSTM


@ENCODERS.register("gru")
class GRUEncoder(_Recurrent):
    """GRU over the valid steps; the last layer's final hidden state."""

    cell = nn.GRU


def sinusoidal_positions(steps: int, width: int) -> torch.Tensor:
    """``(steps, width)`` sine/cosine position codes (Vaswani et al. 2017)."""
    pos = torch.arange(steps, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(steps, width)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: width // 2])
    return table


@ENCODERS.register("transformer")
class TransformerEncoder(nn.Module):
    """Linear projection, sinusoidal positions, Transformer layers with a padding mask,
    mean over valid steps."""

    def __init__(self, input_dim: int, width: int, layers: int = 1, dropout: float = 0.0,
                 heads: int = 4):
        super().__init__()
        heads = math.gcd(heads, width)
        self.proj = nn.Linear(input_dim, width)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width,
                                           dropout=dropout, batch_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
            lengths = torch.ones_like(lengths)
        lengths = lengths.clamp(min=1)
        h = self.proj(x) + sinusoidal_positions(x.shape[1], self.proj.out_features).to(x)
        h = self.layers(h, src_key_padding_mask=~step_mask(lengths, x.shape[1]))
        return masked_mean(h, lengths)


@ENCODERS.register("conv")
class ConvEncoder(nn.Module):
    """1-D convolutions (kernel 3) over time, max over valid steps."""

    def __init__(self, input_dim: int, width: int, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Conv1d(input_dim if i == 0 else width, width, 3, padding=1),
                       nn.ReLU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
            lengths = torch.ones_like(lengths)
        mask = step_mask(lengths.clamp(min=1), x.shape[1])
        # Zero the padding before each conv so it cannot leak into valid steps' windows.
        h = x.transpose(1, 2)
        for module in self.net:
            if isinstance(module, nn.Conv1d):
                h = h * mask[:, None, :].to(h.dtype)
            h = module(h)
        return h.masked_fill(~mask[:, None, :], float("-inf")).amax(dim=2)


@ENCODERS.register("mlp")
class MLPEncoder(nn.Module):
    """Two-layer perceptron; a sequence is first averaged over its valid steps."""

    def __init__(self, input_dim: int, width: int, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        blocks: list[nn.Module] = [nn.Linear(input_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        for _ in range(layers):
            blocks += [nn.Linear(width, width), nn.ReLU()]
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = masked_mean(x, lengths)
        return self.net(x)

"""One-way GRU and LSTM layers written out, so that several run in one time loop.

On the CPU a recurrence costs per step, not per FLOP: each step is a handful of tiny ops
that autograd records one by one. ``run`` therefore steps many layers (every modality's
context layer, both directions each) together: their weights stacked, one batched matmul
per step for all their hidden projections, the input projections of every step done
before the loop. A ``Recurrence`` holds its parameters under ``nn.GRU``'s / ``nn.LSTM``'s
names and shapes and computes their equations, gate order included, so its weights copy
into those modules and back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                tuple[torch.Tensor, torch.Tensor]]


def _gru_step(x: torch.Tensor, hidden: torch.Tensor, h: torch.Tensor,
              c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.GRU``: gates r, z, n; n = tanh(x_n + r * (W_hn h + b_hn)); h' = (1-z) n + z h.
    (``c`` is unused: a GRU has no cell state.)"""
    # split/chunk, not slicing: a slice's backward fills a zero tensor of the whole input.
    size = h.shape[-1]
    x_rz, x_n = x.split([2 * size, size], dim=-1)
    h_rz, h_n = hidden.split([2 * size, size], dim=-1)
    r, z = torch.sigmoid(x_rz + h_rz).chunk(2, dim=-1)
    n = torch.tanh(x_n + r * h_n)
    return n + z * (h - n), c


def _lstm_step(x: torch.Tensor, hidden: torch.Tensor, h: torch.Tensor,
               c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.LSTM``: gates i, f, g, o; c' = f c + i g; h' = o tanh(c')."""
    gates = x + hidden
    # One sigmoid over all four blocks (g's is thrown away): fewer ops per step.
    i, f, _, o = torch.sigmoid(gates).chunk(4, dim=-1)
    g = torch.tanh(gates.chunk(4, dim=-1)[2])
    c = f * c + i * g
    return o * torch.tanh(c), c


# Per cell: how many gate blocks its weights stack, and one time step.
CELLS: dict[str, tuple[int, Step]] = {"gru": (3, _gru_step), "lstm": (4, _lstm_step)}


class Recurrence(nn.Module):
    """A one-way, one-layer GRU or LSTM over ``(N, T, width)`` (batch first), with
    ``nn.GRU``'s / ``nn.LSTM``'s parameters and their initialisation (every tensor
    uniform in +-1/sqrt(hidden))."""

    def __init__(self, cell: str, width: int, hidden: int):
        super().__init__()
        self.cell, self.width, self.hidden = cell, width, hidden
        gates = CELLS[cell][0] * hidden
        self.weight_ih_l0 = nn.Parameter(torch.empty(gates, width))
        self.weight_hh_l0 = nn.Parameter(torch.empty(gates, hidden))
        self.bias_ih_l0 = nn.Parameter(torch.empty(gates))
        self.bias_hh_l0 = nn.Parameter(torch.empty(gates))
        bound = 1.0 / math.sqrt(hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden state after every step, ``(N, T, hidden)``."""
        return run([self], x.unsqueeze(0))[0]


def run(layers: Sequence[Recurrence], x: torch.Tensor) -> torch.Tensor:
    """Layers ``k`` over inputs ``x[k]`` (``(K, N, T, width)``), all in one time loop:
    the hidden state after every step, ``(K, N, T, hidden)``. The layers must share cell,
    width and hidden size; each starts from a zero state."""
    first = layers[0]
    if any((r.cell, r.width, r.hidden) != (first.cell, first.width, first.hidden)
           for r in layers):
        raise ValueError("run: the layers must share cell, width and hidden size")
    step = CELLS[first.cell][1]
    k, n, t, _ = x.shape
    w_ih = torch.stack([r.weight_ih_l0 for r in layers]).transpose(1, 2)
    w_hh = torch.stack([r.weight_hh_l0 for r in layers]).transpose(1, 2)
    b_ih = torch.stack([r.bias_ih_l0 for r in layers]).unsqueeze(1)
    b_hh = torch.stack([r.bias_hh_l0 for r in layers]).unsqueeze(1)
    projected = torch.baddbmm(b_ih, x.reshape(k, n * t, -1), w_ih).view(k, n, t, -1)
    h = x.new_zeros((k, n, first.hidden))
    c = torch.zeros_like(h)
    states = []
    # unbind, not indexing step by step: its backward stacks once instead of filling a
    # zero tensor of every step's projections at each step.
    for x_t in projected.unbind(2):
        h, c = step(x_t, torch.baddbmm(b_hh, h, w_hh), h, c)
        states.append(h)
    return torch.stack(states, dim=2)

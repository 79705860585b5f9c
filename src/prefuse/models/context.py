"""Context layers: each utterance's vector enriched by the other utterances of its window.

A batch's utterances are rows ``(B, d)``; ``Windows`` says where each sits in its group's
window. A layer scatters the rows to a zero-padded ``(count, size, d)`` tensor, runs over
each window with the padding kept out, and gathers back to ``(B, d)`` (bc-LSTM, Poria et
al. 2017, for the recurrent layers). Every layer returns ``rows + f(window)``: the
utterance's own vector passes through unchanged, so a layer adds what its neighbours tell
to it rather than replacing it, and an utterance alone in its window still reaches the
fusion and head as it would without context. No layer norm on that sum: the attention
scores and the heads read the encoder features at the scale they are trained at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from ..data.batching import Windows
from ..registry import Registry
from .encoders import sinusoidal_positions
from .recurrence import Recurrence, run

CONTEXTS: Registry[type[nn.Module]] = Registry("context")


def scatter(rows: torch.Tensor, windows: Windows) -> torch.Tensor:
    """``rows (B, d)`` laid out as windows ``(count, size, d)``, zeros on padded slots."""
    padded = rows.new_zeros((windows.count, windows.size) + rows.shape[1:])
    return padded.index_put((windows.window, windows.slot), rows)


def gather(padded: torch.Tensor, windows: Windows) -> torch.Tensor:
    """The rows ``(B, d)`` back from windows ``(count, size, d)``: ``scatter``'s inverse."""
    return padded[windows.window, windows.slot]


def occupied(windows: Windows) -> torch.Tensor:
    """``(count, size)`` True on the slots that hold an utterance."""
    slots = torch.zeros((windows.count, windows.size), dtype=torch.bool,
                        device=windows.window.device)
    return slots.index_put((windows.window, windows.slot),
                           torch.ones_like(windows.window, dtype=torch.bool))


def mirrored(windows: Windows) -> Windows:
    """The same windows, each read backwards: its last utterance at slot 0, padding still
    at the end."""
    lengths = occupied(windows).sum(dim=1)
    return replace(windows, slot=lengths[windows.window] - 1 - windows.slot)


def alone(n: int, device: torch.device) -> Windows:
    """``n`` utterances, each its own window (a batch built without windows)."""
    return Windows(window=torch.arange(n, device=device),
                   slot=torch.zeros(n, dtype=torch.int64, device=device), count=n, size=1)


class _Recurrent(nn.Module):
    """A bidirectional recurrent layer over each window, its two directions projected back
    to the input width.

    The directions run as two one-way layers over the padded windows, the backward one on
    each window mirrored: padding then always follows the real slots, and a one-way layer
    never carries what comes after a step into it, so padding cannot reach a real slot.
    That is what packing gives, without the window lengths on the host (no wait for the
    device each step) and without sorting. Both directions (and, through ``contextualise``,
    other layers of the same kind and width) step in one time loop (``recurrence.run``)."""

    cell = "lstm"

    def __init__(self, width: int, dropout: float = 0.0):
        super().__init__()
        hidden = max(1, width // 2)
        self.ahead = Recurrence(self.cell, width, hidden)
        self.behind = Recurrence(self.cell, width, hidden)
        self.out = nn.Linear(2 * hidden, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, rows: torch.Tensor, windows: Windows) -> torch.Tensor:
        return _recurrent_together([self], [rows], windows)[0]


def _recurrent_together(layers: Sequence[_Recurrent], rows: Sequence[torch.Tensor],
                        windows: Windows) -> list[torch.Tensor]:
    """Each layer of one kind and width over its rows, all directions in one time loop."""
    back = mirrored(windows)
    x = torch.stack([scatter(r, w) for r in rows for w in (windows, back)])
    states = run([d for layer in layers for d in (layer.ahead, layer.behind)], x)
    out = []
    for i, (layer, r) in enumerate(zip(layers, rows)):
        ahead, behind = gather(states[2 * i], windows), gather(states[2 * i + 1], back)
        out.append(r + layer.dropout(layer.out(torch.cat([ahead, behind], dim=1))))
    return out


def contextualise(layers: Sequence[nn.Module], rows: Sequence[torch.Tensor],
                  windows: Windows) -> list[torch.Tensor]:
    """``layers[k](rows[k], windows)`` for every k, the same values; recurrent layers of
    one kind and width all step in one time loop (on the CPU a recurrence costs per step
    and op, so one loop for all costs about what one layer does)."""
    kinds = {(type(layer), layer.ahead.width) if isinstance(layer, _Recurrent) else None
             for layer in layers}
    if len(kinds) == 1 and None not in kinds:
        return _recurrent_together(layers, rows, windows)
    return [layer(r, windows) for layer, r in zip(layers, rows)]


@CONTEXTS.register("lstm")
class LSTMContext(_Recurrent):
    """Bidirectional one-layer LSTM over each window (bc-LSTM)."""

    cell = "lstm"


@CONTEXTS.register("gru")
class GRUContext(_Recurrent):
    """Bidirectional one-layer GRU over each window."""

    cell = "gru"


@CONTEXTS.register("transformer")
class TransformerContext(nn.Module):
    """One pre-norm Transformer encoder layer over each window, with sinusoidal slot
    positions and the padded slots masked out as keys."""

    def __init__(self, width: int, dropout: float = 0.0, heads: int = 4):
        super().__init__()
        self.width = width
        self.layer = nn.TransformerEncoderLayer(
            width, math.gcd(heads, width), dim_feedforward=2 * width, dropout=dropout,
            batch_first=True, norm_first=True)

    def forward(self, rows: torch.Tensor, windows: Windows) -> torch.Tensor:
        positions = sinusoidal_positions(windows.size, self.width).to(rows)
        x = scatter(rows, windows) + positions
        y = self.layer(x, src_key_padding_mask=~occupied(windows))
        # A pre-norm layer returns its input plus what it adds; the position codes are
        # taken off again, so the utterance's own vector is what passes through.
        return gather(y - positions, windows)

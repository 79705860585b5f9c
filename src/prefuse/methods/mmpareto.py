"""MMPareto: boosting multimodal learning with innocent unimodal assistance.

Wei and Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance",
ICML 2024.

For each encoder ``u`` the fused loss and ``u``'s unimodal loss each give a gradient on
the encoder's parameters, ``g_f`` and ``g_u``. Direction: if they agree
(``cos(g_f, g_u) > 0``) both count equally, ``w = (1/2, 1/2)``; if they conflict, the
min-norm (MGDA) convex combination,

    w_f = argmin_{w in [0, 1]} || w g_f + (1 - w) g_u ||^2
        = clip( (g_u - g_f) . g_u / ||g_f - g_u||^2, 0, 1 ),   w_u = 1 - w_f,

which is a common descent direction of both losses. Magnitude, per parameter tensor, as
the authors' released code does: ``h = 2 (w_f g_f + w_u g_u)`` (equal to the summed
gradient ``g_f + g_u`` when they agree); if ``h`` is shorter than ``g_f + g_u`` it is
stretched to that length (never shrunk), then multiplied by ``gamma``:

    g <- gamma * max(1, ||g_f + g_u|| / ||h||) * h,      gamma = 1.5

so the encoder always moves at least ``gamma`` times as far as plain summed-loss training
would, in a conflict-free direction. ``gamma`` is a constant (1.5) in the authors' code;
their solver clips ``w`` to ``[0.001, 0.999]``, which only matters for degenerate
(zero) gradients; here ``[0, 1]``. Directions are decided over all the encoder's
parameters flattened together; the magnitude rule is applied tensor by tensor. Where
the min-norm point is the origin (exactly opposed gradients), there is no common descent
direction and the encoder's gradient is set to zero (the authors' code would divide by
zero). Head parameters are not touched: they keep the summed gradient.

With per-modality heads on ``h_u`` only, the summed loss ``L_f + sum_m L_m`` has gradient
``g_f + g_u`` on encoder ``u``; the code's third backward pass is that sum.

The training method (``Mmpareto``, arm suffix ``mmpareto``) uses that: the step's loss is
the sum, whose backward (averaged across ranks by DistributedDataParallel) gives ``g_f +
g_u`` on each encoder and the summed gradient on fusion, head and auxiliary heads; before
it, ``loss`` takes each ``g_u`` with ``autograd.grad`` through that modality's head and
encoder only. Those gradients are local to a rank, so they are averaged across ranks by
hand (``distributed.average_all_``), and then ``g_f = (g_f + g_u) - g_u``: every rank holds
the same two gradients and combines them alike. One partial backward per modality, where
the authors' code runs 2M + 1 full ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..config import SearchParam
from ..engine import distributed
from ..models.outputs import Request
from .base import METHODS, EpochMean, Method, modality_losses, option
from .gradients import flat

DEFAULT_GAMMA = 1.5


def min_norm_weight(g1: torch.Tensor, g2: torch.Tensor) -> float:
    """``w`` in [0, 1] minimising ``||w g1 + (1 - w) g2||``; 1/2 when ``g1 == g2``."""
    g1, g2 = g1.detach().reshape(-1).double(), g2.detach().reshape(-1).double()
    diff = g1 - g2
    denom = diff.dot(diff).item()
    if denom == 0.0:
        return 0.5
    return min(1.0, max(0.0, (-diff).dot(g2).item() / denom))


def pareto_weights(g_fused: torch.Tensor, g_uni: torch.Tensor) -> tuple[float, float]:
    """``(w_fused, w_unimodal)``: 1/2 each unless the gradients conflict (cos <= 0),
    then the min-norm combination. A zero gradient conflicts with nothing."""
    a, b = g_fused.detach().reshape(-1).double(), g_uni.detach().reshape(-1).double()
    if a.shape != b.shape:
        raise ValueError(f"gradients of {a.numel()} and {b.numel()} entries")
    dot = a.dot(b).item()
    if dot > 0 or a.norm().item() == 0.0 or b.norm().item() == 0.0:
        return 0.5, 0.5
    w = min_norm_weight(a, b)
    return w, 1.0 - w


def pareto_combine(g_fused: torch.Tensor, g_uni: torch.Tensor,
                   weights: tuple[float, float], gamma: float = DEFAULT_GAMMA
                   ) -> torch.Tensor:
    """``gamma * max(1, ||g_f + g_u|| / ||h||) * h`` with ``h = 2 (w_f g_f + w_u g_u)``.

    Zero where ``h`` is zero. Works on one tensor of any shape (the authors apply it per
    parameter tensor).
    """
    if g_fused.shape != g_uni.shape:
        raise ValueError(f"gradient shapes {tuple(g_fused.shape)} and {tuple(g_uni.shape)}")
    w_f, w_u = weights
    h = 2 * (w_f * g_fused + w_u * g_uni)
    h_norm = h.norm()
    if h_norm.item() == 0.0:
        return torch.zeros_like(h)
    stretch = ((g_fused + g_uni).norm() / h_norm).clamp(min=1.0)
    return gamma * stretch * h


def encoder_grads(loss: torch.Tensor, params: Sequence[torch.nn.Parameter]
                  ) -> list[torch.Tensor]:
    """``d loss / d p`` for each parameter (zeros where ``loss`` does not reach it).

    Keeps the graph for the next loss. Under DDP these gradients are local to the rank:
    average them across ranks before ``pareto_weights`` so every rank decides alike.
    """
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def mmpareto_(params: Sequence[torch.nn.Parameter], fused_grads: Sequence[torch.Tensor],
              unimodal_grads: Sequence[torch.Tensor], gamma: float = DEFAULT_GAMMA
              ) -> tuple[float, float]:
    """Set one encoder's ``.grad`` to the MMPareto gradient; returns the weights used.

    ``fused_grads`` and ``unimodal_grads`` hold, per parameter, the gradient of the fused
    loss and of this encoder's unimodal loss (e.g. from ``encoder_grads``).
    """
    if not len(params) == len(fused_grads) == len(unimodal_grads):
        raise ValueError(f"{len(params)} parameters, {len(fused_grads)} fused and "
                         f"{len(unimodal_grads)} unimodal gradients")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    weights = pareto_weights(flat(fused_grads), flat(unimodal_grads))
    with torch.no_grad():
        for p, g_f, g_u in zip(params, fused_grads, unimodal_grads):
            p.grad = pareto_combine(g_f, g_u, weights, gamma).to(p.dtype)
    return weights


@dataclass
class MmparetoOptions:
    """``gamma``: the factor on the combined gradient's magnitude (1.5, a constant in the
    authors' code, ``GeWu-Lab/MMPareto_ICML2024:code/MMPareto.py``), in [0.01, 10]: it
    multiplies every encoder step, so far outside the published value the run diverges."""

    gamma: float = option(DEFAULT_GAMMA, low=0.01, high=10.0)


@METHODS.register("mmpareto")
class Mmpareto(Method):
    """MMPareto (Wei & Hu, ICML 2024): L = l(z, y) + sum_m l(head_m(h_m), y); each
    encoder's gradient replaced by the conflict-free combination of its fused-loss and
    unimodal-loss gradients, stretched to at least the summed gradient's norm, times gamma.

    See the module's docstring. Logs ``mmpareto_conflict_<modality>``: the epoch's share
    of steps where that encoder's two gradients conflicted (cosine <= 0).
    """

    Options = MmparetoOptions
    search = {"gamma": SearchParam("float", 1.0, 2.0)}
    request = Request(unimodal_heads=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoders: dict[str, torch.nn.Module] = {}
        self.pending: dict[str, tuple[list[torch.nn.Parameter], list[torch.Tensor]]] = {}
        self.conflict = {m: EpochMean() for m in self.modalities}

    def start(self, model, seed, runtime):
        super().start(model, seed, runtime)
        self.encoders = {m: model.encoders[m] for m in self.modalities}

    def loss(self, out, batch):
        if not self.encoders:
            raise RuntimeError("mmpareto needs the network: call start(model, seed, runtime) "
                               "before the first step (fit does)")
        losses = modality_losses(self.task, out, batch)
        self.pending = {}
        for m in self.modalities:
            params = [p for p in self.encoders[m].parameters() if p.requires_grad]
            if params:  # a frozen encoder has nothing to combine; its head still learns
                # A modality absent from the whole batch has a constant zero loss.
                self.pending[m] = params, (encoder_grads(losses[m], params)
                                           if losses[m].requires_grad
                                           else [torch.zeros_like(p) for p in params])
        return self.task.loss(out.logits, batch.y) + sum(losses.values())

    def after_backward(self, model):
        for m in self.modalities:
            if m not in self.pending:
                continue
            params, uni = self.pending[m]
            shared = distributed.average_all_(flat(uni), self.runtime)
            uni = [g.view_as(p) for g, p in zip(shared.split([p.numel() for p in params]),
                                                params)]
            fused = [(torch.zeros_like(p) if p.grad is None else p.grad) - g
                     for p, g in zip(params, uni)]
            f = flat(fused)
            # The paper's test: cos <= 0 (a zero gradient conflicts with nothing). It and
            # the min-norm weights branch on host values: waits for the device each step.
            conflict = bool(f.dot(shared) <= 0 and f.any() and shared.any())
            mmpareto_(params, fused, uni, self.options.gamma)
            self.conflict[m].add(torch.tensor(float(conflict)), 1)
        self.pending = {}

    def end_epoch(self, epoch, model, valid):
        """``mmpareto_conflict_<modality>``: share of the epoch's steps with a conflict."""
        return {f"mmpareto_conflict_{m}": mean.mean(self.runtime)
                for m, mean in self.conflict.items()}

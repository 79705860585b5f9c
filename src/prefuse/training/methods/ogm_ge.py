"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement.

Peng, Wei, Deng, Wang and Hu, "Balanced Multimodal Learning via On-the-fly Gradient
Modulation", CVPR 2022.

After the fused loss's backward, each modality ``u`` gets a score from its own output
``z_u`` (an auxiliary head) on the batch ``B``:

    s_u = sum_{i in B} softmax(z_u)_i[y_i]

written here as ``s_u = sum_i exp(-l_u,i)`` with ``l_u,i`` the task's per-sample loss, which
is the same number for classification and gives regression the score
``sum_i exp(-|y_i - z_u,i|)`` (see ``scores``). The discrepancy ratio compares a modality
with the others; the paper has two modalities (``rho_v = s_v / s_a``). For M > 2 this
module uses the weakest other modality:

    rho_u = s_u / min_{j != u} s_j

because the imbalance the method fights is the gap between a leader and the modality
left furthest behind; with M = 2 it is the paper's ratio, the weakest modality always has
``rho <= 1`` (left alone), and every other modality is slowed by how far it is ahead of
the laggard. Comparing with the mean of the others (one-vs-rest) would dilute the
laggard's deficit as M grows. BalanceMM divides by the minimum over all modalities: the
same coefficients, as only the weakest modality's ratio differs and it stays at most 1.
The coefficient, paper Eq. 10:

    k_u = 1 - tanh(alpha * rho_u)   if rho_u > 1,   else 1

and the update of the encoder's gradient, with generalisation enhancement (the GE step as
the authors' released code implements it): the modulated gradient plus Gaussian noise
whose standard deviation is that of the unmodulated gradient (an isotropic stand-in for
the SGD noise covariance the paper's derivation uses),

    g_u <- k_u * g_u + eps,   eps ~ N(0, (std(g_u) + 1e-8)^2 I)

added to every modulated encoder's tensors, the non-dominant ones (k = 1) included, as
in the authors' code. The code modulates only the encoders' weight tensors (its 4-D
convolution kernels, not biases or norm layers): ``modulated_parameters`` keeps the
tensors of two or more dimensions.

Defaults: there is no single published alpha; the authors' README recommends 0.8 for
CREMA-D and 0.1 for VGGSound; prefuse's datasets are small, like CREMA-D, so 0.8
(``DEFAULT_ALPHA``). The authors modulate over a window of epochs (default 0-50).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from .gradients import with_grad
from .scores import confidence

DEFAULT_ALPHA = 0.8
NOISE_FLOOR = 1e-8  # the authors' offset, so a zero gradient still gets (tiny) noise


def ogm_scores(per_sample_losses: torch.Tensor) -> torch.Tensor:
    """``(M,)`` scores ``s_m = sum_i exp(-loss[m, i])`` from ``(M, B)`` per-sample losses."""
    if per_sample_losses.dim() != 2:
        raise ValueError(f"expected (modalities, batch) losses, got shape "
                         f"{tuple(per_sample_losses.shape)}")
    return confidence(per_sample_losses.detach()).sum(dim=1)


def discrepancy_ratios(scores: torch.Tensor) -> torch.Tensor:
    """``rho_m = s_m / min_{j != m} s_j`` for ``(M,)`` scores, M >= 2.

    A zero weakest score (every probability underflowed) gives ``inf`` for a positive
    ``s_m`` and 0 for a zero one, never NaN.
    """
    if scores.dim() != 1 or len(scores) < 2:
        raise ValueError(f"OGM-GE needs the scores of at least two modalities, got shape "
                         f"{tuple(scores.shape)}")
    if not torch.isfinite(scores).all() or (scores < 0).any():
        raise ValueError(f"scores must be finite and non-negative, got {scores.tolist()}")
    s = scores.detach().double()
    others = s.unsqueeze(0).expand(len(s), -1).clone()
    others.fill_diagonal_(float("inf"))
    weakest = others.min(dim=1).values
    ratio = s / weakest
    return torch.where(s == 0, torch.zeros_like(ratio), ratio)


def ogm_coefficients(scores: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """``(M,)`` coefficients ``k_m = 1 - tanh(alpha * rho_m)`` where ``rho_m > 1``, else 1."""
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    rho = discrepancy_ratios(scores)
    return torch.where(rho > 1, 1 - torch.tanh(alpha * rho), torch.ones_like(rho))


def modulated_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable tensors OGM-GE modulates in an encoder: weights of two or more dims."""
    return [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]


def modulate_(params_by_modality: Sequence[Iterable[torch.nn.Parameter]],
              coeffs: torch.Tensor, generator: torch.Generator | None = None,
              noise: bool = True) -> None:
    """Scale modality ``m``'s gradients by ``coeffs[m]`` and, with ``noise``, add GE noise.

    Changes ``.grad`` in place. The noise of each tensor has the standard deviation of its
    gradient before scaling (plus 1e-8) and is drawn from ``generator``, modality by
    modality and tensor by tensor in the order given, so processes holding identical
    gradients and identically seeded generators (DDP ranks after the all-reduce) draw
    identical noise. Tensors without a gradient are skipped.
    """
    if len(params_by_modality) != len(coeffs):
        raise ValueError(f"{len(params_by_modality)} parameter groups but "
                         f"{len(coeffs)} coefficients")
    if noise and generator is None:
        raise ValueError("OGM-GE noise needs a torch.Generator, so that it is reproducible")
    with torch.no_grad():
        for params, k in zip(params_by_modality, coeffs.tolist()):
            for p in with_grad(params):
                g = p.grad
                std = g.std().item() if g.numel() > 1 else 0.0
                g.mul_(k)
                if noise:
                    eps = torch.randn(g.shape, generator=generator, dtype=g.dtype,
                                      device=generator.device)
                    g.add_(eps.to(g.device), alpha=std + NOISE_FLOOR)

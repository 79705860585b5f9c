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

The training method (``OgmGe``, arm suffix ``ogm-ge``). Where the scores come from: the
authors' network ends in one linear layer over the concatenated features, so ``z_u`` is
that layer's slice for modality ``u`` (plus half the bias), trained by the fused loss
alone. prefuse's head is not linear and its attention fusion mixes the modalities, so
there is no such slice; each modality gets an auxiliary head instead (shaped like a
stage-1 head, and started from it with a stage-1 init) that reads the encoder's features
detached. The heads learn from their own loss, but that loss never reaches an encoder:
as in the authors' code, the encoders learn from the fused loss alone, which OGM-GE
modulates; the heads only measure how well each modality's features fit the batch.
A score is the mean of ``exp(-l_u,i)`` over the samples that have modality ``u`` (for a
batch where every sample has every modality, the authors' sum divided by the batch size,
which leaves the ratios unchanged). Under torchrun the sums and counts are added across
ranks before the ratios, and the noise comes from a generator seeded with the fit's seed
that every rank draws alike, so all ranks change their gradients identically. The
generator's state is part of the method's checkpointed state, so a resumed run draws
the noise an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from ..config import SearchParam
from ..data.batching import to_device_async
from ..engine import distributed
from ..engine.guards import NonFinite
from ..errors import ConfigError
from ..models.outputs import Request
from .base import METHODS, EpochMean, Method, option, unimodal_losses
from .gradients import with_grad
from .scores import confidence, per_sample_loss

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
    if not torch.isfinite(scores).all():
        raise NonFinite(f"OGM-GE scores {scores.tolist()}")
    if (scores < 0).any():
        raise ValueError(f"scores must be non-negative, got {scores.tolist()}")
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
        grads = [[p.grad for p in with_grad(params)] for params in params_by_modality]
        every = [g for gs in grads for g in gs]
        # The noise's scale is a float argument of add_ (a tensor scale would round
        # differently), so the stds come to the host: all in one wait for the device.
        stds = iter(torch.stack([g.std() if g.numel() > 1 else g.new_zeros(())
                                 for g in every]).tolist() if every else [])
        for gs, k in zip(grads, coeffs.tolist()):
            for g in gs:
                std = next(stds)
                g.mul_(k)
                if noise:
                    eps = torch.randn(g.shape, generator=generator, dtype=g.dtype,
                                      device=generator.device)
                    g.add_(to_device_async(eps, g.device), alpha=std + NOISE_FLOOR)


@dataclass
class OgmGeOptions:
    """``alpha``: strength of the coefficient; ``first_epoch`` to ``last_epoch``: the
    epochs (counted from 1, both included) whose steps are modulated; ``noise``: add the GE
    noise (without it the method is plain OGM).

    Defaults: alpha 0.8 (the authors' README for CREMA-D); the window is the authors'
    default epochs 0-50 counted from 1 (``modulation_starts``/``modulation_ends`` in
    ``GeWu-Lab/OGM-GE_CVPR2022:main.py``), which covers every epoch of prefuse's budget.
    Ranges: alpha in [0.001, 100] (the published 0.1 and 0.8 well inside; at 100 a
    leader's coefficient is already 0 to float precision, tanh(100) = 1, so more would
    change nothing), the window's epochs in [1, 10000].
    """

    alpha: float = option(DEFAULT_ALPHA, low=0.001, high=100.0)
    first_epoch: int = option(1, low=1, high=10_000)
    last_epoch: int = option(51, low=1, high=10_000)
    noise: bool = True

    def __post_init__(self):
        if not 1 <= self.first_epoch <= self.last_epoch:
            raise ConfigError("methods.ogm-ge.first_epoch",
                              f"the window needs 1 <= first_epoch <= last_epoch, got "
                              f"{self.first_epoch}..{self.last_epoch}")


@METHODS.register("ogm-ge")
class OgmGe(Method):
    """OGM-GE (Peng et al., CVPR 2022): the fused loss; after backward, each encoder's
    weight gradients scaled by ``k_u = 1 - tanh(alpha * rho_u)`` where its modality leads
    (``rho_u > 1``), plus Gaussian noise with the gradient's std, within the epoch window.

    Scores come from auxiliary heads on detached features (their loss trains the heads
    only); see the module's docstring. Logs ``ogm_coeff_<modality>``, the epoch's mean
    coefficient applied to that modality's encoder (1 outside the window).
    """

    Options = OgmGeOptions
    search = {"alpha": SearchParam("float", 0.1, 2.0)}
    request = Request(unimodal_heads=True, detach_unimodal=True)
    min_modalities = 2  # the ratio compares each modality's score with the weakest other's

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch = 1
        self.generator = torch.Generator()
        self.coefficient = {m: EpochMean() for m in self.modalities}
        self.seen: list[float] = []
        self.batch_size = 0

    def start(self, model, seed, runtime):
        super().start(model, seed, runtime)
        self.generator.manual_seed(seed)

    @torch.no_grad()
    def scores_seen(self, out, batch) -> list[float]:
        """Per modality, the summed confidence of its head over the samples that have the
        modality, then those sample counts (``2M`` numbers, to sum across ranks)."""
        losses = torch.stack([per_sample_loss(self.task, out.unimodal_logits[m].float(), batch.y)
                              for m in self.modalities])
        present = torch.stack([batch.present[m] for m in self.modalities])
        # exp(-inf) = 0: a sample without the modality adds nothing to its score.
        sums = ogm_scores(losses.masked_fill(~present, float("inf")))
        # A wait for the device every step: the window, the ratios and their sums over
        # ranks (sum_all) are host arithmetic, as the method is published.
        return torch.cat([sums.double(), present.sum(dim=1).double()]).tolist()

    def loss(self, out, batch):
        self.seen = self.scores_seen(out, batch)
        self.batch_size = len(batch)
        return self.task.loss(out.logits, batch.y) + unimodal_losses(self.task, out, batch)

    def coefficients(self, seen: list[float]) -> torch.Tensor | None:
        """``(M,)`` coefficients from the summed scores and counts of every rank; None (the
        step is left alone) outside the window or when a modality is absent from the whole
        batch, which leaves it without a score."""
        m, o = len(self.modalities), self.options
        sums, counts = torch.tensor(seen[:m]), torch.tensor(seen[m:])
        if not o.first_epoch <= self.epoch <= o.last_epoch or (counts == 0).any():
            return None
        return ogm_coefficients(sums / counts, o.alpha)

    def after_backward(self, model):
        coeffs = self.coefficients(distributed.sum_all(self.seen, self.runtime))
        if coeffs is not None:
            modulate_([modulated_parameters(model.encoders[m]) for m in self.modalities],
                      coeffs, self.generator, self.options.noise)
        for k, m in enumerate(self.modalities):
            self.coefficient[m].add(torch.tensor(1.0 if coeffs is None else coeffs[k].item()),
                                    self.batch_size)

    def end_epoch(self, epoch, model, valid):
        """``ogm_coeff_<modality>``: the epoch's mean coefficient on that encoder."""
        self.epoch = epoch + 1
        return {f"ogm_coeff_{m}": mean.mean(self.runtime) for m, mean in self.coefficient.items()}

    def state_dict(self):
        return {"epoch": self.epoch, "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        if state:
            self.epoch = int(state["epoch"])
            self.generator.set_state(state["generator"])

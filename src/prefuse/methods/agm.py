"""AGM: adaptive gradient modulation from Shapley-style mono-modal responses.

Li, Li, Hu, Lei, Li and Zhou, "Boosting Multi-modal Model Performance with Adaptive
Gradient Modulation", ICCV 2023.

Mono-modal responses. ``f(S)`` is the fused network's output with only the modalities in
``S`` present (the others masked). Modality ``m``'s response is its Shapley value with
the empty coalition worth zero:

    phi_m = sum_{S subset of N minus m} |S|! (M - |S| - 1)! / M! * (f(S + m) - f(S)),
    f(empty) := 0

so ``sum_m phi_m = f(all)``: the responses split the fused output itself, as in the
authors' code (for two modalities ``phi_t = (f(t,a) - f(0,a) + f(t,0)) / 2``). Setting
``f(empty)`` to zero is the same as taking the ordinary Shapley values of ``f(S) -
f(empty)`` and giving each modality an equal share ``f(empty) / M`` of the empty
coalition's output, so the all-masked forward pass is never needed (2^M - 1 passes).

Scores and ratios. ``s_m`` is the batch-mean loss of ``phi_m`` (the NLL of its softmax for
classification, as published; the task's own per-sample loss otherwise). Modality
``m``'s dominance is

    r_m = exp( mean_{k != m} s_k - s_m ) = exp( M / (M - 1) * (mean(s) - s_m) )

(the authors' ``exp(2 (mean(s) - s_m))`` for two modalities): above 1 when ``m`` fits the
batch better than the others. ``r_hat_m`` is the same formula on running averages of the
scores over all steps so far (not reset per epoch), and the coefficient on modality
``m``'s encoder gradient is

    c_m = exp( alpha * min(r_hat_m - r_m, 10) )

computed before the running averages take in the current step, and with the cap at 10
that keeps ``exp`` finite, as in the authors' two-modality code (kept, commented out, in
BalanceMM). A modality that dominates more than it usually does is slowed (c < 1); one
that dominates less is sped up (c > 1). BalanceMM's current trainer writes
``exp(M / (M - 1) * (s_m - mean(s)))`` with the same loss-valued ``s_m``: the sign is
flipped there, which slows a modality when it falls behind its usual standing.

The network trains on the task loss of the fused output (``sum_m phi_m = f(all)``).
Where the coefficient acts: the authors scale each response's gradient with a backward
hook. When the masked passes carry no gradient (as in the copy of their module in
BalanceMM), every response reaches the parameters only through the full pass, and the
per-response scales collapse into one common factor; so prefuse multiplies encoder
``m``'s gradients by ``c_m`` after backward (``gradients.scale_grads_``), as BalanceMM's
own trainer does.

Defaults: alpha per the authors (``lihongcs/AGM`` issue 10): 1.5 on CREMA-D, 2.5 on
AV-MNIST, 4.0 on UR-Funny; ``DEFAULT_ALPHA`` takes CREMA-D's.

The training method (``Agm``, arm suffix ``agm``) works with any fusion and needs no
extra head: the one forward also gives the fused logits with each proper, non-empty
subset of modalities kept (``Request.keep``, 2^M - 2 further passes through fusion and
head, none through the encoders), and the full set's value is the network's own output,
so the responses sum to exactly the logits the loss sees. The masked passes run in the
same mode as the full one (with the head's dropout while training; the authors run them
in eval mode) and carry no gradient into the scores. A score averages over the samples
that have the modality; under torchrun the sums and counts are added across ranks before
the ratios, so every rank scales its gradients alike. The running averages are the
method's checkpointed state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations

import torch

from ..config import SearchParam
from ..engine import distributed
from ..engine.guards import NonFinite
from ..models.outputs import Request
from .base import METHODS, EpochMean, Method, option
from .gradients import scale_grads_
from .scores import per_sample_loss

DEFAULT_ALPHA = 1.5
EXPONENT_CAP = 10.0


def shapley_responses(outputs: Mapping[frozenset[int], torch.Tensor],
                      num_modalities: int) -> list[torch.Tensor]:
    """Each modality's Shapley response from the fused outputs of every modality subset.

    ``outputs`` maps each non-empty ``frozenset`` of modality indices ``0..M-1`` to the
    fused output with only those modalities present; an entry for the empty set is not
    needed and does not change the result. Returns ``M`` tensors shaped like the outputs,
    summing to ``outputs[all]``; gradients flow through whichever outputs carry them.
    """
    if num_modalities < 1:
        raise ValueError(f"need at least one modality, got {num_modalities}")
    everyone = range(num_modalities)
    needed = [frozenset(c) for r in range(1, num_modalities + 1)
              for c in combinations(everyone, r)]
    missing = [sorted(s) for s in needed if s not in outputs]
    if missing:
        raise ValueError(f"fused outputs missing for modality subsets {missing}")
    full = outputs[frozenset(everyone)]

    def value(s: frozenset[int]) -> torch.Tensor | float:
        return outputs[s] if s else 0.0

    responses = []
    for m in everyone:
        rest = [k for k in everyone if k != m]
        phi = torch.zeros_like(full)
        for r in range(num_modalities):
            weight = (math.factorial(r) * math.factorial(num_modalities - r - 1)
                      / math.factorial(num_modalities))
            for c in combinations(rest, r):
                s = frozenset(c)
                phi = phi + weight * (value(s | {m}) - value(s))
        responses.append(phi)
    return responses


def agm_scores(per_sample_losses: torch.Tensor) -> torch.Tensor:
    """``(M,)`` scores: the batch-mean loss of each modality's response, from ``(M, B)``."""
    if per_sample_losses.dim() != 2:
        raise ValueError(f"expected (modalities, batch) losses, got shape "
                         f"{tuple(per_sample_losses.shape)}")
    return per_sample_losses.detach().mean(dim=1)


def dominance_ratios(scores: torch.Tensor) -> torch.Tensor:
    """``r_m = exp(mean_{k != m} s_k - s_m)`` for ``(M,)`` loss-valued scores, M >= 2."""
    if scores.dim() != 1 or len(scores) < 2:
        raise ValueError(f"AGM needs the scores of at least two modalities, got shape "
                         f"{tuple(scores.shape)}")
    s = scores.detach().double()
    m = len(s)
    return torch.exp(m / (m - 1) * (s.mean() - s))


def agm_coefficients(current: torch.Tensor, running: torch.Tensor,
                     alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """``c_m = exp(alpha * min(r_hat_m - r_m, 10))`` from current and running-average scores."""
    if current.shape != running.shape:
        raise ValueError(f"current scores {tuple(current.shape)} and running averages "
                         f"{tuple(running.shape)} differ in shape")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    gap = dominance_ratios(running) - dominance_ratios(current)
    return torch.exp(alpha * gap.clamp(max=EXPONENT_CAP))


class RunningScores:
    """The running average of each modality's score over every step seen so far.

    It starts at zero for every modality (ratio 1 each), as the authors' code does.
    """

    def __init__(self, num_modalities: int):
        if num_modalities < 2:
            raise ValueError(f"AGM needs at least two modalities, got {num_modalities}")
        self.count = 0
        self.mean = torch.zeros(num_modalities, dtype=torch.float64)

    def coefficients(self, scores: torch.Tensor, alpha: float = DEFAULT_ALPHA
                     ) -> torch.Tensor:
        """This step's coefficients (against the averages so far), then take ``scores`` in."""
        coeffs = agm_coefficients(scores, self.mean, alpha)
        self.update(scores)
        return coeffs

    def update(self, scores: torch.Tensor) -> None:
        """Add one step's ``(M,)`` scores to the running averages."""
        s = scores.detach().double().cpu()
        if s.shape != self.mean.shape:
            raise ValueError(f"expected {len(self.mean)} scores, got {s.tolist()}")
        if not torch.isfinite(s).all():
            raise NonFinite(f"AGM scores {s.tolist()}")
        self.count += 1
        self.mean += (s - self.mean) / self.count

    def state_dict(self) -> dict:
        """Plain numbers only, so it saves in any checkpoint."""
        return {"count": self.count, "mean": self.mean.tolist()}

    def load_state_dict(self, state: Mapping) -> None:
        mean = torch.tensor(state["mean"], dtype=torch.float64)
        if mean.shape != self.mean.shape:
            raise ValueError(f"saved AGM state has {len(mean)} modalities, "
                             f"expected {len(self.mean)}")
        self.count = int(state["count"])
        self.mean = mean


@dataclass
class AgmOptions:
    """``alpha``: strength of the coefficient (the authors' CREMA-D value, 1.5, from
    ``lihongcs/AGM`` issue 10; modulation over the whole run, as there), in [0.001, 8]:
    the coefficient reaches ``exp(10 alpha)``, which float32 holds only below alpha 8.8;
    the authors' values run from 1.5 to 4."""

    alpha: float = option(DEFAULT_ALPHA, low=0.001, high=8.0)


@METHODS.register("agm")
class Agm(Method):
    """AGM (Li et al., ICCV 2023): the fused loss; after backward, each encoder's
    gradients multiplied by ``exp(alpha * min(r_hat_m - r_m, 10))``, from the Shapley
    mono-modal responses of the fused network with modalities masked.

    See the module's docstring. Logs ``agm_coeff_<modality>``, the epoch's mean
    coefficient on that modality's encoder.
    """

    Options = AgmOptions
    search = {"alpha": SearchParam("float", 0.5, 3.0)}
    min_modalities = 2  # the coefficients compare each modality's response with the others'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        m = len(self.modalities)
        self.running = RunningScores(m)
        subsets = [c for r in range(1, m) for c in combinations(self.modalities, r)]
        self.request = Request(keep=tuple(subsets))
        self.coefficient = {name: EpochMean() for name in self.modalities}
        self.seen: list[float] = []
        self.batch_size = 0

    def responses(self, out) -> list[torch.Tensor]:
        """Each modality's Shapley response (detached), summing to ``out.logits``."""
        index = {name: k for k, name in enumerate(self.modalities)}
        outputs = {frozenset(index[name] for name in keep): logits.detach().float()
                   for keep, logits in out.kept_logits.items()}
        outputs[frozenset(range(len(self.modalities)))] = out.logits.detach().float()
        return shapley_responses(outputs, len(self.modalities))

    @torch.no_grad()
    def scores_seen(self, out, batch) -> list[float]:
        """Per modality, the summed loss of its response over the samples that have the
        modality, then those sample counts (``2M`` numbers, to sum across ranks)."""
        losses = torch.stack([per_sample_loss(self.task, r, batch.y)
                              for r in self.responses(out)])
        present = torch.stack([batch.present[m] for m in self.modalities])
        sums = torch.where(present, losses, 0.0).sum(dim=1)
        # The step's one wait for the device: the ratios, the running averages and their
        # sums over ranks (sum_all) are host arithmetic, as the method is published.
        return torch.cat([sums.double(), present.sum(dim=1).double()]).tolist()

    def loss(self, out, batch):
        self.seen = self.scores_seen(out, batch)
        self.batch_size = len(batch)
        return self.task.loss(out.logits, batch.y)

    def coefficients(self, seen: list[float]) -> torch.Tensor:
        """``(M,)`` coefficients from the summed losses and counts of every rank (then the
        running averages take the step's scores in); all 1 when a modality is absent from
        the whole batch, which leaves it without a score."""
        m = len(self.modalities)
        sums, counts = torch.tensor(seen[:m]), torch.tensor(seen[m:])
        if (counts == 0).any():
            return torch.ones(m, dtype=torch.float64)
        return self.running.coefficients(sums / counts, self.options.alpha)

    def after_backward(self, model):
        coeffs = self.coefficients(distributed.sum_all(self.seen, self.runtime))
        scale_grads_([model.encoders[m].parameters() for m in self.modalities], coeffs)
        for k, m in enumerate(self.modalities):
            self.coefficient[m].add(coeffs[k], self.batch_size)

    def end_epoch(self, epoch, model, valid):
        """``agm_coeff_<modality>``: the epoch's mean coefficient on that encoder."""
        return {f"agm_coeff_{m}": mean.mean(self.runtime) for m, mean in self.coefficient.items()}

    def state_dict(self):
        return {"running": self.running.state_dict()}

    def load_state_dict(self, state):
        if state:
            self.running.load_state_dict(state["running"])

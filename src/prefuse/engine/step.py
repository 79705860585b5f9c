"""One optimisation step: ``Objective`` (the network and a method's loss as one module,
what DistributedDataParallel wraps), ``train_step`` (forward, loss, backward, the
method's gradient changes, clipping, the optimizer step) and ``may_skip_parameters``
(whether DistributedDataParallel must look for parameters a step's loss leaves out).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.batching import Batch, TensorSplit
from ..models.outputs import NetworkOutput
from .method import Method
from .runtime import Runtime


class Objective(nn.Module):
    """A network and a training method's loss as one module: ``forward(batch)`` returns
    the loss to back-propagate and the network's outputs, detached; the forward runs
    under ``runtime``'s autocast.

    Under torchrun this is the module DistributedDataParallel wraps, so that its search
    for parameters without a gradient starts from the loss, not from every output of the
    network. A parameter the loss does not reach on one rank (the auxiliary head of a
    modality that no sample of the rank's shard has; a frozen encoder) is then marked
    unused there instead of awaited, and one that no rank used keeps no gradient and is
    not stepped, as in one process. The outputs come back detached because an output the
    loss leaves out (logits that only score the step) would count as used and never be
    reduced.
    """

    def __init__(self, model: nn.Module, method: Method, runtime: Runtime):
        super().__init__()
        self.model = model
        self.method = method
        self.runtime = runtime

    def forward(self, batch: Batch) -> tuple[torch.Tensor, NetworkOutput]:
        with self.runtime.autocast():
            out = self.model(batch, self.method.request)
        out = out.float()
        return self.method.loss(out, batch), out.detach()


def may_skip_parameters(train: TensorSplit, freeze_epochs: int,
                        modality_dropout: float) -> bool:
    """Whether a step's loss may leave a parameter out on some rank, so that
    DistributedDataParallel must look for such parameters (see ``Objective``): frozen
    encoders, or a rank's shard without a modality (dropped, or missing in the data),
    whose auxiliary losses are then constant. With every modality in every sample and no
    frozen epoch, every loss reaches every parameter, and each step is spared that search
    over the graph (and torch's warning when it finds nothing)."""
    return freeze_epochs > 0 or modality_dropout > 0 or \
        not all(bool(p.all()) for p in train.present.values())


def train_step(objective: Objective, batch: Batch, optimizer: torch.optim.Optimizer,
               grad_clip: float, net: nn.Module | None = None
               ) -> tuple[torch.Tensor, NetworkOutput]:
    """One step: forward, the method's loss, backward, the method's gradient changes,
    clipping, the optimizer step. ``net`` is ``objective``'s DistributedDataParallel
    wrapper under torchrun (default: ``objective`` itself). The forward runs under the
    runtime's autocast (bf16 or none); the loss is computed in fp32. Returns the loss
    and the detached outputs."""
    loss, out = (net or objective)(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    objective.method.after_backward(objective.model)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(objective.model.parameters(), grad_clip)
    optimizer.step()
    return loss, out

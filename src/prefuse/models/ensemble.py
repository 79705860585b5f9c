"""The unimodal ensemble as one network: the stage-1 models side by side, their outputs
combined (``combiners``), nothing trained jointly.

It is a network like the others so that everything downstream (evaluation with modalities
masked, ``model.json``, ``prefuse predict``) treats it alike: ``forward`` returns a
``NetworkOutput`` whose ``weights`` are each model's share of the combined prediction
(equal over the models whose modality the sample has, for a probability average; the
blend's normalised absolute coefficients, for a regression blend). The combiner's fitted
state lives in ``spec.extra["combiner"]``, so ``model.json`` carries it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..data.batching import Batch, TensorSplit
from ..data.dataset import Split
from ..tasks import Task
from .combiners import COMBINERS, Combiner
from .network import NETWORKS, MultimodalNetwork, NetworkSpec
from .optim import adam
from .outputs import PLAIN, NetworkOutput, Request, kept_by_masking, only_keep


@NETWORKS.register("ensemble")
class UnimodalEnsemble(nn.Module):
    """One stage-1 network per modality (``members``) and a combiner of their outputs.

    Built from a spec it holds untrained members; ``load_pretrained`` copies each stage-1
    network in and ``calibrate`` fits the combiner on the validation split. A spec from a
    saved model (``extra["combiner"]``) restores the fitted combiner.
    """

    architecture = "ensemble"

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        self.modalities = list(spec.modalities)
        self.members = nn.ModuleDict({m: MultimodalNetwork(spec.only(m))
                                      for m in self.modalities})
        saved = spec.extra.get("combiner")
        self.combiner: Combiner | None = (
            COMBINERS.get(saved["kind"], "combiner")().load_dict(saved["fitted"])
            if saved else None)

    @property
    def standardize(self) -> dict[str, nn.Module]:
        """Each member's feature standardisation, by modality (what ``model.json`` lists)."""
        return {m: self.members[m].standardize[m] for m in self.modalities}

    def configure_optimizer(self, train: TrainConfig) -> torch.optim.Optimizer:
        """Adam over every parameter alike (see ``optim.adam``)."""
        return adam(self, train)

    def fit_standardization(self, train: Split) -> None:
        for member in self.members.values():
            member.fit_standardization(train)

    def load_pretrained(self, modality: str, unimodal: MultimodalNetwork) -> None:
        """The member for ``modality`` becomes a copy of its stage-1 network, head included."""
        self.members[modality].load_state_dict(unimodal.state_dict())

    @torch.no_grad()
    def calibrate(self, valid: TensorSplit, task: Task, batch_size: int = 256) -> None:
        """Fit the combiner for ``task`` on the members' outputs on ``valid``."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        outputs: list[list[np.ndarray]] = [[] for _ in self.modalities]
        present = []
        # Whole context windows where the split has them, put back in sample order to
        # line up with the labels.
        for batch in valid.batches(batch_size):
            batch = batch.to(device)
            for k, m in enumerate(self.modalities):
                outputs[k].append(self.members[m](batch).logits)
            present.append(self._present(batch))

        def joined(parts: list[torch.Tensor]) -> np.ndarray:
            return valid.restore(torch.cat(parts)).cpu().numpy()

        combiner = COMBINERS.get(task.kind, "combiner")()
        combiner.fit([joined(o) for o in outputs], valid.y.cpu().numpy(), joined(present))
        self.combiner = combiner
        self.spec.extra["combiner"] = {"kind": task.kind, "fitted": combiner.to_dict()}
        self.train(was_training)

    def _present(self, batch: Batch) -> torch.Tensor:
        return torch.stack([batch.present[m] for m in self.modalities], dim=1)

    def encode(self, batch: Batch) -> torch.Tensor:
        """The members' encoder features side by side, ``(B, M, m)``."""
        return torch.cat([self.members[m].encode(batch) for m in self.modalities], dim=1)

    def forward(self, batch: Batch, request: Request = PLAIN) -> NetworkOutput:
        if not only_keep(request):
            raise ValueError("the unimodal ensemble trains nothing: no training method "
                             "can ask it for extra outputs")
        if self.combiner is None:
            raise ValueError("calibrate the ensemble on the validation split first")
        outs = [self.members[m](batch) for m in self.modalities]
        present = self._present(batch).cpu().numpy()
        logits = outs[0].logits
        combined = self.combiner.combine([o.logits.detach().cpu().numpy() for o in outs],
                                         present)
        weights = self.combiner.weights(present)
        return NetworkOutput(
            torch.as_tensor(np.asarray(combined).reshape(logits.shape), dtype=logits.dtype,
                            device=logits.device),
            torch.as_tensor(weights, dtype=logits.dtype, device=logits.device),
            torch.cat([o.features for o in outs], dim=1),
            kept_logits=kept_by_masking(self, batch, request.keep))

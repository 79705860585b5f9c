"""Run by ``test_distributed`` under torchrun: a tiny data-parallel training.

Each rank starts from a different random initialisation (DDP must broadcast rank 0's),
trains, and saves its final weights; rank 0 alone writes ``result.json``, opened for
exclusive creation so that a second writer would fail. The second argument names the
training method: ``plain``; ``scaled`` (``ReducedScale``, a method that changes gradients
after backward); ``gblend``, G-Blending re-estimating its loss weights after every epoch
(from training losses summed across ranks and validation losses each rank computes
alike); or any other registered method, with its defaults. ``shards`` followed by
method names trains each of them in turn on tiny shards, with and without modalities
missing (``train_shards``), then ``HeadProbe`` on the shards that lack modalities.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import torch

from prefuse.config import RunConfig, TrainConfig
from prefuse.data.batching import Tensors
from prefuse.data.synthetic import make_synthetic
from prefuse.engine import distributed, runtime
from prefuse.engine.fit import fit
from prefuse.methods import Method, build_method
from prefuse.methods.dgl import Dgl
from prefuse.methods.multiloss import Multiloss
from prefuse.models.network import MultimodalNetwork
from prefuse.recipe.stages import network_spec
from prefuse.tasks import task_for


class ReducedScale(Dgl):
    """DGL, and the encoders' gradients scaled by 1 / (1 + the batch's loss): a value
    computed from the batch, so it is summed across ranks to scale every rank alike."""

    def loss(self, out, batch):
        loss = super().loss(out, batch)
        self.seen = [loss.item() * len(batch), float(len(batch))]
        return loss

    def after_backward(self, model):
        total, count = distributed.sum_all(self.seen, self.runtime)
        for p in model.encoders.parameters():
            if p.grad is not None:
                p.grad.mul_(1.0 / (1.0 + total / count))


def on_cpu() -> runtime.Runtime:
    """This process's runtime: gloo on the CPU, whether or not a GPU is present."""
    return runtime.apply(runtime.resolve(TrainConfig(device="cpu", threads=1)))


def train(seed_init: int, method: str = "plain") -> tuple[MultimodalNetwork, object]:
    """The tiny training both this worker and the one-process reference run."""
    where = on_cpu()
    dataset = make_synthetic(seed=0, train=96, valid=32, test=32)
    task = task_for(dataset)
    data = Tensors(dataset, task)
    config = RunConfig()
    # No dropout, so one process and two shards of each batch compute the same gradients.
    config.model.dropout = 0.0
    config.methods = {"gblend": {"super_epoch": 1}}
    step = {"plain": lambda: None, "scaled": lambda: ReducedScale(task)}.get(
        method, lambda: build_method(method, task, config, dataset.modalities))()
    torch.manual_seed(seed_init)
    model = MultimodalNetwork(network_spec(dataset, config, task, "attention",
                                           step is not None and step.request.unimodal_heads))
    model.fit_standardization(dataset["train"])
    result = fit(model, step, data, task,
                 TrainConfig(epochs=3, lr=1e-2, batch_size=32, freeze_epochs=1), where,
                 seed=0)
    return model, result


# Tiny shards (one sample a rank); with modality dropout they often lack a modality.
SHARDS = {"train": 12, "batch_size": 2, "modality_dropout": 0.8, "epochs": 2}
CASES = ("lacking", "complete")


class HeadProbe(Multiloss):
    """Multi-loss that records, after every backward, whether each auxiliary head holds a
    gradient, by where its modality was: ``here`` (in this rank's shard), ``elsewhere``
    (only in another rank's) or ``nowhere`` (no sample of the batch has it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts: Counter[str] = Counter()

    def loss(self, out, batch):
        self.here = [bool(batch.present[m].any()) for m in self.modalities]
        return super().loss(out, batch)

    def after_backward(self, model):
        anywhere = distributed.sum_all([float(h) for h in self.here], self.runtime)
        for m, here, ranks in zip(self.modalities, self.here, anywhere):
            where = "here" if here else "elsewhere" if ranks else "nowhere"
            grad = model.unimodal_heads[m][0].weight.grad is not None
            self.counts[f"{where}, {'gradient' if grad else 'none'}"] += 1


def train_shards(method: str | Method, case: str, seed_init: int) -> MultimodalNetwork:
    """``method`` (a registered name, ``umt`` taught by untrained stage-1 networks; or a
    method object) trained on ``SHARDS``: ``lacking``, with modality dropout and the
    encoders frozen for the first epoch; ``complete``, with every modality and nothing
    frozen (where DDP expects a gradient for every parameter at every step)."""
    where = on_cpu()
    dataset = make_synthetic(seed=0, train=SHARDS["train"], valid=16, test=16)
    task = task_for(dataset)
    data = Tensors(dataset, task)
    config = RunConfig()
    config.model.width, config.model.head_hidden = 8, 16
    spec = network_spec(dataset, config, task, "attention")
    stage1 = {m: MultimodalNetwork(spec.only(m)) for m in dataset.modalities}
    step = build_method(method, task, config, dataset.modalities, stage1) \
        if isinstance(method, str) else method
    torch.manual_seed(seed_init)
    model = MultimodalNetwork(network_spec(dataset, config, task, "attention",
                                           step.request.unimodal_heads))
    model.fit_standardization(dataset["train"])
    lacking = case == "lacking"
    fit(model, step, data, task, TrainConfig(
        epochs=SHARDS["epochs"], lr=1e-2, batch_size=SHARDS["batch_size"],
        freeze_epochs=int(lacking),
        modality_dropout=SHARDS["modality_dropout"] if lacking else 0.0), where, seed=0)
    return model


def main(out: Path, method: str, *more: str) -> None:
    where = on_cpu()
    rank = where.rank
    if method == "shards":
        for name in more:
            for case in CASES:
                model = train_shards(name, case, seed_init=rank)
                torch.save(model.state_dict(), out / f"{case}-{name}-{rank}.pt")
        dataset = make_synthetic(seed=0, train=SHARDS["train"], valid=16, test=16)
        probe = HeadProbe(task_for(dataset), modalities=tuple(dataset.modalities))
        train_shards(probe, "lacking", seed_init=rank)
        (out / f"heads-{rank}.json").write_text(json.dumps(probe.counts))
        return
    model, result = train(seed_init=rank, method=method)
    torch.save(model.state_dict(), out / f"weights-{rank}.pt")
    if rank == 0:
        with open(out / "result.json", "x", encoding="utf-8") as f:
            json.dump({"world_size": where.world_size, "epochs_run": result.epochs_run,
                       "history": result.history}, f)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(sys.argv[2:] or ["plain"]))

"""Training and evaluation never wait for the device once per step.

On a GPU every read of a device value on the host (``.item()``, ``.cpu()``, ``float(t)``,
``if t``) stalls the queue of kernels; a small network's step is mostly launch time, so one
such read per step costs a large share of it. The CPU cannot show the stall itself, so
these tests count the reads prefuse's own code makes: their number may grow with the
epochs, never with the steps.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from prefuse.config import TrainConfig
from prefuse.data.batching import Tensors
from prefuse.engine import distributed
from prefuse.engine.evaluation import evaluate
from prefuse.engine.fit import fit
from prefuse.engine.runtime import Runtime
from prefuse.methods import build_method
from prefuse.models.encoders import ENCODERS
from prefuse.models.network import MultimodalNetwork
from prefuse.recipe.stages import network_spec
from prefuse.tasks import task_for

from .conftest import CPU, mixed_dataset, tiny_config

# What gives the host a tensor's value (a wait for the device when it lives there).
READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")
PACKAGE = os.sep + "prefuse" + os.sep


@pytest.fixture
def reads(monkeypatch) -> Counter:
    """Counts, by name, the host reads of tensor values made directly by prefuse's code
    (torch's own, such as Adam's step counter, which torch keeps on the host, are not)."""
    counts: Counter = Counter()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if PACKAGE in sys._getframe(1).f_code.co_filename:
                counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def _setup(tmp_path, method_name: str, encoder: str = "lstm"):
    dataset = mixed_dataset(n=96)
    config = tiny_config(tmp_path, **{"model.encoder": encoder})
    task = task_for(dataset)
    data = Tensors(dataset, task)
    method = build_method(method_name, task, config, dataset.modalities)
    torch.manual_seed(0)
    model = MultimodalNetwork(network_spec(dataset, config, task, "attention",
                                           method.request.unimodal_heads))
    model.fit_standardization(dataset["train"])
    return model, data, task, method


@pytest.mark.parametrize("method_name, encoder", [("none", "lstm"), ("none", "gru"),
                                                  ("none", "conv"), ("multiloss", "lstm"),
                                                  ("dgl", "transformer")])
def test_a_fit_reads_device_values_per_epoch_not_per_step(tmp_path, reads, method_name,
                                                          encoder):
    counts = []
    for batch_size in (8, 48):  # 12 steps an epoch, then 2
        model, data, task, method = _setup(tmp_path, method_name, encoder)
        reads.clear()
        result = fit(model, method, data, task,
                     TrainConfig(epochs=2, lr=1e-3, patience=5, batch_size=batch_size),
                     CPU, seed=0)
        assert result.epochs_run == 2
        counts.append(dict(reads))
    assert counts[0] == counts[1]
    assert counts[0]  # the per-epoch reads are seen, so the counting works


def test_evaluation_reads_device_values_per_split_not_per_batch(tmp_path, reads):
    model, data, task, _ = _setup(tmp_path, "none")
    counts = []
    for batch_size in (4, 64):
        reads.clear()
        evaluate(model, data.valid, task, CPU, batch_size=batch_size)
        counts.append(dict(reads))
    assert counts[0] == counts[1] and counts[0]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_encoders_give_the_same_numbers_with_host_lengths(cell):
    torch.manual_seed(0)
    encoder = ENCODERS.get(cell, "encoder")(3, 5)
    x = torch.randn(9, 6, 3)
    lengths = torch.tensor([6, 0, 3, 3, 1, 6, 2, 0, 5])  # ties and missing samples
    x[torch.arange(6)[None, :] >= lengths[:, None]] = 0.0
    # The reference: what torch's own sorting pack gives.
    packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True,
                                  enforce_sorted=False)
    state = encoder.rnn(packed)[1]
    expected = (state[0] if isinstance(state, tuple) else state)[-1]
    assert torch.equal(encoder(x, lengths, lengths.clone()), expected)
    assert torch.equal(encoder(x, lengths), expected)  # lengths fetched from the tensor


def test_batches_carry_their_lengths_on_the_host_wherever_the_split_lives(tmp_path):
    _, data, _, _ = _setup(tmp_path, "none")
    moved = data.train.to("meta")  # another device, without a GPU
    here = data.train.batches(16, torch.Generator().manual_seed(3))
    there = moved.batches(16, torch.Generator().manual_seed(3))
    for a, b in zip(here, there, strict=True):
        assert b.lengths["sensor"].device.type == "meta"
        assert b.host_lengths["sensor"].device.type == "cpu"
        assert torch.equal(b.host_lengths["sensor"], a.lengths["sensor"])
        assert torch.equal(a.host_lengths["sensor"], a.lengths["sensor"])


def test_a_ranks_share_keeps_what_the_host_knows(tmp_path):
    _, data, _, _ = _setup(tmp_path, "none")
    batch = next(data.train.batches(10, torch.Generator().manual_seed(0)))
    rank1 = Runtime(device=torch.device("cpu"), world_size=2, rank=1, backend="gloo")
    share = distributed.shard(batch, rank1)
    assert len(share) == 5 and share.complete == batch.complete == {"sensor", "meta"}
    for m in ("sensor", "meta"):
        assert torch.equal(share.host_lengths[m], batch.lengths[m][1::2])

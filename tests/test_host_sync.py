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

from prefuse.data.batching import Tensors
from prefuse.models.network import MultimodalNetwork
from prefuse.tasks import task_for
from prefuse.training.evaluation import evaluate
from prefuse.training.loop import fit
from prefuse.training.methods import build_method
from prefuse.training.recipe import network_spec

from .conftest import mixed_dataset, tiny_config

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


def _setup(tmp_path, method_name: str):
    dataset = mixed_dataset(n=96)
    # Not the LSTM: packing a sequence needs its lengths on the host (see encoders.py).
    config = tiny_config(tmp_path, **{"model.encoder": "conv"})
    task = task_for(dataset)
    data = Tensors(dataset, task)
    method = build_method(method_name, task, config, dataset.modalities)
    torch.manual_seed(0)
    model = MultimodalNetwork(network_spec(dataset, config, task, "attention",
                                           method.request.unimodal_heads))
    model.fit_standardization(dataset["train"])
    return model, data, task, method


@pytest.mark.parametrize("method_name", ["none", "multiloss", "dgl"])
def test_a_fit_reads_device_values_per_epoch_not_per_step(tmp_path, reads, method_name):
    counts = []
    for batch_size in (8, 48):  # 12 steps an epoch, then 2
        model, data, task, method = _setup(tmp_path, method_name)
        reads.clear()
        result = fit(model, data.train, data.valid, task, epochs=2, lr=1e-3, seed=0,
                     patience=5, batch_size=batch_size, method=method)
        assert result.epochs_run == 2
        counts.append(dict(reads))
    assert counts[0] == counts[1]
    assert counts[0]  # the per-epoch reads are seen, so the counting works


def test_evaluation_reads_device_values_per_split_not_per_batch(tmp_path, reads):
    model, data, task, _ = _setup(tmp_path, "none")
    counts = []
    for batch_size in (4, 64):
        reads.clear()
        evaluate(model, data.valid, task, batch_size=batch_size)
        counts.append(dict(reads))
    assert counts[0] == counts[1] and counts[0]

"""Data-parallel training with torchrun: two CPU processes (gloo) train as one would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefuse.config import TrainConfig
from prefuse.data.batching import Tensors
from prefuse.data.synthetic import make_synthetic
from prefuse.engine import distributed, runtime
from prefuse.methods import METHODS
from prefuse.tasks import task_for

HERE = Path(__file__).parent
SRC = HERE.parent / "src"


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{HERE}", "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def failure(done: subprocess.CompletedProcess) -> str:
    """What a failed torchrun said: the lines that name an error (a rank that aborts in C++
    says why long before the launcher's summary), then the end of its output."""
    text = done.stdout + done.stderr
    named = [line for line in text.splitlines()
             if any(word in line for word in ("Error", "error:", "terminate", "what()"))]
    return "\n".join(named[:40]) + "\n...\n" + text[-2000:]


def worker():
    """The ``ddp_worker`` module (torchrun runs it as a script; the tests import it)."""
    sys.path.insert(0, str(HERE))
    try:
        import ddp_worker
    finally:
        sys.path.remove(str(HERE))
    return ddp_worker


def test_single_process_helpers_are_no_ops():
    one = runtime.resolve(TrainConfig(device="cpu"), env={})
    assert one.world_size == 1 and one.is_main and not one.distributed
    assert distributed.sum_all([1.0, 2.0], one) == [1.0, 2.0]
    tensor = torch.tensor([3.0])
    assert distributed.average_all_(tensor, one) is tensor and tensor.item() == 3.0
    distributed.init(one)  # joins nothing
    distributed.barrier(one)


# OGM-GE: scores summed across ranks and noise drawn alike; MMPareto: gradients that
# autograd.grad gives each rank, averaged by hand.
@pytest.mark.parametrize("method", ["plain", "scaled", "gblend", "ogm-ge", "mmpareto"])
def test_two_processes_train_like_one(tmp_path, method):
    done = torchrun([str(HERE / "ddp_worker.py"), str(tmp_path), method], tmp_path)
    assert done.returncode == 0, failure(done)
    ranks = [torch.load(tmp_path / f"weights-{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2 and result["epochs_run"] == 3

    # Shards of equal size average to the full batch's gradient: one process agrees.
    single, fitted = worker().train(seed_init=0, method=method)
    for key, value in single.state_dict().items():
        assert torch.allclose(value, ranks[0][key], atol=1e-4), key
    # G-Blend's weights (from losses reduced across ranks), OGM-GE's coefficients and
    # MMPareto's conflicts agree with one process too (MMPareto logs NaN for the epoch
    # whose encoders are frozen: no step compared gradients).
    logged = [k for k in fitted.history[0]
              if k.startswith(("gblend_", "ogm_coeff_", "mmpareto_conflict_"))]
    assert bool(logged) == (method in ("gblend", "ogm-ge", "mmpareto"))
    for one, two in zip(fitted.history, result["history"]):
        for key in logged:
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6, nan_ok=True), key


def test_lacking_shards_lack_modalities():
    # The setting is worth testing: some step gives one rank a shard without a modality
    # the other rank has, and some step lacks a modality on both ranks.
    setting = worker().SHARDS
    dataset = make_synthetic(seed=0, train=setting["train"], valid=16, test=16)
    split = Tensors(dataset, task_for(dataset)).train
    generator = torch.Generator().manual_seed(0)
    one_rank = both_ranks = 0
    for _ in range(setting["epochs"]):
        for batch in split.batches(setting["batch_size"], generator,
                                   setting["modality_dropout"]):
            for present in batch.present.values():
                has = [bool(present[r::2].any()) for r in (0, 1)]
                one_rank += has.count(False) == 1
                both_ranks += not any(has)
    assert one_rank > 0 and both_ranks > 0


@pytest.fixture(scope="module")
def shards_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Every registered method trained on two ranks of tiny shards, with and without
    modalities missing (one torchrun for them all)."""
    out = tmp_path_factory.mktemp("shards")
    return out, torchrun([str(HERE / "ddp_worker.py"), str(out), "shards",
                          *METHODS.names()], out)


@pytest.mark.parametrize("case", ["lacking", "complete"])
@pytest.mark.parametrize("method", METHODS.names())
def test_two_processes_train_every_method_on_any_shards(shards_run, method, case):
    out, done = shards_run
    assert done.returncode == 0, failure(done)
    ranks = [torch.load(out / f"{case}-{method}-{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key


def test_a_head_no_rank_used_keeps_no_gradient_as_in_one_process(shards_run):
    # The auxiliary head of a modality absent from one rank's shard takes the other
    # rank's gradient; one whose modality no sample of the batch has gets none on either
    # rank, so Adam leaves it alone, as one process would.
    out, done = shards_run
    assert done.returncode == 0, failure(done)
    for r in (0, 1):
        counts = json.loads((out / f"heads-{r}.json").read_text())
        assert set(counts) == {"here, gradient", "elsewhere, gradient", "nowhere, none"}


def test_torchrun_prefuse_run_writes_once(tmp_path):
    out = tmp_path / "run"
    done = torchrun(["-m", "prefuse", "run", "--arms", "scratch+concat", "--seeds", "0",
                     "--epochs", "2", "--pretrain-epochs", "1", "--set",
                     "data.synthetic.train=64", "--set", "data.synthetic.valid=32", "--set",
                     "data.synthetic.test=32", "--device", "cpu", "--out", str(out)],
                    tmp_path)
    assert done.returncode == 0, failure(done)
    assert done.stdout.count("run directory:") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["arms"]["scratch+concat"]
    # --device cpu under torchrun: gloo, whether or not CUDA is present.
    assert metrics["runtime"]["backend"] == "gloo" and metrics["runtime"]["world_size"] == 2
    assert not list(out.glob(".*.tmp"))

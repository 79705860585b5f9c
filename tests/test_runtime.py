"""The runtime: device resolution, torchrun placement, precision, checkpoints that move."""

from __future__ import annotations

import threading

import pytest
import torch

from prefuse.cli import main
from prefuse.config import RunConfig, TrainConfig, with_overrides
from prefuse.data.batching import Tensors
from prefuse.data.synthetic import make_synthetic
from prefuse.engine import checkpoint, runtime
from prefuse.engine.checkpoint import StageCheckpoint
from prefuse.errors import ConfigError, PrefuseError
from prefuse.recipe.stages import network_spec
from prefuse.tasks import task_for
from prefuse.tuning import workers

from .conftest import CPU, fit_fresh, fit_then_interrupt, tiny_config

TORCHRUN = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}


def gpus(monkeypatch, count: int) -> None:
    """Pretend this machine has ``count`` GPUs (0: no CUDA)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def resolve(device: str = "auto", env: dict | None = None, **train) -> runtime.Runtime:
    return runtime.resolve(TrainConfig(device=device, **train), env=env or {})


def test_auto_is_the_cpu_without_cuda_and_the_gpu_with_it(monkeypatch):
    gpus(monkeypatch, 0)
    plain = resolve()
    assert plain.device == torch.device("cpu") and plain.backend is None
    assert plain.threads == runtime.default_threads() == 1
    assert not plain.distributed and plain.is_main and not plain.bf16
    gpus(monkeypatch, 2)
    assert resolve().device == torch.device("cuda", 0)
    assert resolve("cuda:1").device == torch.device("cuda", 1)
    assert resolve("cpu").device == torch.device("cpu")
    assert resolve(threads=3).threads == 3


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "CPU", "cuda:0:1", ""])
def test_a_bad_device_string_is_a_config_error(name):
    with pytest.raises(ConfigError, match="train.device"):
        with_overrides(RunConfig(), {"train.device": name})
    with pytest.raises(ConfigError, match="train.device"):
        runtime.device_for(name)


def test_a_gpu_that_is_not_there_is_a_config_error(monkeypatch):
    gpus(monkeypatch, 0)
    with pytest.raises(ConfigError, match="train.device.*CUDA is not available"):
        resolve("cuda")
    gpus(monkeypatch, 2)
    with pytest.raises(ConfigError, match=r"train.device.*2 GPU\(s\)"):
        resolve("cuda:2")
    with pytest.raises(ConfigError, match="train.device"):
        runtime.device_for("cuda:5")


def test_torchrun_ranks_take_their_own_gpu(monkeypatch):
    gpus(monkeypatch, 2)
    rank = resolve(env=TORCHRUN)
    assert rank.device == torch.device("cuda", 1) and rank.backend == "nccl"
    assert rank.distributed and not rank.is_main and rank.world_size == 2
    # --device cpu under torchrun: gloo, even where CUDA is available.
    cpu = resolve("cpu", env=TORCHRUN)
    assert cpu.device == torch.device("cpu") and cpu.backend == "gloo"
    with pytest.raises(ConfigError, match="train.device"):
        resolve("cuda:0", env=TORCHRUN)  # every rank on one GPU
    with pytest.raises(ConfigError, match="train.jobs"):
        resolve("cpu", env=TORCHRUN, jobs=2)


def test_more_ranks_than_gpus_stops_with_one_line(monkeypatch, tmp_path, capsys):
    gpus(monkeypatch, 1)
    with pytest.raises(PrefuseError) as error:
        resolve(env=TORCHRUN)
    message = str(error.value)
    assert "1 GPU(s)" in message and "local rank 1" in message
    assert "--nproc-per-node 1" in message and "--device cpu" in message
    # The command itself says it in one line, before anything is written.
    for name, value in TORCHRUN.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--seeds", "0", "--epochs", "2",
                 "--pretrain-epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 GPU(s)" in err
    assert not out.exists()


def test_bf16_needs_a_gpu(monkeypatch):
    gpus(monkeypatch, 0)
    with pytest.raises(ConfigError, match="train.precision.*GPU"):
        resolve("cpu", precision="bf16")
    with pytest.raises(ConfigError, match="train.precision"):
        with_overrides(RunConfig(), {"train.precision": "fp16"})
    gpus(monkeypatch, 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve(precision="bf16").bf16
    # A GPU being present does not make bf16 on the CPU acceptable, under torchrun too.
    for env in ({}, TORCHRUN):
        with pytest.raises(ConfigError, match="train.precision.*GPU"):
            resolve("cpu", env=env, precision="bf16")


def test_applied_restores_the_threads():
    threads = torch.get_num_threads()
    where = resolve("cpu", threads=threads + 1)
    with runtime.applied(where) as inside:
        assert inside is where and torch.get_num_threads() == threads + 1
    assert torch.get_num_threads() == threads


def _tiny():
    dataset = make_synthetic(seed=1, train=48, valid=16, test=16)
    task = task_for(dataset)
    spec = network_spec(dataset, RunConfig(), task, "attention")
    return dataset, task, Tensors(dataset, task), spec


def test_a_checkpoint_with_gpu_random_states_resumes_on_the_cpu(tmp_path, monkeypatch):
    dataset, task, data, spec = _tiny()
    options = dict(epochs=3, lr=1e-2, seed=0, batch_size=16, patience=3)
    stage = StageCheckpoint(tmp_path, "stage", CPU)
    _, reference = fit_then_interrupt(spec, dataset, data, task, stage, **options)
    # As a GPU run would have saved it: its random state per GPU beside the CPU's.
    saved = torch.load(stage.epoch_path, weights_only=True)
    saved["cuda_rng"] = [torch.arange(16, dtype=torch.uint8)] * 2
    torch.save(saved, stage.epoch_path)
    gpus(monkeypatch, 0)
    _, resumed = fit_fresh(spec, dataset, data, task, stage, **options)
    assert resumed.history == reference.history and resumed.device == "cpu"


def test_gpu_random_states_come_back_on_as_many_gpus(monkeypatch):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters())
    state = checkpoint.training_state(model, optimizer, torch.Generator(), epoch=1)
    state["cuda_rng"] = [torch.zeros(4, dtype=torch.uint8)] * 2
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    gpus(monkeypatch, 1)  # another machine: nothing to restore them to
    checkpoint.restore_training(state, model, optimizer, torch.Generator())
    assert restored == []
    gpus(monkeypatch, 2)
    checkpoint.restore_training(state, model, optimizer, torch.Generator())
    assert restored == [state["cuda_rng"]]


def test_resume_accepts_another_device_and_jobs(tmp_path):
    saved = with_overrides(RunConfig(), {"train.device": "cuda", "train.jobs": 3})
    now = with_overrides(RunConfig(), {"train.device": "cpu", "train.threads": 2})
    assert checkpoint.config_differences(saved, now) == []
    assert checkpoint.config_differences(saved, with_overrides(now, {"train.lr": 0.5}))


def test_split_to_its_own_device_is_itself():
    _, _, data, _ = _tiny()
    assert data.train.to("cpu") is data.train
    assert runtime.place(data.train, resolve("cpu")) is data.train
    # Moved once, a split's batches are cut where it lives: no copy per step. ("meta"
    # stands in for a GPU: tensors with shapes and a device but no data.)
    moved = data.train.to("meta")
    assert moved.device == torch.device("meta") and data.train.device.type == "cpu"
    batch = next(moved.batches(16, torch.Generator().manual_seed(0)))
    tensors = [*batch.x.values(), *batch.lengths.values(), *batch.present.values(), batch.y]
    assert len(batch) == 16 and {t.device.type for t in tensors} == {"meta"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_run_on_the_gpu_trains_there_and_its_model_loads_anywhere(tmp_path):
    from prefuse.inference import predict
    from prefuse.models.saving import load_model
    from prefuse.runs.experiment import run_experiment

    config = tiny_config(tmp_path / "run", **{"train.device": "cuda",
                                              "arms": ["pretrained+attention"]})
    summary = run_experiment(config, log=lambda _: None)
    assert summary["arms"]["pretrained+attention"]["device"] == "cuda:0"
    assert summary["runtime"]["device"] == "cuda:0"
    dataset = make_synthetic(seed=0, train=240, valid=80, test=120)
    on_gpu = predict(load_model(tmp_path / "run", device="cuda"), dataset, split="test")
    on_cpu = predict(tmp_path / "run", dataset, split="test", device="cpu")
    assert next(load_model(tmp_path / "run", device="cpu")[0].parameters()).device.type == "cpu"
    assert (on_gpu["test"].evaluation.predictions == on_cpu["test"].evaluation.predictions
            ).mean() > 0.95


def test_run_options_set_the_runtime_fields():
    from prefuse.cli import build_parser, resolve_config

    args = build_parser().parse_args(["run", "--device", "cpu", "--jobs", "3", "--threads",
                                      "2", "--precision", "fp32"])
    train = resolve_config(args).train
    assert (train.device, train.jobs, train.threads, train.precision) == ("cpu", 3, 2, "fp32")
    with pytest.raises(ConfigError, match="train.jobs"):
        resolve_config(build_parser().parse_args(["run", "--jobs", "0"]))


def test_job_slots_take_the_gpus_in_turn_where_the_device_is_left_open(monkeypatch):
    gpus(monkeypatch, 2)
    assert [runtime.slot_device("auto", s) for s in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert runtime.slot_device("cuda", 1) == "cuda:1"
    assert runtime.slot_device("cuda:1", 0) == "cuda:1"
    assert runtime.slot_device("cpu", 1) == "cpu"
    gpus(monkeypatch, 0)
    assert runtime.slot_device("auto", 1) == "auto"


def test_tune_workers_take_their_slots_gpu(monkeypatch, tmp_path):
    gpus(monkeypatch, 2)
    seen = []
    monkeypatch.setattr(workers, "work", lambda config, *args: seen.append(config.train.device))
    config = with_overrides(RunConfig(), {"train.device": "auto"})
    # None: each worked by itself and finished (``runs.workers`` then answers None).
    assert [workers._worker(slot, config, str(tmp_path), None, "", threading.Barrier(1))
            for slot in range(3)] == [None] * 3
    assert seen == ["cuda:0", "cuda:1", "cuda:0"]
    assert config.train.device == "auto"  # the caller's config is left alone

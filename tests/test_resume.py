"""Checkpoints and resume: an interrupted run ends exactly like an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import prefuse
from prefuse.config import load_config, with_overrides
from prefuse.data.batching import Tensors
from prefuse.data.synthetic import make_synthetic
from prefuse.engine.checkpoint import RunCheckpoints, StageCheckpoint
from prefuse.errors import PrefuseError
from prefuse.recipe.stages import network_spec
from prefuse.tasks import task_for

from .conftest import CPU, fit_fresh, fit_then_interrupt

CONFIG = """\
seeds = [0]
arms = ["pretrained+attention"]

[data.synthetic]
train = 64
valid = 24
test = 24

[model]
width = 8

[train]
epochs = 5
pretrain_epochs = 2
batch_size = 32
patience = 3
modality_dropout = 0.2
device = "cpu"
"""


def _config(tmp_path: Path, out: Path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path, with_overrides(load_config(path), {"out": str(out)})


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: "
                        f"{process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.02)


def test_run_killed_mid_way_and_resumed_matches_uninterrupted(tmp_path):
    config_path, _ = _config(tmp_path, tmp_path / "unused")
    interrupted = tmp_path / "interrupted"
    # Same thread count as this process: float sums must split the same way in both.
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()),
               PYTHONPATH=os.pathsep.join([str(Path(prefuse.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "prefuse", "run", "--config", str(config_path),
         "--out", str(interrupted)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    # Killed while the arm trains: resume takes stage 1 from its finished checkpoints
    # and continues the arm from its last complete epoch.
    _wait_for(interrupted / "checkpoints" / "seed0-arm-pretrained+attention.epoch.pt", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "metrics.json").exists()
    finished = sorted(p.name for p in (interrupted / "checkpoints").glob("*.done.pt"))
    assert finished == [f"seed0-pretrain-{m}.done.pt" for m in ("audio", "text", "vision")]

    _, resumed_config = _config(tmp_path, interrupted)
    resumed = prefuse.run_experiment(resumed_config, log=lambda _: None, resume=True)
    _, clean_config = _config(tmp_path, tmp_path / "clean")
    clean = prefuse.run_experiment(clean_config, log=lambda _: None)

    for arm in clean["arms"]:
        for split in ("valid", "test"):
            assert resumed["arms"][arm]["seeds"]["0"][split] == pytest.approx(
                clean["arms"][arm]["seeds"]["0"][split], abs=1e-6)
        assert resumed["robustness"][arm] == clean["robustness"][arm]
    assert resumed["unimodal"] == clean["unimodal"]
    for name in ("history.csv", "attention.csv"):
        assert (interrupted / name).read_text() == (tmp_path / "clean" / name).read_text()
    assert not (interrupted / "checkpoints").exists()
    with pytest.raises(PrefuseError, match="already complete"):
        prefuse.run_experiment(resumed_config, resume=True)


def test_fit_interrupted_between_epochs_resumes_to_the_same_result(tmp_path):
    dataset = make_synthetic(seed=2, train=64, valid=16, test=16)
    task = task_for(dataset)
    data = Tensors(dataset, task)
    _, config = _config(tmp_path, tmp_path / "run")
    spec = network_spec(dataset, config, task, "attention")
    options = dict(epochs=3, lr=1e-2, seed=3, batch_size=16, patience=3, modality_dropout=0.3)
    stage = StageCheckpoint(tmp_path, "stage", CPU)
    model, result = fit_then_interrupt(spec, dataset, data, task, stage, **options)
    torch.manual_seed(123)  # whatever ran in between must not matter
    resumed_model, resumed = fit_fresh(spec, dataset, data, task, stage, **options)
    assert resumed.history == result.history
    assert resumed.best_epoch == result.best_epoch
    for key, value in model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key


def test_resume_refuses_another_config(tmp_path):
    _, config = _config(tmp_path, tmp_path / "run")
    with pytest.raises(PrefuseError, match="nothing to resume"):
        RunCheckpoints(config.out, CPU).start(config, resume=True)
    RunCheckpoints(config.out, CPU).start(config, resume=False)
    other = with_overrides(config, {"train.epochs": 7, "model.width": 16})
    with pytest.raises(PrefuseError) as error:
        RunCheckpoints(config.out, CPU).start(other, resume=True)
    assert "model.width: saved 8, now 16" in str(error.value)
    assert "train.epochs: saved 5, now 7" in str(error.value)
    moved = with_overrides(config, {"out": str(tmp_path / "elsewhere")})
    assert RunCheckpoints(config.out, CPU).start(moved, resume=True).directory.is_dir()

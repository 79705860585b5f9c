"""``--jobs``: stages trained in worker processes give exactly the ``--jobs 1`` run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import prefuse
from prefuse.config import config_to_toml
from prefuse.data.fingerprint import fingerprint
from prefuse.data.source import load_data
from prefuse.engine.checkpoint import RunCheckpoints
from prefuse.errors import PrefuseError
from prefuse.recipe.stages import Unit
from prefuse.runs.experiment import run_experiment
from prefuse.runs.pool import plan

from .conftest import CPU, tiny_config

ARMS = ["scratch+concat", "pretrained+attention"]


def _config(out: Path, jobs: int, seeds: tuple[int, ...] = (0, 1)):
    return tiny_config(out, arms=ARMS, seeds=list(seeds), **{"train.jobs": jobs,
                                                             "train.epochs": 4})


def _same_run(a: Path, b: Path) -> None:
    """Same numbers in metrics.json (timings and the runtime aside), same CSV files."""
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for arm in ARMS:
        assert first["arms"][arm]["seeds"] == second["arms"][arm]["seeds"], arm
        assert first["arms"][arm]["mean"] == second["arms"][arm]["mean"], arm
    for key in ("unimodal", "robustness", "attention"):
        assert first[key] == second[key], key
    for name in ("history.csv", "attention.csv"):
        assert (a / name).read_text() == (b / name).read_text(), name


def test_plan_waits_for_stage_one_only_where_an_arm_needs_it():
    config = _config(Path("unused"), 2)
    assert plan(config) == {Unit(0): None, Unit(1): None,
                            Unit(0, "scratch+concat"): None,
                            Unit(0, "pretrained+attention"): Unit(0),
                            Unit(1, "scratch+concat"): None,
                            Unit(1, "pretrained+attention"): Unit(1)}
    assert str(Unit(1)) == "seed 1 stage 1" and str(Unit(0, "x")) == "seed 0 x"


def test_two_jobs_give_the_numbers_of_one(tmp_path):
    one = run_experiment(_config(tmp_path / "one", 1), log=lambda _: None)
    lines = []
    two = run_experiment(_config(tmp_path / "two", 2), log=lines.append)
    _same_run(tmp_path / "one", tmp_path / "two")
    assert one["runtime"]["jobs"] == 1 and two["runtime"]["jobs"] == 2
    assert lines[0] == "training 6 stages in 2 worker processes"
    assert sum("trained" in line for line in lines) == 6
    assert not (tmp_path / "two" / "checkpoints").exists()


def test_a_failing_worker_stops_the_run_with_its_error(tmp_path):
    config = _config(tmp_path / "run", 2)
    checkpoints = RunCheckpoints(config.out, CPU).start(config, resume=False,
                                                   data=fingerprint(load_data(config)))
    # An unreadable finished stage: the worker that meets it fails, and says why.
    (checkpoints.directory / "seed0-pretrain-text.done.pt").write_bytes(b"not torch")
    with pytest.raises(PrefuseError) as error:
        run_experiment(config, log=lambda _: None, resume=True)
    message = str(error.value)
    assert message.startswith("--jobs worker training seed 0 stage 1 failed: ")
    assert "seed0-pretrain-text.done.pt: unreadable checkpoint" in message
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_killed_jobs_run_resumes_to_the_same_numbers(tmp_path):
    reference = tmp_path / "reference"
    run_experiment(_config(reference, 1, seeds=(0,)), log=lambda _: None)
    out = tmp_path / "killed"
    config_path = tmp_path / "config.toml"
    config_path.write_text(config_to_toml(_config(out, 2, seeds=(0,))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(prefuse.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-m", "prefuse", "run", "--config",
                                str(config_path)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while not list((out / "checkpoints").glob("*-arm-*.epoch.pt")):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # The whole process group, workers included, as a terminal's kill would.
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "metrics.json").exists()
    run_experiment(_config(out, 2, seeds=(0,)), log=lambda _: None, resume=True)
    _same_run(reference, out)

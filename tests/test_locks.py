"""A run or tune directory belongs to one live process; a refused run leaves nothing behind.

The concurrency tests start real ``python -m prefuse run`` processes: the lock is the
OS's, and only separate processes show that it holds, and that a kill -9 frees it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import prefuse
from prefuse.cli import main
from prefuse.config import RunConfig, with_overrides
from prefuse.errors import RunError
from prefuse.locks import LOCK_FILE, hold
from prefuse.runs import experiment
from prefuse.runs.experiment import run_experiment

from .test_robustness import SIZES, TINY, small

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
    [str(Path(prefuse.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))


def prefuse_cli(*args) -> list[str]:
    return [sys.executable, "-m", "prefuse", *map(str, args)]


def finish(*args) -> subprocess.CompletedProcess:
    return subprocess.run(prefuse_cli(*args), env=ENV, capture_output=True, text=True,
                          timeout=300)


def test_a_second_hold_is_refused_naming_the_holder_and_the_lock_goes_with_it(tmp_path):
    out = tmp_path / "run"
    with hold(out):
        assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())
        # flock belongs to an open file: a second open, even in this process, is refused.
        with pytest.raises(RunError, match=f"in use by process {os.getpid()}"), hold(out):
            pass
        (out / "kept.txt").write_text("x")
    assert sorted(p.name for p in out.iterdir()) == ["kept.txt"]
    with hold(tmp_path / "empty"):
        pass
    assert not (tmp_path / "empty").exists()  # made for the lock and left empty


def test_a_live_run_refuses_a_second_run_and_a_resume_and_a_kill_9_frees_it(tmp_path):
    out = tmp_path / "run"
    long_run = [*SIZES, *TINY[:4], "--epochs", "100000", "--set", "train.patience=100000",
                "--width", "8", "--batch-size", "16"]
    first = subprocess.Popen(prefuse_cli("run", "--out", out, *long_run), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list((out / "checkpoints").glob("*.epoch.pt")):
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (out / LOCK_FILE).read_text().strip() == str(first.pid)
        for extra in (["--overwrite"], ["--resume"], []):
            refused = finish("run", "--out", out, *long_run, *extra)
            assert refused.returncode == 2, refused.stderr
            assert f"{out}: in use by process {first.pid}" in refused.stderr
            assert "Traceback" not in refused.stderr
            # Only advice that leaves the live run alone.
            assert "--overwrite" not in refused.stderr and "--resume" not in refused.stderr
        assert first.poll() is None
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    third = finish("run", "--out", out, *SIZES, *TINY, "--overwrite")
    assert third.returncode == 0, third.stderr
    assert (out / "metrics.json").is_file()
    assert not (out / LOCK_FILE).exists()


def test_a_live_tune_refuses_a_second_tune(tmp_path, capsys):
    out = tmp_path / "tune"
    with hold(out):
        rc = main(["tune", "--out", str(out), *SIZES, "--arms", "scratch+concat",
                   "--epochs", "2", "--trials", "1"])
    assert rc == 2
    assert f"{out}: in use by process {os.getpid()}" in capsys.readouterr().err
    assert not (out / "study.db").exists()


def test_a_run_that_fails_before_any_stage_checkpoints_leaves_nothing_behind(
        tmp_path, monkeypatch):
    # Placing the data (e.g. on a GPU too small for it) comes after the run began its
    # directory and before any stage saved a checkpoint.
    def no_room(*_):
        raise RunError("cannot place the data: out of memory")

    monkeypatch.setattr(experiment.runtime, "place_splits", no_room)
    out = tmp_path / "run"
    config = with_overrides(RunConfig(), {
        "out": str(out), "seeds": [0], "arms": ["scratch+concat"], "train.epochs": 2,
        "train.pretrain_epochs": 1, "model.width": 8})
    with pytest.raises(RunError, match="out of memory"):
        run_experiment(config, small(), log=lambda _: None)
    assert not out.exists(), list(out.rglob("*"))
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="out of memory"):
        run_experiment(config, small(), log=lambda _: None)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    run_experiment(config, small(), log=lambda _: None)  # no --overwrite needed
    assert (out / "metrics.json").is_file()


def test_a_lock_file_left_by_a_dead_process_neither_blocks_nor_counts_as_a_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text("4194304\n")  # no such live process holds it
    config = with_overrides(RunConfig(), {
        "out": str(out), "seeds": [0], "arms": ["scratch+concat"], "train.epochs": 2,
        "train.pretrain_epochs": 1, "model.width": 8})
    run_experiment(config, small(), log=lambda _: None)  # fresh: no --overwrite needed
    assert (out / "metrics.json").is_file() and not (out / LOCK_FILE).exists()

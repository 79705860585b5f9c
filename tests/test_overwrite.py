"""``prefuse run --overwrite`` never loses the previous run to a new one that fails.

The previous run is moved into ``DIR/.replaced/`` and deleted only once the new run is
written; a failure or Ctrl-C before that puts it back, and what a killed process left is
settled by the next command (``replacing.py``, the README's "Run directory").
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import prefuse
from prefuse.cli import main
from prefuse.config import load_config
from prefuse.errors import RunError
from prefuse.locks import hold
from prefuse.rundir import REPLACED_FOLDER, REPLACING_FOLDER
from prefuse.runs import experiment

SIZES = ["--set", "data.synthetic.train=30", "--set", "data.synthetic.valid=12",
         "--set", "data.synthetic.test=12"]
TINY = ["--seeds", "0", "--arms", "scratch+concat", "--epochs", "2", "--pretrain-epochs", "1",
        "--width", "8", "--batch-size", "16"]
# The new run differs from the old one, so that a mix of the two would show.
OTHER = [*TINY, *SIZES, "--lr", "0.01"]


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: content hash and modification time (a file moved away
    and back keeps both; one rewritten would not)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_once(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", "--out", str(out), *TINY, *SIZES]) == 0
    return out


@pytest.fixture
def finished(finished_once, tmp_path):
    """A copy of a finished tiny run (with its report), for one test to overwrite."""
    out = tmp_path / "run"
    shutil.copytree(finished_once, out)
    return out


def _no_leftover(out: Path) -> bool:
    return not (out / REPLACED_FOLDER).exists() and not (out / REPLACING_FOLDER).exists()


def _train_then(monkeypatch, error: BaseException) -> None:
    """Make the new run train its seed for real (checkpoints written) and then fail."""
    run_seed = experiment.run_seed

    def failing(*args, **kwargs):
        run_seed(*args, **kwargs)
        assert (Path(args[1].out) / REPLACED_FOLDER / "metrics.json").is_file()
        raise error

    monkeypatch.setattr(experiment, "run_seed", failing)


def test_a_training_error_keeps_the_previous_run_byte_identical(finished, monkeypatch):
    before = snapshot(finished)
    _train_then(monkeypatch, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom") as failed:
        main(["run", "--out", str(finished), *OTHER, "--overwrite"])
    assert f"the previous run in {finished} was kept" in " ".join(failed.value.__notes__)
    assert snapshot(finished) == before and _no_leftover(finished)
    assert load_config(finished / "config.toml").train.lr != 0.01


def test_a_failure_while_writing_the_results_removes_the_partial_ones(finished, monkeypatch,
                                                                       capsys):
    before = snapshot(finished)

    def no_summary(*_args, **_kwargs):
        raise RunError("summary failed")

    # write_run has written config.toml, history.csv, attention.csv and models/ by then.
    monkeypatch.setattr(experiment, "summarize", no_summary)
    rc, _, err = cli(capsys, "run", "--out", finished, *OTHER, "--overwrite")
    assert rc == 2 and "summary failed" in err
    assert f"the previous run in {finished} was kept" in err
    assert snapshot(finished) == before and _no_leftover(finished)


def test_a_failure_placing_the_data_keeps_the_previous_run(finished, monkeypatch, capsys):
    before = snapshot(finished)

    def no_room(*_):
        raise RunError("cannot place the data: out of memory")

    monkeypatch.setattr(experiment.runtime, "place_splits", no_room)
    rc, _, err = cli(capsys, "run", "--out", finished, *OTHER, "--overwrite")
    assert rc == 2 and "out of memory" in err and "was kept" in err
    assert snapshot(finished) == before and _no_leftover(finished)


def test_ctrl_c_keeps_the_previous_run_and_says_so(finished, monkeypatch, capsys):
    before = snapshot(finished)
    _train_then(monkeypatch, KeyboardInterrupt())
    rc, _, err = cli(capsys, "run", "--out", finished, *OTHER, "--overwrite")
    assert rc == 130
    assert err.startswith(f"prefuse: interrupted; the previous run in {finished} was kept")
    assert "--resume" not in err  # nothing of the new run is left to resume
    assert snapshot(finished) == before and _no_leftover(finished)


def test_a_successful_overwrite_replaces_everything(finished, capsys):
    before = snapshot(finished)
    (finished / "models" / "stale-arm").mkdir()
    rc, _, _ = cli(capsys, "run", "--out", finished, *OTHER, "--overwrite")
    assert rc == 0 and _no_leftover(finished)
    assert not (finished / "models" / "stale-arm").exists()
    assert load_config(finished / "config.toml").train.lr == 0.01
    after = snapshot(finished)
    assert after.keys() == before.keys()
    assert all(after[name] != before[name] for name in before)  # every file rewritten


def _killed_while_training(out: Path) -> None:
    """What a kill -9 during an overwrite's training leaves: the previous run in
    ``.replaced/`` and the new run's first files in ``out``."""
    (out / REPLACED_FOLDER).mkdir()
    for entry in list(out.iterdir()):
        if entry.name != REPLACED_FOLDER:
            entry.rename(out / REPLACED_FOLDER / entry.name)
    (out / "config.toml").write_text("seeds = [7]\n")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "seed7-pretrain-text.done.pt").write_bytes(b"half")


@pytest.mark.parametrize("command", [["report"], ["run", "--resume", "--out"],
                                     ["run", "--out"]])
def test_a_leftover_of_a_killed_overwrite_is_put_back_by_the_next_command(
        finished, capsys, command):
    before = snapshot(finished)
    _killed_while_training(finished)
    rc, _, err = cli(capsys, *command, finished, *(SIZES if command[0] == "run" else []))
    assert f"prefuse: warning: an earlier `prefuse run --overwrite` of {finished}" in err
    assert f"the previous run in {finished} was kept" in err and _no_leftover(finished)
    if command == ["report"]:
        assert rc == 0  # the report is rebuilt from the previous run's own files
        assert {k: v for k, v in snapshot(finished).items() if "report" not in k and
                "figures" not in k} == {k: v for k, v in before.items()
                                        if "report" not in k and "figures" not in k}
    else:
        assert rc == 2  # then refused as with any finished run in DIR
        assert "already complete" in err or "holds a finished run" in err
        assert snapshot(finished) == before


def test_a_leftover_under_a_new_overwrite_is_put_back_then_replaced(finished, capsys):
    _killed_while_training(finished)
    rc, _, err = cli(capsys, "run", "--out", finished, *OTHER, "--overwrite")
    assert rc == 0 and "was kept" in err and _no_leftover(finished)
    assert load_config(finished / "config.toml").train.lr == 0.01
    assert not (finished / "checkpoints").exists()


def test_a_leftover_of_a_finished_overwrite_is_deleted(finished, capsys):
    # Killed while deleting the previous run, after the new one was complete.
    (finished / REPLACED_FOLDER / "models").mkdir(parents=True)
    (finished / REPLACED_FOLDER / "history.csv").write_text("old")
    before = snapshot(finished)
    rc, _, err = cli(capsys, "run", "--out", finished, *TINY, *SIZES)
    assert rc == 2 and "holds a finished run" in err
    assert "holds the finished run that replaced" in err and _no_leftover(finished)
    assert snapshot(finished) == {k: v for k, v in before.items()
                                  if not k.startswith(REPLACED_FOLDER)}


def test_a_leftover_of_a_kill_while_setting_aside_goes_back(finished, capsys):
    before = snapshot(finished)
    (finished / REPLACING_FOLDER).mkdir()
    for name in ("metrics.json", "models"):
        (finished / name).rename(finished / REPLACING_FOLDER / name)
    rc, _, err = cli(capsys, "report", finished)
    assert rc == 0 and "was kept" in err and _no_leftover(finished)
    assert snapshot(finished)["metrics.json"] == before["metrics.json"]
    assert all(snapshot(finished)[k] == v for k, v in before.items() if "models" in k)


def test_a_live_overwrite_is_not_taken_for_a_leftover(finished, capsys):
    _killed_while_training(finished)
    with hold(finished):  # as a run still writing the directory holds it
        rc, _, err = cli(capsys, "report", finished)
    assert rc == 2 and "in use by process" in err
    assert (finished / REPLACED_FOLDER / "metrics.json").is_file()


def test_a_kill_9_during_an_overwrite_then_report_restores_the_run(finished):
    before = snapshot(finished)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(prefuse.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    args = [*TINY, *SIZES, "--epochs", "200", "--set", "train.patience=200"]
    process = subprocess.Popen([sys.executable, "-m", "prefuse", "run", "--out",
                                str(finished), *args, "--overwrite"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list((finished / "checkpoints").glob("*.epoch.pt")):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the overwrite never began training"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (finished / REPLACED_FOLDER / "metrics.json").is_file()
    result = subprocess.run([sys.executable, "-m", "prefuse", "report", str(finished)],
                            env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "was kept" in result.stderr and _no_leftover(finished)
    assert not (finished / "checkpoints").exists()
    kept = snapshot(finished)
    for name in ("metrics.json", "config.toml", "model.safetensors", "history.csv"):
        assert kept[name] == before[name]

"""The one worker pool (``runs.workers``) behind a run's and a tune's ``--jobs``: one way to
notice a dead worker, one failure rule, workers that end with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import prefuse
from prefuse.errors import PrefuseError
from prefuse.runs.workers import WorkerPool, run_workers

ROOT = Path(__file__).resolve().parents[1]


def _by_itself(code: int | str | None) -> None:
    """A worker that works by itself: 0 finishes, an int dies with that exit code without
    a word, a str fails with that message, None works until killed."""
    if code is None:
        threading.Event().wait()
    if isinstance(code, str):
        raise PrefuseError(code)
    if code:
        os._exit(code)


def _taking_orders():
    """A worker that takes orders (``_obey``)."""
    return _obey


def _obey(order: int) -> None:
    if order < 0:
        raise ValueError(f"bad order {order}")
    if order:
        os._exit(order)


def _ended(pool: WorkerPool) -> list[int | None]:
    for process in pool.processes:
        process.join(30)
    return [process.exitcode for process in pool.processes]


def test_a_worker_that_dies_without_a_word_is_named_with_its_exit_code_either_way():
    died = r"failed: the worker process died \(exit code 3\)$"
    with pytest.raises(PrefuseError, match=r"^tune worker 1 " + died):
        run_workers(_by_itself, [(0,), (3,)], name="tune worker")
    with WorkerPool(_taking_orders, [()], name="--jobs worker") as pool:
        pool.send(0, 0, doing="--jobs worker training seed 0 stage 1")
        assert pool.answers() == [0]
        pool.send(0, 3, doing="--jobs worker training seed 0 arm mult")
        with pytest.raises(PrefuseError, match=r"^--jobs worker training seed 0 arm mult "
                                               + died):
            pool.answers()


def test_the_first_failure_kills_the_other_workers():
    pool = WorkerPool(_by_itself, [(None,), ("no data in x.npz",)], name="tune worker")
    with pytest.raises(PrefuseError, match=r"^tune worker 1 failed: no data in x\.npz$"):
        with pool:
            pool.expect(0, "tune worker 0")
            pool.expect(1, "tune worker 1")
            pool.answers()
    # The one still working is killed (the one that failed may have ended first).
    assert _ended(pool)[0] == -signal.SIGKILL


def test_an_error_in_a_worker_is_raised_with_its_message_and_where_it_came_from():
    with pytest.raises(PrefuseError) as error:
        with WorkerPool(_taking_orders, [(), ()], name="--jobs worker") as pool:
            pool.send(1, -7, doing="--jobs worker training seed 2 stage 1")
            pool.answers()
    message = str(error.value)
    assert message.startswith("--jobs worker training seed 2 stage 1 failed: "
                              "ValueError: bad order -7\nTraceback")
    assert "in _obey" in message
    assert _ended(pool)[0] == -signal.SIGKILL


def test_workers_that_go_well_are_quiet_and_told_to_stop(capfd):
    with WorkerPool(_taking_orders, [(), ()], name="--jobs worker") as pool:
        assert pool.idle() == [0, 1]
        pool.send(0, 0, doing="a")
        pool.send(1, 0, doing="b")
        assert pool.idle() == []
        answered = pool.answers()
        while len(answered) < 2:
            answered += pool.answers()
        assert sorted(answered) == [0, 1] and pool.idle() == [0, 1]
    assert _ended(pool) == [0, 0]
    assert run_workers(_by_itself, [(0,), (0,), (0,)], name="tune worker") is None
    assert capfd.readouterr() == ("", "")


def test_workers_end_when_their_parent_is_killed(tmp_path):
    script = ("import os, signal\n"
              "from prefuse.runs.workers import WorkerPool\n"
              "from tests.test_workerpool import _by_itself\n"
              "pool = WorkerPool(_by_itself, [(None,), (None,)], name='w')\n"
              "print(*(p.pid for p in pool.processes), flush=True)\n"
              "import time; time.sleep(1)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(prefuse.__file__).parents[1]), str(ROOT)]))
    parent = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    pids = [int(pid) for pid in parent.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "a worker outlived its parent"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    # A zombie has ended: only nobody has reaped it (no init in some containers).
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status

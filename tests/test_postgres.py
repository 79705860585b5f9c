"""Two ``prefuse tune`` workers share one study on a real PostgreSQL server; one is killed
mid-trial, and the other finishes the budget with every trial done exactly once.

The server is a throwaway cluster (``initdb`` + ``pg_ctl``) in a temporary folder. initdb
refuses to run as root, so under root the server runs as ``nobody``. Without the server
binaries or the driver the test is skipped, except under CI (``PREFUSE_REQUIRE_POSTGRES``,
set by ``.ci/run``), where it fails: ``make test`` installs both.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

import prefuse
from prefuse.cli import main
from prefuse.tuning.study import FINISHED, TICKET

ARMS = ["scratch+concat", "pretrained+concat"]
TRIALS = 3
# A password a URL must escape: it is masked as written and as decoded.
PASSWORD = "pa:ss@w"
ESCAPED = quote(PASSWORD, safe="")
# Tiny trials of about a second; heartbeats short enough that the killed worker's trial
# is failed and run again within seconds.
CONFIG = """\
seeds = [0]

[data.synthetic]
train = 160
valid = 60
test = 60

[model]
width = 8
head_hidden = 16

[train]
epochs = 8
pretrain_epochs = 2
patience = 8

[tune]
# One study per arm, so that each arm's trials can be counted on their own; the worker
# loop, tickets and stale-trial retries are the paired design's too.
design = "independent"
pruner = "none"
heartbeat_seconds = 1
grace_seconds = 3

[tune.space."train.lr"]
kind = "log"
low = 1e-3
high = 3e-2
"""


def _unavailable(reason: str) -> None:
    reason += " (make test and .ci/run install it)"
    if os.environ.get("PREFUSE_REQUIRE_POSTGRES"):
        pytest.fail(reason)
    pytest.skip(reason)


def _server_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout), else the folder
    of an ``initdb`` on the PATH."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    found.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_server(bin_dir: Path, user: pwd.struct_passwd | None, *args: str, **kw):
    """Run a server program as the server's user (``nobody`` under root)."""
    drop = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], capture_output=True,
                          text=True, **drop, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A running server with a database ``prefuse`` owned by a user ``prefuse`` who logs
    in with a password; yields the storage URL."""
    try:
        import psycopg2  # noqa: F401 - the driver the URL names
    except ImportError:
        _unavailable("the PostgreSQL driver psycopg2-binary is not installed")
    bin_dir = _server_binaries()
    if bin_dir is None:
        _unavailable("PostgreSQL's server (initdb, pg_ctl) is not installed")
    user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    # Not pytest's tmp_path: under root it lies in a folder only root may enter.
    root = Path(tempfile.mkdtemp(prefix="prefuse-pg-"))
    data, sockets, log, port = root / "data", root / "socket", root / "log", _free_port()
    try:
        sockets.mkdir()
        if user:
            for path in (root, sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        # Socket logins are trusted (to create the user), TCP ones need the password.
        made = _as_server(bin_dir, user, "initdb", "-D", str(data), "-U", "postgres",
                          "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                          "--locale=C", cwd=root)
        assert made.returncode == 0, made.stdout + made.stderr
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = _as_server(bin_dir, user, "pg_ctl", "-D", str(data), "-l", str(log), "-w",
                             "-o", options, "start", cwd=root)
        assert started.returncode == 0, started.stdout + started.stderr + \
            (log.read_text(errors="replace") if log.exists() else "")
        created = subprocess.run(
            [str(bin_dir / "psql"), "-h", str(sockets), "-p", str(port), "-U", "postgres",
             "-v", "ON_ERROR_STOP=1", "-c", f"CREATE ROLE prefuse LOGIN PASSWORD '{PASSWORD}'",
             "-c", "CREATE DATABASE prefuse OWNER prefuse"], capture_output=True, text=True)
        assert created.returncode == 0, created.stderr
        yield f"postgresql+psycopg2://prefuse:{ESCAPED}@127.0.0.1:{port}/prefuse"
    finally:
        if (data / "postmaster.pid").exists():
            _as_server(bin_dir, user, "pg_ctl", "-D", str(data), "-m", "immediate", "stop",
                       cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def _command(tmp_path: Path, out: str, url: str, *extra: str) -> list[str]:
    """The tune command every worker runs, each into its own ``--out``."""
    return ["tune", "--config", str(tmp_path / "t.toml"), "--arms", *ARMS, "--trials",
            str(TRIALS), "--out", str(tmp_path / out), "--storage", url, *extra]


def _worker(tmp_path: Path, out: str, url: str, *extra: str) -> subprocess.Popen:
    """``prefuse tune`` in its own process into ``--out OUT``, its output in ``OUT.log``."""
    command = [sys.executable, "-m", "prefuse", *_command(tmp_path, out, url, *extra)]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(prefuse.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    with open(tmp_path / f"{out}.log", "wb") as output:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def _stop(*processes: subprocess.Popen | None) -> None:
    """Kill and reap whichever of ``processes`` still run (a test that failed midway)."""
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def _output(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.log").read_text(errors="replace")


def _wait(condition, processes: dict[str, subprocess.Popen], tmp_path: Path,
          what: str) -> None:
    """Poll ``condition`` while every one of ``processes`` (by log name) is alive."""
    deadline = time.monotonic() + 240
    while not condition():
        for name, process in processes.items():
            assert process.poll() is None, \
                f"{name} exited before {what}:\n{_output(tmp_path, name)[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _worker_id(process: subprocess.Popen) -> str:
    return f"{socket.gethostname()}:{process.pid}"  # what a trial's "worker" holds


def _trials(studies: dict[str, optuna.Study]) -> list[tuple[str, FrozenTrial]]:
    return [(arm, t) for arm, study in studies.items() for t in study.get_trials(deepcopy=False)]


def _table(trials: list[tuple[str, FrozenTrial]]) -> str:
    """The trials, one a line, for a failed assertion to show."""
    return "\n".join(f"{a} {t.number} {t.state.name} worker={t.user_attrs.get('worker')} "
                     f"retries={t.system_attrs.get('failed_trial')} {t.datetime_start} - "
                     f"{t.datetime_complete}" for a, t in trials)


def _kill_mid_trial(victim: subprocess.Popen, survivor: subprocess.Popen,
                    studies: dict[str, optuna.Study], tmp_path: Path
                    ) -> tuple[str, FrozenTrial, dict]:
    """SIGKILL ``victim`` inside a trial it has trained epochs of, while ``survivor`` runs
    one too. Returns the arm and trial it died in and what it had finished by then."""

    def busy(process: subprocess.Popen, epochs: bool = False) -> list:
        return [(arm, t) for arm, t in _trials(studies) if t.state == TrialState.RUNNING
                and t.user_attrs.get("worker") == _worker_id(process)
                and (t.intermediate_values or not epochs)]

    while True:
        _wait(lambda: busy(victim, epochs=True) and busy(survivor),
              {"a": victim, "b": survivor}, tmp_path, "both workers ran a trial at once")
        # Frozen, the victim's trials stay as they are read: it cannot finish the trial
        # between this look and the kill.
        victim.send_signal(signal.SIGSTOP)
        running = busy(victim, epochs=True)
        if running:
            break
        victim.send_signal(signal.SIGCONT)
    done = {(arm, t.number): t.value for arm, t in _trials(studies)
            if t.state in FINISHED and t.user_attrs["worker"] == _worker_id(victim)}
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    (arm, trial), = running
    return arm, trial, done


def test_two_workers_on_postgres_finish_every_trial_once_though_one_is_killed(
        postgres_url, tmp_path, capsys):
    (tmp_path / "t.toml").write_text(CONFIG)
    victim = _worker(tmp_path, "a", postgres_url)
    survivor = None
    try:
        # The first worker sets the studies up; the second joins once they are there.
        _wait(lambda: "tuning " in _output(tmp_path, "a"), {"a": victim}, tmp_path,
              "the studies were set up")
        survivor = _worker(tmp_path, "b", postgres_url)
        storage = RDBStorage(postgres_url)
        studies = {arm: optuna.load_study(study_name=f"prefuse:{arm}", storage=storage)
                   for arm in ARMS}
        arm, killed, done = _kill_mid_trial(victim, survivor, studies, tmp_path)
        assert survivor.wait(timeout=240) == 0, _output(tmp_path, "b")
    finally:
        _stop(victim, survivor)
    trials = _trials(studies)
    table = _table(trials)
    # The killed worker's trial failed, and came back once, with its parameters, to the
    # survivor. Any other failed trial lost a race for a ticket and trained nothing;
    # none waits or runs.
    failed = {(a, t.number): t for a, t in trials if t.state == TrialState.FAIL}
    assert (arm, killed.number) in failed, table
    assert all(not t.user_attrs.get(TICKET) and not t.params and not t.intermediate_values
               for key, t in failed.items() if key != (arm, killed.number)), table
    retried = [t for a, t in trials if t.system_attrs.get("failed_trial") == killed.number
               and a == arm]
    assert len(retried) == 1 and retried[0].params == killed.params, table
    assert retried[0].state in FINISHED
    assert retried[0].user_attrs["worker"] == _worker_id(survivor)
    assert not [t for _, t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for name in ARMS:
        finished = [t for a, t in trials if a == name and t.state in FINISHED]
        assert len(finished) == TRIALS, table
        assert all(t.user_attrs.get(TICKET) for t in finished)
        assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == TRIALS
    # What the killed worker finished is kept, and the survivor's results list every trial.
    assert {(a, t.number): t.value for a, t in trials if (a, t.number) in done} == done
    doc = json.loads((tmp_path / "b" / "tuning.json").read_text())
    for name in ARMS:
        assert {(t["number"], t["state"], t["value"]) for t in doc["arms"][name]["trials"]} \
            == {(t.number, t.state.name.lower(), t.value) for a, t in trials if a == name
                and t.state in (*FINISHED, TrialState.FAIL)}
    workers = {t.user_attrs["worker"] for _, t in trials if t.state in FINISHED}
    assert workers == {_worker_id(victim), _worker_id(survivor)}
    storage.engine.dispose()
    said = _continue_with_the_final_stage(tmp_path, postgres_url, doc, capsys)
    # The password is in no file either worker wrote, nor in anything they said.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert PASSWORD.encode() not in text and ESCAPED.encode() not in text, path
    assert PASSWORD not in said and ESCAPED not in said
    assert "postgresql+psycopg2://prefuse:***@127.0.0.1:" in _output(tmp_path, "b")


def _continue_with_the_final_stage(tmp_path: Path, url: str, doc: dict, capsys) -> str:
    """The killed worker's command again (here, in this process), with final seeds: no
    trial is left to run, so it writes the same results and trains each arm's best config
    into its own final/. Returns what it said."""
    capsys.readouterr()
    assert main(_command(tmp_path, "a", url, "--final-seeds", "0")) == 0
    said = "".join(capsys.readouterr())
    mine = json.loads((tmp_path / "a" / "tuning.json").read_text())  # no new trial
    assert {a: e["trials"] for a, e in mine["arms"].items()} == \
        {a: e["trials"] for a, e in doc["arms"].items()}
    final = json.loads((tmp_path / "a" / "final" / "metrics.json").read_text())
    assert set(final["arms"]) == set(ARMS)
    return said


def test_paired_workers_on_postgres_rerun_a_killed_trial_whole_for_every_arm(
        postgres_url, tmp_path):
    """The default design over the same server: one study, each trial trains every arm;
    the killed worker's trial comes back once, and every arm trains on its parameters."""
    (tmp_path / "t.toml").write_text(CONFIG)
    # Its own study on the server the other test's studies are on.
    paired = ("--design", "paired", "--set", "tune.study=paired")
    victim = _worker(tmp_path, "a", postgres_url, *paired)
    survivor = None
    try:
        _wait(lambda: "tuning " in _output(tmp_path, "a"), {"a": victim}, tmp_path,
              "the study was set up")
        survivor = _worker(tmp_path, "b", postgres_url, *paired)
        storage = RDBStorage(postgres_url)
        studies = {"paired": optuna.load_study(study_name="paired", storage=storage)}
        _, killed, done = _kill_mid_trial(victim, survivor, studies, tmp_path)
        assert survivor.wait(timeout=240) == 0, _output(tmp_path, "b")
    finally:
        _stop(victim, survivor)
    trials = [t for _, t in _trials(studies)]
    table = _table([("paired", t) for t in trials])
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params, table
    assert retried[0].user_attrs["worker"] == _worker_id(survivor)
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == TRIALS and all(t.user_attrs.get(TICKET) for t in finished), table
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == TRIALS
    for t in finished:  # every arm trained, on the trial's own parameters
        for arm in ARMS:
            record = t.user_attrs[f"arm:{arm}"]
            assert record["state"] == "complete" and record["params"] == t.params, table
    assert {t.number: t.value for t in trials if ("paired", t.number) in done} == \
        {number: value for (_, number), value in done.items()}
    doc = json.loads((tmp_path / "b" / "tuning.json").read_text())
    assert doc["design"] == "paired"
    assert {t["number"] for t in doc["trials"] if t["state"] in ("complete", "pruned")} == \
        {t.number for t in finished}
    storage.engine.dispose()

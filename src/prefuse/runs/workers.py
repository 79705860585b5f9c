"""Worker processes: the one pool behind a run's ``--jobs`` units and tune's ``--jobs``.

Each worker is a spawned process (it shares nothing with this one) that runs
``target(*args)`` with a pipe to this process. A worker either takes orders: ``target``
sets it up and returns a handler, which this process then sends orders to, one at a time;
or works by itself: ``target`` does all its work and returns None. Either way the worker
answers each order (its own work counting as one) with None when it went well, or with
the error's text.

One failure rule: the first answer that is an error, or a worker that ended without one
(it was killed: "the worker process died (exit code N)"), is raised as ``PrefuseError``
naming what that worker was doing, after killing the other workers. A worker also ends
when this process dies, so that none is left working into files a resumed run would meet.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from ..errors import PrefuseError

# A worker whose pipe has closed is exiting; this only bounds the wait for its exit code.
EXIT_SECONDS = 10.0


def _main(target: Callable[..., Callable[[Any], None] | None], args: tuple,
          conn: Connection) -> None:
    """A worker process: run ``target(*args)``, then serve its handler's orders until
    told to stop (None), answering each."""
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    try:
        handle = target(*args)
    except BaseException as e:  # noqa: B036 - whatever stops a worker must reach the parent
        conn.send(_describe(e))
        return
    if handle is None:  # it worked by itself: its one answer
        conn.send(None)
        return
    while (order := conn.recv()) is not None:
        try:
            handle(order)
        except BaseException as e:  # noqa: B036
            conn.send(_describe(e))
            return
        conn.send(None)


def _exit_with_parent() -> None:
    # A parent killed outright must not leave workers training into its checkpoints or
    # studies, where a resumed run would meet them.
    wait([multiprocessing.parent_process().sentinel])
    os._exit(1)


def _describe(error: BaseException) -> str:
    # The message, not the exception: not every error pickles.
    if isinstance(error, PrefuseError):
        return str(error)
    return f"{type(error).__name__}: {error}\n{traceback.format_exc()}"


class WorkerPool:
    """``len(args)`` spawned workers, worker ``i`` running ``target(*args[i])``
    (``target`` a module-level function, ``args`` picklable). ``name`` names a worker in
    failures (``"{name} {i}"``) until it is given something to do. Used as a context
    manager: leaving it normally tells the workers to stop; leaving it by an error kills
    them."""

    def __init__(self, target: Callable[..., Callable[[Any], None] | None],
                 args: Sequence[tuple], name: str):
        context = multiprocessing.get_context("spawn")
        self.name = name
        self.processes: list[multiprocessing.Process] = []
        self.conns: list[Connection] = []
        self.doing: dict[int, str] = {}  # worker -> what it owes an answer for
        try:
            for i, worker_args in enumerate(args):
                here, there = context.Pipe()
                process = context.Process(target=_main, args=(target, worker_args, there),
                                          name=f"prefuse {name} {i}")
                self.processes.append(process)
                self.conns.append(here)
                process.start()
                there.close()
        except BaseException:
            self.close(ok=False)
            raise

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, error_type, error, trace) -> None:
        self.close(ok=error_type is None)

    def idle(self) -> list[int]:
        """The workers that owe no answer, in order."""
        return [i for i in range(len(self.conns)) if i not in self.doing]

    def send(self, worker: int, order: Any, doing: str) -> None:
        """Give ``worker`` (one that takes orders) ``order``; ``doing`` names it in a
        failure."""
        try:
            self.conns[worker].send(order)
        except OSError:
            pass  # the worker has ended: what it said last is read by ``answers``
        self.doing[worker] = doing

    def expect(self, worker: int, doing: str) -> None:
        """Wait for ``worker``'s answer to its own work (one that works by itself)."""
        self.doing[worker] = doing

    def answers(self) -> list[int]:
        """Wait until at least one worker that owes an answer has given it (or died) and
        return those that answered that all went well. Raises ``PrefuseError`` with the
        first failure."""
        owing = {self.conns[i]: i for i in self.doing}
        sentinels = {self.processes[i].sentinel: i for i in self.doing}
        ready = {owing.get(r, sentinels.get(r)) for r in wait([*owing, *sentinels])}
        done = []
        for i in sorted(ready):
            message = self._answer(i)
            if message is not None:
                raise PrefuseError(f"{self.doing[i]} failed: {message}")
            del self.doing[i]
            done.append(i)
        return done

    def _answer(self, i: int) -> str | None:
        # A worker that exited after answering has its answer in the pipe: read that
        # first; a pipe that closed with nothing in it is a worker that was killed.
        try:
            return self.conns[i].recv()
        except EOFError:
            self.processes[i].join(EXIT_SECONDS)
            return f"the worker process died (exit code {self.processes[i].exitcode})"

    def close(self, ok: bool) -> None:
        """Tell the workers to stop (``ok``) or kill them and wait for them to end."""
        for process, conn in zip(self.processes, self.conns):
            if ok:
                try:
                    conn.send(None)
                except OSError:
                    pass  # already gone, with nothing left to do
                # Not joined: a worker's exit (about a second with torch loaded) need not
                # hold up the caller; multiprocessing joins it at exit.
            elif process.pid is not None:
                process.kill()
                process.join()
            conn.close()


def run_workers(target: Callable[..., None], args: Sequence[tuple], name: str) -> None:
    """Workers that each work by themselves (``target(*args[i])``, returning None) until
    all have finished. Raises ``PrefuseError`` naming the first that failed
    (``"{name} {i} failed: ..."``), after killing the others."""
    with WorkerPool(target, args, name) as pool:
        for i in range(len(args)):
            pool.expect(i, f"{name} {i}")
        while pool.doing:
            pool.answers()
    for process in pool.processes:
        process.join()  # finished already: their exit frees what they held

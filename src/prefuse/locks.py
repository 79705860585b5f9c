"""One live process per run or tune directory: an OS file lock on ``DIR/.lock``.

``fcntl.flock`` is released by the OS when its holder dies, however it dies (kill -9
included), so a lock is never stale and nobody ever has to delete one by hand. The file
holds the holder's pid, for the message a second process gets. Processes the holder starts
(``--jobs`` workers) take no lock: they write only what their parent asked for.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError, RunError

LOCK_FILE = ".lock"
# A lock file its holder unlinked between our open and our flock is no longer the lock;
# a fresh open finds the current one. Each miss needs another holder to come and go.
ATTEMPTS = 5


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="utf-8").strip()
    except OSError:
        pid = ""
    return pid or "unknown"


def _acquire(directory: Path) -> int:
    path = directory / LOCK_FILE
    for _ in range(ATTEMPTS):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue  # the directory was removed by a holder that had made it
        except OSError as e:
            raise OutputError(directory, f"cannot lock ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(f"{directory}: in use by process {_holder(path)} (a prefuse run "
                           "or tune is writing it); wait for it to end, or choose another "
                           "--out") from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
    raise RunError(f"{directory}: could not take its lock ({LOCK_FILE} kept changing)")


@contextmanager
def hold(directory: str | Path) -> Iterator[Path]:
    """Hold ``directory`` (created if missing) for this process until the block ends.

    A second process is refused with a ``RunError`` naming the holder's pid. On leaving,
    the lock file is removed, and so is the directory if this call made it and nothing
    was written into it (a run refused before it wrote anything leaves nothing behind).
    """
    directory = Path(directory)
    made = not directory.exists()
    fd = _acquire(directory)
    try:
        yield directory
    finally:
        # Unlinked while still held: whoever opened the old file sees it is not the lock.
        (directory / LOCK_FILE).unlink(missing_ok=True)
        if made:
            try:
                directory.rmdir()
            except OSError:
                pass  # it holds something: not ours to remove
        os.close(fd)

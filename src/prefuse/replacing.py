"""``prefuse run --overwrite`` that never loses the run it replaces to a failing new one.

The previous run's files (``rundir.RUN_FILES``) are moved aside, not deleted:

1. each is renamed into ``DIR/.replacing/``; once all are there, that folder is renamed
   ``DIR/.replaced/``, so ``.replaced/`` always holds the whole previous run;
2. the new run writes ``DIR``;
3. once its ``metrics.json`` is written (``write_run`` finished), ``.replaced/`` is deleted.
   If it fails or is interrupted before that, its files are deleted and those of
   ``.replaced/`` renamed back, and the error says that the previous run was kept.

Ctrl-C restores too, rather than leaving the new run's half for ``--resume``: the previous
run is a finished result the user had, the half run is not one yet, and keeping both
would leave a directory that is neither run, with the good one hidden in a folder the
user may never look at (and ``--resume`` cannot be combined with ``--overwrite``, so the
half was never meant to be continued). The cost is only the new run's time so far.

Renames within ``DIR`` are atomic, so a process killed at any point (SIGKILL, power
loss) leaves a state that ``recover`` settles, by one rule, at the start of the next
``prefuse run`` (fresh, ``--resume`` or ``--overwrite``) or ``prefuse report`` on ``DIR``:
``.replacing/`` goes back (the new run had not begun); ``.replaced/`` goes back over the
new run's files unless ``DIR/metrics.json`` says the new run had finished, in which case
``.replaced/`` is deleted, as planned. A warning says which happened. The caller holds
``DIR``'s lock (``locks.hold``), so a live run's folder is never taken for a leftover.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import RunError, warn
from .locks import hold
from .rundir import METRICS_FILE, REPLACED_FOLDER, REPLACING_FOLDER, RUN_FILES


def run_files(out: Path) -> list[str]:
    """The names of ``RUN_FILES`` present in ``out`` (a dangling link counts)."""
    return [name for name in RUN_FILES if (out / name).exists() or (out / name).is_symlink()]


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _put_back(folder: Path, out: Path) -> None:
    """Rename every entry of ``folder`` back into ``out``, then remove ``folder``."""
    for entry in sorted(folder.iterdir()):
        target = out / entry.name
        if target.exists() or target.is_symlink():
            raise RunError(f"{folder}: cannot put {entry.name} back, {target} exists; "
                           f"move the files of {folder} into {out} by hand (they are the "
                           "previous run), then remove the folder")
        os.rename(entry, target)
    folder.rmdir()


def set_aside(out: Path, names: list[str]) -> None:
    """Move the entries ``names`` of ``out`` into ``out/.replaced/`` (step 1). Stopped
    part way (an error, Ctrl-C), it puts back what it had moved and raises."""
    moving = out / REPLACING_FOLDER
    moving.mkdir()
    try:
        for name in names:
            os.rename(out / name, moving / name)
        os.rename(moving, out / REPLACED_FOLDER)
    except BaseException:
        _put_back(moving, out)
        raise


def settle(out: Path) -> str:
    """Settle a ``.replacing/`` or ``.replaced/`` folder in ``out`` by the module's rule;
    returns what was done, in words ('' when there was none)."""
    moving, replaced = out / REPLACING_FOLDER, out / REPLACED_FOLDER
    if moving.is_dir():
        _put_back(moving, out)
        return f"the previous run in {out} was kept (put back from {moving})"
    if not replaced.is_dir():
        return ""
    if (out / METRICS_FILE).is_file():
        shutil.rmtree(replaced)
        return f"{out} holds the finished run that replaced the one in {replaced} " \
               "(now deleted)"
    for name in run_files(out):
        _delete(out / name)
    _put_back(replaced, out)
    return f"the previous run in {out} was kept (put back from {replaced}, in place of " \
           "the unfinished new run's files)"


def recover(out: str | Path) -> None:
    """Settle what a killed ``--overwrite`` left in ``out``, with a warning saying what was
    done. The caller holds ``out``'s lock."""
    done = settle(Path(out))
    if done:
        warn(f"an earlier `prefuse run --overwrite` of {out} was stopped; {done}")


def recover_unheld(out: str | Path) -> None:
    """``recover`` for a command that does not hold ``out``'s lock (``prefuse report``): it
    takes the lock only when there is something to settle, so that a run still using
    ``out`` refuses it (``in use by process N``) instead of losing its folder."""
    out = Path(out)
    if (out / REPLACING_FOLDER).is_dir() or (out / REPLACED_FOLDER).is_dir():
        with hold(out):
            recover(out)


@contextmanager
def kept_until_done(out: str | Path) -> Iterator[None]:
    """The block of a run into ``out``: leftovers are settled first (``recover``); what
    the block sets aside (``set_aside``) is deleted when it ends with the new run written,
    and put back over the new run's files when it fails or is interrupted, with a note on
    the error saying so."""
    out = Path(out)
    recover(out)
    try:
        yield
    except BaseException as e:
        if (out / REPLACED_FOLDER).is_dir() or (out / REPLACING_FOLDER).is_dir():
            try:
                e.add_note(settle(out))
            except (OSError, RunError) as failed:
                e.add_note(f"the previous run is still in {out / REPLACED_FOLDER} "
                           f"({failed}); the next `prefuse run` or `prefuse report` on "
                           f"{out} puts it back")
        raise
    settle(out)

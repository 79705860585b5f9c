"""Atomic file writing: results are written to a temp file, then renamed over the target.

A kill at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it onto ``path``.

    A failure to create, write or rename (no space, no permission) is an ``OutputError``
    naming ``path``; the old file, if any, is left as it was.
    """
    path = check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise OutputError(path, f"cannot write ({e.strerror or e})") from None
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        # mkstemp creates 0600; results should get the permissions any new file gets.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(path, f"cannot write ({e.strerror or e})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: str | Path) -> Path:
    """``path`` if a file can be written there, else an ``OutputError`` saying why.

    Called before long work (training, predicting, converting) so that a bad ``--out``
    fails at once instead of after the work is done. Missing parent folders are fine
    (they are created); a parent that is a file, or a folder without write permission,
    is not.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, "is a directory; give a file name")
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(path, f"{parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(path, f"no permission to write in {parent}")
    return path


def check_directory_writable(path: str | Path) -> Path:
    """``path`` if it is, or can become, a directory that files can be written into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, "exists and is not a directory")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(path, "no permission to write in this directory")
        return path
    check_writable(path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: object) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

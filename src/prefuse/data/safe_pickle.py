"""A restricted unpickler: numpy arrays and plain containers in, nothing executable.

Pickles are programs: ``pickle.load`` will call any importable function the file names.
Feature releases (MulT, MMSA) ship as pickles, so every pickle prefuse reads goes through
``load_pickle``, whose ``find_class`` hands out only the globals needed to rebuild numpy
arrays, dtypes and scalars and builtin containers. Any other global is refused before
anything in the file runs.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from pathlib import Path

from ..errors import DataError

# numpy moved its internals from numpy.core to numpy._core in 2.0; pickles written by
# either version name their own module, so both spellings are allowed.
_NUMPY = {
    (module, name)
    for prefix in ("numpy.core", "numpy._core")
    for module, name in (
        (f"{prefix}.multiarray", "_reconstruct"),
        (f"{prefix}.multiarray", "scalar"),
        (f"{prefix}.numeric", "_frombuffer"),  # protocol 5 array pickles
    )
} | {("numpy", "ndarray"), ("numpy", "dtype")}

_BUILTINS = {
    ("builtins", name)
    for name in ("list", "dict", "tuple", "set", "frozenset", "bytes", "bytearray",
                 "str", "int", "float", "bool", "complex", "slice")
}

# Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1");
# numpy arrays' raw buffers come out this way. OrderedDict is a plain mapping.
ALLOWED_GLOBALS = frozenset(
    _NUMPY | _BUILTINS | {("_codecs", "encode"), ("collections", "OrderedDict")})


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside ``ALLOWED_GLOBALS``."""

    def __init__(self, file: io.BufferedIOBase, source: object):
        # latin1 lets Python 2 pickles of numpy arrays (byte strings) load unchanged.
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> object:
        # Protocol 0-2 pickles may use Python 2 names (__builtin__.set); pickle maps them
        # to Python 3 names inside find_class, so the check looks at the mapped name.
        mapped = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        if mapped not in ALLOWED_GLOBALS:
            raise DataError(self.source, f"refused to load the global '{module}.{name}': "
                            "prefuse reads pickles holding only numpy arrays and plain "
                            "containers (a pickle can run code when loaded)")
        return super().find_class(module, name)


def load_pickle(path: str | Path) -> object:
    """Unpickle ``path`` through ``RestrictedUnpickler``; any failure is a ``DataError``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, path).load()
    except DataError:
        raise
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror or e}") from None
    except MemoryError:
        raise DataError(path, "not enough memory to unpickle this file") from None
    except Exception as e:
        # A truncated or corrupt stream fails inside pickle or inside numpy's array
        # rebuilders with almost any exception type; all of them mean "bad file".
        raise DataError(path, "truncated or corrupt pickle "
                        f"({type(e).__name__}: {e})") from None


def looks_like_pickle(path: Path) -> bool:
    """Whether ``path`` is a file starting like a pickle (protocol 2+ or an old dict)."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(2)
    if len(head) < 2:
        return False
    return (head[0] == 0x80 and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL) or head[:1] in (b"}",
                                                                                         b"(")

"""The format registry: ``Format`` and its lookup. It imports no format; each format
module registers itself here, and the package ``__init__`` imports the built-in ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...errors import DataError
from ...registry import Registry
from ..dataset import MultimodalDataset


@dataclass(frozen=True)
class Format:
    """A loader: ``sniff(path)`` says whether a file looks like this format."""

    name: str
    sniff: Callable[[Path], bool]
    load: Callable[..., MultimodalDataset]


FORMATS: Registry[Format] = Registry("format")


def register_format(fmt: Format) -> Format:
    """Add ``fmt`` to the registry under its name (what each format module does)."""
    return FORMATS.register(fmt.name)(fmt)


def detect_format(path: Path) -> str:
    """The name of the first format whose ``sniff`` accepts ``path``."""
    for name in FORMATS:
        if FORMATS.get(name).sniff(path):
            return name
    raise DataError(path, f"cannot tell the format; pass --format (one of {FORMATS.names()})")

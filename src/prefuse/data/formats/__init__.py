"""Data file formats. Each module registers a ``Format`` (sniff + load) under its name."""

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
    return FORMATS.register(fmt.name)(fmt)


def detect_format(path: Path) -> str:
    """The name of the first format whose ``sniff`` accepts ``path``."""
    for name in FORMATS:
        if FORMATS.get(name).sniff(path):
            return name
    raise DataError(path, f"cannot tell the format; pass --format (one of {FORMATS.names()})")


def load_dataset(path: str | Path, format: str = "auto", **options) -> MultimodalDataset:
    """Load ``path`` with the named format (or detect it), then validate the result."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    name = detect_format(path) if format == "auto" else format
    dataset = FORMATS.get(name, "data.format").load(path, **options)
    dataset.validate()
    return dataset


from . import npz  # noqa: E402,F401  (registers the built-in formats)

"""Data file formats: reading a file with its format. Each format module registers a
``Format`` (sniff + load) in ``registry``; importing this package registers the built-in ones."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...config import DataConfig
from ...errors import ConfigError, DataError
from ..clean import replace_nonfinite
from ..dataset import MultimodalDataset
from .registry import FORMATS, Format, detect_format, register_format


def _accepted(loader: Callable[..., MultimodalDataset], name: str,
              options: dict[str, object]) -> dict[str, object]:
    """``options`` minus unset ones (None); an option the format does not take is an error."""
    params = inspect.signature(loader).parameters
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in params or key == "path":
            raise ConfigError(f"data.{key}", f"the '{name}' format takes no option '{key}'")
    return given


def read_dataset(path: str | Path, format: str = "auto", **options) -> MultimodalDataset:
    """Load ``path`` as stored: features in their stored dtype, no clean-up, no validation
    (``inspect`` reports the raw values).

    ``options`` go to the format's loader; ``None`` means "not set".
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    name = detect_format(path) if format == "auto" else format
    loader = FORMATS.get(name, "data.format").load
    return loader(path, **_accepted(loader, name, options))


def features_to_float32(dataset: MultimodalDataset) -> None:
    """Cast every split's features to float32 in place (the models' dtype)."""
    for split in dataset.splits.values():
        for m, x in split.features.items():
            if x.dtype != np.float32:
                # float64 values beyond float32's range become inf here and are then
                # zeroed and counted with the other non-finite values.
                with np.errstate(over="ignore", invalid="ignore"):
                    split.features[m] = np.ascontiguousarray(x, dtype=np.float32)


def load_dataset(path: str | Path, format: str = "auto", **options) -> MultimodalDataset:
    """Load ``path`` with the named format (or detect it), make features float32, zero
    non-finite feature values (warning with counts), then validate the result (a
    partial dataset where ``allow_missing``, the option for using a trained model, is set).
    """
    dataset = read_dataset(path, format, **options)
    features_to_float32(dataset)
    replace_nonfinite(dataset)
    dataset.validate(partial=bool(options.get("allow_missing")))
    return dataset


def config_options(data: DataConfig, seed: int = 0) -> dict[str, object]:
    """The loader options a ``[data]`` config table sets (unset ones are ``None``)."""
    files = data.csd
    return {"valid_fraction": data.valid_fraction, "seed": seed,
            "label_columns": data.label_columns or None,
            "features": files.features or None, "labels": files.labels or None,
            "folds": files.folds or None, "max_steps": files.max_steps or None}


__all__ = ["FORMATS", "Format", "config_options", "detect_format", "features_to_float32",
           "load_dataset", "read_dataset", "register_format"]

# Importing the modules registers the built-in formats. Detection tries them in this
# order, but the sniffs exclude one another (content, not file names, decides: MMSA
# pickles carry keys MulT's never do), so the order does not change the answer.
from . import csd, mmsa, mult, npz  # noqa: E402,F401

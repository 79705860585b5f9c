"""The dataset a run config names: a data file in any supported format, or the built-in
benchmark."""

from __future__ import annotations

from ..config import RunConfig
from .dataset import MultimodalDataset
from .formats import config_options, load_dataset
from .synthetic import make_synthetic


def load_data(config: RunConfig) -> MultimodalDataset:
    """The dataset ``config.data`` names, or the built-in benchmark."""
    d = config.data
    if not d.path:
        s = d.synthetic
        return make_synthetic(seed=s.seed, train=s.train, valid=s.valid, test=s.test)
    return load_dataset(d.path, d.format, **config_options(d))

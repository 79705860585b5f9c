"""prefuse: modality pre-training and modality attention for multimodal learning.

The public API (imported on first use, so ``import prefuse`` stays light)::

    load_dataset, make_synthetic      data
    RunConfig, load_config            configuration
    run_experiment                    train the ablation arms, write a run directory
    tune                              search every arm with the same budget (Optuna)
    load_model, predict               use a saved model
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "load_dataset": "prefuse.data.formats",
    "make_synthetic": "prefuse.data.synthetic",
    "RunConfig": "prefuse.config",
    "load_config": "prefuse.config",
    "run_experiment": "prefuse.runs.experiment",
    "tune": "prefuse.tuning",
    "load_model": "prefuse.models.saving",
    "predict": "prefuse.inference",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'prefuse' has no attribute {name!r}")
    return getattr(import_module(_API[name]), name)

"""Saving and loading trained networks: ``model.safetensors`` + ``model.json``.

Weights are read with safetensors (never unpickled); ``model.json`` holds what is needed
to rebuild the network and use it: the arm, the architecture, the network spec, the
task, the normalisation statistics and the prefuse version.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from ..errors import PrefuseError
from ..fileio import atomic_path, write_json
from ..tasks import Task, make_task
from . import ensemble, mult  # noqa: F401  (register their architectures)
from .network import NETWORKS, NetworkSpec


def save_model(model: nn.Module, arm: str, task: Task, directory: str | Path,
               extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory`` atomically."""
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    stats = {m: {"mean": model.standardize[m].mean.tolist(),
                 "std": model.standardize[m].std.tolist()}
             for m in model.spec.modalities}
    write_json(directory / "model.json", {
        "prefuse_version": __version__,
        "arm": arm,
        "network": model.architecture,
        "spec": model.spec.to_dict(),
        "task": {"kind": task.kind, "targets": task.targets,
                 "label_names": list(task.label_names)},
        "normalization": stats,
        **(extra or {}),
    })
    return directory


def load_model(path: str | Path, arm: str | None = None,
               device: torch.device | str = "cpu") -> tuple[nn.Module, Task, dict]:
    """Load a saved network from a model folder or a run directory, onto ``device``
    (whatever device trained it: weights are stored device-free).

    In a run directory the headline model (top level) is loaded, or the model of
    ``arm`` from ``models/<arm>/``. Returns ``(model in eval mode, task, model.json)``.
    """
    path = Path(path)
    if arm is not None:
        path = path / "models" / arm
    meta_path, weights_path = path / "model.json", path / "model.safetensors"
    if not meta_path.is_file() or not weights_path.is_file():
        raise PrefuseError(f"{path}: no model.json/model.safetensors here")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        spec = NetworkSpec(**meta["spec"])
        task_info = meta["task"]
        # Models saved before model.json named the architecture are simple networks (a
        # MulT among them fails to load its weights, with the error below).
        model = NETWORKS.get(meta.get("network", "simple"), "network")(spec)
        task = make_task(task_info["kind"], task_info["targets"], task_info["label_names"])
    except (KeyError, TypeError, ValueError, AttributeError, OSError, PrefuseError) as e:
        raise PrefuseError(f"{meta_path}: cannot rebuild the model ({type(e).__name__}: "
                           f"{e})") from None
    try:
        model.load_state_dict(load_file(str(weights_path), device="cpu"))
    except (SafetensorError, RuntimeError, OSError) as e:
        # A truncated or foreign file, or weights of another network.
        raise PrefuseError(f"{weights_path}: cannot load the weights ({type(e).__name__}: "
                           f"{e})") from None
    return model.to(device).eval(), task, meta

"""A dataset's fingerprint: one hash per array, over the values a run trains on.

``prefuse run`` records it in the run directory (``data.json``); ``--resume`` recomputes it
and refuses data that changed, whatever the file is called and however it is stored
(hashing the loaded arrays, not the file bytes, makes a re-compressed or converted copy of
the same data match, and names the array that differs when it does not).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .dataset import MultimodalDataset


def _digest(value: object) -> str:
    a = np.ascontiguousarray(np.asarray(value))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    text = a.dtype.kind in "OUS"
    h.update("\0".join(map(str, a.ravel())).encode() if text else a.tobytes())
    return h.hexdigest()


def fingerprint(dataset: MultimodalDataset) -> dict[str, str]:
    """``{key: sha256}`` for the task, modalities, label names and every split's arrays
    (keys as in the generic NPZ layout)."""
    out = {"meta/task": _digest(dataset.task), "meta/modalities": _digest(dataset.modalities),
           "meta/label_names": _digest(dataset.label_names or [])}
    for name, split in dataset.splits.items():
        for m in dataset.modalities:
            out[f"{name}/{m}"] = _digest(split.features[m])
            out[f"{name}/lengths/{m}"] = _digest(split.lengths[m])
            out[f"{name}/present/{m}"] = _digest(split.present[m])
        out[f"{name}/labels"] = _digest(split.labels if split.labelled else [])
        out[f"{name}/ids"] = _digest(split.ids)
        if split.dominant is not None:
            out[f"{name}/dominant"] = _digest(split.dominant)
        if split.group is not None:
            out[f"{name}/group"] = _digest(split.group)
            out[f"{name}/order"] = _digest(split.order)
    return out


def differences(saved: dict[str, str], current: dict[str, str]) -> list[str]:
    """The keys whose arrays differ, or that only one fingerprint has."""
    out = []
    for key in sorted(saved.keys() | current.keys()):
        if key not in current:
            out.append(f"{key} is gone")
        elif key not in saved:
            out.append(f"{key} is new")
        elif saved[key] != current[key]:
            out.append(f"{key} changed")
    return out

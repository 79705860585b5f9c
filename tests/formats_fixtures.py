"""Small data files in the exact layouts of the public releases (docs/formats.md).

Same keys, shapes (feature widths and steps), dtypes and label layouts as the real files,
with few samples. Every writer returns what a test needs to check the loaded result.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import numpy as np

SIZES = {"train": 10, "valid": 4, "test": 6}
MULT_DIMS = {"mosi": (300, 5, 20), "mosei": (300, 74, 35), "iemocap": (300, 74, 35)}
UNALIGNED_STEPS = {"text": 50, "audio": 375, "vision": 500}


def _padded_left(rng: np.random.Generator, n: int, steps: int, dim: int,
                 lengths: np.ndarray) -> np.ndarray:
    """float64 sequences whose valid steps sit at the end (MulT pads on the left)."""
    x = np.zeros((n, steps, dim), dtype=np.float64)
    for i, length in enumerate(lengths):
        x[i, steps - length:] = rng.normal(size=(length, dim)) + 0.5
    return x


def write_mult(path: Path, dataset: str = "mosi", aligned: bool = True,
               seed: int = 0) -> dict:
    """A MulT pickle; returns per split the valid steps and the planted -inf count."""
    rng = np.random.default_rng(seed)
    dims = dict(zip(("text", "audio", "vision"), MULT_DIMS[dataset], strict=True))
    data, info = {}, {}
    for split, n in SIZES.items():
        entry, split_info = {}, {"lengths": {}}
        for m, dim in dims.items():
            steps = 50 if aligned else UNALIGNED_STEPS[m]
            lengths = rng.integers(3, steps + 1, size=n)
            lengths[0] = steps  # one sample without padding
            entry[m] = _padded_left(rng, n, steps, dim, lengths)
            split_info["lengths"][m] = lengths
        # COVAREP's silent frames: -inf inside valid steps (the last step is always valid).
        entry["audio"][:2, -1, 0] = -np.inf
        split_info["neginf"] = 2
        if dataset == "iemocap":
            present = rng.integers(0, 2, size=(n, 4))
            labels = np.stack([1 - present, present], axis=2).astype(np.float32)
            split_info["labels"] = present
        else:
            sentiment = np.round(rng.uniform(-3, 3, size=n), 1)
            sentiment[1] = 0.0  # exactly-zero labels exist in MOSI/MOSEI
            labels = sentiment.reshape(n, 1, 1).astype(np.float32)
            split_info["labels"] = sentiment.astype(np.float32)
        entry["labels"] = labels
        entry["id"] = np.array([[f"vid{split}{i}".encode(), b"0.0", b"1.5"] for i in range(n)])
        data[split], info[split] = entry, split_info
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=4)
    return info


def write_mmsa(path: Path, variant: str = "aligned", seed: int = 0) -> dict:
    """An MMSA pickle: ``aligned`` (aligned_50), ``unaligned`` (unaligned_50) or ``sims``."""
    rng = np.random.default_rng(seed)
    if variant == "sims":
        steps, dims = {"text": 39, "audio": 400, "vision": 55}, {"audio": 33, "vision": 709}
    elif variant == "unaligned":
        steps, dims = {"text": 50, "audio": 375, "vision": 500}, {"audio": 5, "vision": 20}
    else:
        steps, dims = {"text": 50, "audio": 50, "vision": 50}, {"audio": 5, "vision": 20}
    scale = 1.0 if variant == "sims" else 3.0
    data, info = {}, {}
    for split, n in SIZES.items():
        tokens = rng.integers(3, steps["text"] + 1, size=n)
        mask = (np.arange(steps["text"])[None, :] < tokens[:, None]).astype(np.int64)
        text_bert = np.stack([rng.integers(100, 30000, size=mask.shape) * mask, mask,
                              np.zeros_like(mask)], axis=1).astype(np.float32)
        entry = {
            "raw_text": np.array([f"sentence {split} {i}" for i in range(n)], dtype=object),
            # Videos of 3 clips, each video in one split (as in the standard folds).
            "id": np.array([f"{split}video{i // 3}$_${i % 3}" for i in range(n)],
                           dtype=object),
            # BERT features of padding tokens are not zero.
            "text": rng.normal(size=(n, steps["text"], 768)).astype(np.float32),
            "text_bert": text_bert,
            "regression_labels": np.round(rng.uniform(-scale, scale, size=n), 1)
            .astype(np.float32),
            "annotations": ["Positive" for _ in range(n)],
        }
        entry["regression_labels"][1] = 0.0
        entry["classification_labels"] = (entry["regression_labels"] > 0).astype(np.float32)
        lengths = {}
        for m, dim in dims.items():
            lengths[m] = rng.integers(1, steps[m] + 1, size=n)
            x = rng.normal(size=(n, steps[m], dim)).astype(np.float32)
            x[np.arange(steps[m])[None, :] >= lengths[m][:, None]] = 0.0
            entry[m] = x
        entry["audio"][0, 0, 0] = -np.inf
        if variant != "aligned":
            entry["audio_lengths"] = lengths["audio"]
            entry["vision_lengths"] = lengths["vision"].tolist()
        if variant == "sims":
            for suffix in "TAV":
                entry[f"regression_labels_{suffix}"] = entry["regression_labels"].copy()
        data[split] = entry
        info[split] = {"tokens": tokens, "lengths": lengths,
                       "labels": entry["regression_labels"]}
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=4)
    return info


def write_sequence(path: Path, root: str, data: dict[str, np.ndarray],
                   metadata: dict[str, object] | None = None) -> None:
    """A computational sequence as the CMU-MultimodalSDK writes it."""
    vlen = h5py.special_dtype(vlen=str)
    with h5py.File(path, "w") as f:
        group = f.create_group(root).create_group("data")
        for key, features in data.items():
            entry = group.create_group(key)
            entry.create_dataset("features", data=features)
            steps = np.arange(len(features), dtype=np.float64)
            entry.create_dataset("intervals", data=np.stack([steps, steps + 1], axis=1))
        meta = f[root].create_group("metadata")
        for name, value in {"root name": root, **(metadata or {})}.items():
            meta.create_dataset(name, (1,), dtype=vlen)
            meta[name][0] = json.dumps(value)


MOSEI_LABELS = ["sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear"]
POM_TRAITS = ["confident", "passionate", "voice pleasant", "dominant", "credible", "vivid",
              "expertise", "entertaining", "reserved", "trusting", "relaxed", "outgoing",
              "thorough", "nervous", "persuasive", "humorous"]


def write_csd(folder: Path, dataset: str = "mosi", seed: int = 0) -> dict:
    """A folder with text/audio/vision ``.csd``, ``labels.csd`` and ``folds.json``.

    MOSI/MOSEI: segments ``vid[k]`` with per-word features; POM: one entry per video.
    One segment lacks vision (dropped) and one video is in no fold (ignored).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    videos = {"train": [f"trv{i}" for i in range(4)], "valid": ["vav0", "vav1"],
              "test": ["tev0", "tev1", "tev2"]}
    segmented = dataset != "pom"
    keys = [f"{v}[{k}]" if segmented else v
            for vs in videos.values() for v in vs for k in range(3 if segmented else 1)]
    keys.append("orphan[0]" if segmented else "orphan")
    dims = {"text": 300, "audio": 74, "vision": 35}
    steps = {key: int(rng.integers(1, 70)) for key in keys}
    for m, dim in dims.items():
        seq = {key: rng.normal(size=(steps[key], dim)) for key in keys}
        if m == "audio":
            seq[keys[0]][0, :3] = -np.inf
        if m == "vision":
            del seq[keys[1]]
        write_sequence(folder / f"{m}.csd", {"text": "glove_vectors", "audio": "COVAREP",
                                               "vision": "FACET 4.2"}[m], seq)
    names = {"mosi": ["sentiment"], "mosei": MOSEI_LABELS, "pom": POM_TRAITS}[dataset]
    labels = {key: np.round(rng.uniform(-3, 3, size=(1, len(names))), 1) for key in keys}
    labels[keys[2]][0, 0] = 0.0
    write_sequence(folder / "labels.csd", "Opinion Segment Labels", labels,
                   {"dimension names": names})
    (folder / "folds.json").write_text(json.dumps(videos))
    return {"videos": videos, "steps": steps, "labels": labels, "keys": keys, "names": names}

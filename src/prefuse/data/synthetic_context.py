"""The built-in benchmark where context matters: videos of utterances, each video with a
latent tendency, and utterances whose own cue is often missing.

Each split is a set of videos of 4..12 utterances (the last video of a split is cut so the
split has exactly the samples asked for). A video has a tendency, +1 or -1 with equal
chance; each utterance's binary label follows it with probability ``follow`` (default 0.8)
and is its opposite otherwise. An utterance is *cued* with probability ``cued`` (default
0.5): then its three modalities carry its label's cue exactly as in the standard benchmark
(``prefuse.data.synthetic``: one dominant modality strong, the others a weak decoy; text
learnt fast, audio's ramp slower, vision's XOR slowest). An uncued utterance is noise in
every modality. So an utterance alone is near chance when uncued, and only the cued
utterances around it in its video tell its likely label: a model without context is
bounded near ``cued * (its accuracy on cued) + (1 - cued) / 2``, one with context can
reach about ``follow`` on the uncued ones.

``follow = 0.5`` makes labels independent of the video: groups of independent utterances,
where context has nothing to find (the control). Groups are ``<split>-v<k>``, orders the
position in the video; rows are stored in a seeded random order, not video by video.
"""

from __future__ import annotations

import numpy as np

from .dataset import MultimodalDataset, Split
from .synthetic import DIMS, MODALITIES, STEPS, STRONG, WEAK, cue

SHORTEST, LONGEST = 4, 12


def _videos(n: int, rng: np.random.Generator) -> np.ndarray:
    """Video sizes (``SHORTEST``..``LONGEST``) summing to ``n``; the last one may be cut."""
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(SHORTEST, LONGEST + 1)))
    sizes[-1] -= sum(sizes) - n
    return np.array(sizes, dtype=np.int64)


def _split(n: int, rng: np.random.Generator, direction: np.ndarray, name: str,
           follow: float, cued: float) -> Split:
    sizes = _videos(n, rng)
    video = np.repeat(np.arange(len(sizes)), sizes)
    order = np.concatenate([np.arange(k) for k in sizes])
    tendency = rng.choice([-1.0, 1.0], size=len(sizes))[video]
    sign = np.where(rng.random(n) < follow, tendency, -tendency)
    has_cue = rng.random(n) < cued
    dominant = rng.integers(0, len(MODALITIES), size=n)
    features, lengths = {}, {}
    for k, m in enumerate(MODALITIES):
        is_dom = dominant == k
        decoy = np.where(rng.random(n) < 0.5, sign, -sign)
        amplitude = np.where(has_cue, np.where(is_dom, STRONG, WEAK), 0.0)
        x = cue(m, np.where(is_dom, sign, decoy), amplitude, rng, direction)
        length = rng.integers(12, STEPS + 1, size=n)
        x[np.arange(STEPS)[None, :] >= length[:, None]] = 0.0
        features[m], lengths[m] = x, length.astype(np.int64)
    group = np.array([f"{name}-v{v:04d}" for v in video])
    split = Split(features=features, labels=(sign > 0).astype(np.int64), lengths=lengths,
                  ids=np.array([f"{g}_{o}" for g, o in zip(group, order, strict=True)]),
                  group=group, order=order)
    return split.subset(rng.permutation(n))


def make_context_synthetic(seed: int = 0, train: int = 2400, valid: int = 600,
                           test: int = 1200, follow: float = 0.8,
                           cued: float = 0.5) -> MultimodalDataset:
    """Generate the context benchmark (binary task, groups and orders) from ``seed``;
    ``train``/``valid``/``test`` count utterances."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=DIMS["text"])
    direction /= np.linalg.norm(direction)
    splits = {name: _split(n, rng, direction, name, follow, cued)
              for name, n in (("train", train), ("valid", valid), ("test", test))}
    return MultimodalDataset(splits=splits, task="binary", modalities=list(MODALITIES),
                             label_names=["positive"], name="synthetic-context",
                             source=f"<synthetic context seed={seed}>")

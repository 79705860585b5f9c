"""The built-in benchmark: three modalities that learn at different speeds, and a
different modality deciding each sample.

Binary label y (s = +1/-1). Every sample has a *dominant* modality d, drawn uniformly.
Every modality carries a cue of the same amplitude, but only the dominant one carries
the label's cue, and cleanly (noise std 0.7); the other two carry the cue of an
independent coin flip under heavier noise (std 1.5). A modality's reliability is thus
visible in its own features (how noisy it is), as a blurred face or a noisy audio track
would be. Each modality alone is right on its dominant third and at chance on the
rest (about 2/3 accuracy); a network that reads all three and trusts the clean one per
sample can approach 100%. The cues differ in how fast a network learns them:

- ``text`` (T=20, D=64): a fixed direction added to every step; linear in the mean, so
  learnt in a few epochs. Its 64 noisy dimensions also make the training set easy to
  memorise, as 300-d word vectors do on MOSI-sized data.
- ``audio`` (T=20, D=8): a ramp over time on channel 0 (rising for +1, falling for -1);
  its mean is zero, so it needs temporal processing.
- ``vision`` (T=20, D=16): the product of the signs of two channels' offsets (an XOR):
  a non-linear cue.

Sequences have random lengths (12..20) and are zero-padded. Nothing here depends on the
method being evaluated: every arm sees the same data.
"""

from __future__ import annotations

import numpy as np

from .dataset import MultimodalDataset, Split

MODALITIES = ("text", "audio", "vision")
STEPS = 20
DIMS = {"text": 64, "audio": 8, "vision": 16}
AMPLITUDE = 1.0
CLEAN_NOISE, NOISY_NOISE = 0.7, 1.5


def _cue(modality: str, sign: np.ndarray, noise: np.ndarray, rng: np.random.Generator,
         direction: np.ndarray) -> np.ndarray:
    n = len(sign)
    x = rng.normal(0.0, 1.0, size=(n, STEPS, DIMS[modality])) * noise[:, None, None]
    a = AMPLITUDE * sign[:, None]
    if modality == "text":
        x += a[:, :, None] * direction[None, None, :]
    elif modality == "audio":
        x[:, :, 0] += 2.0 * a * np.linspace(-1.0, 1.0, STEPS)[None, :]
    else:
        # sign(offset0 * offset1) = sign: offset0's sign is random, offset1's follows.
        first = rng.choice([-1.0, 1.0], size=n)[:, None]
        x[:, :, 0] += AMPLITUDE * first
        x[:, :, 1] += first * a
    return x.astype(np.float32)


def _split(n: int, rng: np.random.Generator, direction: np.ndarray, prefix: str) -> Split:
    y = rng.integers(0, 2, size=n)
    sign = 2.0 * y - 1.0
    dominant = rng.integers(0, len(MODALITIES), size=n)
    features, lengths = {}, {}
    for k, m in enumerate(MODALITIES):
        is_dominant = dominant == k
        coin = rng.choice([-1.0, 1.0], size=n)
        x = _cue(m, np.where(is_dominant, sign, coin),
                 np.where(is_dominant, CLEAN_NOISE, NOISY_NOISE), rng, direction)
        length = rng.integers(12, STEPS + 1, size=n)
        x[np.arange(STEPS)[None, :] >= length[:, None]] = 0.0
        features[m], lengths[m] = x, length.astype(np.int64)
    return Split(features=features, labels=y.astype(np.int64), lengths=lengths,
                 ids=np.array([f"{prefix}{i:05d}" for i in range(n)]),
                 dominant=dominant.astype(np.int64))


def make_synthetic(seed: int = 0, train: int = 1200, valid: int = 300,
                   test: int = 600) -> MultimodalDataset:
    """Generate the built-in benchmark (binary task, ``dominant`` recorded) from ``seed``."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=DIMS["text"])
    direction /= np.linalg.norm(direction)
    splits = {name: _split(n, rng, direction, f"{name}-")
              for name, n in (("train", train), ("valid", valid), ("test", test))}
    return MultimodalDataset(splits=splits, task="binary", modalities=list(MODALITIES),
                             label_names=["positive"], name="synthetic",
                             source=f"<synthetic seed={seed}>")

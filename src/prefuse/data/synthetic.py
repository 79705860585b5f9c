"""The built-in benchmark: three modalities that learn at different speeds, and a
different modality deciding each sample.

Binary label y (s = +1/-1). Every sample has a *dominant* modality d, drawn uniformly:
that modality carries the label's cue strongly (amplitude 1.0); the other two carry the
cue of an independent coin flip, weakly (amplitude 0.3). Every step has unit Gaussian
noise. So each modality alone is right on its dominant third and near chance elsewhere
(about 2/3 accuracy), and only a network that reads all three and follows the strong
cue per sample does well. The cues differ in how fast a network learns them, as text,
audio and video do in the paper:

- ``text`` (T=20, D=64): a fixed direction added to every step. Linear in the mean:
  learnt in a few epochs.
- ``audio`` (T=20, D=8): a ramp over time on channel 0 (rising for +1, falling for -1);
  its mean is zero, so it needs temporal processing: slower.
- ``vision`` (T=20, D=16): the product of the signs of three channels' offsets (a
  three-way XOR), a non-linear cue: slowest, and flat for the first epochs.

Why joint training under-uses vision here: text and audio fit their two thirds of the
training set within a few epochs, and the wide text input then lets the network memorise
the remaining third before it has learnt the XOR well, so the gradient that would teach
the vision encoder fades. Alone, the vision encoder has nothing else to lean on and finds its
cue within the pre-training epochs.

Sequences have random lengths (12..20) and are zero-padded. Nothing here depends on the
method being evaluated: every arm sees the same data.
"""

from __future__ import annotations

import numpy as np

from .dataset import MultimodalDataset, Split

MODALITIES = ("text", "audio", "vision")
STEPS = 20
DIMS = {"text": 64, "audio": 8, "vision": 16}
STRONG, WEAK, NOISE = 1.0, 0.3, 1.0


def cue(modality: str, sign: np.ndarray, amplitude: np.ndarray, rng: np.random.Generator,
         direction: np.ndarray) -> np.ndarray:
    """``(N, STEPS, D)`` unit noise plus ``modality``'s cue of ``sign`` at ``amplitude``."""
    n = len(sign)
    x = rng.normal(0.0, NOISE, size=(n, STEPS, DIMS[modality])).astype(np.float32)
    a = (sign * amplitude)[:, None]
    if modality == "text":
        x += (a[:, :, None] * direction[None, None, :]).astype(np.float32)
    elif modality == "audio":
        ramp = np.linspace(-1.0, 1.0, STEPS)[None, :]
        x[:, :, 0] += (2.0 * a * ramp).astype(np.float32)
    else:
        # sign(a0 * a1 * a2) = sign: draw a0's and a1's signs at random, set a2's to match.
        first = rng.choice([-1.0, 1.0], size=n)
        second = rng.choice([-1.0, 1.0], size=n)
        for channel, s in enumerate((first, second, first * second * sign)):
            x[:, :, channel] += (s * amplitude)[:, None].astype(np.float32)
    return x


def _split(n: int, rng: np.random.Generator, direction: np.ndarray, prefix: str) -> Split:
    y = rng.integers(0, 2, size=n)
    sign = 2.0 * y - 1.0
    dominant = rng.integers(0, len(MODALITIES), size=n)
    features, lengths = {}, {}
    for k, m in enumerate(MODALITIES):
        is_dom = dominant == k
        decoy = np.where(rng.random(n) < 0.5, sign, -sign)  # independent of the label
        s = np.where(is_dom, sign, decoy)
        amplitude = np.where(is_dom, STRONG, WEAK)
        x = cue(m, s, amplitude, rng, direction)
        length = rng.integers(12, STEPS + 1, size=n)
        x[np.arange(STEPS)[None, :] >= length[:, None]] = 0.0
        features[m], lengths[m] = x, length.astype(np.int64)
    return Split(features=features, labels=y.astype(np.int64), lengths=lengths,
                 ids=np.array([f"{prefix}{i:05d}" for i in range(n)]),
                 dominant=dominant.astype(np.int64))


def make_synthetic(seed: int = 0, train: int = 2400, valid: int = 600,
                   test: int = 1200) -> MultimodalDataset:
    """Generate the built-in benchmark (binary task, ``dominant`` recorded) from ``seed``."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=DIMS["text"])
    direction /= np.linalg.norm(direction)
    splits = {name: _split(n, rng, direction, f"{name}-")
              for name, n in (("train", train), ("valid", valid), ("test", test))}
    return MultimodalDataset(splits=splits, task="binary", modalities=list(MODALITIES),
                             label_names=["positive"], name="synthetic",
                             source=f"<synthetic seed={seed}>")

"""Write an MMSA-format pickle shaped like aligned CMU-MOSI, with video context.

    python bench/mosi_shaped.py --out mosi_shaped.pkl [--seed 0] [--follow 1.0]

Sizes, ids and shapes follow the MMSA ``aligned_50`` release of CMU-MOSI: 1284/229/686
utterances in 52/10/31 videos, ids ``<video>$_$<clip>``, 50 steps, text 768, audio 5,
vision 20 channels, sentiment in [-3, 3] (``regression_labels``). The numbers are
generated, not real: each video has a latent sentiment ``t`` (uniform in [-2, 2]); an
utterance's label is ``t * follow`` plus unit noise, clipped and rounded to 0.2 as MOSI's
averaged ratings are. Half the utterances carry a cue of their own label (text: a fixed
direction, fast to learn; audio: a ramp over time on one channel, slower; vision: a weak
shift of four channels); the others are noise in every modality, so only their video tells.
``--follow 0`` makes labels independent of the video (the no-context control).

Used to report figures on data in MMSA's layout (the format loader, its ids and groups,
a regression task); it says nothing about real MOSI.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

SIZES = {"train": (1284, 52), "valid": (229, 10), "test": (686, 31)}
STEPS = 50
DIMS = {"text": 768, "audio": 5, "vision": 20}
CUED = 0.5
AMPLITUDE = {"text": 1.0, "audio": 0.6, "vision": 0.4}


def _video_sizes(utterances: int, videos: int, rng: np.random.Generator) -> np.ndarray:
    """``videos`` sizes of at least 2, of uneven length as MOSI's, summing to ``utterances``."""
    share = rng.dirichlet(np.full(videos, 4.0))
    return 2 + rng.multinomial(utterances - 2 * videos, share)


def _features(labels: np.ndarray, cued: np.ndarray, rng: np.random.Generator,
              direction: np.ndarray) -> dict[str, np.ndarray]:
    n = len(labels)
    a = np.where(cued, labels / 3.0, 0.0)[:, None]
    out = {m: rng.normal(size=(n, STEPS, d)).astype(np.float32) for m, d in DIMS.items()}
    out["text"] += (AMPLITUDE["text"] * a[:, :, None] * direction).astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, STEPS)[None, :]
    out["audio"][:, :, 0] += (2.0 * AMPLITUDE["audio"] * a * ramp).astype(np.float32)
    out["vision"][:, :, :4] += (AMPLITUDE["vision"] * a[:, :, None]).astype(np.float32)
    return out


def make(seed: int = 0, follow: float = 1.0) -> dict:
    """The pickle's content: one dict per split, as MMSA writes it."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=DIMS["text"])
    direction /= np.linalg.norm(direction)
    data = {}
    for split, (n, videos) in SIZES.items():
        sizes = _video_sizes(n, videos, rng)
        video = np.repeat(np.arange(videos), sizes)
        clip = np.concatenate([np.arange(1, k + 1) for k in sizes])
        tendency = rng.uniform(-2.0, 2.0, size=videos)[video]
        labels = np.clip(follow * tendency + rng.normal(size=n), -3.0, 3.0)
        labels = (np.round(labels * 5.0) / 5.0).astype(np.float32)
        entry = _features(labels, rng.random(n) < CUED, rng, direction)
        entry["id"] = np.array([f"{split}{v:03d}$_${c}" for v, c in zip(video, clip)],
                               dtype=object)
        entry["raw_text"] = np.array([f"utterance {i}" for i in range(n)], dtype=object)
        entry["regression_labels"] = labels
        entry["classification_labels"] = (labels > 0).astype(np.float32)
        data[split] = entry
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--follow", type=float, default=1.0)
    args = parser.parse_args()
    out = Path(args.out)
    temporary = out.with_name(out.name + ".partial")
    with open(temporary, "wb") as f:
        pickle.dump(make(args.seed, args.follow), f, protocol=4)
    temporary.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

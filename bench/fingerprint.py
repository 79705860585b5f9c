"""Time the data fingerprint every run records (and ``--resume`` recomputes).

MOSEI-sized text features: 16,000 / 1,800 / 4,600 samples, 50 steps, 300 features,
float32 (1.25 GiB). Prints the size and the seconds one fingerprint takes.

    python bench/fingerprint.py
"""

from __future__ import annotations

import time

import numpy as np

from prefuse.data.dataset import MultimodalDataset, Split
from prefuse.data.fingerprint import fingerprint


def main() -> None:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        return Split(features={"text": rng.standard_normal((n, 50, 300), dtype=np.float32)},
                     labels=rng.standard_normal(n).astype(np.float32))

    dataset = MultimodalDataset(splits={"train": split(16000), "valid": split(1800),
                                        "test": split(4600)},
                                task="regression", modalities=["text"])
    size = sum(s.features["text"].nbytes for s in dataset.splits.values()) / 2**30
    start = time.perf_counter()
    fingerprint(dataset)
    seconds = time.perf_counter() - start
    print(f"fingerprint of {size:.2f} GiB: {seconds:.2f} s ({size / seconds:.2f} GiB/s)")


if __name__ == "__main__":
    main()

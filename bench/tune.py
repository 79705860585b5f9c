"""Trials per minute of ``prefuse tune`` on the built-in benchmark, one worker against two.

    python bench/tune.py [--trials 10] [--epochs 12] [--arm pretrained+attention]

Both settings run the same trials: the sampler is seeded per trial number and the first
``startup_trials`` trials (10) are drawn at random, so with ``--trials`` up to 10 both
train the very same configurations. Pruning is off, so each trial costs its whole budget.
Each setting tunes into a fresh directory (SQLite study inside); the time includes
starting the worker processes. Each worker trains with one thread (the default
``train.threads``), so two workers use two cores where one uses one. The last
line printed is one JSON object: ``jobs1`` and ``jobs2`` (trials per minute) and
``ratio`` (goal: at least 1.7).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from prefuse.config import RunConfig, SearchParam, default_space, with_overrides
from prefuse.tuning import tune


def trials_per_minute(jobs: int, args: argparse.Namespace) -> float:
    config = with_overrides(RunConfig(), {
        "arms": [args.arm], "train.epochs": args.epochs, "train.patience": args.epochs,
        "train.pretrain_epochs": args.epochs // 2,
        "tune.trials": args.trials, "tune.jobs": jobs, "tune.pruner": "none"})
    space = default_space()
    # Stage 1 must leave stage 2 some of the shortened budget.
    space["train.pretrain_epochs"] = SearchParam("int", 1, args.epochs // 2, stage1=True)
    config.tune.space = space
    with tempfile.TemporaryDirectory() as tune_dir:
        start = time.perf_counter()
        tune(config, tune_dir, log=lambda _: None)
        seconds = time.perf_counter() - start
    return args.trials * 60.0 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--arm", default="pretrained+attention")
    args = parser.parse_args()
    rates = {}
    for jobs in (1, 2):
        rates[f"jobs{jobs}"] = trials_per_minute(jobs, args)
        print(f"--jobs {jobs}: {rates[f'jobs{jobs}']:.2f} trials per minute "
              f"({args.trials} trials of {args.arm}, {args.epochs}-epoch budget)", flush=True)
    rates["ratio"] = rates["jobs2"] / rates["jobs1"]
    print(f"ratio --jobs 2 / --jobs 1: {rates['ratio']:.2f} (goal >= 1.7)")
    print(json.dumps(rates))


if __name__ == "__main__":
    main()

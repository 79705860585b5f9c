"""How torch's CPU thread count copes with a busy machine: a short run, quiet and beside
one CPU-bound process, for several ``train.threads`` values.

    python bench/threads.py [--threads 1 2] [--repeats 3] [-- extra prefuse run options]

Each timing is the wall time of one ``prefuse run --seeds 0 --arms scratch+concat
--epochs 6 --pretrain-epochs 2`` in a fresh process with ``--threads N`` (by default 1,
prefuse's default, and the core count, torch's own default). "busy" runs it beside a
pure-Python busy loop that keeps one core taken. Prints one line per setting: the range
and median over the repeats, and the busy/quiet ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = ["--seeds", "0", "--arms", "scratch+concat", "--epochs", "6", "--pretrain-epochs", "2"]
SRC = Path(__file__).resolve().parents[1] / "src"


def timed_run(threads: int, out: Path, extra: list[str]) -> float:
    """Wall seconds of one short ``prefuse run`` with ``train.threads=threads``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    env.pop("OMP_NUM_THREADS", None)  # torch's default must be torch's own
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prefuse", "run", *RUN, "--out", str(out),
                    "--set", f"train.threads={threads}", *extra],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def busy_loop() -> subprocess.Popen:
    """One CPU-bound process (a pure-Python loop) that keeps a core taken."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+",
                        default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more `prefuse run` options (after --)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; prefuse run {' '.join(RUN + args.extra)}")
    print(f"{'threads':>8}  {'quiet s (min-max, median)':>28}  {'busy s (min-max, median)':>28}"
          f"  {'busy/quiet':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads:
            times: dict[str, list[float]] = {"quiet": [], "busy": []}
            for _ in range(args.repeats):
                times["quiet"].append(timed_run(threads, Path(tmp) / "q", args.extra))
                loop = busy_loop()
                try:
                    times["busy"].append(timed_run(threads, Path(tmp) / "b", args.extra))
                finally:
                    loop.kill()
                    loop.wait()
            cells = [f"{min(t):.1f}-{max(t):.1f}, {statistics.median(t):.1f}"
                     for t in times.values()]
            ratio = statistics.median(times["busy"]) / statistics.median(times["quiet"])
            print(f"{threads:>8}  {cells[0]:>28}  {cells[1]:>28}  {ratio:>10.2f}", flush=True)


if __name__ == "__main__":
    main()

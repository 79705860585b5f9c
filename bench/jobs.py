"""Wall time of the default built-in ablation with ``--jobs 1`` and ``--jobs N``, quiet and
beside one CPU-bound process.

    python bench/jobs.py [--jobs 1 2] [--busy-jobs 1] [--repeats 1] [--device auto]
                         [-- more run options]

Each timing is one ``prefuse run`` (3 seeds, 4 arms unless the options after ``--`` say
otherwise) in a fresh process. "busy" repeats the ``--busy-jobs`` runs beside a
pure-Python busy loop that keeps one core taken. ``--repeats R`` times every run R times,
in rounds (one of each per round), so that a machine whose speed drifts slows both sides
of a ratio alike. Prints one line per run, then the ratios the timings answer for, from
each round and from the medians: each ``--jobs N`` against ``--jobs 1``, busy against
quiet; and whether every run's ``metrics.json`` holds the same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def timed_run(out: Path, jobs: int, device: str, extra: list[str]) -> float:
    """Wall seconds of one ``prefuse run`` into ``out``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prefuse", "run", "--out", str(out), "--jobs",
                    str(jobs), "--device", device, *extra],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def numbers(out: Path) -> dict:
    """What must not depend on ``--jobs``: every metric, not the timings."""
    summary = json.loads((out / "metrics.json").read_text())
    arms = {arm: entry["seeds"] for arm, entry in summary["arms"].items()}
    return {"arms": arms, "unimodal": summary["unimodal"],
            "robustness": summary.get("robustness")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--busy-jobs", type=int, nargs="*", default=[1],
                        help="--jobs values also timed beside a busy process (none: skip)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of runs; ratios are given per round and from medians")
    parser.add_argument("--device", default="auto")
    parser.add_argument("extra", nargs="*", help="more `prefuse run` options (after --)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; prefuse run --device {args.device} "
          f"{' '.join(args.extra) or '(the default ablation)'}")
    seconds: dict[tuple[int, str], list[float]] = {}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        plan = [(j, "quiet") for j in args.jobs] + [(j, "busy") for j in args.busy_jobs]
        for round_ in range(args.repeats):
            for jobs, load in plan:
                out = Path(tmp) / f"jobs{jobs}-{load}-{round_}"
                loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) \
                    if load == "busy" else None
                try:
                    took = timed_run(out, jobs, args.device, args.extra)
                finally:
                    if loop is not None:
                        loop.kill()
                        loop.wait()
                seconds.setdefault((jobs, load), []).append(took)
                results.append(numbers(out))
                print(f"round {round_ + 1}: --jobs {jobs:<3} {load:<6} {took:8.1f} s", flush=True)
    pairs = [((j, "quiet"), (1, "quiet"), f"--jobs {j} / --jobs 1 (quiet)")
             for j in args.jobs if j != 1 and 1 in args.jobs]
    pairs += [((j, "busy"), (j, "quiet"), f"--jobs {j} busy / quiet")
              for j in args.busy_jobs if j in args.jobs]
    for top, bottom, name in pairs:
        rounds = [a / b for a, b in zip(seconds[top], seconds[bottom])]
        median = statistics.median(seconds[top]) / statistics.median(seconds[bottom])
        print(f"{name}: {median:.2f} from the medians; by round "
              f"{', '.join(f'{r:.2f}' for r in rounds)}")
    same = all(r == results[0] for r in results)
    print(f"same metrics.json numbers in every run: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()

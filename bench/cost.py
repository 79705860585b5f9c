"""What the simple network, the same with utterance context, and MulT cost to train and
run, on MOSI-sized data.

    python bench/cost.py [--epochs 2] [--threads 1] [--device cpu|cuda|cuda:N] [--precision bf16]
                         [--context gru|lstm|transformer]

The data is generated (seeded) with CMU-MOSI's shape: 1284/229/686 samples, T=50,
text 300, audio 5, vision 20, sentiment in [-3, 3], in videos of 25 utterances (MOSI has
about 25 per video) for the context model. Each model is measured in its own
fresh subprocess so peak memory is its own. An epoch is one training pass with the
arm's own training config (``Arm.training``: batch size, clipping) and the model's own
optimizer (``configure_optimizer``, as a run builds it), timed as data (building the
batch) plus compute (``train_step``, the very step training runs: forward, the method's
loss, backward, clip, step); validation is not included. The last line
printed is one JSON object: ``simple``, ``context``, ``mult``, ``epoch_time_ratio`` (MulT's
seconds per epoch / the simple network's), ``params_ratio`` and ``context_epoch_time_ratio``
(the simple network with ``--context`` over each video / without).

With ``--device cuda`` the data is moved to the GPU once, before timing (as a run keeps
it there), and every timed interval ends with a synchronisation, so the seconds are the
GPU's work, not the time to queue it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from prefuse.config import RunConfig, TrainConfig
from prefuse.data.dataset import MultimodalDataset, Split
from prefuse.data.windows import window_for
from prefuse.engine import runtime
from prefuse.engine.step import Objective, train_step
from prefuse.errors import PrefuseError
from prefuse.methods import build_method
from prefuse.recipe.arms import arm as arm_named
from prefuse.recipe.stages import network_spec
from prefuse.recipe.workspace import build_workspace
from prefuse.runs.cost import (
    count_params,
    inference_throughput,
    peak_cuda_mb,
    peak_rss_mb,
    synchronize,
)

SIZES = {"train": 1284, "valid": 229, "test": 686}
STEPS = 50
DIMS = {"text": 300, "audio": 5, "vision": 20}
VIDEO = 25
# Which arm's network and training settings each measured model uses, and whether it
# reads each video's utterances in context (``--context`` says which context layer).
MODELS = {"simple": ("scratch+attention", False), "context": ("scratch+attention", True),
          "mult": ("mult", False)}


def mosi_like(seed: int = 0) -> MultimodalDataset:
    """Random data shaped like aligned CMU-MOSI (lengths 10..50, zero-padded)."""
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in SIZES.items():
        features, lengths = {}, {}
        for m, d in DIMS.items():
            x = rng.normal(size=(n, STEPS, d)).astype(np.float32)
            length = rng.integers(10, STEPS + 1, size=n)
            x[np.arange(STEPS)[None, :] >= length[:, None]] = 0.0
            features[m], lengths[m] = x, length
        labels = rng.uniform(-3.0, 3.0, size=n).astype(np.float32)
        group = np.array([f"{name}{i // VIDEO}" for i in range(n)])
        splits[name] = Split(features=features, labels=labels, lengths=lengths, group=group)
    return MultimodalDataset(splits=splits, task="regression", modalities=list(DIMS),
                             name="mosi-like")


def measure(name: str, epochs: int, where: runtime.Runtime, context: str = "gru") -> dict:
    """Train ``name``'s model for ``epochs`` epochs on the runtime ``where`` and time it
    (run in a subprocess); the context model uses the layer ``context``."""
    arm_name, in_context = MODELS[name]
    config = RunConfig()
    if in_context:
        config = replace(config, model=replace(config.model, context=context))
    space = build_workspace(mosi_like(), where, context_window=window_for(config.model))
    dataset, task, data, device = space.dataset, space.task, space.data, space.runtime.device
    arm = arm_named(arm_name)
    # The arm's own training config and the model's own optimizer, as a run trains it.
    train = arm.training(config.train)
    method = build_method(arm.method, task, config, dataset.modalities)
    torch.manual_seed(0)
    model = arm.build(network_spec(dataset, config, task, arm.fusion,
                                   method.request.unimodal_heads))
    model.fit_standardization(dataset["train"])
    model.to(device)
    optimizer = model.configure_optimizer(train)
    generator = torch.Generator().manual_seed(0)
    method.start(model, 0, where)
    objective = Objective(model, method, where)
    data_seconds = compute_seconds = 0.0
    model.train()
    for _ in range(epochs):
        batches = data.train.batches(train.batch_size, generator)
        while True:
            synchronize(device)
            start = time.perf_counter()
            batch = next(batches, None)
            if batch is not None:
                batch = batch.to(device)
            synchronize(device)
            data_seconds += time.perf_counter() - start
            if batch is None:
                break
            start = time.perf_counter()
            train_step(objective, batch, optimizer, train.grad_clip)
            synchronize(device)
            compute_seconds += time.perf_counter() - start
    return {
        "params": count_params(model),
        "batch_size": train.batch_size,
        "seconds_per_epoch": (data_seconds + compute_seconds) / epochs,
        "data_seconds_per_epoch": data_seconds / epochs,
        "compute_seconds_per_epoch": compute_seconds / epochs,
        "inference_samples_per_s": inference_throughput(model, data.test, repeats=2),
        "peak_rss_mb": peak_rss_mb(),
        "peak_cuda_mb": peak_cuda_mb() if device.type == "cuda" else None,
        "device": str(device),
    }


def run_worker(name: str, args: argparse.Namespace) -> dict:
    """``measure`` in a fresh interpreter; its last stdout line is the JSON result."""
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", name,
                          "--epochs", str(args.epochs), "--threads", str(args.threads),
                          "--device", args.device, "--precision", args.precision,
                          "--context", args.context],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="training epochs timed")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per model (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="bf16: autocast (GPU only)")
    parser.add_argument("--context", default="gru", choices=["gru", "lstm", "transformer"],
                        help="the context model's layer over each video (default: gru)")
    parser.add_argument("--worker", choices=list(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        where = runtime.apply(runtime.resolve(TrainConfig(
            device=args.device, precision=args.precision,
            threads=args.threads or torch.get_num_threads())))
    except PrefuseError as e:
        sys.exit(f"cost.py: {e}")
    if args.worker:
        print(json.dumps(measure(args.worker, args.epochs, where, args.context)))
        return

    print(f"MOSI-sized data: {SIZES}, T={STEPS}, dims {DIMS}; {args.epochs} epochs, "
          f"{torch.get_num_threads()} thread(s), device {where.device}, "
          f"{args.precision}")
    results = {name: run_worker(name, args) for name in MODELS}
    rows = [("parameters", "params", "{:,.0f}"), ("batch size", "batch_size", "{}"),
            ("seconds per epoch", "seconds_per_epoch", "{:.2f}"),
            ("  data", "data_seconds_per_epoch", "{:.3f}"),
            ("  compute", "compute_seconds_per_epoch", "{:.2f}"),
            ("inference samples/s", "inference_samples_per_s", "{:,.0f}"),
            ("peak RSS MiB", "peak_rss_mb", "{:.0f}")]
    if results["simple"]["peak_cuda_mb"] is not None:
        rows.append(("peak GPU MiB", "peak_cuda_mb", "{:.0f}"))
    context = f"+{args.context}"
    print(f"{'':22}{'simple':>14}{context:>14}{'MulT':>14}{context + '/simple':>16}"
          f"{'MulT/simple':>14}")
    for label, key, fmt in rows:
        a, c, b = (results[name][key] for name in ("simple", "context", "mult"))
        print(f"{label:22}{fmt.format(a):>14}{fmt.format(c):>14}{fmt.format(b):>14}"
              f"{c / a:>16.2f}{b / a:>14.2f}")
    per_epoch = {name: r["seconds_per_epoch"] for name, r in results.items()}
    summary = {**results,
               "epoch_time_ratio": per_epoch["mult"] / per_epoch["simple"],
               "params_ratio": results["mult"]["params"] / results["simple"]["params"],
               "context_epoch_time_ratio": per_epoch["context"] / per_epoch["simple"]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""One ``prefuse run``: load the data, train every arm for every seed, write the run directory.

Run directory (DESIGN section 2): ``config.toml``, ``metrics.json``, ``history.csv``,
``attention.csv``, the headline model (``model.safetensors`` + ``model.json``) and
each arm's best model under ``models/<arm>/``. While it runs, ``checkpoints/`` holds
what ``--resume`` needs (see ``checkpoint``); it is deleted once ``metrics.json`` is written.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig, config_to_toml
from ..data.dataset import MultimodalDataset, Split
from ..data.formats import config_options, load_dataset
from ..data.synthetic import make_synthetic
from ..fileio import write_json, write_text
from ..metrics import lower_is_better
from ..models.saving import save_model
from ..tasks import Task, task_for
from . import distributed
from .checkpoint import RunCheckpoints
from .cost import inference_throughput, peak_rss_mb
from .recipe import Observer, SeedResult, StageResult, Tensors, epochs_to_converge, run_seed

HEADLINE_ARM = "pretrained+attention"


def load_data(config: RunConfig) -> MultimodalDataset:
    """The dataset ``config.data`` names, or the built-in benchmark."""
    d = config.data
    if not d.path:
        s = d.synthetic
        return make_synthetic(seed=s.seed, train=s.train, valid=s.valid, test=s.test)
    return load_dataset(d.path, d.format, **config_options(d))


def _mean_std(rows: list[dict[str, float]]) -> tuple[dict, dict]:
    keys = rows[0].keys()
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    std = {k: float(np.nanstd([r[k] for r in rows])) for k in keys}
    return mean, std


def _agreement(weights: np.ndarray, dominant: np.ndarray) -> float:
    return float(np.mean(weights.argmax(axis=1) == dominant))


def metric_by_dominant(runs: list[StageResult], task: Task, split: Split,
                       modalities: list[str]) -> dict:
    """``{modality: {"mean", "std"}}`` over seeds of the primary test metric on the
    samples that modality decides (``dominant``): where an arm loses its accuracy."""
    out = {}
    for k, modality in enumerate(modalities):
        rows = split.dominant == k
        if not rows.any():
            continue
        scores = [task.metrics(run.test.predictions[rows], split.labels[rows])[task.primary]
                  for run in runs]
        out[modality] = {"mean": float(np.mean(scores)), "std": float(np.std(scores))}
    return out


def summarize(dataset: MultimodalDataset, task: Task, results: list[SeedResult],
              data: Tensors | None = None) -> dict:
    """The ``metrics.json`` document (shape in DESIGN section 2).

    With ``data``, each arm also gets ``inference_samples_per_s`` (measured on the test
    split) and ``peak_rss_mb``: the process's memory high-water mark once that arm has
    trained and run inference, an upper bound for the arm (``bench/cost.py`` measures
    each model in a process of its own).
    """
    dominant = dataset["test"].dominant
    out: dict = {"dataset": dataset.name, "task": task.kind, "modalities": dataset.modalities,
                 "primary_metric": task.primary,
                 "chance": task.chance(dataset["test"].labels), "arms": {}, "unimodal": {},
                 "attention": {}}
    for arm in results[0].arms:
        runs = [r.arms[arm] for r in results]
        mean, std = _mean_std([run.test.metrics for run in runs])
        epochs = sum(run.fit.epochs_run for run in runs)
        seconds = sum(run.fit.seconds for run in runs)
        entry = {
            "seeds": {str(r.seed): {"valid": r.arms[arm].valid.metrics,
                                    "test": r.arms[arm].test.metrics,
                                    "best_epoch": r.arms[arm].fit.best_epoch,
                                    "epochs_run": r.arms[arm].fit.epochs_run}
                      for r in results},
            "mean": mean, "std": std,
            "train_seconds": seconds / len(runs),
            "seconds_per_epoch": seconds / max(epochs, 1),
            "params": runs[0].params,
            "mean_weights": dict(zip(dataset.modalities,
                                     np.mean([run.test.weights.mean(axis=0) for run in runs],
                                             axis=0).tolist())),
        }
        if data is not None:
            entry["inference_samples_per_s"] = float(np.mean(
                [inference_throughput(run.model, data.test) for run in runs]))
            entry["peak_rss_mb"] = peak_rss_mb()
        if dominant is not None:
            entry["by_dominant"] = metric_by_dominant(runs, task, dataset["test"],
                                                      dataset.modalities)
            if "attention" in arm:
                scores = [_agreement(run.test.weights, dominant) for run in runs]
                entry["attention_agreement"] = float(np.mean(scores))
                entry["attention_agreement_std"] = float(np.std(scores))
        out["arms"][arm] = entry
    for modality in results[0].unimodal:
        runs = [r.unimodal[modality] for r in results]
        mean, std = _mean_std([run.test.metrics for run in runs])
        out["unimodal"][modality] = {
            "mean": mean, "std": std,
            "epochs_to_converge": float(np.mean([epochs_to_converge(run.fit.history,
                                                                    task.primary)
                                                 for run in runs])),
        }
    robustness = {arm: _robustness([r.arms[arm] for r in results]) for arm in results[0].arms}
    if any(robustness.values()):
        out["robustness"] = robustness
    for label, arm in (("before_pretraining", "scratch+attention"),
                       ("after_pretraining", HEADLINE_ARM)):
        if arm in out["arms"]:
            out["attention"][label] = out["arms"][arm]["mean_weights"]
    return out


def _robustness(runs: list) -> dict:
    """``{"without_<m>": {"mean", "std"}}`` over seeds of the test metrics."""
    out = {}
    for key in runs[0].robustness:
        mean, std = _mean_std([run.robustness[key] for run in runs])
        out[key] = {"mean": mean, "std": std}
    return out


def _csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def history_csv(results: list[SeedResult], modalities: list[str]) -> str:
    """One row per seed/stage/arm/modality/epoch. Joint-training rows also hold
    ``usage_<m>``: the validation metric with only modality m kept."""
    header = ["seed", "stage", "arm", "modality", "epoch", "train_loss", "valid_loss",
              "train_metric", "valid_metric"] + [f"usage_{m}" for m in modalities]
    rows = []
    for r in results:
        for modality, run in r.unimodal.items():
            for h in run.fit.history:
                rows.append([r.seed, "pretrain", "unimodal", modality, h["epoch"],
                             h["train_loss"], h["valid_loss"], h.get("train_metric", ""),
                             h["valid_metric"]]
                            + [""] * len(modalities))
        for arm, run in r.arms.items():
            for h in run.fit.history:
                rows.append([r.seed, "joint", arm, "all", h["epoch"], h["train_loss"],
                             h["valid_loss"], h.get("train_metric", ""), h["valid_metric"]]
                            + [h.get(f"usage_{m}", "") for m in modalities])
    return _csv(header, rows)


def _label_text(value) -> str:
    return ";".join(str(v) for v in np.ravel(value)) if np.ndim(value) else str(value)


def attention_csv(dataset: MultimodalDataset, results: list[SeedResult]) -> str:
    """Per arm, seed and test sample: id, label, prediction, one weight per modality."""
    test = dataset["test"]
    extra = [c for c, v in (("dominant", test.dominant), ("text_raw", test.text_raw))
             if v is not None]
    header = ["arm", "seed", "id", "label", "prediction"] + extra + \
        [f"weight_{m}" for m in dataset.modalities]
    rows = []
    for r in results:
        for arm, run in r.arms.items():
            for i in range(len(test)):
                row = [arm, r.seed, test.ids[i], _label_text(test.labels[i]),
                       _label_text(np.round(run.test.predictions[i], 6))]
                row += [test.dominant[i] if c == "dominant" else test.text_raw[i] for c in extra]
                row += [f"{w:.6f}" for w in run.test.weights[i]]
                rows.append(row)
    return _csv(header, rows)


def _best_seed(results: list[SeedResult], arm: str, metric: str) -> SeedResult:
    sign = 1.0 if lower_is_better(metric) else -1.0
    return min(results, key=lambda r: sign * r.arms[arm].valid.metrics[metric])


def write_run(out: Path, config: RunConfig, dataset: MultimodalDataset, task: Task,
              results: list[SeedResult], data: Tensors | None = None) -> dict:
    """Write every file of the run directory; ``metrics.json`` last."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.toml", config_to_toml(config))
    write_text(out / "history.csv", history_csv(results, dataset.modalities))
    write_text(out / "attention.csv", attention_csv(dataset, results))
    headline = HEADLINE_ARM if HEADLINE_ARM in config.arms else config.arms[0]
    for arm in config.arms:
        best = _best_seed(results, arm, task.primary)
        extra = {"seed": best.seed, "dataset": dataset.name, "config": asdict(config)}
        save_model(best.arms[arm].model, arm, task, out / "models" / arm, extra)
        if arm == headline:
            save_model(best.arms[arm].model, arm, task, out, extra)
    summary = summarize(dataset, task, results, data)
    write_json(out / "metrics.json", _finite(summary))
    return summary


def _finite(obj):
    """JSON has no NaN: undefined values (e.g. a correlation of constants) become null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def run_experiment(config: RunConfig, dataset: MultimodalDataset | None = None,
                   log=print, resume: bool = False, observe: Observer | None = None) -> dict:
    """Train every arm of ``config`` for every seed and write the run directory.

    Every epoch is checkpointed; ``resume`` continues an interrupted run of the same
    config in ``config.out`` and ends with the same results. Returns the ``metrics.json``
    document. Under torchrun every rank trains its share and returns the document; only
    the main rank logs and writes the run directory and checkpoints. ``observe`` sees
    every epoch of every stage (e.g. a TensorBoard writer).
    """
    config.validate()
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if dataset is None:
        dataset = load_data(config)
    else:
        dataset.validate()  # one built in memory has not been through a loader's checks
    # After loading, so that data that cannot be read leaves no run directory behind.
    checkpoints = RunCheckpoints(config.out).start(config, resume)
    task = task_for(dataset)
    data = Tensors(dataset, task)
    results = []
    for seed in config.seeds:
        if distributed.is_main():
            log(f"seed {seed}: training {len(config.arms)} arms on {dataset.name}")
        results.append(run_seed(dataset, config, seed, data, checkpoints, observe))
    if not distributed.is_main():
        return summarize(dataset, task, results)
    summary = write_run(Path(config.out), config, dataset, task, results, data)
    checkpoints.remove()
    return summary

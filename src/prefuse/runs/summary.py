"""The ``metrics.json`` document: each arm's and each modality's scores as mean and std
over seeds, with the arm's traits and what it cost."""

from __future__ import annotations

import numpy as np

from ..data.batching import Tensors
from ..data.dataset import MultimodalDataset, Split
from ..metrics import direction
from ..recipe.arms import arm as arm_named
from ..recipe.stages import SeedResult, StageResult, epochs_to_converge
from ..tasks import Task
from .cost import inference_throughput, peak_rss_mb


def mean_std(rows: list[dict[str, float]]) -> tuple[dict, dict]:
    """Per key, the mean and std over ``rows`` (NaN ignored)."""
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


def best_seed(results: list[SeedResult], arm: str, metric: str) -> SeedResult:
    """The seed whose ``arm`` scored best on validation (the first on ties)."""
    return max(results, key=lambda r: direction(metric) * r.arms[arm].valid.metrics[metric])


def headline_arm(arms: list[str]) -> str:
    """The arm a run leads with: the headline arm if trained, else the first."""
    return next((a for a in arms if arm_named(a).headline), arms[0])


def _arm_entry(arm: str, runs: list[StageResult], results: list[SeedResult],
               dataset: MultimodalDataset, task: Task, data: Tensors | None) -> dict:
    traits = arm_named(arm)
    mean, std = mean_std([run.test.metrics for run in runs])
    epochs = sum(run.fit.epochs_run for run in runs)
    seconds = sum(run.fit.seconds for run in runs)
    entry = {
        "parts": traits.parts(), "has_weights": traits.has_weights,
        "headline": traits.headline, "before": traits.before,
        "seeds": {str(r.seed): {"valid": run.valid.metrics, "test": run.test.metrics,
                                "best_epoch": run.fit.best_epoch,
                                "epochs_run": run.fit.epochs_run}
                  for r, run in zip(results, runs)},
        "mean": mean, "std": std,
        "train_seconds": seconds / len(runs),
        # An arm that trains nothing jointly (the ensemble) has no epochs to time: null.
        "seconds_per_epoch": seconds / epochs if epochs else float("nan"),
        "params": runs[0].params,
        "device": runs[0].fit.device,
        # The network's own modalities: one for an ``alone-<m>`` arm.
        "mean_weights": dict(zip(runs[0].model.spec.modalities,
                                 np.mean([run.test.weights.mean(axis=0) for run in runs],
                                         axis=0).tolist())),
    }
    if traits.alone is not None:
        entry["alone"] = traits.alone
    if data is not None:
        entry["inference_samples_per_s"] = float(np.mean(
            [inference_throughput(run.model, data.test) for run in runs]))
        entry["peak_rss_mb"] = peak_rss_mb()
    dominant = dataset["test"].dominant
    if dominant is not None:
        entry["by_dominant"] = metric_by_dominant(runs, task, dataset["test"],
                                                  dataset.modalities)
        if traits.has_weights:
            scores = [_agreement(run.test.weights, dominant) for run in runs]
            entry["attention_agreement"] = float(np.mean(scores))
            entry["attention_agreement_std"] = float(np.std(scores))
    return entry


def summarize(dataset: MultimodalDataset, task: Task, results: list[SeedResult],
              data: Tensors | None = None) -> dict:
    """The ``metrics.json`` document.

    With ``data``, each arm also gets ``inference_samples_per_s`` (measured on the test
    split) and ``peak_rss_mb``: the process's memory high-water mark once that arm has
    trained and run inference, an upper bound for the arm (``bench/cost.py`` measures
    each model in a process of its own).
    """
    out: dict = {"dataset": dataset.name, "task": task.kind, "modalities": dataset.modalities,
                 "primary_metric": task.primary,
                 "chance": task.chance(dataset["test"].labels), "arms": {}, "unimodal": {},
                 "attention": {}}
    for arm in results[0].arms:
        out["arms"][arm] = _arm_entry(arm, [r.arms[arm] for r in results], results,
                                      dataset, task, data)
    for modality in results[0].unimodal:
        runs = [r.unimodal[modality] for r in results]
        mean, std = mean_std([run.test.metrics for run in runs])
        out["unimodal"][modality] = {
            "mean": mean, "std": std,
            "epochs_to_converge": float(np.mean([epochs_to_converge(run.fit.history,
                                                                    task.primary)
                                                 for run in runs])),
        }
    # A one-modality arm (``alone-<m>``) has nothing to remove: no entry.
    robustness = {arm: found for arm in results[0].arms
                  if (found := _robustness([r.arms[arm] for r in results]))}
    if robustness:
        out["robustness"] = robustness
    out["attention"] = attention_shift(out["arms"])
    best = best_alone(out["arms"], task.primary)
    if best is not None:
        out["best_alone"] = best
    return out


def best_alone(arms: dict[str, dict], metric: str) -> str | None:
    """The single-modality arm (``alone-<m>``) with the best mean test ``metric`` (the
    first on ties; None without one): the strongest single-modality baseline, so a fused
    arm said to beat it beats every modality alone."""
    alone = [a for a, e in arms.items() if e.get("alone") is not None]
    return max(alone, key=lambda a: direction(metric) * arms[a]["mean"][metric],
               default=None)


def attention_shift(arms: dict[str, dict]) -> dict:
    """``metrics.json``'s ``attention``: the headline arm's mean modality weights
    (``after_pretraining``) and those of its "before" arm where that was trained too."""
    out = {}
    for entry in arms.values():
        if entry["headline"] and entry["has_weights"]:
            if entry["before"] in arms:
                out["before_pretraining"] = arms[entry["before"]]["mean_weights"]
            out["after_pretraining"] = entry["mean_weights"]
    return out


def _robustness(runs: list) -> dict:
    """``{"without_<m>": {"mean", "std"}}`` over seeds of the test metrics."""
    out = {}
    for key in runs[0].robustness:
        mean, std = mean_std([run.robustness[key] for run in runs])
        out[key] = {"mean": mean, "std": std}
    return out

"""Plain-text tables of a run's ``metrics.json``: the ablation and each modality alone."""

from __future__ import annotations

# Metrics shown in the terminal table per task kind (the report shows them all).
SHOWN = {
    "regression": ["mae", "corr", "acc2_non0", "f1_non0", "acc2_has0", "acc7"],
    "binary": ["acc", "f1_weighted", "f1_macro"],
    "multiclass": ["acc", "f1_weighted", "f1_macro"],
    "multilabel": ["acc_mean", "f1_mean"],
}


def shown_metrics(summary: dict) -> list[str]:
    """The metric columns worth showing for this run's task."""
    any_entry = next(iter(summary["arms"].values()), None) or \
        next(iter(summary["unimodal"].values()))
    available = list(any_entry["mean"])
    wanted = [m for m in SHOWN.get(summary["task"], []) if m in available]
    return wanted or available[:6]


def _cell(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.3f} ± {std or 0.0:.3f}"


def _rows(entries: dict, metrics: list[str]) -> list[list[str]]:
    return [[name] + [_cell(e["mean"].get(m), e["std"].get(m)) for m in metrics]
            for name, e in entries.items()]


def _render(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def ablation_table(summary: dict) -> str:
    """Mean ± std over seeds of each test metric, one row per arm then per modality."""
    metrics = shown_metrics(summary)
    parts = []
    if summary["arms"]:
        rows = _rows(summary["arms"], metrics)
        for row, entry in zip(rows, summary["arms"].values()):
            row += [f"{entry['params']:,}", f"{entry['seconds_per_epoch']:.2f}",
                    f"{entry['inference_samples_per_s']:,.0f}"
                    if "inference_samples_per_s" in entry else "",
                    f"{entry['peak_rss_mb']:,.0f}" if "peak_rss_mb" in entry else ""]
            if "attention_agreement" in entry:
                row.append(f"{entry['attention_agreement']:.3f}")
            else:
                row.append("")
        cost = ["params", "s/epoch", "infer/s", "peak MiB", "attn→dominant"]
        parts.append(_render(["arm"] + metrics + cost, rows))
    if summary["unimodal"]:
        rows = _rows(summary["unimodal"], metrics)
        for row, entry in zip(rows, summary["unimodal"].values()):
            row.append(f"{entry['epochs_to_converge']:.1f}")
        parts.append(_render(["modality alone"] + metrics + ["epochs to converge"], rows))
    chance = summary.get("chance") or {}
    if chance:
        parts.append("chance (majority/median): " + ", ".join(
            f"{m} {chance[m]:.3f}" for m in metrics if chance.get(m) is not None))
    seeds = len(next(iter(summary["arms"].values()))["seeds"]) if summary["arms"] else 0
    parts.append(f"test split, mean ± std over {seeds} seed(s); primary metric: "
                 f"{summary['primary_metric']}")
    return "\n\n".join(parts)


def robustness_table(summary: dict) -> str:
    """The primary test metric of each arm with all modalities and with each one removed
    (mean ± std over seeds); empty when the run has no robustness results."""
    robustness = summary.get("robustness") or {}
    if not robustness:
        return ""
    metric = summary["primary_metric"]
    columns = list(next(iter(robustness.values())))
    rows = [[arm, _cell(summary["arms"][arm]["mean"].get(metric),
                        summary["arms"][arm]["std"].get(metric))]
            + [_cell(entry[c]["mean"].get(metric), entry[c]["std"].get(metric))
               for c in columns]
            for arm, entry in robustness.items()]
    return (f"robustness: test {metric} with one modality removed\n\n"
            + _render(["arm", "all"] + columns, rows))


def dominant_table(summary: dict) -> str:
    """The primary test metric of each arm on the samples each modality decides (mean ±
    std over seeds); empty when the data has no ``dominant``."""
    arms = {arm: e["by_dominant"] for arm, e in summary["arms"].items() if e.get("by_dominant")}
    if not arms:
        return ""
    metric = summary["primary_metric"]
    columns = list(next(iter(arms.values())))
    rows = [[arm] + [_cell(entry[c]["mean"], entry[c]["std"]) for c in columns]
            for arm, entry in arms.items()]
    return (f"test {metric} on the samples each modality decides (dominant)\n\n"
            + _render(["arm"] + columns, rows))

"""Plain-text tables of a run's ``metrics.json``: the ablation and each modality alone."""

from __future__ import annotations

import math
import textwrap

from ..metrics import direction

# A difference between two arms counts as beyond seed noise when it exceeds this many
# times the larger of their standard deviations over seeds.
NOISE_FACTOR = 2.0
NOTE_WIDTH = 96

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
    # rstrip: the last column's padding would only leave trailing spaces.
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _value(entry: dict, key: str) -> float:
    """``entry[key]`` as a float; missing, null or NaN give NaN."""
    v = entry.get(key)
    return math.nan if v is None else float(v)


def ranked(summary: dict) -> list[str]:
    """The arms, best mean primary test metric first (arms without one last)."""
    metric = summary["primary_metric"]

    def key(arm: str) -> float:
        value = direction(metric) * _value(summary["arms"][arm]["mean"], metric)
        return -value if value == value else math.inf

    return sorted(summary["arms"], key=key)


def reference_arm(summary: dict) -> str | None:
    """The arm the others are compared with: the headline arm if the run has it, else the
    best ranked."""
    arms = summary["arms"]
    return next((a for a, e in arms.items() if e.get("headline")), None) or \
        next(iter(ranked(summary)), None)


def beyond_noise(a: dict, b: dict, metric: str) -> bool | None:
    """Whether two arms' mean ``metric`` differ by more than ``NOISE_FACTOR`` times the
    larger of their stds over seeds; None when either has fewer than two seeds (no
    noise estimate) or no value."""
    if min(len(a.get("seeds", {})), len(b.get("seeds", {}))) < 2:
        return None
    values = [_value(e["mean"], metric) for e in (a, b)]
    stds = [_value(e["std"], metric) for e in (a, b)]
    if not all(math.isfinite(v) for v in values + stds):
        return None
    return abs(values[0] - values[1]) > NOISE_FACTOR * max(stds)


def difference_cell(summary: dict, arm: str, reference: str | None) -> str:
    """``arm``'s mean primary metric minus the reference's, with ``*`` when the
    difference is beyond seed noise (``beyond_noise``); ``ref`` for the reference."""
    if reference is None:
        return ""
    if arm == reference:
        return "ref"
    metric = summary["primary_metric"]
    entry, ref = summary["arms"][arm], summary["arms"][reference]
    delta = _value(entry["mean"], metric) - _value(ref["mean"], metric)
    if delta != delta:
        return "n/a"
    return f"{delta:+.3f}" + (" *" if beyond_noise(entry, ref, metric) else "")


def alone_verdict(summary: dict) -> str:
    """One sentence: whether any fused arm beats the best modality alone
    (``best_alone``) beyond seed noise; empty when the run trained no ``alone-<m>`` arm."""
    best = summary.get("best_alone")
    if best is None:
        return ""
    metric = summary["primary_metric"]
    ref = summary["arms"][best]
    fused = [a for a in ranked(summary) if summary["arms"][a].get("alone") is None]
    known = {a: beyond_noise(summary["arms"][a], ref, metric) for a in fused}
    winners = [a for a in fused if known[a] and direction(metric) * (
        _value(summary["arms"][a]["mean"], metric) - _value(ref["mean"], metric)) > 0]
    score = _cell(ref["mean"].get(metric), ref["std"].get(metric))
    what = f"the best modality alone ({best}, test {metric} {score})"
    if not fused:
        return f"No fused arm was trained to compare with {what}."
    if winners:
        rest = "; the other fused arms do not" if len(winners) < len(fused) else ""
        verb = "beats" if len(winners) == 1 else "beat"
        return f"Beyond seed noise, {', '.join(winners)} {verb} {what}{rest}."
    if all(v is None for v in known.values()):
        return (f"Whether any fused arm beats {what} cannot be said: with fewer than 2 "
                "seeds there is no noise estimate.")
    return f"No fused arm beats {what} beyond seed noise."


def seconds_cell(entry: dict) -> str:
    """Seconds per epoch of joint training; "–" for an arm that trains nothing jointly."""
    value = _value(entry, "seconds_per_epoch")
    return f"{value:.2f}" if math.isfinite(value) else "–"


def ranking_note(summary: dict) -> str:
    """What the ranking and the difference column mean, for under the table."""
    metric = summary["primary_metric"]
    reference = reference_arm(summary)
    better = "lower" if direction(metric) < 0 else "higher"
    note = (f"Arms ranked by mean test {metric} ({better} is better). Δ {metric}: the arm's "
            f"mean minus {reference}'s; * marks a difference larger than "
            f"{NOISE_FACTOR:g}× the larger of the two stds over seeds (beyond seed noise); "
            "no * means the two are within noise.")
    seeds = min((len(e.get("seeds", {})) for e in summary["arms"].values()), default=0)
    if seeds < 2:
        note += " With fewer than 2 seeds there is no noise estimate, so no * is given."
    if summary.get("best_alone"):
        note += (f" Δ best alone: the arm's mean minus that of the best modality alone "
                 f"({summary['best_alone']}, the best mean test {metric} of the alone arms), "
                 "* as for Δ.")
    return note + " s/epoch: seconds per joint-training epoch (– : no joint training)."


def ablation_table(summary: dict) -> str:
    """Mean ± std over seeds of each test metric, one row per arm (ranked by the primary
    metric, each compared with the reference arm) then per modality."""
    metrics = shown_metrics(summary)
    parts = []
    if summary["arms"]:
        order = ranked(summary)
        reference, best = reference_arm(summary), summary.get("best_alone")
        entries = {arm: summary["arms"][arm] for arm in order}
        rows = _rows(entries, metrics)
        for row, (arm, entry) in zip(rows, entries.items()):
            row.append(difference_cell(summary, arm, reference))
            if best:
                row.append(difference_cell(summary, arm, best))
            row += [f"{entry['params']:,}", seconds_cell(entry),
                    f"{entry['inference_samples_per_s']:,.0f}"
                    if "inference_samples_per_s" in entry else "",
                    f"{entry['peak_rss_mb']:,.0f}" if "peak_rss_mb" in entry else ""]
            if "attention_agreement" in entry:
                row.append(f"{entry['attention_agreement']:.3f}")
            else:
                row.append("")
        cost = [f"Δ {summary['primary_metric']}"] + (["Δ best alone"] if best else []) + \
            ["params", "s/epoch", "infer/s", "peak MiB", "attn→dominant"]
        note = " ".join(filter(None, [ranking_note(summary), alone_verdict(summary)]))
        parts.append(_render(["arm"] + metrics + cost, rows) + "\n\n"
                     + textwrap.fill(note, NOTE_WIDTH))
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

"""``prefuse report RUN_DIR``: ``report.html`` (self-contained) and ``report.md`` (with
``figures/*.png`` beside it), built from the run directory's own files alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fileio import atomic_path, write_text
from ..metrics import direction
from ..rundir import FIGURES_FOLDER, RunFiles, load_run
from . import attention as att
from . import convergence as conv
from . import plots, tables
from .render import Block, Figure, Heading, Pre, Table, Text, to_html, to_markdown
from .tables import ablation_table, dominant_table, robustness_table
from .tuning import tuning_section

EXAMPLES = 5
TEXT_CHARS = 160


def _num(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _overview(run: RunFiles) -> list[Block]:
    s = run.summary
    seeds = sorted({seed for arm in s["arms"].values() for seed in arm.get("seeds", {})},
                   key=lambda seed: (len(seed), seed))
    about = (f"Dataset {s.get('dataset', '?')}, task {s['task']}, modalities "
             f"{', '.join(run.modalities)}; primary metric {run.primary}; seeds "
             f"{', '.join(seeds) or 'none'}; arms {', '.join(s['arms']) or 'none'}. "
             "Everything below is read from metrics.json, history.csv, attention.csv and "
             "config.toml in this run directory.")
    blocks: list[Block] = [Text(about), Heading("Results: ablation and each modality alone"),
                           Pre(ablation_table(s))]
    return blocks + [Pre(table) for table in (dominant_table(s), robustness_table(s)) if table]


def _convergence(run: RunFiles) -> list[Block]:
    blocks: list[Block] = [Heading("Stage 1: how fast each modality converges")]
    valid = conv.stage1_curves(run, "valid_metric")
    if not valid:
        return blocks + [Text("history.csv has no stage-1 rows (a run without pre-training).")]
    normalised = conv.stage1_curves(run, "valid_metric", normalised=True)
    unimodal = run.summary["unimodal"]
    converge = {m: e.get("epochs_to_converge") for m, e in unimodal.items()}
    converge = {m: np.nan if v is None else float(v) for m, v in converge.items()}
    loss = conv.stage1_curves(run, "valid_loss")
    train = conv.stage1_curves(run, "train_metric")
    flat = [m for m in valid if m not in normalised]
    blocks.append(Text("Each modality's encoder trained alone. Normalised curve: the "
                       f"validation {run.primary} rescaled per seed so that epoch 1 is 0 and "
                       "the seed's best epoch is 1. Epochs to converge: first epoch reaching "
                       "95% of the best improvement (metrics.json)."
                       + (f" Never better than epoch 1 (no normalised curve): "
                          f"{', '.join(flat)}." if flat else "")))
    blocks.append(Figure("convergence", "Stage 1: normalised validation curves and loss",
                         plots.convergence_figure(normalised, loss, converge, run.primary,
                                                  run.modalities)))
    rows = [[m, _num(converge.get(m)),
             _num(direction(run.primary) * float(np.nanmax(direction(run.primary)
                                                           * valid[m].mean))),
             _num(unimodal.get(m, {}).get("mean", {}).get(run.primary))]
            for m in run.modalities if m in valid]
    blocks.append(Table(["modality", "epochs to converge", f"best mean valid {run.primary}",
                         f"test {run.primary}"], rows))
    blocks.append(Figure("stage1", "Stage 1: train and validation metric per modality",
                         plots.stage1_figure(train, valid, run.primary, run.modalities)))
    return blocks


def _usage(run: RunFiles) -> list[Block]:
    blocks: list[Block] = [Heading("Joint training: which modality is used as epochs pass")]
    usage = conv.usage_curves(run)
    if not usage:
        return blocks + [Text("history.csv has no usage columns for joint training.")]
    chance = (run.summary.get("chance") or {}).get(run.primary)
    blocks.append(Text(f"After each joint-training epoch, the validation {run.primary} with "
                       "only one modality kept and the others masked. The modality that "
                       "leads at epoch 1 is the one the network relies on early."))
    blocks.append(Figure("usage", "Modality usage during joint training",
                         plots.usage_figure(usage, run.primary, chance, run.modalities)))
    rows = []
    for arm, curves in usage.items():
        summary = conv.usage_summary(curves, run.primary)
        rows.append([arm, summary["leader"] or "n/a"]
                    + [f"{_num(summary['first'].get(m))} → {_num(summary['last'].get(m))}"
                       for m in run.modalities])
    blocks.append(Table(["arm", "leads at epoch 1"]
                        + [f"only {m}: epoch 1 → last" for m in run.modalities], rows))
    return blocks


def _relative_cost(entry: dict, reference: dict | None) -> str:
    seconds = entry.get("seconds_per_epoch")
    base = (reference or {}).get("seconds_per_epoch")
    if seconds is None or not base or not np.isfinite(seconds) or not np.isfinite(base):
        return "–"
    return f"{seconds / base:.2f}×"


def _methods(run: RunFiles) -> list[Block]:
    """The arms side by side: metric, cost, how much each modality is used at the end of
    joint training, learned attention, and what each method logs."""
    s = run.summary
    blocks: list[Block] = [Heading("Methods compared: accuracy, cost, modality usage")]
    if not s["arms"]:
        return blocks + [Text("No arm in metrics.json.")]
    metric, reference, best = run.primary, tables.reference_arm(s), s.get("best_alone")
    usage = {arm: conv.usage_summary(curves, metric)["last"]
             for arm, curves in conv.usage_curves(run).items()}
    blocks.append(Text(
        tables.ranking_note(s) + f" Cost: s/epoch relative to {reference}'s. Only m: the "
        f"validation {metric} with only modality m kept, at the last joint-training epoch "
        "(mean over seeds; a balanced network keeps every modality useful). Attention: "
        "mean test weight per modality, for arms whose modality weights are learned. "
        "Arms that use stage-1 networks spent part of the same epoch budget in stage 1."))
    if best:
        blocks.append(Text(tables.alone_verdict(s)))
    rows = []
    for rank, arm in enumerate(tables.ranked(s), 1):
        entry = s["arms"][arm]
        parts = entry.get("parts") or {}
        weights = entry.get("mean_weights") or {}
        rows.append(
            [str(rank), arm, parts.get("method", "n/a"),
             f"{_num(entry['mean'].get(metric))} ± {_num(entry['std'].get(metric))}",
             tables.difference_cell(s, arm, reference)]
            + ([tables.difference_cell(s, arm, best)] if best else [])
            + [tables.seconds_cell(entry),
             _relative_cost(entry, s["arms"].get(reference))]
            + [_num(usage[arm].get(m)) if arm in usage else "–" for m in run.modalities]
            + [f"{weights[m]:.2f}" if entry.get("has_weights") and m in weights else "–"
               for m in run.modalities])
    blocks.append(Table(["rank", "arm", "method", f"test {metric}", f"Δ {metric}"]
                        + (["Δ best alone"] if best else []) + ["s/epoch", "cost"]
                        + [f"only {m}" for m in run.modalities]
                        + [f"attention {m}" for m in run.modalities], rows))
    logged = conv.method_values(run)
    if logged:
        columns = sorted({c for values in logged.values() for c in values})
        blocks.append(Text("What each training method logs (history.csv), at the last "
                           "joint-training epoch, mean over seeds (e.g. gblend_weight_fused:"
                           " G-Blend's loss weight of the fused head)."))
        blocks.append(Table(["arm"] + columns,
                            [[arm] + [_num(values.get(c)) if c in values else "–"
                                      for c in columns] for arm, values in logged.items()]))
    return blocks


def _attention(run: RunFiles, arms: list[str]) -> list[Block]:
    blocks: list[Block] = [Heading("Modality attention on the test split")]
    if not arms:
        return blocks + [Text("No attention arm in attention.csv: nothing to show.")]
    means = {arm: att.mean_weights(run, arm) for arm in arms}
    rows = []
    for arm, (mean, std) in means.items():
        agreement = run.summary["arms"][arm].get("attention_agreement")
        rows.append([arm] + [f"{mean[m]:.3f} ± {std[m]:.3f}" for m in run.modalities]
                    + [_num(agreement)])
    pair = att.before_after(run)
    before_after = f"{pair[0]} is attention before pre-training, {pair[1]} after. " \
        if pair else ""
    blocks.append(Text(before_after + "Agreement: how often the top-weighted modality is the "
                       "sample's dominant one (only for data that records it)."))
    blocks.append(Table(["arm"] + [f"mean weight {m}" for m in run.modalities]
                        + ["agreement with dominant"], rows))
    blocks.append(Figure("attention_means", "Mean attention weight per modality",
                         plots.attention_bars(means, run.modalities)))
    blocks.append(Figure("attention_distributions", "Distribution of attention weights",
                         plots.attention_violins({a: att.weight_samples(run, a) for a in arms},
                                                 run.modalities)))
    blocks.append(Figure("attention_by_class", "Mean attention weight per class",
                         plots.group_means_figure({a: att.group_means(run, a) for a in arms},
                                                  run.modalities,
                                                  "Mean attention weight per modality within "
                                                  "each class", "class (test label)")))
    by_dominant = {a: att.group_means(run, a, att.dominant_groups) for a in arms}
    if any(by_dominant.values()):
        blocks.append(Text("Grouped by the modality that carries the label (the data's "
                           "dominant column): attention that picks the deciding modality "
                           "puts the most weight on the matching bar."))
        blocks.append(Figure("attention_by_dominant",
                             "Mean attention weight by the modality that carries the label",
                             plots.group_means_figure(by_dominant, run.modalities,
                                                      "Mean attention weight per modality, "
                                                      "by the sample's dominant modality",
                                                      "dominant modality")))
    return blocks


def _timeline(run: RunFiles) -> list[Block]:
    """A few test groups followed utterance by utterance; nothing for data without groups."""
    arm = att.timeline_arm(run) if run.grouped else None
    lines = att.timelines(run, arm) if arm else []
    if not lines:
        return []
    seed = att.rows_of(run, arm)[0]["seed"]
    classes = run.summary["task"] in ("binary", "multiclass")
    learned = run.summary["arms"].get(arm, {}).get("has_weights")
    outcome = ("the true class (circle) and the predicted one (cross: green when right, red "
               "when wrong)" if classes else
               "the label and the prediction (the mean of each vector, for vector labels)")
    return [Heading("Timeline: test groups utterance by utterance"),
            Figure("timeline", f"Timeline of {arm}, seed {seed}: the "
                   f"{len(lines)} longest test groups",
                   plots.timeline_figure(lines, run.modalities, classes,
                                         f"{arm}, seed {seed}: attention and prediction "
                                         "along each group")),
            Text(f"The {len(lines)} test groups (videos or dialogues) with the most "
                 f"utterances, ties by name; arm {arm}, the first seed ({seed}). Each column "
                 "is one group, its utterances left to right by their order in it. Top: "
                 "each modality's attention weight, stacked to 1"
                 + ("" if learned else " (this arm's weights are fixed, not learned)")
                 + f". Bottom: {outcome}. Runs of utterances where one modality takes over, "
                 "or where errors cluster, show what the model does within a group.")]


def _short(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"


def _dominant_name(run: RunFiles, row: dict[str, str]) -> str:
    value = row.get("dominant", "")
    if value.lstrip("-").isdigit() and 0 <= int(value) < len(run.modalities):
        return run.modalities[int(value)]
    return value


def _sample_columns(run: RunFiles) -> list[str]:
    columns = ["id"] + (["text"] if "text_raw" in run.attention[0] else []) + \
        ["label", "prediction"]
    return columns + (["dominant"] if "dominant" in run.attention[0] else [])


def _sample_cells(run: RunFiles, row: dict[str, str]) -> list[str]:
    cells = [row["id"]] + ([_short(row["text_raw"])] if "text_raw" in row else []) + \
        [row["label"], row["prediction"]]
    return cells + ([_dominant_name(run, row)] if "dominant" in row else [])


def _weights_cell(run: RunFiles, row: dict[str, str]) -> str:
    return " / ".join(f"{float(row[f'weight_{m}']):.2f}" for m in run.modalities)


def _examples(run: RunFiles, arms: list[str]) -> list[Block]:
    blocks: list[Block] = [Heading("Examples")]
    if not arms:
        return blocks + [Text("No attention arm: no per-sample weights to pick examples by.")]
    arm = att.headline(run) if att.headline(run) in arms else arms[0]
    seed = att.example_seed(run, arm)
    weights_header = "weights " + " / ".join(run.modalities)
    blocks.append(Text(f"Test samples of {arm}, seed {seed} (the seed whose model the run "
                       "saved: best validation metric)."))
    for m in run.modalities:
        blocks.append(Heading(f"Where {m} weighs most", level=3))
        rows = att.top_examples(run, arm, seed, m, EXAMPLES)
        blocks.append(Table(_sample_columns(run) + [weights_header],
                            [_sample_cells(run, r) + [_weights_cell(run, r)] for r in rows]))
    blocks.append(Heading("Where the modalities disagree", level=3))
    pair = att.before_after(run)
    if pair is None or not set(pair) <= set(arms):
        return blocks + [Text("Needs the headline arm and its arm before pre-training, both "
                              "with learned modality weights.")]
    before, after = pair
    pairs, count = att.disagreements(run, seed, before, after, EXAMPLES)
    total = len(att.rows_of(run, after, seed))
    blocks.append(Text(f"Samples whose top-weighted modality differs between {before} and "
                       f"{after} (seed {seed}): {count} of {total}. Shown: the "
                       f"{len(pairs)} with the largest weight shift (total variation)."))
    blocks.append(Table(
        _sample_columns(run) + ["top before → after", "prediction before",
                                f"{weights_header} before", "after", "shift"],
        [_sample_cells(run, p["after"])
         + [f"{p['top_before']} → {p['top_after']}", p["before"]["prediction"],
            _weights_cell(run, p["before"]), _weights_cell(run, p["after"]),
            f"{p['shift']:.2f}"] for p in pairs]))
    return blocks


def build_report(run: RunFiles) -> tuple[str, list[Block]]:
    """The report's title and blocks."""
    title = f"prefuse report: {run.summary.get('dataset', run.path.name)} ({run.path.name})"
    arms = att.attention_arms(run) if run.attention else []
    blocks = _overview(run) + tuning_section(run.path) + _convergence(run) + _usage(run) + \
        _methods(run) + _attention(run, arms) + _timeline(run) + _examples(run, arms)
    if run.config:
        blocks += [Heading("Configuration (config.toml)"), Pre(run.config)]
    return title, blocks


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/*.png`` into ``run_dir``;
    return the two report paths."""
    run = load_run(run_dir)
    title, blocks = build_report(run)
    for block in blocks:
        if isinstance(block, Figure):
            with atomic_path(run.path / FIGURES_FOLDER / f"{block.name}.png") as tmp:
                tmp.write_bytes(block.png)
    html_path = write_text(run.path / "report.html", to_html(title, blocks))
    md_path = write_text(run.path / "report.md", to_markdown(title, blocks))
    return html_path, md_path

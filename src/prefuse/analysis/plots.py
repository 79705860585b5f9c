"""The report's figures, drawn headless and returned as PNG bytes.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas rather than through
pyplot, so drawing never touches (or needs) a display or the caller's chosen backend.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .attention import Timeline
from .convergence import Curve

DPI = 100
PANELS_PER_ROW = 4  # small multiples wrap into rows of this many panels


# Arms get colours the modalities (C0, C1, ...) rarely use, so the two never read alike.
ARM_COLOURS = ["C7", "C4", "C5", "C6", "C8", "C9"]


def colours(modalities: list[str]) -> dict[str, str]:
    """One fixed colour per modality, the same in every figure."""
    palette = [f"C{i % 10}" for i in range(len(modalities))]
    return dict(zip(modalities, palette))


def _arm_colour(k: int) -> str:
    return ARM_COLOURS[k % len(ARM_COLOURS)]


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _legend(ax, **options) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _band(ax, curve: Curve, colour: str, label: str, style: str = "-") -> None:
    curve = curve.settled()
    ax.plot(curve.epochs, curve.mean, style, color=colour, label=label, marker=".")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if curve.seeds > 1:
        ax.fill_between(curve.epochs, curve.mean - curve.std, curve.mean + curve.std,
                        color=colour, alpha=0.15, linewidth=0)


def convergence_figure(normalised: dict[str, Curve], loss: dict[str, Curve],
                       converge: dict[str, float], metric: str, modalities: list[str]) -> bytes:
    """Stage 1 side by side: each modality's normalised validation metric (0 = epoch 1,
    1 = its best), dotted at its epochs-to-converge, and its validation loss."""
    c = colours(modalities)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for m, curve in normalised.items():
        _band(left, curve, c[m], m)
        if np.isfinite(converge.get(m, np.nan)):
            left.axvline(converge[m], color=c[m], linestyle=":", linewidth=1.2)
    if not normalised:
        left.text(0.5, 0.5, "no modality improved on its first epoch", ha="center",
                  transform=left.transAxes)
    left.axhline(0.95, color="grey", linewidth=0.8, linestyle="--")
    left.set(title=f"Normalised validation {metric} (dotted: epochs to converge)",
             xlabel="stage-1 epoch", ylabel=f"{metric} gain / best gain")
    for m, curve in loss.items():
        _band(right, curve, c[m], m)
    right.set(title="Validation loss", xlabel="stage-1 epoch", ylabel="loss")
    for ax in (left, right):
        _legend(ax, title="modality alone")
        ax.grid(alpha=0.3)
    fig.suptitle("Stage 1: how fast each modality learns (mean ± std over seeds, "
                 "while at least half of them train)")
    return _png(fig)


def stage1_figure(train: dict[str, Curve], valid: dict[str, Curve], metric: str,
                  modalities: list[str]) -> bytes:
    """One panel per modality: its train and validation primary metric in stage 1."""
    c = colours(modalities)
    shown = [m for m in modalities if m in valid]
    fig = Figure(figsize=(min(4 * len(shown), 16), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(shown), sharey=True))
    for ax, m in zip(axes, shown):
        _band(ax, valid[m], c[m], "validation")
        if m in train:
            _band(ax, train[m], c[m], "train", style="--")
        ax.set(title=m, xlabel="stage-1 epoch", ylabel=metric)
        _legend(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Stage 1: train and validation {metric} per modality")
    return _png(fig)


def usage_figure(usage: dict[str, dict[str, Curve]], metric: str, chance: float | None,
                 modalities: list[str]) -> bytes:
    """One panel per joint-training arm (``PANELS_PER_ROW`` to a row): the validation
    metric with only one modality kept, per modality and epoch."""
    c = colours(modalities)
    fig, axes = _panels(len(usage), 4.0, 3.4)
    for ax, (arm, curves) in zip(axes, usage.items()):
        for m, curve in curves.items():
            _band(ax, curve, c[m], f"only {m}")
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=0.8, label="chance")
        ax.set(title=arm, xlabel="joint-training epoch", ylabel=f"validation {metric}")
        _legend(ax, fontsize="small")
        ax.grid(alpha=0.3)
    fig.suptitle("Modality usage in joint training: validation metric with one modality kept "
                 "(mean ± std over seeds, while at least half of them train)")
    return _png(fig)


def _panels(n: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of ``n`` panels sharing the y axis, ``PANELS_PER_ROW`` to a row, so that
    many arms wrap into rows instead of squeezing one row flat."""
    columns = min(n, PANELS_PER_ROW)
    rows = -(-n // columns)
    fig = Figure(figsize=(width * columns, height * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, sharey=True, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _arm_offsets(n: int, width: float) -> np.ndarray:
    return (np.arange(n) - (n - 1) / 2) * width


def attention_bars(means: dict[str, tuple[dict[str, float], dict[str, float]]],
                   modalities: list[str]) -> bytes:
    """Mean test weight per modality, one bar per attention arm, std over seeds."""
    fig = Figure(figsize=(max(6, 2 * len(modalities)), 4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(modalities))
    width = 0.8 / len(means)
    for k, (offset, (arm, (mean, std))) in enumerate(
            zip(_arm_offsets(len(means), width), means.items())):
        ax.bar(x + offset, [mean[m] for m in modalities], width,
               yerr=[std[m] for m in modalities], capsize=3, label=arm, color=_arm_colour(k),
               alpha=0.85)
    ax.axhline(1 / len(modalities), color="grey", linestyle="--", linewidth=0.8,
               label="uniform")
    ax.set_xticks(x, modalities)
    ax.set(title="Mean attention weight per modality on the test split",
           xlabel="modality", ylabel="mean weight (± std over seeds)")
    _legend(ax)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def attention_violins(samples: dict[str, dict[str, np.ndarray]],
                      modalities: list[str]) -> bytes:
    """Distribution of the per-sample test weights, per modality and attention arm."""
    fig = Figure(figsize=(max(6, 2.2 * len(modalities)), 4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(modalities))
    width = 0.8 / len(samples)
    for k, (offset, (arm, per_modality)) in enumerate(
            zip(_arm_offsets(len(samples), width), samples.items())):
        data = [per_modality[m] for m in modalities]
        parts = ax.violinplot(data, positions=x + offset, widths=width * 0.95,
                              showmedians=True)
        for body in parts["bodies"]:
            body.set_facecolor(_arm_colour(k))
            body.set_alpha(0.5)
        for key in ("cbars", "cmins", "cmaxes", "cmedians"):
            parts[key].set_color(_arm_colour(k))
        ax.plot([], [], color=_arm_colour(k), linewidth=6, alpha=0.5, label=arm)
    ax.set_xticks(x, modalities)
    ax.set_ylim(-0.02, 1.02)
    ax.set(title="Distribution of per-sample attention weights (test split, all seeds)",
           xlabel="modality", ylabel="weight")
    _legend(ax)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def group_means_figure(per_arm: dict[str, dict[str, tuple[dict[str, float], int]]],
                       modalities: list[str], title: str, xlabel: str) -> bytes:
    """One panel per attention arm: mean weight per modality within each group of test
    samples (classes, or the modality that carries the label)."""
    c = colours(modalities)
    classes = max((len(v) for v in per_arm.values()), default=1)
    fig, axes = _panels(len(per_arm), max(5.0, 0.45 * classes * len(modalities)), 4.2)
    width = 0.8 / len(modalities)
    for ax, (arm, groups) in zip(axes, per_arm.items()):
        x = np.arange(len(groups))
        for offset, m in zip(_arm_offsets(len(modalities), width), modalities):
            ax.bar(x + offset, [mean[m] for mean, _ in groups.values()], width, color=c[m],
                   label=m)
        ax.set_xticks(x, [f"{name}\n(n={n})" for name, (_, n) in groups.items()],
                      fontsize="small")
        ax.set(title=arm, xlabel=f"{xlabel} (n = samples × seeds)", ylabel="mean weight",
               ylim=(0, 1))
        _legend(ax, title="modality", fontsize="small", ncols=len(modalities),
                loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return _png(fig)


def _outcome(ax, line: Timeline, classes: bool) -> None:
    """Label and prediction along the group; for classes, wrong predictions in red."""
    if classes:
        ax.plot(line.order, line.labels, "o", color="black", fillstyle="none",
                markersize=8, label="true class")
        wrong = line.predictions != line.labels
        ax.plot(line.order[~wrong], line.predictions[~wrong], "x", color="C2",
                label="predicted (right)")
        ax.plot(line.order[wrong], line.predictions[wrong], "x", color="C3",
                label="predicted (wrong)")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.plot(line.order, line.labels, "o-", color="black", label="label")
        ax.plot(line.order, line.predictions, "x--", color="C3", label="prediction")


def timeline_figure(lines: list[Timeline], modalities: list[str], classes: bool,
                    title: str) -> bytes:
    """One column per group along ``order``: the modality weights stacked (top) and the
    label against the prediction (bottom; classes when ``classes``, else values)."""
    c = colours(modalities)
    fig = Figure(figsize=(max(5.0, 4.5 * len(lines)), 5.6), layout="constrained")
    axes = fig.subplots(2, len(lines), sharex="col", squeeze=False, height_ratios=[3, 2])
    for k, line in enumerate(lines):
        top, bottom = axes[0, k], axes[1, k]
        top.stackplot(line.order, line.weights.T, colors=[c[m] for m in modalities],
                      labels=modalities, alpha=0.85, step="mid")
        top.set(title=f"{line.group} ({len(line.ids)} utterances)", ylim=(0, 1),
                ylabel="attention weight" if k == 0 else None)
        _outcome(bottom, line, classes)
        bottom.set(xlabel="order in the group",
                   ylabel=("class" if classes else "value") if k == 0 else None)
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    _legend(axes[0, 0], fontsize="small", loc="lower left", ncols=len(modalities),
            framealpha=0.9)
    _legend(axes[1, 0], fontsize="small")
    fig.suptitle(title)
    return _png(fig)

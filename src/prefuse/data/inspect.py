"""What is in a data file: ``describe`` for people, ``convert`` to the generic NPZ layout.

``describe`` reports dtypes and counts NaN, +-inf and all-zero samples on the arrays as
the file stores them, before the float32 conversion and clean-up that ``load_dataset``
applies, so the report shows what the file holds.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DataError
from .clean import replace_nonfinite
from .dataset import MultimodalDataset, Split
from .formats import detect_format, features_to_float32, load_dataset, read_dataset
from .formats.npz import save_npz
from .groups import group_sizes


def _value_counts(x: np.ndarray) -> str:
    flat = x.reshape(len(x), -1)
    nan = int(np.isnan(flat).sum())
    pos = int(np.isposinf(flat).sum())
    neg = int(np.isneginf(flat).sum())
    zero = int((flat == 0).all(axis=1).sum())
    return f"NaN {nan}, +inf {pos}, -inf {neg}, all-zero samples {zero}"


def _label_stats(y: np.ndarray, task: str, names: list[str] | None) -> list[str]:
    # The file is not validated yet: its labels may have any shape, and its names any count.
    if y.ndim == 0 or len(y) == 0:
        return []
    cols = y.reshape(len(y), -1)
    if names is not None and len(names) != cols.shape[1]:
        names = None
    if task == "regression":
        cols = cols.astype(np.float64)
        label = names or ([""] if cols.shape[1] == 1 else [f"target{k}"
                                                          for k in range(cols.shape[1])])
        lines = []
        for k, name in enumerate(label):
            c = cols[:, k]
            prefix = f"{name}: " if name else ""
            lines.append(f"{prefix}mean {np.mean(c):.3f}, std {np.std(c):.3f}, "
                         f"min {np.min(c):.3f}, max {np.max(c):.3f}, zeros {int((c == 0).sum())}")
        return lines
    if task == "multilabel":
        label = names or [f"label{k}" for k in range(cols.shape[1])]
        return [", ".join(f"{n} present {int(cols[:, k].sum())}/{len(y)}"
                          for k, n in enumerate(label))]
    values, counts = np.unique(y, return_counts=True)
    return [", ".join(f"class {v}: {c}" for v, c in zip(values, counts, strict=True))]


def _report(dataset: MultimodalDataset) -> list[str]:
    lines = [f"dataset {dataset.name} ({dataset.source})", f"task: {dataset.task}",
             f"modalities: {', '.join(dataset.modalities)}"]
    if dataset.label_names:
        lines.append(f"label names: {', '.join(dataset.label_names)}")
    for split_name, split in dataset.splits.items():
        lines.append(f"[{split_name}] {len(split)} samples")
        if len(split) == 0:
            continue
        for m in dataset.modalities:
            if m not in split.features:
                lines.append(f"  {m}: missing")
                continue
            x = split.features[m]
            line = f"  {m}: shape {x.shape}, dtype {x.dtype}; {_value_counts(x)}"
            if x.ndim == 3:
                lengths = split.lengths[m]
                line += f"; lengths {int(lengths.min())}..{int(lengths.max())}"
            lines.append(line)
        lines.append(f"  {_groups_line(split)}")
        y = split.labels
        if y is None:
            lines.append("  labels: none (data to predict on)")
            continue
        lines.append(f"  labels: shape {y.shape}, dtype {y.dtype}")
        lines.extend(f"    {s}" for s in _label_stats(y, dataset.task, dataset.label_names))
    return lines


def _groups_line(split: Split) -> str:
    if split.group is None:
        return "groups: none (every sample stands alone)"
    sizes = group_sizes(split.group)
    return (f"groups: {len(sizes)} (utterances per group: min {int(sizes.min())}, median "
            f"{float(np.median(sizes)):g}, max {int(sizes.max())})")


def describe(dataset_or_path: MultimodalDataset | str | Path, format: str = "auto",
             **options) -> str:
    """A text report: splits, modalities, shapes, dtypes, label statistics, and counts of
    NaN, +-inf and all-zero samples; for a file, the counts are of the raw values and the
    report ends with whether the cleaned data passes validation (see ``check_file``)."""
    if isinstance(dataset_or_path, MultimodalDataset):
        return "\n".join(_report(dataset_or_path))
    return check_file(dataset_or_path, format, **options)[0]


def check_file(path: str | Path, format: str = "auto", **options) -> tuple[str, bool]:
    """``(report, passed)``: ``describe``'s report of a file, and whether the file passed
    validation for training. A generic NPZ file that cannot train (a split or labels
    missing) is still described, and checked as data to predict on."""
    path = Path(path)
    try:
        dataset, unfit = read_dataset(path, format, **options), None
    except DataError as e:
        if (format if format != "auto" else detect_format(path)) != "npz":
            raise
        dataset, unfit = read_dataset(path, "npz", **options, allow_missing=True), e
    lines = _report(dataset)
    features_to_float32(dataset)
    with warnings.catch_warnings():
        # The report already lists the counts the warning would repeat.
        warnings.simplefilter("ignore")
        cleaned = bool(replace_nonfinite(dataset))
    note = " (after setting non-finite values to 0)" if cleaned else ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if unfit is None:
            line, passed = _verdict("validation", dataset.validate, note)
            lines.append(line)
        else:
            passed = False
            lines.append(f"validation for training: FAILED: {unfit}")
            lines.append(_verdict("validation for prediction",
                                  lambda: dataset.validate(partial=True), note)[0])
    lines.extend(f"warning: {w.message}" for w in caught)
    return "\n".join(lines), passed


def _verdict(what: str, check: Callable[[], None], note: str) -> tuple[str, bool]:
    try:
        check()
        return f"{what}: ok{note}", True
    except DataError as e:
        return f"{what}: FAILED: {e}", False


def convert(path: str | Path, out: str | Path, format: str = "auto", **options) -> Path:
    """Load ``path`` (cleaned and validated) and write it to ``out`` as the generic NPZ."""
    return save_npz(load_dataset(path, format, **options), out)

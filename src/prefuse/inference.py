"""Using a saved model on a data file: compatibility, predictions and re-scoring.

The data must carry the model's modalities with the same feature widths and the same
kind (sequence ``(N, T, D)`` or vector ``(N, D)``); anything else is refused with a
message listing every difference. A modality the data lacks altogether (left out of
``meta/modalities``, or its arrays absent from a generic NPZ file) is masked for every
sample, so attention renormalises over the modalities present; per-sample absence
(``<split>/present/<modality>``) is honoured the same way.

A modality present in no sample of a split is warned about, per split, as ``prefuse run``
does; a sample with no modality present at all gets a prediction from no input (the
network's bias alone), and the written predictions mark it (``no_input``).

Data to predict on may be unlabelled: a generic NPZ file may hold only some splits, and
a split may lack ``<split>/labels``. Such a split is predicted but cannot be scored.

A model trained with context (``spec.context``) sees the new data's groups cut into
windows as in training (``spec.context_window``, ``data.windows``); a sample without a
group (a split with none, or an empty group name) is a window of its own, scored without
context, and one warning counts them.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from .data.batching import TensorSplit
from .data.dataset import SPLITS, MultimodalDataset, Split
from .data.formats import detect_format, load_dataset
from .engine.evaluation import Evaluation, evaluate
from .engine.runtime import Runtime, device_for
from .errors import DataError, OutputError, PrefuseError, warn
from .fileio import check_writable, write_text
from .models.network import NetworkSpec
from .models.saving import load_model
from .rundir import GROUP_COLUMNS
from .tasks import Task

Loaded = tuple[nn.Module, Task, dict]


@dataclass
class Prediction:
    """A saved model's outputs on one split; ``masked`` lists the modalities the data
    lacked altogether. An unlabelled split has ``labels`` None and no scores in
    ``evaluation`` (its ``loss`` and ``metrics`` are None). ``no_input`` marks the samples
    with no modality present (their prediction comes from no input)."""

    split: str
    ids: np.ndarray
    labels: np.ndarray | None
    masked: list[str]
    evaluation: Evaluation
    source: str = "<memory>"
    no_input: np.ndarray | None = None
    group: np.ndarray | None = None  # the data's groups and orders, written when present
    order: np.ndarray | None = None


def load_data_file(path: str | Path, format: str = "auto", **options) -> MultimodalDataset:
    """Load data for a saved model; generic NPZ files may lack a modality's arrays,
    splits, and labels. ``options`` go to the format's loader (see ``load_dataset``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    name = detect_format(path) if format == "auto" else format
    # Only the generic layout can say that something (a modality, a split, the labels)
    # is absent; the other formats are always complete.
    if name == "npz":
        options["allow_missing"] = True
    return load_dataset(path, name, **options)


def _kind(sequence: bool) -> str:
    return "a sequence (N, T, D)" if sequence else "a vector (N, D)"


def _label_width(labels: np.ndarray) -> int:
    return 1 if labels.ndim == 1 else int(labels.shape[1])


def check_compatible(spec: NetworkSpec, task: Task, dataset: MultimodalDataset) -> list[str]:
    """Raise ``PrefuseError`` naming every way ``dataset`` does not fit the model; return
    the model's modalities that the data lacks (to be masked)."""
    problems = []
    extra = [m for m in dataset.modalities if m not in spec.modalities]
    missing = [m for m in spec.modalities if m not in dataset.modalities]
    if extra:
        problems.append(f"modalities unknown to the model: {', '.join(extra)} "
                        f"(the model has {', '.join(spec.modalities)})")
    if len(missing) == len(spec.modalities):
        problems.append(f"none of the model's modalities ({', '.join(spec.modalities)}) "
                        "is in the data")
    dims, sequence = dataset.dims(), dataset.is_sequence()
    for m in spec.modalities:
        if m in missing:
            continue
        if sequence[m] != spec.sequence[m]:
            problems.append(f"{m}: the model expects {_kind(spec.sequence[m])}, "
                            f"the data has {_kind(sequence[m])}")
        elif dims[m] != spec.dims[m]:
            problems.append(f"{m}: the model expects D={spec.dims[m]}, the data has D={dims[m]}")
    labelled = [s.labels for s in dataset.splits.values() if s.labelled]
    if dataset.task != task.kind:
        problems.append(f"task: the model is {task.kind}, the data is {dataset.task}")
    elif labelled:
        widths = [_label_width(y) for y in labelled if _label_width(y) != task.targets]
        if task.kind in ("regression", "multilabel") and widths:
            problems.append(f"labels: the model has {task.targets} targets, "
                            f"the data {widths[0]}")
        if task.kind == "multiclass":
            top = max(int(y.max()) for y in labelled)
            if top >= task.targets:
                problems.append(f"labels: class id {top} but the model has {task.targets} "
                                "classes")
    if problems:
        raise PrefuseError(f"{dataset.source}: does not fit the model: " + "; ".join(problems))
    return missing


def context_window(spec: NetworkSpec) -> int:
    """The window length the model's context was trained with (0: it uses none)."""
    return spec.context_window if spec.context != "none" else 0


def ungrouped(split: Split) -> int:
    """How many samples of ``split`` have no group (a window of their own under context)."""
    return len(split) if split.group is None else int((split.group == "").sum())


def model_inputs(split: Split, spec: NetworkSpec, task: Task, masked: list[str]) -> TensorSplit:
    """``split`` as the model's tensors, in windows where the model uses context (a sample
    without a group alone in its own); each ``masked`` modality is a placeholder marked
    absent for every sample (its values are never used: the fusion masks it)."""
    n = len(split)
    features, lengths, present = dict(split.features), dict(split.lengths), dict(split.present)
    for m in masked:
        shape = (n, 1, spec.dims[m]) if spec.sequence[m] else (n, spec.dims[m])
        features[m] = np.zeros(shape, dtype=np.float32)
        lengths[m] = np.zeros(n, dtype=np.int64)
        present[m] = np.zeros(n, dtype=bool)
    window = context_window(spec)
    group, order = split.group, split.order
    if window and group is None:
        group, order = np.full(n, ""), np.zeros(n, dtype=np.int64)
    full = Split(features=features, labels=split.labels, lengths=lengths, present=present,
                 ids=split.ids, group=group, order=order)
    return TensorSplit(full, spec.modalities, task.kind == "regression", window)


def predict(model: str | Path | Loaded, data: str | Path | MultimodalDataset, *,
            split: str | None = None, arm: str | None = None, format: str = "auto",
            device: str = "auto", **options) -> dict[str, Prediction]:
    """Run a saved model on every split of ``data`` (or only ``split``).

    ``model`` is a run directory or model folder (``arm`` picks ``models/<arm>/`` of a run),
    loaded onto ``device`` (``auto``: a GPU when CUDA is available), or what
    ``load_model`` returned (used where it is); ``data`` a file in any supported format
    (``options`` go to its loader) or a dataset. Unlabelled splits are predicted, not
    scored. The network runs in fp32 on the device it was loaded onto.
    """
    network, task, _ = model if isinstance(model, tuple) else \
        load_model(model, arm, device_for(device))
    where = Runtime(device=next(network.parameters()).device)
    dataset = data if isinstance(data, MultimodalDataset) else \
        load_data_file(data, format, **options)
    masked = check_compatible(network.spec, task, dataset)
    names = [s for s in SPLITS if s in dataset.splits]
    if split is not None:
        if split not in dataset.splits:
            raise PrefuseError(f"{dataset.source}: no split '{split}' (has {', '.join(names)})")
        names = [split]
    if context_window(network.spec):
        _warn_ungrouped(dataset, names)
    out = {}
    for name in names:
        part = dataset[name]
        inputs = model_inputs(part, network.spec, task, masked)
        out[name] = Prediction(name, np.asarray(part.ids), part.labels, masked,
                               evaluate(network, inputs, task, where), dataset.source,
                               _warn_empty(dataset, name, network.spec.modalities),
                               group=part.group, order=part.order)
    return out


def _warn_ungrouped(dataset: MultimodalDataset, names: list[str]) -> None:
    """One warning for every sample of splits ``names`` that no group places."""
    alone = sum(ungrouped(dataset[name]) for name in names)
    if alone:
        total = sum(len(dataset[name]) for name in names)
        warn(f"{dataset.source}: {alone} of {total} samples have no group (video or "
             "dialogue): the model's context cannot reach them, so each is scored without "
             "context, as a window of its own")


def _warn_empty(dataset: MultimodalDataset, name: str, modalities: list[str]) -> np.ndarray:
    """Warn about what carries nothing in split ``name``; return which samples have no
    modality present."""
    part = dataset[name]
    present = [part.present[m] for m in modalities if m in part.present]
    for m in modalities:
        if m in part.present and not part.present[m].any():
            warn(f"{dataset.source} [{name}/present/{m}]: modality '{m}' is present in no "
                 f"sample of {name}")
    no_input = ~np.any(present, axis=0) if present else np.ones(len(part), dtype=bool)
    if no_input.any():
        warn(f"{dataset.source} [{name}]: {int(no_input.sum())} of {len(part)} samples have "
             "no modality present: their predictions come from no input (marked no_input)")
    return no_input


def scores(predictions: dict[str, Prediction]) -> dict[str, dict]:
    """Per split: sample count, loss and metrics (undefined values as None, for JSON).
    A split without labels cannot be scored: ``PrefuseError``."""
    for name, p in predictions.items():
        if p.labels is None:
            raise PrefuseError(f"{p.source} [{name}/labels]: split '{name}' has no labels, "
                               "so it cannot be scored (predicting needs none)")
    return {name: {"samples": len(p.ids)} | {
        k: (v if v == v else None)
        for k, v in {"loss": p.evaluation.loss, **p.evaluation.metrics}.items()}
        for name, p in predictions.items()}


def _value(x, digits: int | None):
    """A per-sample value for a file: scalars stay scalars, vectors become lists."""
    if np.ndim(x):
        return [_value(v, digits) for v in np.ravel(x)]
    x = x.item() if hasattr(x, "item") else x
    return round(x, digits) if digits is not None and isinstance(x, float) else x


def prediction_records(predictions: dict[str, Prediction], task: Task,
                       modalities: list[str], digits: int | None = None) -> list[dict]:
    """One record per sample: split, id, ``group`` and ``order`` (where the data has
    groups), label (None where the split has none),
    prediction, ``prob_<label>`` (classifier tasks), ``weight_<modality>`` (zero for
    absent modalities; the rest sum to 1), ``no_input`` (true where no modality was
    present: every weight is zero and the prediction carries nothing)."""
    records = []
    for p in predictions.values():
        e = p.evaluation
        scores = e.scores.reshape(len(p.ids), -1)
        if task.kind != "regression" and len(task.label_names) != scores.shape[1]:
            # A name per probability column, or the columns would be mislabelled.
            raise PrefuseError(f"the model's task has {len(task.label_names)} label names "
                               f"({', '.join(task.label_names)}) for {scores.shape[1]} "
                               "probability columns; model.json does not fit its weights")
        for i in range(len(p.ids)):
            label = None if p.labels is None else _value(p.labels[i], digits)
            row = {"split": p.split, "id": str(p.ids[i])}
            if p.group is not None:
                row.update(zip(GROUP_COLUMNS, (str(p.group[i]), int(p.order[i]))))
            row.update(label=label, prediction=_value(e.predictions[i], digits))
            if task.kind != "regression":
                row.update({f"prob_{name}": _value(s, digits)
                            for name, s in zip(task.label_names, scores[i])})
            row.update({f"weight_{m}": _value(w, digits) for m, w in zip(modalities, e.weights[i])})
            row["no_input"] = bool(p.no_input[i]) if p.no_input is not None else False
            records.append(row)
    return records


def check_prediction_path(path: str | Path) -> Path:
    """``path`` if predictions can be written there (a writable ``.csv`` or ``.jsonl``
    file), else ``OutputError``: checked before predicting, not after."""
    path = check_writable(path)
    if path.suffix not in (".csv", ".jsonl"):
        raise OutputError(path, "write predictions to a .csv or .jsonl file")
    return path


def write_predictions(predictions: dict[str, Prediction], task: Task, modalities: list[str],
                      path: str | Path) -> Path:
    """Write ``.csv`` (vectors joined by ``;``) or ``.jsonl``, atomically; a missing
    label is an empty CSV field, ``null`` in JSON."""
    path = check_prediction_path(path)
    if path.suffix == ".jsonl":
        records = prediction_records(predictions, task, modalities)
        return write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    records = prediction_records(predictions, task, modalities, digits=6)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(records[0]))
    for r in records:
        writer.writerow([";".join(map(str, v)) if isinstance(v, list) else v
                         for v in r.values()])
    return write_text(path, buffer.getvalue())

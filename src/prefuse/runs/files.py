"""The CSV files of a run directory: ``history.csv`` and ``attention.csv``."""

from __future__ import annotations

import csv
import io

import numpy as np

from ..data.dataset import MultimodalDataset
from ..recipe.stages import SeedResult
from ..rundir import GROUP_COLUMNS

# history.csv's fixed columns; any other column comes from a method's or a probe's values.
HISTORY = ["train_loss", "valid_loss", "train_metric", "valid_metric"]


def _csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def history_csv(results: list[SeedResult], modalities: list[str]) -> str:
    """One row per seed/stage/arm/modality/epoch. Joint-training rows also hold
    ``usage_<m>`` (the validation metric with only modality m kept) and whatever a
    training method logs, each under its own name (empty where it does not apply)."""
    usage = [f"usage_{m}" for m in modalities]
    stages = [(r.seed, *s) for r in results
              for s in [("pretrain", "unimodal", m, run) for m, run in r.unimodal.items()]
              + [("joint", arm, "all", run) for arm, run in r.arms.items()]]
    known = {"epoch", *HISTORY, *usage}
    extra = sorted({k for *_, run in stages for h in run.fit.history for k in h} - known)
    header = ["seed", "stage", "arm", "modality", "epoch"] + HISTORY + usage + extra
    rows = [[seed, stage, arm, modality, h["epoch"]] + [h.get(k, "") for k in HISTORY]
            + [h.get(k, "") for k in usage + extra]
            for seed, stage, arm, modality, run in stages for h in run.fit.history]
    return _csv(header, rows)


def _label_text(value) -> str:
    return ";".join(str(v) for v in np.ravel(value)) if np.ndim(value) else str(value)


def attention_csv(dataset: MultimodalDataset, results: list[SeedResult]) -> str:
    """Per arm, seed and test sample: id, its group and order (when the data has groups),
    label, prediction, one weight per modality."""
    test = dataset["test"]
    extra = [c for c, v in (("dominant", test.dominant), ("text_raw", test.text_raw))
             if v is not None]
    place = list(GROUP_COLUMNS) if test.group is not None else []
    header = ["arm", "seed", "id"] + place + ["label", "prediction"] + extra + \
        [f"weight_{m}" for m in dataset.modalities]
    rows = []
    for r in results:
        for arm, run in r.arms.items():
            for i in range(len(test)):
                row = [arm, r.seed, test.ids[i]]
                row += [test.group[i], int(test.order[i])] if place else []
                row += [_label_text(test.labels[i]),
                        _label_text(np.round(run.test.predictions[i], 6))]
                row += [test.dominant[i] if c == "dominant" else test.text_raw[i] for c in extra]
                row += [f"{w:.6f}" for w in run.test.weights[i]]
                rows.append(row)
    return _csv(header, rows)

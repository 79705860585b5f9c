"""Live TensorBoard scalars: every epoch of every stage, seed and arm.

One TensorBoard run per stage and seed: ``<prefix><arm>/seed<k>`` for joint training,
``<prefix>pretrain/<modality>/seed<k>`` for stage 1. Tags: ``loss/train``,
``loss/valid``, ``metric/train``, ``metric/valid``, ``usage/<m>`` (validation metric
with only modality m kept), ``extra/<column>`` for any other number in the history row,
and, in joint training, ``attention/<m>`` (mean modality weight on the validation split).
"""

from __future__ import annotations

import numbers
from pathlib import Path

from ..engine.evaluation import evaluate
from ..errors import PrefuseError
from ..recipe.stages import EpochEvent, Observer

ROW_TAGS = {"train_loss": "loss/train", "valid_loss": "loss/valid",
            "train_metric": "metric/train", "valid_metric": "metric/valid"}


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PrefuseError("--tensorboard needs the tensorboard package: "
                           "pip install 'prefuse[tensorboard]'") from None
    return SummaryWriter


class TensorBoardLog:
    """Writes epoch events under ``logdir``; stages run one after another, so one
    event file is open at a time."""

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self._writer_class = _summary_writer()
        self._run: Path | None = None
        self._writer = None

    def observer(self, prefix: str = "") -> Observer:
        """An observer writing its events under ``logdir/prefix`` (the main rank's)."""
        def observe(event: EpochEvent) -> None:
            if event.runtime.is_main:
                self.write(event, prefix)
        return observe

    def write(self, event: EpochEvent, prefix: str = "") -> None:
        """Write one epoch's scalars."""
        where = [event.name] if event.stage == "joint" else [event.stage, event.name]
        run = self.logdir.joinpath(prefix, *where, f"seed{event.seed}")
        if run != self._run:
            self.close()
            self._run, self._writer = run, self._writer_class(str(run))
        step = event.epoch
        for key, value in event.row.items():
            if key == "epoch" or not isinstance(value, numbers.Real):
                continue
            tag = ROW_TAGS.get(key) or (f"usage/{key[len('usage_'):]}"
                                        if key.startswith("usage_") else f"extra/{key}")
            self._writer.add_scalar(tag, float(value), step)
        if event.stage == "joint":
            weights = evaluate(event.model, event.valid, event.task,
                               event.runtime).weights.mean(axis=0)
            for m, w in zip(event.valid.modalities, weights):
                self._writer.add_scalar(f"attention/{m}", float(w), step)
        self._writer.flush()

    def close(self) -> None:
        """Close the open event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

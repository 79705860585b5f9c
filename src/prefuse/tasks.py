"""Task kinds: output size, loss, how logits become predictions, and which metrics apply."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics
from .registry import Registry


@dataclass(frozen=True)
class Task(ABC):
    """Base task. ``targets`` is K (regression/multilabel), C (multiclass) or 1 (binary)."""

    targets: int
    label_names: tuple[str, ...]

    kind = "task"
    primary = "loss"

    @property
    def out_dim(self) -> int:
        return self.targets

    @abstractmethod
    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ...

    @abstractmethod
    def decode(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(predictions, scores)``: what is reported per sample and its confidence."""
        ...

    @abstractmethod
    def metrics(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        ...

    @abstractmethod
    def chance(self, labels: np.ndarray) -> dict[str, float]:
        """The score of always predicting the training-set majority/mean."""
        ...


TASKS: Registry[type[Task]] = Registry("task")


@TASKS.register("regression")
class Regression(Task):
    """L1 loss (as MulT for MOSI/MOSEI). One target gets the sentiment metrics."""

    kind = "regression"
    primary = "mae"

    def loss(self, logits, y):
        return F.l1_loss(logits, y.view_as(logits))

    def decode(self, logits):
        pred = logits[:, 0] if self.targets == 1 else logits
        return pred, pred

    def metrics(self, predictions, labels):
        if self.targets == 1:
            return metrics.sentiment_metrics(predictions, labels)
        return metrics.multitarget_regression_metrics(
            predictions, labels.reshape(len(labels), -1), list(self.label_names))

    def chance(self, labels):
        const = np.broadcast_to(np.median(labels, axis=0), labels.shape).astype(np.float64)
        return self.metrics(const.copy(), labels)


@TASKS.register("binary")
class Binary(Task):
    kind = "binary"
    primary = "acc"

    def loss(self, logits, y):
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.float())

    def decode(self, logits):
        prob = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return (prob > 0.5).astype(np.int64), prob

    def metrics(self, predictions, labels):
        return metrics.classification_metrics(predictions, labels)

    def chance(self, labels):
        majority = np.bincount(labels).argmax()
        return self.metrics(np.full_like(labels, majority), labels)


@TASKS.register("multiclass")
class Multiclass(Binary):
    kind = "multiclass"

    def loss(self, logits, y):
        return F.cross_entropy(logits, y.long())

    def decode(self, logits):
        z = logits - logits.max(axis=1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return prob.argmax(axis=1), prob


@TASKS.register("multilabel")
class Multilabel(Task):
    """K present/absent tasks: 2K logits seen as (K, 2) with cross-entropy (as MulT's IEMOCAP)."""

    kind = "multilabel"
    primary = "acc_mean"

    @property
    def out_dim(self) -> int:
        return 2 * self.targets

    def loss(self, logits, y):
        return F.cross_entropy(logits.view(-1, 2), y.long().view(-1))

    def decode(self, logits):
        z = logits.reshape(len(logits), self.targets, 2)
        z = z - z.max(axis=2, keepdims=True)
        prob = np.exp(z[..., 1]) / np.exp(z).sum(axis=2)
        return (prob > 0.5).astype(np.int64), prob

    def metrics(self, predictions, labels):
        return metrics.multilabel_metrics(predictions, labels, list(self.label_names))

    def chance(self, labels):
        majority = (labels.mean(axis=0) > 0.5).astype(np.int64)
        return self.metrics(np.broadcast_to(majority, labels.shape), labels)


def make_task(kind: str, targets: int, label_names: list[str] | None = None) -> Task:
    """The task object for ``kind``; label names default to ``target0..``."""
    names = tuple(label_names) if label_names else tuple(f"target{k}" for k in range(targets))
    if kind == "binary":
        # One output, P(class 1): named after class 1, the last name whether the data
        # gives one name (the positive class) or two (class 0, class 1).
        names = names[-1:]
    return TASKS.get(kind, "task")(targets=targets, label_names=names)


def task_for(dataset) -> Task:
    """The task a ``MultimodalDataset`` asks for."""
    return make_task(dataset.task, dataset.num_targets(), dataset.label_names)

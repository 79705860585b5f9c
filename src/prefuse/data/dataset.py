"""In-memory multimodal dataset: what every format loader produces and everything else reads.

Arrays are numpy, float32 features, kept as whole-split arrays so batching is slicing.
A sequence modality is ``(N, T, D)`` zero-padded with ``lengths`` ``(N,)``; a vector
modality is ``(N, D)``. ``present`` marks, per sample and modality, whether the modality
exists at all (a missing modality is masked, never treated as zeros-as-data). ``group``
names the video or dialogue of each sample and ``order`` its position there (``groups``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, warn
from .groups import check_no_leak, check_split_groups, rank_within

SPLITS = ("train", "valid", "test")
TASK_KINDS = ("regression", "binary", "multiclass", "multilabel")


@dataclass
class Split:
    """One split (train, valid or test) of a multimodal dataset.

    ``labels`` is None for an unlabelled split (data to predict on): its sample count
    comes from the features, and nothing can be scored on it. ``group`` (strings; None:
    every sample stands alone) and ``order`` (int64; given without it, the file order within
    each group) place each sample in its video or dialogue.
    """

    features: dict[str, np.ndarray]
    labels: np.ndarray | None
    lengths: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    ids: np.ndarray | None = None
    text_raw: np.ndarray | None = None
    dominant: np.ndarray | None = None
    group: np.ndarray | None = None
    order: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.labels is None and not self.features:
            raise ValueError("a split without labels needs features to have a size")
        n = len(self)
        for name, x in self.features.items():
            if name not in self.lengths:
                steps = x.shape[1] if x.ndim == 3 else 1
                self.lengths[name] = np.full(n, steps, dtype=np.int64)
            if name not in self.present:
                self.present[name] = self.lengths[name] > 0
        if self.ids is None:
            self.ids = np.array([str(i) for i in range(n)])
        if self.group is not None:
            # Integer and string group names compare alike once both are strings.
            self.group = np.asarray(self.group).astype(str)
            if self.order is None:
                self.order = rank_within(self.group)

    def __len__(self) -> int:
        if self.labels is None:
            return len(next(iter(self.features.values())))
        return len(self.labels)

    @property
    def labelled(self) -> bool:
        """Whether the split has labels (an unlabelled one can be predicted, not scored)."""
        return self.labels is not None

    def subset(self, index: np.ndarray) -> Split:
        """The samples at ``index``, as a new split (arrays are copied)."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return Split(
            features={k: v[index] for k, v in self.features.items()},
            labels=pick(self.labels),
            lengths={k: v[index] for k, v in self.lengths.items()},
            present={k: v[index] for k, v in self.present.items()},
            ids=pick(self.ids),
            text_raw=pick(self.text_raw),
            dominant=pick(self.dominant),
            group=pick(self.group),
            order=pick(self.order),
        )


@dataclass
class MultimodalDataset:
    """Train/valid/test splits plus what the task is.

    ``task`` is one of ``TASK_KINDS``. Labels: regression float ``(N,)`` or ``(N, K)``;
    binary int ``(N,)`` in {0, 1}; multiclass int ``(N,)`` class ids; multilabel int
    ``(N, K)`` in {0, 1}.
    """

    splits: dict[str, Split]
    task: str
    modalities: list[str]
    label_names: list[str] | None = None
    name: str = "dataset"
    source: str = "<memory>"

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]

    def _first(self) -> Split:
        # Data to predict on may hold only some splits; a complete dataset starts at train.
        return next(self.splits[s] for s in SPLITS if s in self.splits)

    def dims(self) -> dict[str, int]:
        """Feature width per modality."""
        first = self._first()
        return {m: int(first.features[m].shape[-1]) for m in self.modalities}

    def is_sequence(self) -> dict[str, bool]:
        """Whether each modality is a ``(N, T, D)`` sequence."""
        first = self._first()
        return {m: first.features[m].ndim == 3 for m in self.modalities}

    def num_targets(self) -> int:
        """K for regression/multilabel, the class count for multiclass, 1 for binary
        (from the labelled splits)."""
        labels = np.concatenate([s.labels for s in self.splits.values() if s.labelled])
        if self.task == "multiclass":
            if self.label_names:
                return len(self.label_names)
            return int(labels.max()) + 1
        if self.task == "binary":
            return 1
        return 1 if labels.ndim == 1 else int(labels.shape[1])

    def validate(self, partial: bool = False) -> None:
        """Check shapes, dtypes and values; raise ``DataError`` naming the field.

        Training needs all three splits, labelled; ``partial`` (data to predict on)
        accepts any non-empty subset of them, each labelled or not.
        """
        src = self.source
        if self.task not in TASK_KINDS:
            raise DataError(src, f"unknown task {self.task!r}; expected one of {TASK_KINDS}",
                            "meta/task")
        if not self.modalities:
            raise DataError(src, "no modalities", "meta/modalities")
        repeated = sorted({m for m in self.modalities if self.modalities.count(m) > 1})
        if repeated:
            raise DataError(src, f"modality names repeat: {', '.join(repeated)}",
                            "meta/modalities")
        self._validate_label_names()
        for split_name in SPLITS:
            if split_name not in self.splits and not (partial and self.splits):
                raise DataError(src, f"split '{split_name}' is missing", split_name)
            if split_name in self.splits and not (partial or self[split_name].labelled):
                raise DataError(src, f"split '{split_name}' has no labels",
                                f"{split_name}/labels")
        dims, first = None, None
        for split_name, split in self.splits.items():
            n = len(split)
            # An unlabelled split counts its samples by its first modality's array.
            counted = f"{split_name}/labels" if split.labelled else \
                f"{split_name}/{next(iter(split.features))}"
            basis = "labels have" if split.labelled else f"{counted} has"
            if n == 0:
                raise DataError(src, "split has no samples", counted)
            for m in self.modalities:
                self._validate_modality(split_name, split, m, basis)
            check_split_groups(src, split_name, split.group, split.order, n)
            self._validate_dominant(split_name, split.dominant, n, partial)
            shape = {m: (split.features[m].ndim, split.features[m].shape[-1])
                     for m in self.modalities}
            if dims is None:
                dims, first = shape, split_name
            elif shape != dims:
                raise DataError(src, f"feature shapes differ from {first}: {shape} vs {dims}",
                                split_name)
            if split.labelled:
                self._validate_labels(split_name, split.labels)
        check_no_leak(src, {name: split.group for name, split in self.splits.items()})
        if not partial:
            self._warn_for_training()

    def _validate_modality(self, split_name: str, split: Split, m: str, basis: str) -> None:
        """Modality ``m`` of one split: present, shaped like its samples, finite, with
        lengths and presence flags that fit."""
        src, n, key = self.source, len(split), f"{split_name}/{m}"
        if m not in split.features:
            raise DataError(src, f"modality '{m}' is missing", key)
        x = split.features[m]
        if x.ndim not in (2, 3):
            raise DataError(src, f"expected (N, D) or (N, T, D), got shape {x.shape}", key)
        if x.shape[0] != n:
            raise DataError(src, f"has {x.shape[0]} samples but {basis} {n}", key)
        if not np.isfinite(x).all():
            raise DataError(src, "contains NaN or inf", key)
        lengths = split.lengths[m]
        if lengths.shape != (n,):
            raise DataError(src, f"lengths must be ({n},), got {lengths.shape}",
                            f"{split_name}/lengths/{m}")
        steps = x.shape[1] if x.ndim == 3 else 1
        if (lengths < 0).any() or (lengths > steps).any():
            raise DataError(src, f"lengths must lie in [0, {steps}]",
                            f"{split_name}/lengths/{m}")
        present = split.present[m]
        if present.shape != (n,) or present.dtype != bool:
            raise DataError(src, f"presence flags must be ({n},) booleans, got shape "
                            f"{present.shape} dtype {present.dtype}",
                            f"{split_name}/present/{m}")

    def _validate_label_names(self) -> None:
        """The names must fit the task: one per class (binary: the positive class alone,
        or class 0 then class 1), one per target column otherwise."""
        names = self.label_names
        if not names:
            return
        key, src = "meta/label_names", self.source
        if len(set(names)) != len(names):
            raise DataError(src, f"label names repeat: {names}", key)
        if self.task == "binary" and len(names) not in (1, 2):
            raise DataError(src, f"a binary task takes 1 name (the positive class) or 2 "
                            f"(class 0, class 1), got {len(names)}: {names}", key)
        if self.task in ("regression", "multilabel"):
            widths = {1 if s.labels.ndim == 1 else s.labels.shape[1]
                      for s in self.splits.values() if s.labelled and s.labels.ndim in (1, 2)}
            if widths and widths != {len(names)}:
                raise DataError(src, f"{len(names)} names for {max(widths)} label "
                                f"column(s): {names}", key)

    def _validate_dominant(self, split_name: str, dominant: np.ndarray | None, n: int,
                           partial: bool) -> None:
        if dominant is None:
            return
        key, m = f"{split_name}/dominant", len(self.modalities)
        if dominant.shape != (n,) or not np.issubdtype(dominant.dtype, np.integer):
            raise DataError(self.source, f"expected {n} integer modality indices, got shape "
                            f"{dominant.shape} dtype {dominant.dtype}", key)
        # Data to predict on may lack modalities the indices count; only training uses them.
        if not partial and ((dominant < 0) | (dominant >= m)).any():
            raise DataError(self.source, f"modality indices must lie in [0, {m - 1}] (the "
                            "order of meta/modalities)", key)

    def _warn_for_training(self) -> None:
        """Data that trains, but whose results would mislead without a word."""
        train = self["train"]
        if self.task in ("binary", "multiclass") and len(np.unique(train.labels)) == 1:
            warn(f"{self.source} [train/labels]: every training sample has class "
                 f"{train.labels[0]}: the model can only learn to predict it")
        for split_name, split in self.splits.items():
            for m in self.modalities:
                if not split.present[m].any():
                    warn(f"{self.source} [{split_name}/present/{m}]: modality '{m}' is "
                         f"present in no sample of {split_name}")
            if len(split) == 1:
                warn(f"{self.source} [{split_name}]: a single sample; its metrics say "
                     "almost nothing")

    def _validate_labels(self, split_name: str, y: np.ndarray) -> None:
        key = f"{split_name}/labels"
        src = self.source
        if y.dtype.kind not in "biuf" or y.ndim == 0:
            raise DataError(src, f"labels must be numbers, one per sample; got dtype {y.dtype} "
                            f"shape {y.shape}", key)
        if self.task == "regression":
            if y.ndim not in (1, 2):
                raise DataError(src, f"regression labels must be (N,) or (N, K), got {y.shape}",
                                key)
            if not np.isfinite(y).all():
                raise DataError(src, "labels contain NaN or inf", key)
            return
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(src, f"{self.task} labels must be integers, got {y.dtype}", key)
        if self.task in ("binary", "multiclass") and y.ndim != 1:
            raise DataError(src, f"{self.task} labels must be (N,), got {y.shape}", key)
        if self.task == "multilabel" and y.ndim != 2:
            raise DataError(src, f"multilabel labels must be (N, K), got {y.shape}", key)
        if (y < 0).any():
            raise DataError(src, "labels must be >= 0", key)
        if self.task in ("binary", "multilabel") and (y > 1).any():
            raise DataError(src, f"{self.task} labels must be 0 or 1", key)
        if self.task == "multiclass" and self.label_names and (y >= len(self.label_names)).any():
            raise DataError(src, f"class id >= number of label_names ({len(self.label_names)})",
                            key)

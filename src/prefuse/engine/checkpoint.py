"""Checkpoints of a run in progress, so that ``prefuse run --resume`` can continue it.

Layout of ``RUN_DIR/checkpoints/``, one pair of files per stage (a stage is one ``fit``:
``seed<k>-pretrain-<modality>`` or ``seed<k>-arm-<arm>``):

- ``<stage>.epoch.pt``: the last complete epoch of a stage still training: model and
  optimizer state, the data-order generator and the global torch RNG (dropout) states,
  the early-stopping state and the history so far (``fit.FitState``).
- ``<stage>.done.pt``: a finished stage: its final (best) weights and its fit result.

Files hold only tensors and plain containers: written with ``torch.save`` and read back
with ``weights_only=True``, so nothing but tensors is ever unpickled. Every file is
written atomically. The folder is deleted once ``metrics.json`` is written.

Under torchrun every rank reads the checkpoints (all resume alike) and only the main
rank writes them; the ranks hold the same weights, so its files stand for all.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch
from torch import nn

from ..config import RUNTIME_FIELDS, RunConfig, config_to_toml, load_config
from ..data.fingerprint import differences as data_differences
from ..errors import PrefuseError, RunError
from ..fileio import atomic_path, write_json, write_text
from ..replacing import run_files, set_aside
from ..rundir import CHECKPOINTS_FOLDER, CONFIG_FILE, DATA_FILE, METRICS_FILE
from . import distributed
from .runtime import Runtime


def _save(state: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# What each kind of checkpoint must hold (see ``training_state`` and ``save_done``).
EPOCH_KEYS = ("model", "optimizer", "generator", "rng", "epoch", "best_value", "best_state",
              "best_epoch", "best_valid", "bad_epochs", "history", "seconds")
DONE_KEYS = ("model", "fit")


def _load(path: Path, keys: tuple[str, ...]) -> dict | None:
    if not path.is_file():
        return None
    try:
        # Tensors land on the CPU whatever device saved them; loading into a model or an
        # optimizer then moves them to wherever that lives.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever the bytes are, the file is unusable
        raise RunError(f"{path}: unreadable checkpoint ({type(e).__name__}); delete it to "
                       "redo that stage, or start the run afresh with --overwrite") from None
    missing = [k for k in keys if k not in state] if isinstance(state, dict) else keys
    if missing:
        raise RunError(f"{path}: not a prefuse checkpoint (no {', '.join(missing)}); delete "
                       "it to redo that stage, or start the run afresh with --overwrite")
    return state


class StageCheckpoint:
    """The checkpoint files of one stage. ``fit`` calls ``load`` once and ``save`` after
    every epoch; the recipe calls ``load_done``/``save_done`` around the whole fit. Only
    ``runtime``'s main rank writes them."""

    def __init__(self, directory: Path, stage: str, runtime: Runtime):
        self.stage = stage
        self.runtime = runtime
        self.epoch_path = directory / f"{stage}.epoch.pt"
        self.done_path = directory / f"{stage}.done.pt"

    def load(self) -> dict | None:
        """The last complete epoch's training state, or None to start afresh."""
        return _load(self.epoch_path, EPOCH_KEYS)

    def save(self, state: dict) -> None:
        """Replace the epoch checkpoint with ``state`` (see ``training_state``)."""
        if self.runtime.is_main:
            _save(state, self.epoch_path)

    def load_done(self) -> dict | None:
        """``{"model": state_dict, "fit": FitResult fields}`` of a finished stage, or None."""
        return _load(self.done_path, DONE_KEYS)

    def save_done(self, model: nn.Module, fit_result) -> None:
        """Record the finished stage; its epoch checkpoint is no longer needed."""
        if not self.runtime.is_main:
            return
        _save({"model": model.state_dict(), "fit": dataclasses.asdict(fit_result)},
              self.done_path)
        self.epoch_path.unlink(missing_ok=True)


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator, **progress) -> dict:
    """Everything that shapes the epochs still to come, plus ``progress`` (epoch,
    early-stopping state, history, seconds: ``fit.FitState.progress()``). The random
    states are the CPU's and, where CUDA has been used, every GPU's (dropout on a GPU
    draws from those)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "generator": generator.get_state(), "rng": torch.get_rng_state(), **progress}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_training(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator) -> None:
    """Put model, optimizer, data order and dropout RNG back as ``training_state`` saw them.

    GPU random states come back when this process has as many GPUs as the one that
    saved them; elsewhere (a checkpoint from a GPU resumed on the CPU) they have nothing
    to drive and are skipped: training continues, not bit for bit.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["rng"])
    cuda_states = state.get("cuda_rng")
    if cuda_states and torch.cuda.is_available() and \
            torch.cuda.device_count() == len(cuda_states):
        torch.cuda.set_rng_state_all(cuda_states)


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: RunConfig, current: RunConfig) -> list[str]:
    """``field: saved X, now Y`` for every field that differs, except ``out`` and where
    the run trains (``RUNTIME_FIELDS``: a run may resume on another device or with
    other ``--jobs``)."""
    old = _flatten(dataclasses.asdict(saved))
    new = _flatten(dataclasses.asdict(current))
    return [f"{k}: saved {old.get(k)!r}, now {new.get(k)!r}"
            for k in sorted(old.keys() | new.keys())
            if k not in ("out", *RUNTIME_FIELDS) and old.get(k) != new.get(k)]


class RunCheckpoints:
    """The checkpoint folder of one run directory, as the process on ``runtime`` sees it
    (its main rank writes, every rank reads)."""

    def __init__(self, out: str | Path, runtime: Runtime):
        self.out = Path(out)
        self.runtime = runtime
        self.directory = self.out / CHECKPOINTS_FOLDER

    def stage(self, seed: int, kind: str, name: str) -> StageCheckpoint:
        """The checkpoint of stage ``kind`` (``pretrain`` or ``arm``) ``name`` of ``seed``."""
        return StageCheckpoint(self.directory, f"seed{seed}-{kind}-{name}", self.runtime)

    def start(self, config: RunConfig, resume: bool, data: dict[str, str] | None = None,
              overwrite: bool = False) -> RunCheckpoints:
        """Begin a run. A fresh run refuses a directory that holds a run unless
        ``overwrite`` (then it moves that run's files aside, ``replacing.set_aside``, for
        the caller to delete or restore: ``replacing.kept_until_done``); it records its
        config and the data's fingerprint ``data`` (``prefuse.data.fingerprint``). A
        resumed run must find an unfinished run with the same config and, where ``data``
        is given, the same data; the refusal lists every difference."""
        saved_path = self.out / CONFIG_FILE
        if resume:
            self._check_resumable(config, data)
        elif self.runtime.is_main:
            self._check_fresh(overwrite)
        if self.runtime.is_main:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                if data is not None:
                    write_json(self.out / DATA_FILE, data)
                write_text(saved_path, config_to_toml(config))
            except (OSError, PrefuseError) as e:
                raise RunError(f"{self.out}: cannot write the run directory ({e})") from None
        # No rank may read a stale checkpoint that the main rank is about to delete.
        distributed.barrier(self.runtime)
        return self

    def _check_resumable(self, config: RunConfig, data: dict[str, str] | None) -> None:
        saved_path = self.out / CONFIG_FILE
        if not saved_path.is_file():
            raise RunError(f"{self.out}: nothing to resume (no config.toml)")
        if not self.directory.is_dir() and (self.out / METRICS_FILE).is_file():
            raise RunError(f"{self.out}: the run is already complete")
        differences = config_differences(load_config(saved_path), config)
        if differences:
            raise RunError(f"{self.out}: cannot resume, the config differs from "
                           f"config.toml: {'; '.join(differences)}")
        if data is None:
            return
        try:
            saved = json.loads((self.out / DATA_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise RunError(f"{self.out}: cannot resume, {DATA_FILE} (the data the run "
                           "started on) is missing or unreadable, so the data cannot be "
                           "checked; start afresh with --overwrite") from None
        changed = data_differences(saved, data)
        if changed:
            raise RunError(f"{self.out}: cannot resume, the data differs from the data the "
                           f"run started on ({DATA_FILE}): {'; '.join(changed)}")

    def _check_fresh(self, overwrite: bool) -> None:
        found = run_files(self.out)
        if not found:
            return
        if not overwrite:
            state = "a finished run" if (self.out / METRICS_FILE).exists() else \
                "an unfinished run (--resume continues it)"
            raise RunError(f"{self.out}: holds {state} ({', '.join(found)}); pass "
                           "--overwrite to replace it, or choose another --out")
        set_aside(self.out, found)

    def remove(self) -> None:
        """Delete the checkpoint folder (the run is complete, or starts afresh)."""
        shutil.rmtree(self.directory, ignore_errors=True)

"""The one table of command-line options that set config fields, for ``run`` and ``tune``.

Each row names its flag, the dotted config fields it sets, its type, its help and the
commands that take it; the parsers and the overrides both come from it, so an option that
sets a field cannot work in one command and be missing from the other.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace

from .config import RunConfig

BOTH = ("run", "tune")


@dataclass(frozen=True)
class Option:
    """One flag. ``help`` may hold ``{default}``: the first field's built-in default."""

    flag: str
    fields: tuple[str, ...]
    help: str
    type: Callable[[str], object] | None = None
    many: bool = False
    commands: tuple[str, ...] = BOTH

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


ARMS_HELP = ("arms to train, each with the same budget: <init>+<fusion>[+<method>] (e.g. "
             "scratch+concat, pretrained+attention+umt), mult, ensemble, alone-<modality> (one "
             "modality's network, the whole budget), or the groups paper (the 2x2 ablation), "
             "balance (ensemble and each method on pretrained+attention), alone (every "
             "modality alone), all (default: {default})")

OPTIONS = (
    Option("--data", ("data.path",), "data file or folder (default: the built-in benchmark)"),
    Option("--format", ("data.format",), "data format: npz, mult, mmsa or csd (default: "
           "detect from content)"),
    Option("--out", ("out",), "run directory (default: {default})", commands=("run",)),
    Option("--seeds", ("seeds",), "seeds, one run of every arm each (default: {default})",
           int, many=True, commands=("run",)),
    Option("--arms", ("arms",), ARMS_HELP, many=True),
    Option("--epochs", ("train.epochs",), "total epoch budget per arm (and trial) "
           "(default: {default})", int),
    Option("--pretrain-epochs", ("train.pretrain_epochs",), "stage-1 epochs, part of the "
           "budget (default: {default})", int),
    Option("--lr", ("train.lr",), "learning rate (default: {default})", float),
    Option("--encoder-lr", ("train.encoder_lr",), "stage-2 encoder learning rate "
           "(default: 0, the same as --lr)", float),
    Option("--batch-size", ("train.batch_size",), "batch size (default: {default})", int),
    Option("--patience", ("train.patience",), "early-stopping patience in epochs "
           "(default: {default})", int),
    Option("--freeze-epochs", ("train.freeze_epochs",), "keep pre-trained encoders fixed "
           "this long (default: {default})", int),
    Option("--modality-dropout", ("train.modality_dropout",), "train-time modality masking "
           "rate (default: {default})", float),
    Option("--encoder", ("model.encoder",), "encoder for sequence modalities: lstm, gru, "
           "transformer, conv or mlp (default: {default})"),
    Option("--width", ("model.width",), "modality feature width m (default: {default})",
           int),
    Option("--context", ("model.context",), "context over each video's or dialogue's "
           "utterances, per modality and after fusion: none, gru, lstm or transformer (the "
           "data must give each sample's group; default: {default})"),
    Option("--context-window", ("model.context_window",), "utterances per context window: "
           "a longer group is cut into near-equal windows of at most this many (default: "
           "{default})", int),
    Option("--device", ("train.device",), "auto (a GPU when CUDA is available), cpu, cuda "
           "or cuda:N (default: {default})"),
    # No argparse choices: config.py alone checks the syntax, naming the field.
    Option("--precision", ("train.precision",), "fp32, or bf16: autocast on a GPU "
           "(default: {default})"),
    Option("--threads", ("train.threads",), "torch CPU threads per process (default: 0, "
           "meaning one each)", int),
    Option("--jobs", ("train.jobs",), "train this many independent stages at once, in "
           "worker processes (default: {default})", int, commands=("run",)),
    # A tune's workers are processes of their own; each also trains its stages one by one
    # unless train.jobs says otherwise, which is where it runs, not what it computes.
    Option("--jobs", ("train.jobs", "tune.jobs"), "worker processes on this machine "
           "(default: {default})", int, commands=("tune",)),
    Option("--trials", ("tune.trials",), "trials per arm (default: {default})", int,
           commands=("tune",)),
    Option("--design", ("tune.design",), "paired: every arm trains on each trial's "
           "configuration, pruned together; independent: one study per arm "
           "(default: {default})", commands=("tune",)),
    Option("--tune-seeds", ("tune.tune_seeds",), "seeds each trial is averaged over "
           "(default: {default})", int, many=True, commands=("tune",)),
    Option("--final-seeds", ("tune.final_seeds",), "train each arm's best config on these "
           "seeds into TUNE_DIR/final (default: none)", int, many=True, commands=("tune",)),
    Option("--storage", ("tune.storage",), "Optuna storage URL shared by every worker and "
           "machine (default: SQLite in TUNE_DIR)", commands=("tune",)),
)


def options_for(command: str) -> list[Option]:
    """The table's rows that ``command`` takes, in table order."""
    return [o for o in OPTIONS if command in o.commands]


def _default(field: str) -> str:
    value: object = RunConfig()
    for part in field.split("."):
        value = getattr(value, part)
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add every option ``command`` takes to its ``parser``."""
    for o in options_for(command):
        parser.add_argument(o.flag, type=o.type, nargs="+" if o.many else None,
                            help=o.help.format(default=_default(o.fields[0])))


def overrides(args: argparse.Namespace, command: str) -> dict[str, object]:
    """Dotted config field -> value for every option of ``command`` given in ``args``."""
    return {field: getattr(args, o.dest) for o in options_for(command)
            if getattr(args, o.dest, None) is not None for field in o.fields}


def fix_flagged(args: argparse.Namespace, config: RunConfig) -> tuple[RunConfig, list[str]]:
    """``config`` with every field that a ``tune`` flag sets taken out of the search space,
    and those fields: the flag fixes the value for every trial, as it does for a run,
    instead of being drawn over (a silent no-op) or refused."""
    given = {field for o in options_for("tune") if getattr(args, o.dest, None) is not None
             for field in o.fields}
    fixed = [field for field in config.tune.space if field in given]
    if not fixed:
        return config, []
    space = {k: v for k, v in config.tune.space.items() if k not in fixed}
    return replace(config, tune=replace(config.tune, space=space)), fixed
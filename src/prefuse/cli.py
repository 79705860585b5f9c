"""The ``prefuse`` command: ``run``, ``data synth``, and the other sub-commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import tomllib

from .config import RunConfig, SyntheticConfig, load_config, with_overrides
from .errors import ConfigError, PrefuseError

# Command-line flag -> dotted config field.
OVERRIDES = {
    "data": "data.path", "format": "data.format", "out": "out", "seeds": "seeds",
    "arms": "arms", "epochs": "train.epochs", "pretrain_epochs": "train.pretrain_epochs",
    "lr": "train.lr", "encoder_lr": "train.encoder_lr", "batch_size": "train.batch_size",
    "patience": "train.patience", "freeze_epochs": "train.freeze_epochs",
    "modality_dropout": "train.modality_dropout", "encoder": "model.encoder",
    "width": "model.width",
}


def _parse_set(items: list[str]) -> dict[str, object]:
    """``--set train.lr=0.01`` values, parsed as TOML scalars (strings may be bare)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(item, "expected KEY=VALUE")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value
    return out


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The config file (or defaults) with command-line overrides applied."""
    config = load_config(args.config) if args.config else RunConfig()
    overrides = {field: getattr(args, flag) for flag, field in OVERRIDES.items()
                 if getattr(args, flag, None) is not None}
    overrides.update(_parse_set(args.set or []))
    config = with_overrides(config, overrides) if overrides else config.validate()
    from .training.checks import check_config  # the registries: loaded only when needed

    return check_config(config, args.config)


def _say(text: str) -> None:
    """Print a line of progress or results. A reader that went away (``prefuse run |
    head``) must cost only the output: training goes on and still writes its run."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _silence_stdout()


def _silence_stdout() -> None:
    # Later prints, and Python's flush at exit, then go nowhere instead of raising again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def cmd_run(args: argparse.Namespace) -> int:
    from .analysis.report import write_report
    from .analysis.tables import ablation_table, dominant_table, robustness_table
    from .training import distributed
    from .training.experiment import run_experiment

    config = resolve_config(args)
    summary = run_experiment(config, log=_say, resume=args.resume)
    if not distributed.is_main():  # under torchrun, rank 0 speaks for all
        return 0
    write_report(config.out)
    _say(ablation_table(summary))
    for extra in (dominant_table(summary), robustness_table(summary)):
        if extra:
            _say(f"\n{extra}")
    _say(f"\nrun directory: {Path(config.out).resolve()}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .analysis.report import write_report

    for path in write_report(args.run_dir):
        print(f"wrote {path}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from .data.formats.npz import save_npz
    from .data.synthetic import make_synthetic

    dataset = make_synthetic(seed=args.seed, train=args.train, valid=args.valid, test=args.test)
    save_npz(dataset, args.out)
    print(f"wrote {args.out}: {', '.join(f'{k} {len(v)}' for k, v in dataset.splits.items())}")
    return 0


def _report_masked(masked: list[str]) -> None:
    if masked:
        print(f"the data lacks {', '.join(masked)}: masked for every sample", file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference import predict, write_predictions
    from .models.saving import load_model

    loaded = load_model(args.run_dir, args.arm)
    predictions = predict(loaded, args.data, split=args.split, format=args.format,
                          **_data_options(args))
    _report_masked(next(iter(predictions.values())).masked)
    model, task, _ = loaded
    write_predictions(predictions, task, model.spec.modalities, args.out)
    counts = ", ".join(f"{name} {len(p.ids)}" for name, p in predictions.items())
    print(f"wrote {args.out}: {counts}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .fileio import write_json
    from .inference import predict, scores

    predictions = predict(args.run_dir, args.data, split=args.split, arm=args.arm,
                          format=args.format, **_data_options(args))
    table = scores(predictions)
    _report_masked(next(iter(predictions.values())).masked)
    for name, metrics in table.items():
        print(f"{name} ({metrics['samples']} samples)")
        for key, value in metrics.items():
            if key != "samples":
                print(f"  {key:<14} {'n/a' if value is None else f'{value:.4f}'}")
    if args.out:
        write_json(args.out, table)
    return 0


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory (or a model folder)")
    p.add_argument("--data", required=True, help="data file or folder, any supported format")
    p.add_argument("--format", default="auto", help="data format (default: detect)")
    p.add_argument("--arm", help="use models/<arm>/ of the run (default: the headline model)")
    p.add_argument("--config", help="TOML config whose [data] table sets loader options "
                   "(label columns, .csd file names)")


def _data_options(args: argparse.Namespace) -> dict[str, object]:
    """Loader options from ``--config``'s ``[data]`` table (label columns, .csd names)."""
    from .data.formats import config_options

    return config_options(load_config(args.config).data) if args.config else {}


def cmd_inspect(args: argparse.Namespace) -> int:
    from .data.inspect import describe

    print(describe(args.file, args.format, **_data_options(args)))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .data.inspect import convert

    out = convert(args.file, args.out, args.format, **_data_options(args))
    print(f"wrote {out}")
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (defaults apply where it is silent)")
    p.add_argument("--data", help="data file or folder (default: the built-in benchmark)")
    p.add_argument("--format", help="data format (default: detect from content)")
    p.add_argument("--out", help="run directory")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--arms", nargs="+", help="arms to train: <init>+<fusion>[+<method>] "
                   "(e.g. scratch+concat, pretrained+attention+umt), mult, ensemble, or the "
                   "groups paper (the 2x2 ablation), balance (ensemble and each method on "
                   "pretrained+attention), all")
    p.add_argument("--epochs", type=int, help="total epoch budget per arm")
    p.add_argument("--pretrain-epochs", type=int, help="stage-1 epochs (part of the budget)")
    p.add_argument("--lr", type=float)
    p.add_argument("--encoder-lr", type=float, help="stage-2 encoder learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    p.add_argument("--freeze-epochs", type=int, help="keep pre-trained encoders fixed this long")
    p.add_argument("--modality-dropout", type=float, help="train-time modality masking rate")
    p.add_argument("--encoder", help="encoder for sequence modalities (lstm, gru, ...)")
    p.add_argument("--width", type=int, help="modality feature width m")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any config field, e.g. --set model.dropout=0.2")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefuse", description="Modality pre-training and modality attention.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train the ablation arms and write a run directory")
    _add_run_options(run)
    run.add_argument("--resume", action="store_true",
                     help="continue the interrupted run in --out (same config) from its "
                     "last checkpoint")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="write report.html and report.md for a run "
                            "directory, from its own files")
    report.add_argument("run_dir", help="a directory written by prefuse run")
    report.set_defaults(func=cmd_report)

    pred = sub.add_parser("predict", help="predict with a saved model: one row per sample")
    _add_model_options(pred)
    pred.add_argument("--split", help="only this split (default: every split in the file)")
    pred.add_argument("--out", required=True, help="predictions file, .csv or .jsonl")
    pred.set_defaults(func=cmd_predict)

    ev = sub.add_parser("evaluate", help="re-score a saved model on a data file")
    _add_model_options(ev)
    ev.add_argument("--split", default="test", help="split to score (default: test)")
    ev.add_argument("--out", help="also write the metrics here as JSON")
    ev.set_defaults(func=cmd_evaluate)

    data = sub.add_parser("data", help="data utilities").add_subparsers(dest="data_command",
                                                                       required=True)
    synth = data.add_parser("synth", help="write the built-in benchmark as generic NPZ")
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    sizes = SyntheticConfig()
    synth.add_argument("--train", type=int, default=sizes.train)
    synth.add_argument("--valid", type=int, default=sizes.valid)
    synth.add_argument("--test", type=int, default=sizes.test)
    synth.set_defaults(func=cmd_synth)

    inspect = data.add_parser("inspect", help="splits, shapes, label statistics and raw "
                              "NaN/inf/all-zero counts of a data file")
    inspect.add_argument("file", help="data file or folder")
    inspect.add_argument("--format", default="auto", help="mult, mmsa, csd or npz "
                         "(default: detect from content)")
    inspect.add_argument("--config", help="TOML config whose [data] table sets loader "
                         "options (label_columns, [data.csd] file names)")
    inspect.set_defaults(func=cmd_inspect)

    convert = data.add_parser("convert", help="write a data file in the generic NPZ layout")
    convert.add_argument("file", help="data file or folder")
    convert.add_argument("--out", required=True, help="the .npz file to write")
    convert.add_argument("--format", default="auto", help="mult, mmsa, csd or npz "
                         "(default: detect from content)")
    convert.add_argument("--config", help="TOML config whose [data] table sets loader "
                         "options (label_columns, [data.csd] file names)")
    convert.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one clear line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PrefuseError as e:
        print(f"prefuse: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader left (``prefuse data inspect X | head``): nothing is lost but output.
        _silence_stdout()
        return 0

"""The ``prefuse`` command: ``run``, ``data synth``, and the other sub-commands."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import tomllib

from . import __version__, options
from .config import RunConfig, SyntheticConfig, load_config, with_overrides
from .errors import ConfigError, OutputError, PrefuseError, PrefuseWarning
from .fileio import check_directory_writable, check_writable
from .redact import mask


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


def resolve_config(args: argparse.Namespace, check: bool = True) -> RunConfig:
    """The config file (or defaults) with command-line overrides applied, checked unless
    ``check`` is False (the caller checks it). Resuming without ``--config`` starts from
    the run's own ``config.toml``, so that ``prefuse run --resume --out DIR`` alone
    continues it."""
    out = getattr(args, "out", None)
    if args.config:
        config = load_config(args.config)
    elif getattr(args, "resume", False) and out and (Path(out) / "config.toml").is_file():
        config = load_config(Path(out) / "config.toml")
    else:
        config = RunConfig()
    overrides = options.overrides(args, args.command)
    overrides.update(_parse_set(args.set or []))
    config = with_overrides(config, overrides) if overrides else config.validate()
    if not check:
        return config
    from .recipe.checks import check_config  # the registries: loaded only when needed

    return check_config(config, args.config)


def check_tensorboard_dir(path: str) -> None:
    """Raise ``OutputError`` unless ``--tensorboard``'s ``path`` is, or can become, a
    directory, before any data is loaded. Permission bits do not tell (root passes them,
    and ``/proc`` refuses new folders to anyone), so a missing directory is really made
    and removed again."""
    target = check_directory_writable(path)
    if target.exists():
        return
    made = target
    while not made.parent.exists():
        made = made.parent
    try:
        target.mkdir(parents=True)
    except OSError as e:
        raise OutputError(target, f"cannot create this directory ({e.strerror or e})"
                          ) from None
    for folder in [target, *target.parents]:
        folder.rmdir()
        if folder == made:
            break


def _say(text: str) -> None:
    """Print a line of progress or results. A reader that went away (``prefuse run |
    head``) must cost only the output: training goes on and still writes its run."""
    try:
        print(mask(text), flush=True)
    except BrokenPipeError:
        _silence_stdout()


def _silence_stdout() -> None:
    # Later prints, and Python's flush at exit, then go nowhere instead of raising again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def cmd_run(args: argparse.Namespace) -> int:
    from .analysis.report import write_report
    from .analysis.tables import ablation_table, dominant_table, robustness_table
    from .engine import runtime
    from .runs.experiment import run_experiment
    from .runs.tensorboard import TensorBoardLog

    config = resolve_config(args)
    if args.resume and args.overwrite:
        raise ConfigError("--overwrite", "cannot be combined with --resume")
    if args.tensorboard and config.train.jobs > 1:
        # Stages trained in worker processes report their epochs to no one.
        raise ConfigError("--tensorboard", "cannot be combined with --jobs above 1 (the "
                          "workers' epochs would be missing); use --jobs 1")
    if args.tensorboard:
        check_tensorboard_dir(args.tensorboard)
    check_directory_writable(config.out)
    _interrupted_run[0] = config.out
    board = TensorBoardLog(args.tensorboard) if args.tensorboard else None
    where = runtime.resolve(config.train)
    summary = run_experiment(config, log=_say, resume=args.resume, overwrite=args.overwrite,
                             observe=board.observer() if board else None, where=where)
    if board is not None:
        board.close()
    if not where.is_main:  # under torchrun, rank 0 speaks for all
        return 0
    write_report(config.out)
    _say(ablation_table(summary))
    for extra in (dominant_table(summary), robustness_table(summary)):
        if extra:
            _say(f"\n{extra}")
    _say(f"\nrun directory: {Path(config.out).resolve()}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .recipe.checks import check_config
    from .rundir import FINAL_FOLDER
    from .tuning import tune
    from .tuning.space import fit_to_budget

    # A flag fixes its field first; the built-in space (and the base values it searches)
    # then follows the budget; only then is the config checked, so that `--epochs 12`
    # alone is not refused for the base's 15 stage-1 epochs that no trial trains with.
    config, fixed = options.fix_flagged(args, resolve_config(args, check=False))
    if fixed:
        _say(f"not searched, fixed by the command line: {', '.join(fixed)}")
    config = check_config(fit_to_budget(config), args.config)
    if args.tensorboard:
        check_tensorboard_dir(args.tensorboard)
    doc = tune(config, args.tune_dir, log=_say, tensorboard=args.tensorboard or "")
    for arm, entry in doc["arms"].items():
        best = entry.get("best")
        if best is None:
            _say(f"{arm}: no complete trial")
            continue
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in best["params"].items())
        _say(f"{arm}: best valid {entry['metric']} {best['value']:.4f} (trial "
             f"{best['number']}): {params}\n  config: {entry['config']}")
    if config.tune.final_seeds:
        from .analysis.report import write_report
        from .analysis.tables import ablation_table
        from .rundir import load_run

        run_dir = Path(args.tune_dir) / FINAL_FOLDER
        write_report(run_dir)
        _say(f"\n{ablation_table(load_run(run_dir).summary)}")
        _say(f"\nrun directory: {run_dir.resolve()}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .analysis.report import write_report
    from .replacing import recover_unheld

    recover_unheld(args.run_dir)  # what a killed --overwrite left
    for path in write_report(args.run_dir):
        print(f"wrote {path}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from .data.formats.npz import save_npz
    from .data.synthetic import make_synthetic
    from .data.synthetic_context import make_context_synthetic

    check_writable(args.out)
    sizes = {"seed": args.seed, "train": args.train, "valid": args.valid, "test": args.test}
    if args.follow is not None and not args.context:
        raise ConfigError("--follow", "applies to the context benchmark only (--context)")
    dataset = make_synthetic(**sizes) if not args.context else \
        make_context_synthetic(**sizes, follow=0.8 if args.follow is None else args.follow)
    save_npz(dataset, args.out)
    print(f"wrote {args.out}: {', '.join(f'{k} {len(v)}' for k, v in dataset.splits.items())}")
    return 0


def _report_masked(masked: list[str]) -> None:
    if masked:
        print(f"the data lacks {', '.join(masked)}: masked for every sample", file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> int:
    from .engine.runtime import device_for
    from .inference import check_prediction_path, predict, write_predictions
    from .models.saving import load_model

    check_prediction_path(args.out)
    loaded = load_model(args.run_dir, args.arm, device_for(args.device))
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

    if args.out:
        check_writable(args.out)
    predictions = predict(args.run_dir, args.data, split=args.split, arm=args.arm,
                          format=args.format, device=args.device, **_data_options(args))
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
    p.add_argument("--data", required=True, help="data file or folder, any supported format "
                   "(required)")
    p.add_argument("--format", default="auto", help="data format: npz, mult, mmsa or csd "
                   "(default: detect from content)")
    p.add_argument("--arm", help="use models/<arm>/ of the run (default: the headline model)")
    p.add_argument("--config", help="TOML config whose [data] table sets loader options "
                   "(label columns, .csd file names) (default: none)")
    p.add_argument("--device", default="auto", help="auto (a GPU when CUDA is available), "
                   "cpu, cuda or cuda:N (default: auto)")


def _data_options(args: argparse.Namespace) -> dict[str, object]:
    """Loader options from ``--config``'s ``[data]`` table (label columns, .csd names)."""
    from .data.formats import config_options

    return config_options(load_config(args.config).data) if args.config else {}


def cmd_inspect(args: argparse.Namespace) -> int:
    from .data.inspect import check_file

    report, passed = check_file(args.file, args.format, **_data_options(args))
    print(report)
    return 0 if passed else 1


def cmd_convert(args: argparse.Namespace) -> int:
    from .data.inspect import convert

    check_writable(args.out)
    out = convert(args.file, args.out, args.format, **_data_options(args))
    print(f"wrote {out}")
    return 0


def _add_config_options(p: argparse.ArgumentParser, command: str) -> None:
    """``--config``, the option table's rows for ``command`` and ``--set``."""
    p.add_argument("--config", help="TOML config file (default: none; built-in defaults apply "
                   "where it is silent; tune reads its [tune] table)")
    options.add_options(p, command)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any config field, e.g. --set model.dropout=0.2 or --set "
                   "tune.pruner=none (default: none)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` where the help does not say it already; options whose
    default comes from the config (``None`` here) say theirs in their own words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or \
                not action.option_strings:
            return text
        return super()._get_help_string(action)


def _command(sub, name: str, text: str) -> argparse.ArgumentParser:
    """A sub-command whose help lists every option's default."""
    return sub.add_parser(name, help=text, formatter_class=_HelpFormatter)


def _seed(text: str) -> int:
    value = _whole(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must lie in [0, 2**32 - 1], got {value}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefuse", description="Modality pre-training and modality attention.",
        formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"prefuse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = _command(sub, "run", "train the ablation arms and write a run directory")
    _add_config_options(run, "run")
    run.add_argument("--resume", action="store_true",
                     help="continue the interrupted run in --out (same config, same data) "
                     "from its last checkpoint")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run that --out holds (without it, a directory that "
                     "holds a run is refused)")
    run.add_argument("--tensorboard", metavar="DIR",
                     help="also write per-epoch scalars for TensorBoard into DIR (default: "
                     "none)")
    run.set_defaults(func=cmd_run)

    tune = _command(sub, "tune", "search every arm's hyper-parameters with the same "
                   "budget on the validation split (Optuna), then train the best")
    tune.add_argument("--out", dest="tune_dir", required=True, metavar="TUNE_DIR",
                      help="tune directory (study database, results, best configs); the "
                      "same command continues an interrupted tune (required)")
    _add_config_options(tune, "tune")
    tune.add_argument("--tensorboard", metavar="DIR",
                      help="also write every trial's per-epoch scalars into DIR (default: "
                      "none)")
    tune.set_defaults(func=cmd_tune)

    report = _command(sub, "report", "write report.html and report.md for a run "
                      "directory, from its own files")
    report.add_argument("run_dir", help="a directory written by prefuse run")
    report.set_defaults(func=cmd_report)

    pred = _command(sub, "predict", "predict with a saved model: one row per sample")
    _add_model_options(pred)
    pred.add_argument("--split", help="only this split (default: every split in the file)")
    pred.add_argument("--out", required=True, help="predictions file, .csv or .jsonl "
                      "(required)")
    pred.set_defaults(func=cmd_predict)

    ev = _command(sub, "evaluate", "re-score a saved model on a data file")
    _add_model_options(ev)
    ev.add_argument("--split", default="test", help="split to score (default: test)")
    ev.add_argument("--out", help="also write the metrics here as JSON (default: only print "
                    "them)")
    ev.set_defaults(func=cmd_evaluate)

    _add_data_commands(_command(sub, "data", "data utilities").add_subparsers(
        dest="data_command", required=True))
    return parser


def _add_data_commands(data) -> None:
    """``prefuse data synth``, ``inspect`` and ``convert``."""
    synth = _command(data, "synth", "write the built-in benchmark as generic NPZ")
    synth.add_argument("--out", required=True, help="the NPZ file to write (required)")
    synth.add_argument("--seed", type=_seed, default=0, help="generator seed")
    sizes = SyntheticConfig()
    synth.add_argument("--train", type=_positive, default=sizes.train, help="training samples")
    synth.add_argument("--valid", type=_positive, default=sizes.valid,
                       help="validation samples")
    synth.add_argument("--test", type=_positive, default=sizes.test, help="test samples")
    synth.add_argument("--context", action="store_true", help="the benchmark where context "
                       "matters: videos of utterances with a latent tendency, grouped")
    synth.add_argument("--follow", type=_probability, default=None,
                       help="with --context: how often an utterance's label follows its "
                       "video's tendency (default: 0.8; 0.5: independent utterances in "
                       "groups, the control where context has nothing to find)")
    synth.set_defaults(func=cmd_synth)

    inspect = _command(data, "inspect", "splits, shapes, label statistics and raw "
                       "NaN/inf/all-zero counts of a data file")
    inspect.add_argument("file", help="data file or folder")
    inspect.add_argument("--format", default="auto", help="mult, mmsa, csd or npz "
                         "(default: detect from content)")
    inspect.add_argument("--config", help="TOML config whose [data] table sets loader "
                         "options (label_columns, [data.csd] file names) (default: none)")
    inspect.set_defaults(func=cmd_inspect)

    convert = _command(data, "convert", "write a data file in the generic NPZ layout")
    convert.add_argument("file", help="data file or folder")
    convert.add_argument("--out", required=True, help="the NPZ file to write (required; "
                         "written at exactly this path, detected by content)")
    convert.add_argument("--format", default="auto", help="mult, mmsa, csd or npz "
                         "(default: detect from content)")
    convert.add_argument("--config", help="TOML config whose [data] table sets loader "
                         "options (label_columns, [data.csd] file names) (default: none)")
    convert.set_defaults(func=cmd_convert)


# The run directory of ``prefuse run``, once known: Ctrl-C says how to continue that run.
_interrupted_run: list[str] = [""]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line without a source location: they are about the user's data
    or settings, and prefuse's own file paths would only mislead."""
    kind = "" if issubclass(category, PrefuseWarning) else f"{category.__name__}: "
    try:
        print(mask(f"prefuse: warning: {kind}{message}"), file=file or sys.stderr)
    except OSError:
        pass


def _with_notes(text: str, error: BaseException) -> str:
    """``text`` followed by the notes added to ``error`` on its way up (such as that an
    ``--overwrite`` run kept the previous run)."""
    return "; ".join([text, *getattr(error, "__notes__", [])])


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one clear line and exit with status 2; Ctrl-C
    prints how to continue and exits with 130."""
    args = build_parser().parse_args(argv)
    _interrupted_run[0] = ""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except PrefuseError as e:
        print(f"prefuse: error: {mask(_with_notes(str(e), e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        out = _interrupted_run[0]
        # Only a run that got as far as recording its config can be resumed; an
        # --overwrite run put the previous run back instead, as its note says.
        hint = f"; `prefuse run --resume --out {out}` continues it" \
            if out and (Path(out) / "config.toml").is_file() else ""
        text = _with_notes("interrupted", e) if getattr(e, "__notes__", None) else \
            f"interrupted{hint}"
        print(f"prefuse: {text}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (``prefuse data inspect X | head``): nothing is lost but output.
        _silence_stdout()
        return 0


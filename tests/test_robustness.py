"""Hostile input, settings and interruptions: never a silent wrong answer, never a lost run.

Every refusal is checked for what the user sees: prefuse's own error, the file and key
named, a non-zero exit, no traceback, and nothing under an existing run directory changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from prefuse.cli import build_parser, main
from prefuse.config import RunConfig, check_modalities, load_config, with_overrides
from prefuse.data.dataset import MultimodalDataset
from prefuse.data.fingerprint import fingerprint
from prefuse.data.formats import load_dataset
from prefuse.data.formats.npz import dataset_arrays, save_npz
from prefuse.data.inspect import check_file
from prefuse.data.synthetic import make_synthetic
from prefuse.engine import fit as fit_module
from prefuse.engine.checkpoint import RunCheckpoints
from prefuse.engine.guards import check_finite
from prefuse.errors import ConfigError, DataError, OutputError, PrefuseError, RunError
from prefuse.inference import prediction_records
from prefuse.runs import experiment
from prefuse.tasks import make_task, task_for

from .conftest import CPU
from .formats_fixtures import write_csd

SIZES = ["--set", "data.synthetic.train=30", "--set", "data.synthetic.valid=12",
         "--set", "data.synthetic.test=12"]
TINY = ["--seeds", "0", "--arms", "scratch+concat", "--epochs", "2", "--pretrain-epochs", "1",
        "--width", "8", "--batch-size", "16"]


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run ``prefuse`` in-process; whatever happens, no traceback reaches the user."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return rc, out, err


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: content hash and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def small(seed: int = 0) -> MultimodalDataset:
    return make_synthetic(seed=seed, train=30, valid=12, test=12)


def write(path: Path, seed: int = 0, **changes) -> Path:
    """A small generic NPZ file; ``changes`` replace arrays (None removes one). Keys use
    ``__`` for ``/``: ``train__dominant=...``."""
    arrays = dataset_arrays(small(seed))
    for key, value in changes.items():
        key = key.replace("__", "/")
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    with open(path, "wb") as f:  # exactly this path, whatever its suffix
        np.savez(f, **arrays)
    return path


def refused(capsys, path: Path, key: str, *args) -> str:
    """``prefuse data inspect``/``run`` on a bad file: exit 2 (or 1 for inspect's
    verdict), the file and the key named."""
    rc, _, err = cli(capsys, "run", "--data", path, "--out", path.parent / "run", *TINY)
    assert rc == 2, err
    assert str(path) in err and f"[{key}]" in err, err
    assert not (path.parent / "run").exists()  # data that cannot load leaves no run
    return err


# --- group 1: silent wrong results -------------------------------------------------------

def test_binary_with_two_label_names_names_the_probability_after_class_1(tmp_path):
    path = write(tmp_path / "d.npz", meta__label_names=np.array(["negative", "positive"]))
    dataset = load_dataset(path)
    task = task_for(dataset)
    assert task.label_names == ("positive",)
    # predict's columns: the one probability P(label 1) is called prob_positive.
    from prefuse.engine.evaluation import Evaluation
    evaluation = Evaluation(predictions=np.array([1, 0]), scores=np.array([0.9, 0.2]),
                            weights=np.full((2, 3), 1 / 3), loss=None, metrics={})
    from prefuse.inference import Prediction
    records = prediction_records({"test": Prediction("test", np.array(["a", "b"]), None, [],
                                                     evaluation)}, task, dataset.modalities)
    assert records[0]["prob_positive"] == pytest.approx(0.9)
    assert "prob_negative" not in records[0]


def test_predict_with_two_binary_label_names_end_to_end(tmp_path, capsys):
    data = write(tmp_path / "d.npz", meta__label_names=np.array(["negative", "positive"]))
    assert cli(capsys, "run", "--data", data, "--out", tmp_path / "run", *TINY)[0] == 0
    rc, _, _ = cli(capsys, "predict", tmp_path / "run", "--data", data, "--split", "test",
                   "--out", tmp_path / "p.csv")
    header = (tmp_path / "p.csv").read_text().splitlines()[0].split(",")
    assert rc == 0 and [c for c in header if c.startswith("prob_")] == ["prob_positive"]


@pytest.mark.parametrize("names, key_text", [
    (["a", "b", "c"], "a binary task takes 1 name"), (["pos", "pos"], "label names repeat")])
def test_label_names_that_do_not_fit_the_task_are_refused(tmp_path, capsys, names, key_text):
    path = write(tmp_path / "d.npz", meta__label_names=np.array(names))
    assert key_text in refused(capsys, path, "meta/label_names")


def test_label_names_must_count_the_label_columns(tmp_path):
    dataset = small()
    dataset.label_names = None
    for split in dataset.splits.values():
        split.labels = split.labels.astype(np.float32)
    dataset.task, dataset.label_names = "regression", ["x", "y"]
    with pytest.raises(DataError, match=r"\[meta/label_names\]: 2 names for 1 label column"):
        dataset.validate()


def test_predict_refuses_names_that_do_not_fit_the_columns():
    task = make_task("multiclass", 3, ["a", "b"])
    from prefuse.engine.evaluation import Evaluation
    from prefuse.inference import Prediction
    evaluation = Evaluation(predictions=np.array([0]), scores=np.full((1, 3), 1 / 3),
                            weights=np.ones((1, 1)), loss=None, metrics={})
    with pytest.raises(PrefuseError, match="2 label names"):
        prediction_records({"t": Prediction("t", np.array(["a"]), None, [], evaluation)},
                           task, ["text"])


@pytest.mark.parametrize("args, field", [
    (["--lr", "nan"], "train.lr"), (["--lr", "inf"], "train.lr"),
    (["--set", "train.grad_clip=nan"], "train.grad_clip"),
    (["--set", "train.weight_decay=-inf"], "train.weight_decay"),
    (["--set", "model.dropout=nan"], "model.dropout"),
    (["--modality-dropout", "nan"], "train.modality_dropout")])
def test_non_finite_settings_are_refused(tmp_path, capsys, args, field):
    rc, _, err = cli(capsys, "run", "--out", tmp_path / "run", *TINY, *SIZES, *args)
    assert rc == 2 and f"config field '{field}': must be a finite number" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, field", [(["--seeds", "-1"], "seeds"),
                                         (["--set", "data.synthetic.seed=-3"],
                                          "data.synthetic.seed")])
def test_seeds_numpy_cannot_take_are_refused(tmp_path, capsys, args, field):
    rc, _, err = cli(capsys, "run", "--out", tmp_path / "run", *TINY, *SIZES, *args)
    assert rc == 2 and f"config field '{field}': a seed must lie in [0, 2**32 - 1]" in err


def test_non_finite_values_in_a_config_file_name_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = nan\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: config field 'train.lr'"):
        load_config(path)


def test_a_diverging_run_stops_in_the_epoch_of_its_first_non_finite_loss(tmp_path, capsys):
    rc, _, err = cli(capsys, "run", "--out", tmp_path / "run", *TINY, *SIZES, "--lr", "1e30")
    assert rc == 2
    assert "training diverged: the loss became nan in seed 0 pretrain text, epoch 1;" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("method, values", [("ogm-ge", "OGM-GE scores [nan"),
                                             ("agm", "AGM scores [nan")])
def test_a_method_that_meets_the_divergence_first_stops_the_run_alike(
        tmp_path, capsys, method, values):
    # These methods score the modalities from the losses inside the step, before the
    # epoch's loss is checked: they must stop the run with the same error, not a ValueError.
    # One step per epoch: the first step's loss is finite, the step after it is not.
    rc, _, err = cli(capsys, "run", "--out", tmp_path / "run", "--seeds", "0", "--arms",
                     f"scratch+concat+{method}", "--epochs", "2", "--pretrain-epochs", "0",
                     "--width", "8", *SIZES, "--lr", "1e30")
    assert rc == 2 and "Traceback" not in err
    assert "training diverged: a training method's values became non-finite (" in err
    assert values in err and f"in seed 0 scratch+concat+{method}, epoch 2;" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_divergence_in_a_later_arm_keeps_the_earlier_arms(tmp_path, monkeypatch, capsys):
    def poisoned(loss, where, epoch):  # the second arm's loss turns NaN at its epoch 1
        check_finite(torch.tensor(float("nan")) if "attention" in where else loss, where,
                     epoch)

    monkeypatch.setattr(fit_module, "check_finite", poisoned)
    rc, _, err = cli(capsys, "run", "--out", tmp_path / "run", *TINY[:2], "--arms",
                     "scratch+concat", "scratch+attention", *TINY[4:], *SIZES)
    assert rc == 2 and "seed 0 scratch+attention, epoch 1" in err
    assert (tmp_path / "run" / "checkpoints" / "seed0-arm-scratch+concat.done.pt").is_file()


def test_check_finite_passes_finite_losses_and_names_where():
    check_finite(torch.tensor(0.5), "x", 1)
    with pytest.raises(RunError, match="became inf in seed 3 text, epoch 7"):
        check_finite(float("inf"), "seed 3 text", 7)


def test_repeated_modality_names_are_refused(tmp_path, capsys):
    path = write(tmp_path / "d.npz", meta__modalities=np.array(["text", "audio", "text"]))
    assert "modality names repeat: text" in refused(capsys, path, "meta/modalities")


def test_a_typo_in_model_encoders_is_refused_once_the_data_is_known(tmp_path, capsys):
    data = write(tmp_path / "d.npz")
    rc, _, err = cli(capsys, "run", "--data", data, "--out", tmp_path / "run", *TINY,
                     "--set", "model.encoders.visoin=mlp")
    assert rc == 2 and "model.encoders.visoin" in err
    assert "text, audio, vision" in err and str(data) in err
    assert not (tmp_path / "run").exists()
    check_modalities(with_overrides(RunConfig(), {"model.encoders.text": "mlp"}),
                     ["text"], "x")  # a real modality passes


# --- group 2: lost work -------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run on the built-in benchmark."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", "--out", str(out), *TINY, *SIZES]) == 0
    return out


def test_a_new_run_refuses_a_finished_run(finished, capsys):
    before = snapshot(finished)
    rc, _, err = cli(capsys, "run", "--out", finished, *TINY, *SIZES, "--lr", "0.01")
    assert rc == 2 and "holds a finished run" in err and "--overwrite" in err
    # The README's "repeat a run" mistake: the saved config names the same directory.
    rc, _, err = cli(capsys, "run", "--config", finished / "config.toml")
    assert rc == 2 and "holds a finished run" in err
    assert snapshot(finished) == before


def test_repeating_a_run_from_its_config_into_a_new_directory(finished, tmp_path, capsys):
    rc, _, _ = cli(capsys, "run", "--config", finished / "config.toml", "--out",
                   tmp_path / "again")
    assert rc == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    first = json.loads((finished / "metrics.json").read_text())
    assert again["arms"]["scratch+concat"]["mean"] == first["arms"]["scratch+concat"]["mean"]


def test_overwrite_replaces_a_run_and_leaves_none_of_its_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, "run", "--out", out, *TINY, *SIZES)[0] == 0
    (out / "models" / "stale-arm").mkdir()
    rc, _, _ = cli(capsys, "run", "--out", out, *TINY, *SIZES, "--lr", "0.01", "--overwrite")
    assert rc == 0 and not (out / "models" / "stale-arm").exists()
    assert load_config(out / "config.toml").train.lr == 0.01
    rc, _, err = cli(capsys, "run", "--out", out, *TINY, *SIZES, "--overwrite", "--resume")
    assert rc == 2 and "--overwrite" in err


def test_ctrl_c_then_resume_checks_the_data_by_content(tmp_path, monkeypatch, capsys):
    data, out = write(tmp_path / "d.npz"), tmp_path / "run"
    run_seed = experiment.run_seed

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "run_seed", interrupted)
    rc, _, err = cli(capsys, "run", "--data", data, "--out", out, *TINY)
    assert rc == 130
    assert err.strip() == f"prefuse: interrupted; `prefuse run --resume --out {out}` continues it"
    monkeypatch.setattr(experiment, "run_seed", run_seed)
    before = snapshot(out)
    # A fresh run over the unfinished one is refused.
    rc, _, err = cli(capsys, "run", "--data", data, "--out", out, *TINY)
    assert rc == 2 and "holds an unfinished run (--resume continues it)" in err
    # The same file name with other data: resuming would mix two datasets.
    write(data, seed=1)
    rc, _, err = cli(capsys, "run", "--data", data, "--out", out, *TINY, "--resume")
    assert rc == 2 and "the data differs from the data the run started on" in err
    assert "train/audio changed" in err and "test/labels changed" in err
    assert snapshot(out) == before
    write(data, seed=0)  # the original data again: the run resumes and finishes
    assert cli(capsys, "run", "--resume", "--out", out)[0] == 0  # as the hint says
    assert (out / "metrics.json").is_file()


def test_fingerprint_ignores_storage_and_sees_values(tmp_path):
    a = load_dataset(save_npz(small(), tmp_path / "a.npz"))
    b = load_dataset(write(tmp_path / "b.npz"))  # stored uncompressed: same values
    assert fingerprint(a) == fingerprint(b)
    b["test"].features["text"][0, 0, 0] += 1
    assert [k for k in fingerprint(a) if fingerprint(a)[k] != fingerprint(b)[k]] == ["test/text"]


def test_resume_refuses_a_run_without_a_data_record(tmp_path):
    config = with_overrides(RunConfig(), {"out": str(tmp_path / "run")})
    RunCheckpoints(config.out, CPU).start(config, resume=False)
    with pytest.raises(RunError, match="data.json .* missing"):
        RunCheckpoints(config.out, CPU).start(config, resume=True, data=fingerprint(small()))


@pytest.mark.parametrize("key, value, message", [
    ("train__dominant", np.zeros(5, dtype=np.int64), "expected 30 modality indices"),
    ("train__dominant", np.full(30, 3), "modality indices must lie in [0, 2]"),
    ("train__dominant", np.array(["text"] * 30), "expected modality indices as integers"),
    ("train__present__audio", np.ones((30, 2), dtype=bool), "expected 30 presence flags"),
    ("train__present__audio", np.array(["yes"] * 30), "presence flags as integers"),
    ("train__present__audio", np.full(30, 2), "presence flags must be 0/1"),
])
def test_dominant_and_present_are_checked_at_load_time(tmp_path, capsys, key, value, message):
    path = write(tmp_path / "d.npz", **{key: value})
    assert message in refused(capsys, path, key.replace("__", "/"))


@pytest.mark.parametrize("command", ["predict", "evaluate", "synth", "convert"])
@pytest.mark.parametrize("where", ["directory", "under a file"])
def test_a_bad_out_is_refused_before_any_work(tmp_path, capsys, command, where):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("keep")
    out = tmp_path / "dir" if where == "directory" else tmp_path / "file" / "x.csv"
    data = write(tmp_path / "d.npz")
    # The run directory does not exist: the --out check must come first.
    args = {"predict": ["predict", tmp_path / "no-run", "--data", data],
            "evaluate": ["evaluate", tmp_path / "no-run", "--data", data],
            "synth": ["data", "synth"], "convert": ["data", "convert", data]}[command]
    rc, _, err = cli(capsys, *args, "--out", out)
    assert rc == 2 and str(out) in err
    assert ("is a directory" if where == "directory" else "is not a directory") in err
    assert (tmp_path / "file").read_text() == "keep" and not any((tmp_path / "dir").iterdir())


def test_output_errors_are_prefuse_errors(tmp_path):
    from prefuse.fileio import check_writable, write_text

    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is not a directory"):
        write_text(tmp_path / "f" / "deeper" / "out.txt", "y")
    assert check_writable(tmp_path / "new" / "a.txt") == tmp_path / "new" / "a.txt"


# --- group 3: errors naming the file and the key, never a traceback ----------------------

@pytest.mark.parametrize("key, value, message", [
    ("train__labels", np.array(1), "got a single value (0-d)"),
    ("train__labels", np.array(["pos"] * 30), "expected numeric labels"),
    ("train__lengths__text", np.array(["5"] * 30), "expected lengths as integers"),
    ("train__lengths__text", np.full(30, 2.5), "lengths must be whole numbers"),
    ("train__text", np.full((30, 4, 3), "a"), "expected numbers"),
    ("train__text", np.ones((30, 4, 3)) * (1 + 1j), "expected numbers, got dtype complex"),
    ("train__labels", np.zeros(20, dtype=np.int64), "has 20 entries, the features 30"),
])
def test_bad_arrays_name_the_file_and_key(tmp_path, capsys, key, value, message):
    path = write(tmp_path / "d.npz", **{key: value})
    assert message in refused(capsys, path, key.replace("__", "/"))


def test_format_npz_on_a_npy_file(tmp_path, capsys):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(3))
    rc, _, err = cli(capsys, "data", "inspect", path, "--format", "npz")
    assert rc == 2 and str(path) in err and "not an NPZ file" in err


def test_a_non_npz_file_never_gets_numpys_pickle_advice(tmp_path, capsys):
    path = tmp_path / "x.npz"
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle
    rc, _, err = cli(capsys, "data", "inspect", path, "--format", "npz")
    assert rc == 2 and "pickle" not in err.lower() and "not an NPZ file" in err


def test_an_hdf5_soft_link_loop_in_a_csd_file(tmp_path, capsys):
    folder = tmp_path / "mosi"
    write_csd(folder, "mosi")
    (folder / "text.csd").unlink()
    with h5py.File(folder / "text.csd", "w") as f:
        f["glove"] = h5py.SoftLink("/glove")
    rc, _, err = cli(capsys, "data", "inspect", folder)
    assert rc == 2 and str(folder / "text.csd") in err


def test_config_naming_a_directory(tmp_path, capsys):
    rc, _, err = cli(capsys, "run", "--config", tmp_path)
    assert rc == 2 and f"{tmp_path}: config field '<file>': is a directory" in err


def test_a_truncated_model_file(finished, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_bytes((finished / "model.json").read_bytes())
    (model / "model.safetensors").write_bytes((finished / "model.safetensors").read_bytes()[:99])
    rc, _, err = cli(capsys, "predict", model, "--data", write(tmp_path / "d.npz"), "--out",
                     tmp_path / "p.csv")
    assert rc == 2 and str(model / "model.safetensors") in err and "cannot load" in err
    assert not (tmp_path / "p.csv").exists()


def test_ctrl_c_before_the_run_directory_exists_gives_no_resume_hint(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setattr(experiment, "load_data", _interrupt)
    rc, _, err = cli(capsys, "run", "--out", tmp_path / "run", *TINY, *SIZES)
    assert rc == 130 and err == "prefuse: interrupted\n"


def _tensor_file(state) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("content", [b"not a tensor file", b"\x80\x04K\x01.",
                                     _tensor_file(torch.zeros(2)),
                                     _tensor_file({"model": {}})])
def test_a_foreign_checkpoint_on_resume(tmp_path, monkeypatch, capsys, content):
    out = tmp_path / "run"
    monkeypatch.setattr(experiment, "run_seed", _interrupt)
    assert cli(capsys, "run", "--out", out, *TINY, *SIZES)[0] == 130
    monkeypatch.undo()
    bad = out / "checkpoints" / "seed0-pretrain-text.done.pt"
    bad.write_bytes(content)
    rc, _, err = cli(capsys, "run", "--out", out, *TINY, *SIZES, "--resume")
    assert rc == 2 and str(bad) in err and "--overwrite" in err


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("option, value", [("--train", "-5"), ("--train", "0"),
                                           ("--train", "x"), ("--seed", "-1"),
                                           ("--seed", str(2**32))])
def test_synth_sizes_and_seed_are_checked(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as stop:
        main(["data", "synth", "--out", str(tmp_path / "s.npz"), option, value])
    assert stop.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err
    assert not (tmp_path / "s.npz").exists()


# --- group 4: messages that say what is true -----------------------------------------------

def test_npz_is_detected_by_content_and_convert_writes_the_path_given(tmp_path, capsys):
    source = write(tmp_path / "data-without-suffix")
    assert check_file(source)[1]
    rc, out, _ = cli(capsys, "data", "convert", source, "--out", tmp_path / "x")
    assert rc == 0 and out.strip() == f"wrote {tmp_path / 'x'}"
    assert cli(capsys, "data", "inspect", tmp_path / "x")[0] == 0


def test_inspect_reports_stored_dtypes_and_only_real_infinities(tmp_path, capsys):
    x = small()["train"].features["text"].astype(np.float64)
    x[0, 0, 0] = 1e39  # finite in float64, beyond float32
    path = write(tmp_path / "d.npz", train__text=x)
    rc, out, _ = cli(capsys, "data", "inspect", path)
    assert "text: shape (27, 20, 64), dtype float64; NaN 0, +inf 0" in out or \
        re.search(r"text: shape \(\d+, \d+, \d+\), dtype float64; NaN 0, \+inf 0", out)
    assert rc == 0 and "after setting non-finite values to 0" in out  # the cast overflowed
    clean = write(tmp_path / "clean.npz")
    rc, out, _ = cli(capsys, "data", "inspect", clean)
    assert rc == 0 and "validation: ok\n" in out + "\n"
    assert "after setting" not in out


def test_inspect_exits_non_zero_after_a_failed_validation(tmp_path, capsys):
    path = write(tmp_path / "d.npz", train__labels=np.full(30, 5))
    rc, out, _ = cli(capsys, "data", "inspect", path)
    assert rc == 1 and "validation: FAILED" in out


def test_warnings_are_one_line_without_source_paths(tmp_path, capsys):
    x = small()["train"].features["audio"].copy()
    x[0, 0, 0] = np.nan
    path = write(tmp_path / "d.npz", train__audio=x)
    rc, _, err = cli(capsys, "data", "convert", path, "--out", tmp_path / "c.npz")
    assert rc == 0
    assert err == (f"prefuse: warning: {path}: replaced non-finite feature values with 0 "
                   "(train/audio: 1)\n")


def test_no_reference_to_a_document_outside_the_repository():
    root = Path(__file__).parents[1]
    files = [root / "README.md", *root.glob("docs/*.md"), *root.glob("src/**/*.py"),
             *root.glob("bench/*.py"), *root.glob("tests/*.py")]
    cited = [str(p) for p in files if p.name != Path(__file__).name
             and re.search(r"DESIGN (§|section)", p.read_text(encoding="utf-8"))]
    assert cited == []


# --- group 5: warnings users need, help -------------------------------------------------

def test_single_class_training_split_warns(tmp_path, capsys):
    path = write(tmp_path / "d.npz", train__labels=np.zeros(30, dtype=np.int64))
    rc, out, err = cli(capsys, "data", "convert", path, "--out", tmp_path / "c.npz")
    assert rc == 0 and "[train/labels]: every training sample has class 0" in err


def test_a_modality_present_nowhere_and_a_one_sample_split_warn(tmp_path, capsys):
    one = {k.replace("/", "__"): v[:1] for k, v in dataset_arrays(small()).items()
           if k.startswith("test/")}
    path = write(tmp_path / "d.npz", train__present__vision=np.zeros(30, dtype=bool), **one)
    rc, _, err = cli(capsys, "data", "convert", path, "--out", tmp_path / "c.npz")
    assert rc == 0
    assert "[train/present/vision]: modality 'vision' is present in no sample of train" in err
    assert "[test]: a single sample" in err


def test_every_option_has_help_with_its_default(capsys):
    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    missing = []
    for parser in parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            text = formatter._get_help_string(action) or ""
            flag = isinstance(action, argparse._StoreTrueAction)  # off unless given
            if not (flag and text) and "default" not in text and "required" not in text:
                missing.append(f"{parser.prog} {action.option_strings[-1]}")
    assert missing == []


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert re.fullmatch(r"prefuse \d+\.\d+\.\d+\n", capsys.readouterr().out)

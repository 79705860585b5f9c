"""``prefuse run`` trains end to end on a fixture of every format (in process, tiny)."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest

from prefuse.cli import main
from prefuse.data.formats import load_dataset
from prefuse.data.inspect import convert

from .formats_fixtures import write_csd, write_mmsa, write_mult

TINY = ["--seeds", "0", "--epochs", "2", "--pretrain-epochs", "1", "--width", "8",
        "--batch-size", "32", "--arms", "pretrained+attention"]


def _mosi_npz(path):
    write_mult(path.with_suffix(".pkl"), "mosi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert(path.with_suffix(".pkl"), path)


# (fixture writer, file name, --format, extra args, metric the run must report)
CASES = {
    "mult-mosi": (lambda p: write_mult(p, "mosi"), "mosi_data.pkl", "mult", [], "acc2_non0"),
    "mult-iemocap": (lambda p: write_mult(p, "iemocap"), "iemocap_data.pkl", "mult", [],
                     "f1_Happy"),
    "mmsa-aligned": (lambda p: write_mmsa(p, "aligned"), "aligned_50.pkl", "mmsa", [],
                     "acc2_has0"),
    "csd-pom": (lambda p: write_csd(p, "pom"), "pom", "csd",
                ["--set", "data.label_columns=[0, 1, 2]"], "mae_passionate"),
    "npz": (_mosi_npz, "mosi.npz", "npz", [], "acc7"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_run_trains_on_each_format(tmp_path, capsys, case):
    write, name, fmt, extra, metric = CASES[case]
    write(tmp_path / name)
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["run", "--format", fmt, "--data", str(tmp_path / name), "--out", str(out),
                   *TINY, *extra])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["modalities"] == ["text", "audio", "vision"]
    test = summary["arms"]["pretrained+attention"]["seeds"]["0"]["test"]
    assert np.isfinite(test[metric])


def test_data_inspect_and_convert_commands(tmp_path, capsys):
    write_mult(tmp_path / "mosi_data.pkl", "mosi")
    assert main(["data", "inspect", str(tmp_path / "mosi_data.pkl")]) == 0
    report = capsys.readouterr().out
    assert "audio: shape (10, 50, 5), dtype float64; NaN 0, +inf 0, -inf 2" in report
    rc = main(["data", "convert", str(tmp_path / "mosi_data.pkl"), "--out",
               str(tmp_path / "mosi.npz")])
    err = capsys.readouterr().err
    # One line for the user, without prefuse's own source paths.
    assert "prefuse: warning: " in err and "train/audio: 2" in err and ".py:" not in err
    assert rc == 0 and (tmp_path / "mosi.npz").is_file()
    assert load_dataset(tmp_path / "mosi.npz").task == "regression"


def test_inspect_takes_loader_options_from_a_config(tmp_path, capsys):
    write_csd(tmp_path / "pom", "pom")
    config = tmp_path / "pom.toml"
    config.write_text("[data]\nlabel_columns = [0, 1]\n")
    rc = main(["data", "inspect", str(tmp_path / "pom"), "--config", str(config)])
    assert rc == 0
    out, err = capsys.readouterr()
    assert "label names: confident, passionate" in out
    assert "prefuse: warning: " in err and "left out 1 labelled segments" in err


def test_hostile_file_is_one_clear_line(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    (tmp_path / "mosi_data.pkl").write_bytes(pickle.dumps({"train": {"labels": Evil()}}))
    rc = main(["run", "--data", str(tmp_path / "mosi_data.pkl"), "--format", "mult",
               "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("prefuse: error: ") and "refused" in err
    assert "Traceback" not in err and not marker.exists()

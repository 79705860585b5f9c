"""The one option table: run and tune take the same config options, each setting its
field."""

from __future__ import annotations

import pytest

import prefuse.tuning
from prefuse.cli import main
from prefuse.options import OPTIONS, options_for


@pytest.fixture
def tuned_config(monkeypatch):
    """The config ``prefuse tune`` would search with (the search itself is skipped)."""
    seen = []

    def fake_tune(config, tune_dir, log, tensorboard):
        seen.append(config)
        return {"arms": {}}

    monkeypatch.setattr(prefuse.tuning, "tune", fake_tune)
    return seen


def _dropout_only_space(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[tune.space."model.dropout"]\nkind = "float"\nlow = 0.0\nhigh = 0.5\n')
    return str(path)


def test_tune_takes_the_run_options_and_sets_their_fields(tuned_config, tmp_path):
    assert main(["tune", "--out", str(tmp_path / "t"), "--config", _dropout_only_space(tmp_path),
                 "--width", "12", "--encoder", "gru",
                 "--epochs", "9", "--pretrain-epochs", "3", "--device", "cpu",
                 "--precision", "fp32", "--threads", "1", "--lr", "0.02",
                 "--encoder-lr", "0.001", "--batch-size", "16", "--patience", "4",
                 "--freeze-epochs", "1", "--modality-dropout", "0.25", "--jobs", "2",
                 "--trials", "7", "--tune-seeds", "3", "4", "--format", "npz",
                 "--design", "independent", "--context", "gru", "--context-window", "8"]) == 0
    (config,) = tuned_config
    m, t = config.model, config.train
    assert (m.width, m.encoder) == (12, "gru")
    assert (t.epochs, t.pretrain_epochs, t.device, t.precision, t.threads) == \
        (9, 3, "cpu", "fp32", 1)
    assert (t.lr, t.encoder_lr, t.batch_size, t.patience, t.freeze_epochs,
            t.modality_dropout) == (0.02, 0.001, 16, 4, 1, 0.25)
    assert (t.jobs, config.tune.jobs, config.tune.trials, config.tune.tune_seeds) == \
        (2, 2, 7, [3, 4])
    assert config.data.format == "npz"
    assert (config.tune.design, m.context, m.context_window) == ("independent", "gru", 8)


def test_only_the_run_directory_and_its_seeds_are_run_options_alone():
    # tune's --out is its tune directory, and its seeds are --tune-seeds/--final-seeds.
    run = {o.flag for o in options_for("run")}
    tune = {o.flag for o in options_for("tune")}
    assert run - tune == {"--out", "--seeds"}
    assert {o.flag for o in OPTIONS} == run | tune


def test_a_bad_value_given_to_tune_names_its_field_before_any_work(tuned_config, tmp_path,
                                                                   capsys):
    for args, field in ((["--width", "0"], "model.width"),
                        (["--device", "gpu"], "train.device"),
                        (["--precision", "fp16"], "train.precision"),
                        (["--encoder", "nope"], "model.encoder"),
                        (["--context", "rnn"], "model.context")):
        assert main(["tune", "--out", str(tmp_path / "t"), *args]) == 2
        err = capsys.readouterr().err
        assert f"config field '{field}'" in err and "Traceback" not in err
    assert tuned_config == [] and not (tmp_path / "t").exists()


def test_a_flag_for_a_field_the_search_draws_fixes_it(tuned_config, tmp_path, capsys):
    # The default space searches model.width and train.lr: the flags fix them for every
    # trial, as they would for a run, and the rest of the space is searched as before.
    assert main(["tune", "--out", str(tmp_path / "t"), "--width", "12", "--lr", "0.02"]) == 0
    (config,) = tuned_config
    assert config.model.width == 12 and config.train.lr == 0.02
    assert "model.width" not in config.tune.space and "train.lr" not in config.tune.space
    assert "model.dropout" in config.tune.space
    assert "not searched, fixed by the command line: train.lr, model.width" in \
        capsys.readouterr().out
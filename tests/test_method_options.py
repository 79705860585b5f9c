"""Method options and what a method needs of the data, checked before any work starts."""

from dataclasses import dataclass, fields, replace

import pytest

from prefuse.cli import main
from prefuse.data.dataset import MultimodalDataset
from prefuse.data.formats.npz import save_npz
from prefuse.errors import ConfigError
from prefuse.methods import METHODS
from prefuse.methods.base import check_bounds, check_data, option

from .conftest import mixed_dataset

TINY = ["--epochs", "4", "--set", "train.pretrain_epochs=2", "--set", "model.width=8",
        "--set", "data.synthetic.train=60", "--set", "data.synthetic.valid=30",
        "--set", "data.synthetic.test=30", "--set", "train.device=cpu"]


def _refused(capsys, argv: list[str], field: str) -> str:
    """Run the CLI; it must exit 2 with one error line naming ``field``."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prefuse: error: "), err
    assert field in lines[0], err
    return lines[0]


@pytest.mark.parametrize("arm, key, value", [
    ("umt", "weight", "-5"), ("dgl", "weight", "-4"), ("ogm-ge", "alpha", "inf"),
    ("umt", "weight", "nan"), ("umt", "weight", "inf"), ("umt", "weight", "1e308"),
    ("multiloss", "weight", "nan"), ("mmpareto", "gamma", "1e308"),
    ("gblend", "super_epoch", "0"), ("agm", "alpha", "-inf"),
])
def test_run_refuses_an_option_out_of_range_before_training(tmp_path, capsys, arm, key,
                                                             value):
    out = tmp_path / "run"
    line = _refused(capsys, ["run", "--out", str(out), "--arms", f"pretrained+attention+{arm}",
                             "--set", f"methods.{arm}.{key}={value}", *TINY],
                    f"methods.{arm}.{key}")
    assert "must lie in [" in line
    assert not out.exists()


def test_tune_refuses_an_option_out_of_range_before_its_study(tmp_path, capsys):
    out = tmp_path / "tune"
    _refused(capsys, ["tune", "--out", str(out), "--arms", "pretrained+attention+umt",
                      "--trials", "1", "--set", "methods.umt.weight=-5", *TINY],
             "methods.umt.weight")
    assert not out.exists()


@pytest.fixture
def one_modality(tmp_path):
    data = mixed_dataset()
    splits = {name: replace(split, features={"meta": split.features["meta"]}, lengths={},
                            present={})
              for name, split in data.splits.items()}
    single = MultimodalDataset(splits=splits, task=data.task, modalities=["meta"],
                               label_names=data.label_names, name="single")
    return save_npz(single, tmp_path / "single.npz")


@pytest.mark.parametrize("method", ["ogm-ge", "agm"])
def test_run_refuses_a_comparing_method_on_one_modality_before_stage_1(
        tmp_path, capsys, one_modality, method):
    out = tmp_path / "run"
    line = _refused(capsys, ["run", "--data", str(one_modality), "--out", str(out),
                             "--arms", "pretrained+attention", f"pretrained+attention+{method}",
                             *TINY], "arms")
    assert f"pretrained+attention+{method}" in line and "at least 2 modalities" in line
    assert str(one_modality) in line
    assert not out.exists()


def test_run_refuses_mult_on_one_modality_before_any_work(tmp_path, capsys, one_modality):
    # MulT's cross-modal attention pairs modalities: one modality used to end in a
    # ValueError traceback once training began.
    out = tmp_path / "run"
    line = _refused(capsys, ["run", "--data", str(one_modality), "--out", str(out),
                             "--arms", "mult", *TINY], "arms")
    assert "arm mult needs data with at least 2 modalities" in line
    assert not out.exists()


@pytest.mark.parametrize("method", ["ogm-ge", "agm"])
def test_tune_refuses_a_comparing_method_on_one_modality_before_its_study(
        tmp_path, capsys, one_modality, method):
    out = tmp_path / "tune"
    _refused(capsys, ["tune", "--out", str(out), "--data", str(one_modality), "--trials", "1",
                      "--arms", f"pretrained+attention+{method}", *TINY,
                      "--epochs", "30"], f"pretrained+attention+{method}")
    assert not out.exists()


def test_methods_that_compare_nothing_run_on_one_modality(tmp_path, one_modality):
    check_data([("pretrained+attention+umt", "umt"), ("x", "gblend")], ["meta"],
               one_modality)
    with pytest.raises(ConfigError, match=r"x: agm needs data with at least 2"):
        check_data([("x", "agm")], ["meta"], one_modality)
    check_data([("x", "agm")], ["meta", "sensor"], one_modality)


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_every_number_option_has_a_finite_range_holding_its_default_and_search(name):
    cls = METHODS.get(name)
    defaults = cls.Options()
    for f in fields(defaults):
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            continue
        low, high = f.metadata["bounds"]
        assert low <= value <= high, (name, f.name)
        if f.name in cls.search:
            assert low <= cls.search[f.name].low and cls.search[f.name].high <= high
    check_bounds(defaults, f"methods.{name}")


@dataclass
class _Options:
    weight: float = option(1.0, low=0.5, high=2.0)
    steps: int = option(3, low=1, high=5)
    flag: bool = True


@pytest.mark.parametrize("weight, steps, ok", [
    (0.5, 1, True), (2.0, 5, True), (0.49, 3, False), (2.01, 3, False),
    (float("nan"), 3, False), (1.0, 0, False), (1.0, 6, False)])
def test_bounds_are_closed_and_refuse_nan(weight, steps, ok):
    options = _Options(weight=weight, steps=steps)
    if ok:
        check_bounds(options, "methods.x")
        return
    with pytest.raises(ConfigError, match=r"methods\.x\.(weight|steps)': must lie in"):
        check_bounds(options, "methods.x")


def test_a_range_must_be_finite_and_hold_the_default():
    with pytest.raises(ValueError, match="finite"):
        option(1.0, low=0.0, high=float("inf"))
    with pytest.raises(ValueError, match="default"):
        option(5.0, low=0.0, high=1.0)


def test_a_config_file_out_of_range_is_named_with_its_field(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[methods.ogm-ge]\nalpha = nan\n", encoding="utf-8")
    out = tmp_path / "run"
    line = _refused(capsys, ["run", "--config", str(config), "--out", str(out),
                             "--arms", "pretrained+attention+ogm-ge", *TINY],
                    "methods.ogm-ge.alpha")
    assert str(config) in line and "must lie in [0.001, 100], got nan" in line
    assert not out.exists()

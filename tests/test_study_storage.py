"""A study storage that cannot be written ends in one line naming the file and why."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import pytest

from prefuse.cli import main
from prefuse.config import RunConfig
from prefuse.tuning.study import open_storage

from .test_robustness import SIZES

TUNE = [*SIZES, "--arms", "scratch+concat", "--epochs", "2", "--trials", "1"]


def tune_error(capsys, *args) -> str:
    rc = main(["tune", *map(str, args), *TUNE])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def made_db(folder) -> str:
    open_storage(RunConfig().tune, folder).engine.dispose()
    return str((folder / "study.db").resolve())


def test_a_read_only_sqlite_storage_is_named_with_the_permission(tmp_path, capsys):
    db = made_db(tmp_path / "made")
    err = tune_error(capsys, "--out", tmp_path / "t", "--storage",
                     f"sqlite:///file:{db}?mode=ro&uri=true")
    assert err.startswith(f"prefuse: error: {db}: the study database is read-only")
    assert "no permission to write it" in err and "max length" not in err


def test_an_immutable_study_db_is_named_with_the_permission(tmp_path, capsys):
    # Root writes through file modes; an immutable file stops everyone, where allowed.
    db = made_db(tmp_path / "t")
    if shutil.which("chattr") is None or \
            subprocess.run(["chattr", "+i", db], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        err = tune_error(capsys, "--out", tmp_path / "t")
    finally:
        subprocess.run(["chattr", "-i", db], check=True)
    assert err.startswith(f"prefuse: error: {db}: the study database is read-only")


def test_a_study_db_that_is_a_directory_is_named(tmp_path, capsys):
    (tmp_path / "t" / "study.db").mkdir(parents=True)
    err = tune_error(capsys, "--out", tmp_path / "t")
    assert err.strip() == f"prefuse: error: {(tmp_path / 't' / 'study.db').resolve()}: is a " \
                          "directory, not a study database; remove it, or tune into another --out"


def test_a_storage_whose_driver_is_missing_says_so(tmp_path, capsys):
    # pymysql is no dependency of prefuse nor of its tests.
    if importlib.util.find_spec("pymysql") is not None:
        pytest.skip("pymysql is installed here")
    err = tune_error(capsys, "--out", tmp_path / "t", "--storage",
                     "mysql+pymysql://prefuse:s3cret@127.0.0.1:1/prefuse")
    assert err.strip() == "prefuse: error: storage mysql+pymysql://prefuse:***@127.0.0.1:1/" \
        "prefuse: cannot open: the URL's database driver is not installed (No module named " \
        "'pymysql'); install it, or name an installed driver in the URL " \
        "(postgresql+psycopg2://, mysql+pymysql://)"

"""No secrets in messages or files: storage passwords are masked wherever they would show."""

from __future__ import annotations

import pytest

from prefuse.cli import main
from prefuse.redact import mask

from .test_robustness import SIZES


@pytest.mark.parametrize("text, urls, expected", [
    ("storage postgresql://user:s3cret@host/db: cannot open", (),
     "storage postgresql://user:***@host/db: cannot open"),
    # An unescaped "@" in the password is hidden with the rest of it.
    ("mysql+pymysql://me:p@ss@db.example:3306/x", (), "mysql+pymysql://me:***@db.example:3306/x"),
    ("postgresql://host/db?user=u&password=hunter2&sslmode=require", (),
     "postgresql://host/db?user=u&password=***&sslmode=require"),
    ("connect(password='hunter2', host='h')", (), "connect(password='***', host='h')"),
    # A driver that quotes the password on its own, URL-decoded: masked by the URL given.
    ('FATAL: no user for password "a/b"', ("postgresql://u:a%2Fb@h/db",),
     'FATAL: no user for password "***"'),
    ("failed: secret a/b at h", ("postgresql://u:a%2Fb@h/db",), "failed: secret *** at h"),
    ("sqlite:////tmp/t/study.db and http://host:8080/x", (),
     "sqlite:////tmp/t/study.db and http://host:8080/x"),
])
def test_mask_hides_every_password_and_nothing_else(text, urls, expected):
    assert mask(text, *urls) == expected


@pytest.mark.parametrize("url", ["postgresql://user:s3cretpw@127.0.0.1:1/db",
                                 "mysql+pymysql://user:s3cretpw@127.0.0.1:1/db",
                                 "postgresql://user@127.0.0.1:1/db?password=s3cretpw"])
def test_a_storage_that_cannot_be_opened_shows_no_password(tmp_path, capsys, url):
    out = tmp_path / "tune"
    rc = main(["tune", "--out", str(out), *SIZES, "--arms", "scratch+concat", "--epochs", "2",
               "--trials", "1", "--storage", url])
    captured = capsys.readouterr()
    assert rc == 2
    assert "s3cretpw" not in captured.err + captured.out
    assert captured.err.startswith("prefuse: error: storage ") and "cannot open" in captured.err
    assert "***" in captured.err and "Traceback" not in captured.err
    assert not out.exists()  # a refused tune leaves no directory behind


def test_a_tune_writes_and_prints_no_password(tmp_path, capsys):
    # SQLite passes unknown URI parameters by; a password there stands for a server's.
    out = tmp_path / "tune"
    url = f"sqlite:///file:{out / 'study.db'}?mode=rwc&password=s3cretpw&uri=true"
    out.mkdir()
    assert main(["tune", "--out", str(out), *SIZES, "--arms", "scratch+concat", "--epochs", "2",
                 "--trials", "1", "--final-seeds", "0", "--storage", url]) == 0
    captured = capsys.readouterr()
    assert "s3cretpw" not in captured.out + captured.err and "password=***" in captured.out
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {"tuning.json", "config.toml", "scratch+concat.toml"} <= {p.name for p in written}
    assert [p for p in written if b"s3cretpw" in p.read_bytes()] == []
    # A best config says what the arm computes, not where the tune ran: no storage at all.
    assert "storage =" not in (out / "best" / "scratch+concat.toml").read_text()
    assert 'password=***&uri=true"' in (out / "final" / "config.toml").read_text()

"""A small real ``prefuse run`` writes its report; the report opens in headless chromium
with every image loaded and no console errors, and its screenshot is a real page."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from prefuse.analysis import attention as att
from prefuse.cli import main
from prefuse.rundir import load_run

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

# Injected into a copy of the page: records load errors (capture phase sees failed images)
# and, once everything has loaded, every image's state into the DOM for --dump-dom.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message ||
  (e.target && e.target.tagName) || "error")), true);
window.addEventListener("load", () => {
  const images = [...document.images];
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images: images.length,
    broken: images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
    errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    code = main(["run", "--out", str(out), "--epochs", "4", "--pretrain-epochs", "2",
                 "--seeds", "0", "--width", "8", "--batch-size", "50",
                 "--set", "data.synthetic.train=100", "--set", "data.synthetic.valid=60",
                 "--set", "data.synthetic.test=60", "--set", "model.head_hidden=8"])
    assert code == 0
    return out


def test_prefuse_run_writes_the_report(real_run):
    for name in ("report.html", "report.md", "figures/convergence.png",
                 "figures/attention_means.png"):
        assert (real_run / name).stat().st_size > 0, name
    markdown = (real_run / "report.md").read_text("utf-8")
    assert "## Configuration (config.toml)" in markdown and "robustness:" in markdown


def test_attention_csv_means_match_metrics_json(real_run):
    run = load_run(real_run)
    for arm in ("scratch+attention", "pretrained+attention"):
        mean, _ = att.mean_weights(run, arm)
        expected = run.summary["arms"][arm]["mean_weights"]
        assert mean == pytest.approx(expected, abs=1e-5)


def test_stage1_history_has_train_metric(real_run):
    with open(real_run / "history.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["stage"] == "pretrain"]
    assert rows and all(0.0 <= float(r["train_metric"]) <= 1.0 for r in rows)


def test_report_rebuilds_from_the_run_directory_alone(real_run, tmp_path):
    copy = tmp_path / real_run.name  # the title names the directory
    copy.mkdir()
    for name in ("metrics.json", "history.csv", "attention.csv", "config.toml"):
        shutil.copy(real_run / name, copy / name)
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.md").read_text(encoding="utf-8") == \
        (real_run / "report.md").read_text(encoding="utf-8")


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        reason = "Debian's chromium is not installed (make test and .ci/run install it)"
        if os.environ.get("PREFUSE_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _open(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})


def _console(page: Path, tmp_path: Path) -> list[str]:
    """The console messages of ``page`` as it is."""
    result = _open(page, tmp_path, "--enable-logging=stderr", "--v=0",
                   "--virtual-time-budget=10000", "--dump-dom")
    assert "</html>" in result.stdout, result.stderr[-2000:]
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def _probe(page: Path, tmp_path: Path) -> dict:
    """Open a probed copy of ``page`` beside it (so relative paths still resolve), without
    its script-forbidding security policy, and return the probe's findings."""
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "",
                  page.read_text(encoding="utf-8"))
    probed = page.with_name(f"probed-{page.name}")
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    result = _open(probed, tmp_path, "--virtual-time-budget=10000", "--dump-dom")
    start = result.stdout.index('<pre id="probe">') + len('<pre id="probe">')
    return json.loads(result.stdout[start:result.stdout.index("</pre>", start)]
                      .replace("&quot;", '"').replace("&amp;", "&"))


def test_probe_detects_broken_images_and_console_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
                   '<img src="missing.png" alt="gone"><script>console.error("boom")</script>'
                   "</body></html>", encoding="utf-8")
    found = _probe(bad, tmp_path)
    assert found["broken"] == ["gone"] and found["errors"]
    assert any("boom" in line for line in _console(bad, tmp_path))


def test_report_renders_in_headless_chromium(real_run, tmp_path):
    page = real_run / "report.html"
    assert _console(page, tmp_path) == []
    figures = len(list((real_run / "figures").glob("*.png")))
    assert _probe(page, tmp_path) == {"images": figures, "broken": [], "errors": []}

    shot = tmp_path / "shot.png"
    _open(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 2000)
    assert len(data) > 50_000
    pixels = imread(shot)[..., :3]
    assert pixels.std() > 0.05
    assert np.mean(pixels.min(axis=-1) < 0.9) > 0.02, "the page is (nearly) blank"

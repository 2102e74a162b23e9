"""report.html and the compare page in a real headless browser (Debian's chromium): the page parses with every plot
in place, nothing is fetched or run (no console message at all), and a faulty run's finding marker is there."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import gradwise
from gradwise.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium browser (apt-get install chromium)")
FLAGS = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def browse(page: Path, *extra: str) -> tuple[str, list[str]]:
    """The DOM chromium built from the page, and the page's console messages (errors, CSP violations, logs)."""
    assert CHROMIUM is not None
    proc = subprocess.run([CHROMIUM, *FLAGS, *extra, "--dump-dom", page.resolve().as_uri()], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


def train(out: Path, *overrides: str) -> None:
    gradwise.train(overrides=["train.progress=none", f"out={out}", *overrides])


def test_the_console_check_sees_errors_and_blocked_fetches(tmp_path: Path) -> None:
    # the check below must be able to fail: a script error and a fetch the report's CSP blocks both show up
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' content=\"default-src "
                   "'none'\"></head><body><img src='http://example.com/x.png'><p>x</p></body></html>")
    _, console = browse(bad)
    assert any("Content Security Policy" in line for line in console)
    worse = tmp_path / "worse.html"
    worse.write_text("<!DOCTYPE html><html><body><script>notDefined();</script></body></html>")
    _, console = browse(worse)
    assert any("Uncaught ReferenceError" in line for line in console)


def test_faulty_run_report_in_the_browser(tmp_path: Path) -> None:
    out = tmp_path / "nan"
    train(out, "data.dataset=diabetes", "model.name=mlp", "optim.name=sgd", "optim.lr=5", "optim.momentum=0",
          "train.clip_grad=null", "schedule.name=constant", "train.batch_size=32", "train.epochs=3",
          "doctor.repair=false")
    source = (out / "report.html").read_text()
    dom, console = browse(out / "report.html")
    assert console == [], console
    n_plots = int(re.search(r"(\d+) plots\.", source).group(1))  # type: ignore[union-attr]
    # every plot the page says it has is an <svg> in the browser's DOM, with its drawing in it
    assert dom.count("<svg") == n_plots >= 4  # loss, LR, gradient norms, update ratios
    assert dom.count("<polyline") >= 3
    marker = re.search(r'<g class="finding sev-error" data-code="nonfinite_values"><title>[^<]+</title>', dom)
    assert marker is not None and "the training loss became" in marker.group(0)
    shot = tmp_path / "report.png"
    proc = subprocess.run([CHROMIUM, *FLAGS, "--window-size=1100,1400", f"--screenshot={shot}",
                           (out / "report.html").resolve().as_uri()], capture_output=True, timeout=120)
    assert proc.returncode == 0 and shot.exists() and shot.stat().st_size > 20_000  # a drawn page, not a blank


def test_compare_page_in_the_browser(tmp_path: Path) -> None:
    train(tmp_path / "a", "data.dataset=iris", "model.name=mlp", "train.epochs=2", "optim.lr=0.003")
    train(tmp_path / "b", "data.dataset=iris", "model.name=mlp", "train.epochs=2", "optim.lr=0.03")
    page = tmp_path / "cmp.html"
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(page)])
    assert exc.value.code in (0, None)
    dom, console = browse(page)
    assert console == [], console
    assert dom.count("<svg") == page.read_text().count("<svg") >= 2
    assert "<th>optim.lr</th>" in dom

"""Exit statuses (issue 18, item 2): SIGINT and SIGTERM at start-up and mid-run of `gradwise train`, and during a
`gradwise tune`, end with 128+N (130 Ctrl-C, 143 SIGTERM) and one line, never 0, never a traceback.

The signal is sent from outside, once the process says where it is: killpoint.py's `pause` writes a marker file at
the exact point (while the data loads; after an optimizer step) and waits for the signal; `gradwise tune` is
signalled once a trial's metrics.jsonl has a row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
RUN = ["data.dataset=iris", "model.name=mlp", "model.widths=[16]", "train.epochs=3", "train.batch_size=16",
       "train.threads=1", "train.progress=none"]


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {path.name} appeared: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def paused(where: str, out: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(HERE / "killpoint.py"), "pause", where, *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_start_up_exits_128_plus_n_with_one_line(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "run"
    proc = paused("startup", out, "train", *RUN)
    wait_for(out / ".paused-at-startup", proc)
    proc.send_signal(sig)
    code, _, stderr = finish(proc)
    assert code == 128 + sig, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"({sig.name})" in lines[0] and f"--resume {out}" in lines[0], stderr
    # what the stop left is a run directory --resume continues
    proc = subprocess.run([sys.executable, "-m", "gradwise.cli", "train", "--resume", str(out)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_saves_a_checkpoint_and_exits_128_plus_n(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "run"
    proc = paused("step:9", out, "train", *RUN)
    wait_for(out / ".paused-at-step-9", proc)
    proc.send_signal(sig)
    code, stdout, stderr = finish(proc)
    assert code == 128 + sig, stderr
    assert "Traceback" not in stderr and "status stopped" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "stopped" and sig.name in summary["stop_reason"]


TUNE = {
    "name": "iris-tune",
    "data": {"dataset": "iris"},
    "model": {"name": "mlp", "widths": [16]},
    "train": {"epochs": 400, "early_stopping": {"enabled": False}, "threads": 1},
    "tune": {"metric": "val_accuracy", "trials": 20, "sampler": "random", "pruner": "none",
             "space": {"optim.lr": {"low": 1.0e-3, "high": 0.3, "log": True}}},
}


def tune(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(TUNE, sort_keys=False))
    out = tmp_path / "study"
    proc = subprocess.Popen([sys.executable, "-m", "gradwise.cli", "tune", str(config), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    return proc, out


def wait_for_rows(path: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never got a row"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_tune_stopped_by_a_signal_exits_128_plus_n(tmp_path: Path, sig: signal.Signals) -> None:
    proc, out = tune(tmp_path)
    wait_for_rows(out / "trial-0000" / "metrics.jsonl", proc)
    proc.send_signal(sig)
    code, stdout, stderr = finish(proc)
    assert code == 128 + sig, stdout + stderr
    assert "Traceback" not in stderr
    assert f"interrupted by {'Ctrl-C (SIGINT)' if sig == signal.SIGINT else 'SIGTERM'}" in stdout


def test_a_tune_stopped_as_it_starts_exits_143(tmp_path: Path) -> None:
    """SIGTERM as the study starts (its directory just made, no trial running yet): 143, not a silent death."""
    proc, out = tune(tmp_path)
    wait_for(out, proc)  # the study directory: the trial loop is about to start
    proc.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(proc)
    assert code == 143, stdout + stderr
    assert "Traceback" not in stderr

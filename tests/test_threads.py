"""train.threads: auto gives way to other busy processes, a number is used as given, the caller's count comes back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gradwise
from gradwise.errors import ConfigError

QUICK = ["data.dataset=iris", "model.name=mlp", "train.epochs=1", "train.progress=none", "doctor.enabled=false"]


def test_a_number_is_used_and_the_callers_count_restored(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    run = gradwise.train(None, [*QUICK, "train.threads=1", f"out={tmp_path / 'one'}"])
    assert run.summary["threads"] == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("torch_threads", [2], indirect=True)  # other modules leave torch at one thread
def test_auto_leaves_the_core_a_busy_process_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    torch_threads: None) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    available = torch.get_num_threads()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        busy = gradwise.train(None, [*QUICK, f"out={tmp_path / 'busy'}"])
        pinned = gradwise.train(None, [*QUICK, "train.threads=all", f"out={tmp_path / 'all'}"])
    finally:
        hog.kill()
        hog.wait()
    assert busy.summary["threads"] < available  # torch's own count would fight the busy process for its core
    # the count used is recorded, so a resume (and a re-run of the stored config) computes the same way
    assert gradwise.load_config(tmp_path / "busy" / "config.yaml").train.threads == busy.summary["threads"]
    assert pinned.summary["threads"] == available
    assert torch.get_num_threads() == available


def test_auto_defers_to_omp_num_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    run = gradwise.train(None, [*QUICK, f"out={tmp_path / 'env'}"])
    assert run.summary["threads"] == before  # the user's choice for the process stands


@pytest.mark.parametrize("value", ["0", "true", "many"])
def test_bad_thread_counts_are_config_errors(value: str) -> None:
    with pytest.raises(ConfigError, match="train.threads"):
        gradwise.load_config(None, [f"train.threads={value}"])

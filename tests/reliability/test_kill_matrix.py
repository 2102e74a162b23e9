"""The kill matrix (issue 18): SIGKILL a `gradwise train` at each stage, then `--resume`: the final weights,
optimizer state and metrics equal an uninterrupted run's bit for bit.

Stages: start-up (the data loading, before any model exists), epoch 1 before the first checkpoint, mid-epoch after a
step checkpoint, and a second kill during the resume itself. The kills come from inside the process at an exact
step (tests/reliability/killpoint.py), so every run of the test hits the same point. The run has dropout, so a
resume that does not draw the same random numbers as the uninterrupted run cannot pass.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
# iris: 105 training rows, batch 16 -> 7 steps an epoch (28 in all); a step checkpoint every 3 steps
RUN = ["data.dataset=iris", "model.name=mlp", "model.widths=[32]", "model.dropout=0.3", "train.epochs=4",
       "train.batch_size=16", "train.checkpoint_every=3", "train.threads=1", "train.progress=none"]


def gw(*args: str, fault: tuple[str, str] | None = None, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    """`gradwise ARGS` in a subprocess; with `fault`, through killpoint.py (what, where)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(HERE / "killpoint.py"), *fault, *args] if fault else \
        [sys.executable, "-m", "gradwise.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def final_state(run: Path) -> dict[str, object]:
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds", None)  # wall time: the only thing that may differ
    return {"model": state["model"], "optimizer": state["optimizer"], "rows": rows,
            "test": json.loads((run / "summary.json").read_text())["test"]}


def assert_identical(a: dict[str, object], b: dict[str, object]) -> None:
    ma, mb = a["model"], b["model"]
    assert isinstance(ma, dict) and isinstance(mb, dict) and ma.keys() == mb.keys()
    for key in ma:
        assert torch.equal(ma[key], mb[key]), f"weight {key} differs"
    oa, ob = a["optimizer"]["state"], b["optimizer"]["state"]  # type: ignore[index]
    for i in oa:
        for name, value in oa[i].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(ob[i][name])), f"optimizer {i}.{name}"
    assert a["rows"] == b["rows"]
    assert a["test"] == b["test"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = gw("train", *RUN, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return final_state(out)


def killed(tmp_path: Path, where: str, *, resume: Path | None = None) -> Path:
    out = resume or tmp_path / "run"
    args = ["train", "--resume", str(out)] if resume else ["train", *RUN, "--out", str(out)]
    proc = gw(*args, fault=("kill", where))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return out


def resume(out: Path) -> None:
    proc = gw("train", "--resume", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "status completed" in proc.stdout


def test_kill_during_start_up_then_resume_is_bit_identical(tmp_path: Path, reference: dict[str, object]) -> None:
    """Killed while the data loads: the directory already holds config.yaml, so --resume takes it."""
    out = killed(tmp_path, "startup")
    assert (out / "config.yaml").exists() and not (out / "checkpoints" / "last.pt").exists()
    resume(out)
    assert_identical(final_state(out), reference)


def test_kill_in_epoch_1_before_a_checkpoint_then_resume_is_bit_identical(tmp_path: Path,
                                                                          reference: dict[str, object]) -> None:
    """No checkpoint to restore: the resume starts over and must seed as a new run does (dropout masks)."""
    out = killed(tmp_path, "step:2")
    assert not (out / "checkpoints" / "last.pt").exists()
    resume(out)
    assert_identical(final_state(out), reference)


@pytest.mark.slow
def test_kill_mid_epoch_then_resume_is_bit_identical(tmp_path: Path, reference: dict[str, object]) -> None:
    out = killed(tmp_path, "step:11")  # epoch 2; step checkpoints at 3, 6, 9 and the epoch-1 one at 7
    assert (out / "checkpoints" / "last.pt").exists()
    resume(out)
    assert_identical(final_state(out), reference)


@pytest.mark.slow
def test_kill_during_the_resume_then_resume_again_is_bit_identical(tmp_path: Path,
                                                                   reference: dict[str, object]) -> None:
    out = killed(tmp_path, "step:11")
    killed(tmp_path, "step:20", resume=out)  # the resumed run is killed in epoch 3
    resume(out)
    assert_identical(final_state(out), reference)


@pytest.mark.slow
def test_kill_during_a_resume_that_had_nothing_to_restore(tmp_path: Path, reference: dict[str, object]) -> None:
    out = killed(tmp_path, "step:2")
    killed(tmp_path, "step:5", resume=out)  # starts over, killed again before step 6's checkpoint
    resume(out)
    assert_identical(final_state(out), reference)


@pytest.mark.slow
@pytest.mark.parametrize("step", range(1, 29))
def test_kill_after_every_step_then_resume_is_bit_identical(tmp_path: Path, reference: dict[str, object],
                                                            step: int) -> None:
    """The whole matrix: a SIGKILL right after each of the run's 28 optimizer steps (before and after step and
    epoch checkpoints, in every epoch), then one --resume."""
    out = killed(tmp_path, f"step:{step}")
    resume(out)
    assert_identical(final_state(out), reference)

"""The run directory's lifecycle (issue 18, items 3-7 and 10): what `--resume` accepts and refuses, a completed run
is not trained again, `--out` is protected (non-empty refused, --overwrite, one writer at a time), unwritable
directories are one-line errors.

Every refused command must leave the directory byte for byte as it was, and the plain `--resume DIR` and `eval DIR`
must still work after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import gradwise
from gradwise.errors import CheckpointError, ConfigError

HERE = Path(__file__).resolve().parent
IRIS = ["data.dataset=iris", "model.name=mlp", "model.widths=[16]", "train.batch_size=16", "train.threads=1",
        "train.progress=none", "doctor.enabled=false"]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`gradwise ARGS` in this process: (exit status, stdout, stderr)."""
    from gradwise.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock's (it holds the pid of whoever locked the directory last)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()
            and p.name != ".lock"}


def rows(run: Path) -> list[dict[str, object]]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def stopped_mid_epoch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped by SIGTERM after step 10 (epoch 2 of 4, a mid-epoch checkpoint): the directory to resume."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(HERE / "killpoint.py"), "pause", "step:10", "train", *IRIS,
                             "train.epochs=4", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    marker = out / ".paused-at-step-10"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    marker.unlink()
    return out


@pytest.fixture
def stopped(stopped_mid_epoch: Path, tmp_path: Path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(stopped_mid_epoch, run)
    return run


# ----------------------------------------------------------------------------------- item 5: resume overrides


@pytest.mark.parametrize(("override", "key"), [
    ("model.widths=[8,8]", "model.widths"),
    ("model.dropout=0.5", "model.dropout"),
    ("data.dataset=wine", "data.dataset"),
    ("optim.name=sgd", "optim.name"),
    ("seed=7", "seed"),
    ("loss.label_smoothing=0.1", "loss.label_smoothing"),
    ("schedule.name=constant", "schedule.name"),
    ("train.batch_size=32", "train.batch_size"),  # mid-epoch: the checkpoint counts rows in steps of 16
    ("train.epochs=1", "train.epochs"),  # fewer epochs than the run already trained
])
def test_a_resume_override_that_cannot_apply_is_refused_before_anything_is_written(
        capsys: pytest.CaptureFixture[str], stopped: Path, override: str, key: str) -> None:
    before = snapshot(stopped)
    line = one_line_error(*cli(capsys, "train", "--resume", str(stopped), override)[::2])
    assert f"{key} = " in line and str(stopped) in line, line
    assert snapshot(stopped) == before  # config.yaml, checkpoints, metrics: untouched
    # the directory still resumes and evaluates
    code, out, err = cli(capsys, "train", "--resume", str(stopped))
    assert code == 0 and "status completed" in out, err
    assert [r["epoch"] for r in rows(stopped)] == [1, 2, 3, 4]
    code, _, err = cli(capsys, "eval", str(stopped))
    assert code == 0, err


def test_model_override_message_points_at_fine_tuning(capsys: pytest.CaptureFixture[str], stopped: Path) -> None:
    line = one_line_error(*cli(capsys, "train", "--resume", str(stopped), "model.dropout=0.5")[::2])
    assert f"model.pretrained={stopped}/checkpoints/best.pt" in line and "new run" in line


def test_optim_lr_on_a_resume_applies_to_the_rest_of_the_run(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    """Before: the checkpoint's optimizer state put the old LR back, so the override was silently ignored."""
    run = tmp_path / "run"
    args = [*IRIS, "schedule.name=constant", "optim.lr=0.01", "train.early_stopping.enabled=false"]
    assert cli(capsys, "train", *args, "train.epochs=2", "--out", str(run))[0] == 0
    code, _, err = cli(capsys, "train", "--resume", str(run), "train.epochs=3", "optim.lr=0.001")
    assert code == 0, err
    assert [r["lr"] for r in rows(run)] == pytest.approx([0.01, 0.01, 0.001], rel=1e-9)
    assert "lr: 0.001" in (run / "config.yaml").read_text()


def test_batch_size_may_change_at_an_epoch_boundary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli(capsys, "train", *IRIS, "train.epochs=1", "--out", str(run))[0] == 0
    code, _, err = cli(capsys, "train", "--resume", str(run), "train.epochs=2", "train.batch_size=32")
    assert code == 0, err
    assert [r["step"] for r in rows(run)] == [7, 7 + 4]  # 105 rows: 7 steps of 16, then 4 of 32


def test_the_api_refuses_the_same_overrides(stopped: Path) -> None:
    before = snapshot(stopped)
    with pytest.raises(ConfigError, match="model.dropout"):
        gradwise.train(resume=stopped, overrides=["model.dropout=0.5"])
    assert snapshot(stopped) == before


# ------------------------------------------------------------------------- item 6: a completed run is over


def test_an_early_stopped_run_is_not_trained_again(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    # min_delta larger than any gain: only epoch 1 improves, patience 1 stops after epoch 2
    args = [*IRIS, "train.epochs=20", "train.early_stopping.patience=1", "train.early_stopping.min_delta=100"]
    assert cli(capsys, "train", *args, "--out", str(run))[0] == 0
    before = snapshot(run)
    for extra in ([], ["train.epochs=50"]):  # more epochs do not revive a run early stopping ended
        code, out, err = cli(capsys, "train", "--resume", str(run), *extra)
        assert code == 0, err
        assert "is completed" in out and "not trained again" in out and "status completed" in out
        assert snapshot(run) == before
    assert len(rows(run)) == 2


def test_a_completed_run_trains_on_only_when_epochs_extend_it(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli(capsys, "train", *IRIS, "train.epochs=2", "--out", str(run))[0] == 0
    before = snapshot(run)
    code, out, _ = cli(capsys, "train", "--resume", str(run))
    assert code == 0 and "nothing to train" in out and snapshot(run) == before
    code, _, err = cli(capsys, "train", "--resume", str(run), "train.epochs=3")
    assert code == 0, err
    assert [r["epoch"] for r in rows(run)] == [1, 2, 3]


def test_a_damaged_best_pt_cannot_turn_a_completed_run_into_a_failed_one(capsys: pytest.CaptureFixture[str],
                                                                         tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*IRIS, "train.epochs=20", "train.early_stopping.patience=1", "train.early_stopping.min_delta=100"]
    assert cli(capsys, "train", *args, "--out", str(run))[0] == 0
    best = run / "checkpoints" / "best.pt"
    best.unlink()  # best.pt is a hard link to an older last.pt: replace it, as gradwise does, not write into it
    best.write_bytes(b"not a checkpoint")
    summary = (run / "summary.json").read_bytes()
    code, _, err = cli(capsys, "train", "--resume", str(run))
    assert "best.pt" in one_line_error(code, err)
    assert (run / "summary.json").read_bytes() == summary
    assert json.loads(summary)["status"] == "completed" and json.loads(summary)["test"]


def test_the_api_returns_a_completed_run_with_its_weights(tmp_path: Path) -> None:
    run = gradwise.train(None, [*IRIS, "train.epochs=2", f"out={tmp_path / 'run'}"])
    again = gradwise.train(resume=tmp_path / "run")
    assert again.status == "completed" and again.summary == run.summary and again.history == run.history
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key])


# ------------------------------------------------------------------------------------ item 10: protect --out


def test_a_new_run_into_a_run_directory_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli(capsys, "train", *IRIS, "train.epochs=1", "--out", str(run))[0] == 0
    before = snapshot(run)
    line = one_line_error(*cli(capsys, "train", *IRIS, "train.epochs=2", "--out", str(run))[::2])
    assert "is not empty" in line and f"--resume {run}" in line and "--overwrite" in line
    assert snapshot(run) == before
    with pytest.raises(ConfigError, match="overwrite=True"):
        gradwise.train(None, [*IRIS, "train.epochs=2", f"out={run}"])
    assert snapshot(run) == before


def test_overwrite_replaces_the_previous_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli(capsys, "train", *IRIS, "train.epochs=3", "--out", str(run))[0] == 0
    code, _, err = cli(capsys, "train", *IRIS, "train.epochs=1", "--out", str(run), "--overwrite")
    assert code == 0, err
    assert [r["epoch"] for r in rows(run)] == [1]  # not appended to the old run's rows
    assert json.loads((run / "summary.json").read_text())["epochs_completed"] == 1
    # the API's keyword
    again = gradwise.train(None, [*IRIS, "train.epochs=2", f"out={run}"], overwrite=True)
    assert [r["epoch"] for r in again.history] == [1, 2] and len(rows(run)) == 2


def test_overwrite_never_deletes_files_a_run_did_not_write(capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    line = one_line_error(*cli(capsys, "train", *IRIS, "train.epochs=1", "--out", str(folder), "--overwrite")[::2])
    assert "notes.txt" in line
    assert (folder / "notes.txt").read_text() == "mine"


def test_fit_refuses_a_non_empty_out(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    data = (torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    gradwise.fit(model, data, epochs=1, out=tmp_path / "run", progress="none", doctor=False)
    with pytest.raises(ConfigError, match="is not empty"):
        gradwise.fit(model, data, epochs=1, out=tmp_path / "run", progress="none", doctor=False)
    run = gradwise.fit(model, data, epochs=1, out=tmp_path / "run", progress="none", doctor=False, overwrite=True)
    assert run.status == "completed"


def test_a_second_run_or_resume_on_a_directory_being_written_is_refused(tmp_path: Path) -> None:
    """Before: two runs on one directory both exited 0 with their metrics.jsonl rows interleaved."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, str(HERE / "killpoint.py"), "pause", "step:3", "train", *IRIS,
                              "train.epochs=2", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        marker = out / ".paused-at-step-3"
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        for args in (["train", *IRIS, "--out", str(out), "--overwrite"], ["train", "--resume", str(out)]):
            second = subprocess.run([sys.executable, "-m", "gradwise.cli", *args], capture_output=True, text=True,
                                    timeout=120, env=env)
            line = one_line_error(second.returncode, second.stderr)
            assert f"pid {first.pid}" in line and str(out) in line, line
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 143
    (out / ".paused-at-step-3").unlink()
    assert [r["epoch"] for r in rows(out)] == []  # stopped in epoch 1: nothing of the second runs in it
    proc = subprocess.run([sys.executable, "-m", "gradwise.cli", "train", "--resume", str(out)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert [r["epoch"] for r in rows(out)] == [1, 2]


def test_the_lock_is_released_when_the_run_ends(tmp_path: Path) -> None:
    from gradwise.train.rundir import RunLock

    gradwise.train(None, [*IRIS, "train.epochs=1", f"out={tmp_path / 'run'}"])
    # free again once the run returned; a second holder is then told this process's pid
    with RunLock(tmp_path / "run").acquire(), pytest.raises(CheckpointError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path / "run").acquire()


# --------------------------------------------------------------------- item 7 (start-up): unwritable places


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` read-only: chmod for a normal user; root ignores modes, so a read-only bind mount."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    ok = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode == 0
    if ok and subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", str(path)], capture_output=True)
        ok = False
    if not ok:
        pytest.skip("running as root without permission to mount: cannot make a read-only directory")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], capture_output=True, check=True)


def test_out_on_a_read_only_directory_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        for out in (folder, folder / "run"):  # the directory itself, or a new one inside it
            line = one_line_error(*cli(capsys, "train", *IRIS, "train.epochs=1", "--out", str(out))[::2])
            assert "cannot be written" in line and str(out) in line, line


def test_out_naming_a_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    line = one_line_error(*cli(capsys, "train", *IRIS, "--out", str(tmp_path / "file"))[::2])
    assert "file" in line
    line = one_line_error(*cli(capsys, "train", *IRIS, "--out", str(tmp_path / "file" / "run"))[::2])
    assert str(tmp_path / "file") in line


def test_resume_on_a_read_only_directory_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli(capsys, "train", *IRIS, "train.epochs=1", "--out", str(run))[0] == 0
    with read_only(run):
        line = one_line_error(*cli(capsys, "train", "--resume", str(run), "train.epochs=2")[::2])
        assert "cannot be written" in line and str(run) in line and "copy" in line


def test_a_run_that_fails_before_training_leaves_no_directory(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    """config.yaml is written first (for --resume); a start-up error takes it away again, so the corrected command
    can use the same --out."""
    out = tmp_path / "run"
    bad = tmp_path / "rows.csv"
    bad.write_text("a,b\n1,2\n")
    code, _, err = cli(capsys, "train", f"data.dataset={bad}", "data.target=label", "--out", str(out))
    assert code == 2 and "label" in err and not out.exists(), err
    code, _, err = cli(capsys, "train", *IRIS, "train.epochs=1", "--out", str(out))
    assert code == 0, err


def test_a_run_stopped_before_its_first_checkpoint_resumes_with_any_override(tmp_path: Path) -> None:
    """Nothing was restored, so nothing can disagree: the resume is a new start with the new settings."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(HERE / "killpoint.py"), "kill", "startup", "train", *IRIS,
                           "train.epochs=1", "--out", str(out)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL
    run = gradwise.train(resume=out, overrides=["model.widths=[8]", "train.epochs=2"])
    assert run.status == "completed" and [r["epoch"] for r in run.history] == [1, 2]
    assert "- 8" in (out / "config.yaml").read_text()


def test_a_run_refused_at_fit_start_leaves_no_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An unknown early-stopping monitor is found when the fit starts (the metric names depend on the task): the
    run records nothing, so the directory goes and the corrected command can use the same --out."""
    out = tmp_path / "run"
    line = one_line_error(*cli(capsys, "train", *IRIS, "train.epochs=1", "train.early_stopping.monitor=val_acc",
                               "--out", str(out))[::2])
    assert "monitor=val_accuracy" in line and not out.exists()  # the nearest name is the suggestion
    assert cli(capsys, "train", *IRIS, "train.epochs=1", "--out", str(out))[0] == 0


def test_overwrite_replaces_a_run_that_used_trackers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """metrics.csv and tensorboard/ are files a run writes: --overwrite clears them like metrics.jsonl."""
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    assert cli(capsys, "train", *IRIS, "train.epochs=1", "track=[csv, tensorboard]", "--out", str(run))[0] == 0
    assert (run / "metrics.csv").exists() and (run / "tensorboard").is_dir()
    code, _, err = cli(capsys, "train", *IRIS, "train.epochs=1", "--out", str(run), "--overwrite")
    assert code == 0, err
    assert not (run / "metrics.csv").exists() and not (run / "tensorboard").exists()

"""A full or read-only disk during a run (issue 18, item 7).

The disk is simulated, the OS errors are real: once "full", each file gradwise opens for writing in the run
directory is /dev/full, so a write fails as it does on a full disk (torch's C++ writer says "unexpected pos 64 vs 0",
Python's file says OSError errno 28 at the flush, without a file name). A read-only disk raises the OS's EROFS where
the file is created. A read-only checkpoints/ folder is real (chmod; skipped as root, whom permissions do not stop).

Each run goes through the CLI (`gradwise.cli.main`): exit status 2, one line on stderr naming the file and the OS's
reason, no traceback; the previous checkpoint is said to be intact only when there is one; no temp file stays.
"""

from __future__ import annotations

import builtins
import errno
import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from gradwise.cli import main

# `gradwise.train` is also the name of the API function, so the modules are taken from importlib
checkpoint = importlib.import_module("gradwise.train.checkpoint")
rundir = importlib.import_module("gradwise.train.rundir")

IRIS = ["train", "data.dataset=iris", "model.name=mlp", "train.progress=none", "doctor.enabled=false"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`gradwise ARGS` in this process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as ended:
        main(args)
    return int(ended.value.code or 0), capsys.readouterr().err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def temp_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.endswith((".tmp", ".lnk")))


class Disk:
    """Makes the disk under `root` full (or read-only) from a chosen write on.

    full_at_checkpoint=N: the N-th checkpoint write finds the disk full; full_after_epoch=N: the disk fills up right
    after epoch N's row is appended to metrics.jsonl. `refuses(name)` picks the files the full disk refuses (all by
    default): e.g. only checkpoints (by far the largest file; its failed temp file is removed, so summary.json can
    then be written)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, error: int = errno.ENOSPC) -> None:
        self.root = root.resolve()
        self.error = error
        self.full = False
        self.full_at_checkpoint: int | None = None
        self.full_after_epoch: int | None = None
        self.refuses: Any = lambda name: True
        self.checkpoint_writes = 0
        self._mkstemp = tempfile.mkstemp
        monkeypatch.setattr(tempfile, "mkstemp", self.mkstemp)
        monkeypatch.setattr(rundir, "open", self.open, raising=False)  # RunDir's appends (metrics, findings)

    def _inside(self, path: Any) -> bool:
        return Path(path).resolve().is_relative_to(self.root)

    def _refused(self, name: str) -> bool:
        return self.full and self.refuses(name)

    def mkstemp(self, suffix: str | None = None, prefix: str | None = None, dir: Any = None,  # noqa: A002
                text: bool = False) -> tuple[int, str]:
        fd, name = self._mkstemp(suffix=suffix, prefix=prefix, dir=dir, text=text)
        if dir is None or not self._inside(dir):
            return fd, name
        if (prefix or "").endswith(".pt.") and suffix == ".tmp":
            self.checkpoint_writes += 1
            if self.checkpoint_writes == self.full_at_checkpoint:
                self.full = True
        if not self._refused(prefix or ""):
            return fd, name
        if self.error != errno.ENOSPC:  # read-only: the file cannot even be created
            os.close(fd)
            os.unlink(name)
            raise OSError(self.error, os.strerror(self.error), name)
        # full: the name the writer opens is /dev/full (fd stays on the unlinked temp file, so fchmod is harmless)
        os.unlink(name)
        os.symlink("/dev/full", name)
        return fd, name

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self._inside(file) and any(m in mode for m in "wax+") and self._refused(str(file)):
            if self.error != errno.ENOSPC:
                raise OSError(self.error, os.strerror(self.error), str(file))
            return builtins.open("/dev/full", mode, *args, **kwargs)
        handle = builtins.open(file, mode, *args, **kwargs)  # noqa: SIM115 - returned to the caller, who closes it
        if str(file).endswith("metrics.jsonl") and self.full_after_epoch is not None and "a" in mode:
            return _Appender(handle, self)
        return handle


class _Appender:
    """metrics.jsonl opened for an append: the disk fills up once the row of epoch `full_after_epoch` is in."""

    def __init__(self, handle: Any, disk: Disk) -> None:
        self.handle, self.disk = handle, disk

    def __enter__(self) -> _Appender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, text: str) -> int:
        n = self.handle.write(text)
        if json.loads(text).get("epoch") == self.disk.full_after_epoch:
            self.disk.full = True
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def test_a_full_disk_at_the_first_checkpoint_is_one_line_without_a_previous_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    disk = Disk(tmp_path, monkeypatch)
    disk.full_at_checkpoint = 1
    code, err = run_cli([*IRIS, "train.epochs=4", "--out", str(run)], capsys)
    line = one_line(err)
    assert code == 2
    assert f"'{run / 'checkpoints' / 'last.pt'}'" in line and "no space left on device (errno 28)" in line
    assert "unexpected pos" not in line  # torch's words for it
    assert "intact" not in line and "No checkpoint had been written yet" in line and "--resume" not in line
    # the handler's own summary.json write met the full disk too: it did not mask the error, and says so
    assert "summary.json could not record the failure either" in line
    # a new run that recorded nothing is removed (api: so the same command can run again once there is space)
    assert not run.exists() or (temp_files(run) == [] and not (run / "checkpoints" / "last.pt").exists())


def test_a_full_disk_later_keeps_the_previous_checkpoint_and_resume_continues_once_there_is_space(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    disk = Disk(tmp_path, monkeypatch)
    disk.full_at_checkpoint = 3  # one checkpoint write per epoch (best.pt is a link to it): epoch 3's
    code, err = run_cli([*IRIS, "train.epochs=6", "--out", str(run)], capsys)
    line = one_line(err)
    assert code == 2 and "no space left on device (errno 28)" in line
    assert "The previous checkpoint in 'last.pt' is intact" in line and f"--resume {run}" in line
    kept = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert kept["epoch"] == 2 and temp_files(run) == []

    disk.full, disk.full_at_checkpoint = False, None  # space freed
    code, err = run_cli(["train", "--resume", str(run), "train.progress=none"], capsys)
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 6 and summary["resumed"]


def test_the_first_refused_write_is_the_one_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    disk = Disk(tmp_path, monkeypatch)
    # full from right after epoch 2's row: epoch 2's checkpoint is refused first, then epoch 3's row; the
    # checkpoint, queued on its writer thread before the row was appended, is the error reported
    disk.full_after_epoch = 2
    code, err = run_cli([*IRIS, "train.epochs=5", "--out", str(run)], capsys)
    line = one_line(err)
    assert code == 2 and "no space left on device (errno 28)" in line
    # epoch 2's last.pt, or epoch 1's best.pt when the writer thread had not linked it yet: a checkpoint either way
    assert f"cannot write checkpoint '{run / 'checkpoints'}/" in line and "metrics.jsonl" not in line
    # the advice matches the disk: on a loaded machine epoch 1's checkpoint, written on the writer thread, may itself
    # meet the full disk, and then there is nothing to resume from
    if (run / "checkpoints" / "last.pt").exists():
        assert f"`gradwise train --resume {run}` continues from" in line
    else:
        assert "No checkpoint had been written yet" in line and "--resume" not in line
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_full_disk_at_a_metrics_row_with_no_checkpoint_pending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    disk = Disk(tmp_path, monkeypatch)
    original = rundir.RunDir.append_metrics

    # only metrics.jsonl is refused: epoch 2's checkpoint, possibly still being written, must not race it
    disk.refuses = lambda name: name.endswith("metrics.jsonl")

    def append(self: Any, row: dict[str, Any]) -> None:
        disk.full = disk.full or row["epoch"] == 3
        original(self, row)

    monkeypatch.setattr(rundir.RunDir, "append_metrics", append)
    code, err = run_cli([*IRIS, "train.epochs=5", "--out", str(run)], capsys)
    line = one_line(err)
    assert code == 2
    assert f"cannot write '{run / 'metrics.jsonl'}': no space left on device (errno 28)" in line
    assert "The previous checkpoint 'checkpoints/last.pt' is intact" in line


def test_when_only_the_checkpoint_does_not_fit_summary_json_records_the_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    disk = Disk(tmp_path, monkeypatch)
    disk.refuses = lambda name: ".pt." in name  # the temp files of checkpoints: ".last.pt.XXXXXXXX.tmp"
    disk.full_at_checkpoint = 1
    code, err = run_cli([*IRIS, "train.epochs=3", "--out", str(run)], capsys)
    line = one_line(err)
    assert code == 2 and "could not record" not in line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "no space left on device (errno 28)" in summary["error"] and "last.pt" in summary["error"]
    assert summary["epochs_completed"] <= 2  # a refused write fails the run at the next checkpoint, not later


def test_a_read_only_disk_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    disk = Disk(tmp_path, monkeypatch, error=errno.EROFS)
    disk.full_at_checkpoint = 2  # epoch 2's checkpoint: epoch 1's (and its best.pt link) were written before it
    code, err = run_cli([*IRIS, "train.epochs=5", "--out", str(run)], capsys)
    line = one_line(err)
    assert code == 2 and "read-only file system (errno 30)" in line and "last.pt" in line
    assert "The previous checkpoint in 'last.pt' is intact" in line and "remount" in line
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1


def permissions_apply() -> bool:
    """Whether a folder's missing write permission stops this process (not for root, unless it dropped
    CAP_DAC_OVERRIDE): tried, as os.geteuid() == 0 alone cannot tell."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            Path(folder, "probe").write_bytes(b"")
        except PermissionError:
            return True
        finally:
            os.chmod(folder, 0o755)
    return False


@pytest.mark.skipif(not permissions_apply(), reason="this user (root) writes into a read-only folder anyway")
def test_a_read_only_checkpoints_folder_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    original = rundir.RunDir.append_metrics

    def append(self: Any, row: dict[str, Any]) -> None:
        original(self, row)
        if row["epoch"] == 2:
            self.checkpoints.chmod(0o555)  # after epoch 1's checkpoint, before epoch 2's

    monkeypatch.setattr(rundir.RunDir, "append_metrics", append)
    try:
        code, err = run_cli([*IRIS, "train.epochs=4", "--out", str(run)], capsys)
    finally:
        (run / "checkpoints").chmod(0o755)
    line = one_line(err)
    assert code == 2 and "permission denied (errno 13)" in line.lower()
    assert f"'{run / 'checkpoints' / 'last.pt'}'" in line and "intact" in line
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert temp_files(run) == []


def test_stale_temp_files_of_a_killed_write_are_removed_on_resume_and_nothing_else(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code, err = run_cli([*IRIS, "train.epochs=2", "--out", str(run)], capsys)
    assert code == 0, err
    ckpt = run / "checkpoints"
    # what a kill -9 during a write leaves (the names tempfile.mkstemp gives), and files that are not gradwise's
    orphans = [".last.pt.k2x_9abc.tmp", ".best.pt.0a1b2c3d.lnk", ".last.pt.zz99zz99.tmp"]
    foreign = [".last.pt.notes", "mine.tmp", ".last.pt.TOOLONG123.tmp", "last.pt.backup"]
    for name in orphans + foreign:
        (ckpt / name).write_bytes(b"half a checkpoint")
    (run / ".last.pt.k2x_9abc.tmp").write_bytes(b"not in checkpoints/: not touched")
    code, err = run_cli(["train", "--resume", str(run), "train.epochs=3", "train.progress=none"], capsys)
    assert code == 0, err
    left = {p.name for p in ckpt.iterdir()}
    assert not left & set(orphans)
    assert set(foreign) <= left and (run / ".last.pt.k2x_9abc.tmp").exists()


KILLED_MID_WRITE = """
import sys, time
from pathlib import Path
import torch
save, writes = torch.save, []

def stalled(obj, f, *args, **kwargs):  # the third write of last.pt stops half-way: the process is killed there
    if ".last.pt." in str(f):
        writes.append(f)
        if len(writes) == 3:
            Path(f).write_bytes(b"half a checkpoint")
            Path(sys.argv[1]).write_text(str(f))
            time.sleep(600)
    return save(obj, f, *args, **kwargs)

torch.save = stalled
from gradwise.cli import main
main(sys.argv[2:])
"""


def test_a_kill_during_a_checkpoint_write_leaves_a_temp_file_that_resume_removes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import signal
    import subprocess
    import sys
    import time

    run, marker = tmp_path / "run", tmp_path / "writing"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(marker), *IRIS, "train.epochs=5",
                             "--out", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no write stalled"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    orphan = Path(marker.read_text())
    assert orphan.exists() and orphan.parent == run / "checkpoints" and temp_files(run) == [orphan.name]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2

    code, err = run_cli(["train", "--resume", str(run), "train.progress=none"], capsys)
    assert code == 0, err
    assert temp_files(run) == []
    assert json.loads((run / "summary.json").read_text())["epochs_completed"] == 5

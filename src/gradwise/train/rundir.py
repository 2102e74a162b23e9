"""The run directory, a documented contract that users and tools read.

    DIR/config.yaml          the resolved config (every default filled in)
    DIR/metrics.jsonl        one JSON object per epoch: epoch, step, lr, train_loss, val_loss, val_*, seconds
    DIR/findings.jsonl       the doctor's findings, one JSON object each
    DIR/summary.json         status (running|completed|stopped|failed), best/final/test metrics, wall seconds
    DIR/checkpoints/last.pt  the newest good state (model, optimizer, schedule, RNG, ...); best.pt the best one
                             (a hard link to last.pt when both hold the same epoch: gradwise only ever replaces
                             these files, so overwrite them by renaming, not by writing into them)
    DIR/steps.jsonl          the training loss (mean since the last row) and LR every train.log_every steps
    DIR/probes.jsonl         the doctor's probe measurements: per-layer gradient norm, update/weight ratio,
                             activation zero/saturation fractions
    DIR/report.html          the self-contained report (curves with the findings, metrics, config, data report)
    DIR/metrics.csv, DIR/tensorboard/, DIR/mlflow_run.json   what the trackers (track: [...]) write
    DIR/.lock                held (fcntl.flock) by the process that writes the run; it holds that process's pid

A new run needs an empty (or new) directory: `claim_run_dir` refuses a directory that holds files unless asked to
overwrite it, and locks it for as long as the run writes it, so two runs never write one directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from gradwise.errors import CheckpointError, ConfigError
from gradwise.train.checkpoint import atomic_write_json, atomic_write_text


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{name}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


class RunDir:
    """Writes the run directory. Only the main process writes (others get is_main=False and write nothing)."""

    def __init__(self, path: str | Path, is_main: bool = True) -> None:
        self.path = Path(path)
        self.is_main = is_main
        self.checkpoints = self.path / "checkpoints"
        if is_main:
            self.checkpoints.mkdir(parents=True, exist_ok=True)

    # files ----------------------------------------------------------------------------------------------
    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    def write_config(self, text: str) -> None:
        if self.is_main:
            atomic_write_text(self.path / "config.yaml", text)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl whole (used on resume, so it matches the checkpoint exactly)."""
        if self.is_main:
            atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))

    def append_metrics(self, row: dict[str, Any]) -> None:
        # no fsync: the checkpoint holds the history too, and a resume rewrites metrics.jsonl from it
        self._append("metrics.jsonl", row, sync=False)

    def append_finding(self, finding: dict[str, Any]) -> None:
        from gradwise.files import fsync_files

        self._append("findings.jsonl", finding, sync=fsync_files())  # a tuning trial's: not fsynced

    def write_findings(self, findings: list[dict[str, Any]]) -> None:
        if self.is_main:
            atomic_write_text(self.path / "findings.jsonl", "".join(json.dumps(f) + "\n" for f in findings))

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.is_main:
            atomic_write_json(self.path / "summary.json", summary)

    def _append(self, name: str, obj: dict[str, Any], sync: bool = True) -> None:
        if not self.is_main:
            return
        # one line per write, flushed (and fsynced unless asked not to): a killed run keeps every complete line
        with open(self.path / name, "a") as f:
            f.write(json.dumps(obj, default=str) + "\n")
            f.flush()
            if sync:
                os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    # bytes, line by line: one line cut short by a crash or garbled by an editor (not UTF-8, not JSON, not an
    # object) is skipped; everything else in the file is still good
    for raw in path.read_bytes().splitlines():
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_run(path: str | Path) -> dict[str, Any]:
    """Read a run directory's files (for `gradwise doctor DIR`, reports and tools)."""
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"run directory '{p}' does not exist; give a directory written by gradwise train "
                              "(it holds config.yaml and metrics.jsonl).")
    if not (p / "config.yaml").exists() and not (p / "metrics.jsonl").exists():
        raise CheckpointError(f"'{p}' is not a gradwise run directory: it has no config.yaml or metrics.jsonl.")
    summary = {}
    if (p / "summary.json").exists():
        try:
            summary = json.loads((p / "summary.json").read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            summary = {}
        if not isinstance(summary, dict):  # an edited file holding a list or a number: nothing to read from it
            summary = {}
    config = (p / "config.yaml").read_bytes().decode("utf-8", "replace") if (p / "config.yaml").exists() else ""
    return {"metrics": read_jsonl(p / "metrics.jsonl"), "findings": read_jsonl(p / "findings.jsonl"),
            "summary": summary, "config": config}


# ------------------------------------------------------------------------------ claiming and locking a directory

LOCK_FILE = ".lock"
# what a run (and the tools that add to its directory) write there: --overwrite removes these and nothing else
RUN_FILES = frozenset({
    "config.yaml", "metrics.jsonl", "findings.jsonl", "summary.json", "checkpoints", "preprocess.json",
    "preprocess.pkl", "data_report.json", "lr_find.json", "lr_find.png", "steps.jsonl", "probes.jsonl",
    "report.html", "error.txt", "export", "metrics.csv", "tensorboard", "mlflow_run.json", LOCK_FILE,
    "tokenizer.json",  # a data.text run's fitted tokenizer
})


class RunLock:
    """An exclusive fcntl.flock on DIR/.lock, held while a process writes the run directory.

    The lock goes with the process: a killed run leaves no stale lock (the file stays, unlocked). The file holds
    the holder's pid, so a refused second run can say who writes the directory.
    """

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, what: str = "run directory") -> RunLock:
        if not os.access(self.dir, os.W_OK):  # an existing writable .lock in a read-only directory would open
            raise unwritable(self.dir, PermissionError(errno.EACCES, "read-only or not writable"), what)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise unwritable(self.dir, exc, what) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise unwritable(self.dir, exc, what) from None
            holder = self.holder()
            who = f"pid {holder}" if holder else "another process"
            raise CheckpointError(f"{what} '{self.dir}' is being written by another gradwise run ({who}); two runs "
                                  "cannot share one directory. Wait for it to finish (or stop it), or give this run "
                                  "another directory.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def holder(self) -> int | None:
        """The pid written by the process that holds (or last held) the lock, if readable."""
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def unwritable(path: Path, exc: OSError, what: str = "run directory") -> ConfigError:
    """The one-line error for a directory a run cannot write (read-only, a file in the way, no permission)."""
    reason = exc.strerror or str(exc)
    return ConfigError(f"{what} '{path}' cannot be written ({reason}). Give a directory you can write to "
                       "(--out DIR); to continue a run from a read-only place, copy its directory somewhere writable "
                       "and resume the copy.")


def run_files(path: Path) -> list[str]:
    """The entries of a directory other than the lock file (what makes it "not empty" for a new run)."""
    try:
        return sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE)
    except FileNotFoundError:
        return []


def _is_run_file(name: str) -> bool:
    # atomic writes go through hidden temp files next to their target (".metrics.jsonl.x1y2.tmp")
    return name in RUN_FILES or (name.startswith(".") and name.endswith((".tmp", ".lnk")))


def clear_run_dir(path: Path) -> None:
    """Remove a previous run's files from `path` (for --overwrite), refusing when it holds anything else."""
    names = run_files(path)
    foreign = [n for n in names if not _is_run_file(n)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(f"--overwrite: '{path}' holds files a gradwise run did not write ({shown}); overwrite only "
                          "clears a run directory's own files. Give an empty or new directory, or remove them first.")
    for name in names:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def make_dir(path: Path, option: str, purpose: str, kind: str) -> None:
    """Create `path` (parents too), or a one-line ConfigError: a file in the way, a read-only disk, no permission."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} '{path}' is an existing file, not a directory; give a directory for {purpose}.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(path, exc, kind) from None


def claim_run_dir(path: Path, *, overwrite: bool = False, what: str = "--out") -> RunLock:
    """Create and lock the directory of a new run; refuse one that holds files (unless `overwrite`: cleared).

    The lock comes first, so a second run started while one writes the directory is told who holds it rather than
    that the directory is not empty. Every OSError (read-only, a file in the way) is a one-line ConfigError.
    """
    make_dir(path, what, "the run (e.g. --out runs/my-run)", "run directory")
    lock = RunLock(path).acquire()
    try:
        names = run_files(path)
        if names and not overwrite:
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            ways = ["write the new run to another directory",
                    "replace the old one with --overwrite (gradwise.train/fit: overwrite=True)"]
            if (path / "config.yaml").exists():
                ways.insert(0, f"continue that run with `gradwise train --resume {path}`")
            raise ConfigError(f"{what} '{path}' is not empty (it holds {shown}): a new run would mix its files with "
                              f"what is there. {ways[0][0].upper()}{ways[0][1:]}, {', or '.join(ways[1:])}.")
        if names:
            try:
                clear_run_dir(path)
            except OSError as exc:
                raise unwritable(path, exc) from None
    except BaseException:
        lock.release()
        raise
    return lock

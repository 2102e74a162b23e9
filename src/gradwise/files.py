"""Atomic file writes (temp file, fsync, rename) and the JSON encoder of run directories.

A neutral module: the data layer (fitted preprocessing, tokenizers) and the training loop (checkpoints, metrics)
both write files that must survive a crash half-way, and the data layer must not import the loop to do it.
`gradwise.train.checkpoint` re-exports these names for older imports."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once, at import: os.umask can only be read by setting it, which is not safe once writer threads run
_FILE_MODE = 0o666 & ~_read_umask()


# False inside `unsynced()`: a tuning trial's small files (gradwise.train.trial) are renamed into place whole but not
# fsynced, since the study's record is its Optuna storage. A context variable, so the data layer and the loop share
# it without importing each other; other threads see the default (fsync).
_FSYNC: contextvars.ContextVar[bool] = contextvars.ContextVar("gradwise_fsync", default=True)


@contextlib.contextmanager
def unsynced() -> Iterator[None]:
    """Within the block, atomic writes that do not ask for `sync=True` skip fsync (still atomic: temp + rename)."""
    token = _FSYNC.set(False)
    try:
        yield
    finally:
        _FSYNC.reset(token)


def fsync_files() -> bool:
    """Whether atomic writes without an explicit `sync` are fsynced here (not inside `unsynced()`)."""
    return _FSYNC.get()


def atomic_write_file(path: Path, fill: Callable[[str], Any], sync: bool | None = None) -> None:
    """Call fill(temp_name) to write a temp file next to `path`, fsync it, rename it over `path`, fsync the folder.

    A crash at any point leaves `path` as it was (or as the new content, complete); the temp file never stays.
    ``sync=None``: fsync unless inside `unsynced()` (a tuning trial's small files); checkpoints pass sync=True."""
    if sync is None:
        sync = _FSYNC.get()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, _FILE_MODE)  # mkstemp makes the file private (0600); a run directory's files follow the umask
        finally:
            os.close(fd)
        fill(tmp)
        if sync:
            fd = os.open(tmp, os.O_RDONLY)  # fsync flushes the file's data whichever descriptor asks
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync:
        _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, write: Callable[[Any], Any]) -> None:
    """Call write(fileobj) on a temp file next to `path`, fsync, then rename over `path`."""
    def fill(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write(f)

    atomic_write_file(path, fill)


def _fsync_dir(path: Path) -> None:
    """fsync a directory so a rename in it survives a power cut."""
    try:
        dfd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)

"""Checkpoints: atomic writes, every RNG state, and loading with weights_only=True.

A checkpoint is a plain dict of tensors and primitives so that `torch.load(weights_only=True)` can read it
(no pickled code runs on load). Writes go to a temp file in the same directory, are fsynced, then renamed over
the target: a crash mid-write leaves the previous checkpoint intact.

Writing happens on a background thread (CheckpointWriter): the training loop only pays for copying the state to
host memory, not for pickling, writing and fsync. On a small model an epoch takes tens of milliseconds and a
synchronous checkpoint every epoch would add about a tenth to it.

The thread still costs the loop something on a small state: torch releases the GIL inside every op, and when an op
returns while the writer holds the GIL (pickling ~30 small tensors and their metadata is ~0.6 ms of Python), the
loop waits. For large tensors the write itself runs without the GIL. A forked writer process with a shared-memory
staging buffer was measured against this thread (MLP on MNIST-1D, 32 ms epochs, 2 cores): it saved ~0.9 ms per
checkpoint but added ~5 ms of fork per fit and a slower first write, so it won ~1% on a 30-epoch run and nothing
at 20 epochs. Not worth forking from library code (threads, CUDA contexts, fork-unsafe platforms). A spawned helper
process (a clean interpreter fed the state over a pipe as raw buffers plus a C-pickled skeleton, started once per
process) was measured too: it took the checkpoint's cost to the loop from ~1.6 to ~1.0 ms per epoch (the rest is the
state capture, the pipe copy and CPU contention on 2 cores), for a second process importing torch (~250 MB) that
every user would see. Not kept either. What was kept: torch.save given a file name (its C++ writer, no Python
call per record), each history row encoded once, the Python RNG state converted only when it changed, and CPU
snapshots by clone: the loop's share of a checkpoint went from ~0.25 to ~0.14 ms.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import re
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradwise.errors import CheckpointError

# re-exported: the atomic writers moved to gradwise.files (the data layer uses them too)
from gradwise.files import (  # noqa: F401
    _FILE_MODE,
    _fsync_dir,
    atomic_write_bytes,
    atomic_write_file,
    atomic_write_json,
    atomic_write_text,
    json_default,
)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    return {
        "python": _py_state_to_plain(random.getstate()),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_py_state_from_plain(state["python"]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_py_internal_cache: tuple[tuple, torch.Tensor] | None = None


def _py_state_to_plain(s: tuple) -> list:
    """Python's RNG state as [version, int64 tensor of its 625 words, gauss]."""
    global _py_internal_cache
    version, internal, gauss = s
    # Converting 625 ints costs ~30 us per checkpoint; a fit rarely draws from `random`, so the state is usually the
    # one converted last time (comparing the tuples costs ~1 us). The tensor is never written to: snapshot copies it.
    cached = _py_internal_cache
    if cached is None or cached[0] != internal:
        cached = _py_internal_cache = (internal, torch.tensor(internal, dtype=torch.int64))
    return [version, cached[1], gauss]


def _py_state_from_plain(s: list) -> tuple:
    version, internal, gauss = s
    return (version, tuple(int(v) for v in internal.tolist()), gauss)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict[str, Any], also: list[Path] | tuple[Path, ...] = ()) -> None:
    """Write `state` to `path` atomically; each path in `also` then names the same content (best.pt = last.pt).

    A write the disk refuses (full, read-only, not permitted) is a DiskWriteError naming the file and the OS's
    reason; the file keeps its previous content and no temp file stays."""
    try:
        atomic_write_file(path, lambda tmp: _torch_save(state, tmp), sync=True)
    except OSError as exc:
        raise disk_error(exc, path, checkpoint=True) from exc
    for other in also:
        try:
            atomic_link(path, other)
        except OSError as exc:
            raise disk_error(exc, other, checkpoint=True) from exc


def _torch_save(state: dict[str, Any], tmp: str) -> None:
    # torch.save given a file name writes through its C++ file writer; given a Python file object it calls back into
    # Python for every record (~0.1 ms more per checkpoint with the GIL held, which the loop waits for)
    try:
        torch.save(state, tmp)
    except RuntimeError:
        # The C++ writer drops the OS's reason: a full disk reads "[enforce fail at inline_container.cc] unexpected
        # pos 64 vs 0". Written again through a Python file, the OS error itself (errno 28, ...) is raised, or, if the
        # fault was passing, the checkpoint is written after all.
        with open(tmp, "wb") as f:
            torch.save(state, f)


# what a user can do about each kind of refused write
_DISK_HINTS = {errno.ENOSPC: "free space on that disk", errno.EDQUOT: "free space or raise your disk quota",
               errno.EROFS: "remount that disk read-write or train into a directory on another disk",
               errno.EACCES: "make the run directory writable (chmod/chown) or train into another directory",
               errno.EPERM: "make the run directory writable (chmod/chown) or train into another directory"}
DISK_ERRNOS = frozenset(_DISK_HINTS) | {errno.EIO, errno.EFBIG}


class DiskWriteError(CheckpointError, OSError):
    """A file of the run directory could not be written: the disk is full, read-only or not writable.

    `path` is the file, `os_error` what the OS said. A CheckpointError (the CLI prints it as one line, exit status 2)
    and still an OSError, so code that caught the OS's error from a write keeps catching it."""

    def __init__(self, message: str, path: Path, os_error: OSError) -> None:
        super().__init__(message)
        self.path, self.os_error = path, os_error


def describe_os_error(exc: OSError) -> str:
    """'no space left on device (errno 28)': the OS's own words, lower-case, with the errno to search for."""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    return f"{reason[:1].lower()}{reason[1:]} (errno {exc.errno})" if exc.errno else reason


def disk_error(exc: OSError, path: Path, *, checkpoint: bool = False, last: Path | None = None) -> DiskWriteError:
    """The one-line error for a refused write of `path`: which file, the OS's reason, what is still safe on disk
    and how to go on. `checkpoint`: `path` is a checkpoint in DIR/checkpoints/ (its previous content, if any, is
    intact); `last`: the run's last.pt, named as the state a resume continues from when it exists."""
    hint = _DISK_HINTS.get(exc.errno or 0, "check that disk")
    if checkpoint:
        what, run_dir, last = f"cannot write checkpoint '{path}'", path.parent.parent, path.parent / "last.pt"
    elif path.is_dir():  # a write to an open file says no name (a full disk): the run directory is what is written
        what, run_dir = f"cannot write into the run directory '{path}'", path
    else:
        what, run_dir = f"cannot write '{path}'", path.parent
    resumable = last is not None and last.exists()
    if checkpoint and path == last:
        kept = "The previous checkpoint in 'last.pt' is intact" if resumable else "No checkpoint had been written yet"
    elif checkpoint:  # best.pt: last.pt holds the newest state whatever became of this one
        kept = f"The previous '{path.name}' is intact" if path.exists() else f"No earlier '{path.name}' exists"
    else:
        kept = "The previous checkpoint 'checkpoints/last.pt' is intact" if resumable else ""
    if resumable:
        source = "it" if path == last else "'checkpoints/last.pt'"
        then = f"{hint}, then `gradwise train --resume {run_dir}` continues from {source}."
    else:
        then = f"{hint} and train again (there is no checkpoint to resume from)."
    if kept:
        return DiskWriteError(f"{what}: {describe_os_error(exc)}. {kept}; {then}", path, exc)
    return DiskWriteError(f"{what}: {describe_os_error(exc)}. {then[:1].upper()}{then[1:]}", path, exc)


def is_disk_error(exc: BaseException) -> bool:
    """An OS error that says the disk refused a write (full, read-only, not permitted, failing)."""
    return isinstance(exc, DiskWriteError) or (isinstance(exc, OSError) and exc.errno in DISK_ERRNOS)


# the temp names atomic_write_file and atomic_link give (tempfile.mkstemp: 8 characters of [a-z0-9_])
_TEMP_NAME = re.compile(r"^\..+\.pt\.[a-z0-9_]{8}\.(tmp|lnk)$")


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove the temp files a process killed mid-write left in a run's checkpoints/ folder; returns them.

    Only gradwise's own names (`.last.pt.XXXXXXXX.tmp`, `.best.pt.XXXXXXXX.lnk`, ...) and only in `folder`: a file
    of the user's is never touched. Call it only while no other process writes the folder (the run holds it)."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no folder yet, or not readable: nothing of ours to remove
        return removed
    for entry in entries:
        if _TEMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):  # a read-only folder keeps them; the run then fails on its own write
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def atomic_link(src: Path, dst: Path) -> None:
    """Make `dst` a second name for `src`'s current content, replacing `dst` atomically.

    A hard link costs no serialization and no copy. It is safe because gradwise never changes a checkpoint in
    place: the next write of `src` renames a new file over it and `dst` keeps the old content. (Tools that write
    into an existing file -- `cp new.pt last.pt`, `rsync --inplace` -- change both names; replace the file instead.)
    Where the file system has no hard links, the bytes are copied (atomically, like any other write).
    """
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".lnk")
    os.close(fd)
    os.unlink(tmp)  # the name is ours; os.link needs it free
    try:
        os.link(src, tmp)
    except OSError:
        with open(src, "rb") as source:  # streamed: a large checkpoint is not read into memory
            atomic_write_bytes(dst, lambda f: shutil.copyfileobj(source, f, 1 << 20))
        return
    try:
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(dst.parent)


def snapshot(obj: Any) -> Any:
    """A copy of a nested state (dicts, lists, tensors, primitives) in host memory that later steps cannot change."""
    if isinstance(obj, torch.Tensor):
        if obj.is_cpu:  # clone is ~1 us per tensor cheaper than .to("cpu", copy=True), and a checkpoint has dozens
            return obj.detach().clone() if obj.requires_grad else obj.clone()
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        items = [snapshot(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


class CheckpointWriter:
    """Writes checkpoints in order on one background thread; `flush()` waits until every write is on disk.

    The state is snapshotted before `save` returns. One write is in flight at a time: `save` first waits for the
    previous one, so a loop that checkpoints faster than the disk can write slows down instead of piling up copies
    in memory, and a failed write is raised by the very next `save` (or `flush`) as a CheckpointError.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="gradwise-checkpoint")
        self._pending: list[tuple[Path, Future[None]]] = []

    def save(self, path: Path, state: dict[str, Any], also: list[Path] | tuple[Path, ...] = ()) -> None:
        state = snapshot(state)
        if self._pool is None:  # closed (the fit is over): write in the caller's thread
            save_checkpoint(path, state, also)
            return
        # a write that already failed fails the run now, not two checkpoints later: on a full disk every further
        # epoch would be trained for nothing
        while self._pending:
            self._wait(self._pending.pop(0))
        self._pending.append((path, self._pool.submit(save_checkpoint, path, state, tuple(also))))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        errors = []
        for item in pending:
            try:
                self._wait(item)
            except CheckpointError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    @staticmethod
    def _wait(item: tuple[Path, Future[None]]) -> None:
        path, future = item
        try:
            future.result()
        except CheckpointError:
            raise  # a refused write, already said in one line (save_checkpoint)
        except Exception as exc:
            kept = "the previous checkpoint is intact" if path.exists() else "no earlier checkpoint exists"
            raise CheckpointError(f"writing checkpoint '{path}' failed ({type(exc).__name__}: {exc}); {kept}."
                                  ) from exc


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist. A run directory keeps its checkpoints in "
                              "DIR/checkpoints/; check the path (the run may have been stopped before its first "
                              "checkpoint).")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and what to do
        # not torch's text: it advises weights_only=False, i.e. letting the file run code
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({type(exc).__name__}): it is damaged or not a "
                              "gradwise checkpoint. Resume from another run directory or start again.") from None


def load_training_state(path: Path) -> dict[str, Any]:
    """A checkpoint to resume from: load_checkpoint, then refused as one CheckpointError naming the file when it is
    not a whole training state (a list, another tool's dict, a weights-only file, a damaged field)."""
    state = load_checkpoint(path)
    check_training_state(state, path)
    return state


def check_training_state(state: Any, path: Path) -> None:
    """Raise a one-line CheckpointError naming `path` when `state` is not a training state gradwise can resume."""
    problem = training_state_problem(state)
    if problem is not None:
        raise CheckpointError(f"checkpoint '{path}' cannot be resumed: {problem}. It is damaged, cut short or not a "
                              "training state gradwise wrote; resume from the run directory that wrote it, or start "
                              "the run again in a new directory.")


def training_state_problem(state: Any) -> str | None:
    """What makes `state` (a loaded checkpoint) unfit to resume from, or None: each field a resume reads, checked
    for its type and shape without changing anything (the random-number state is tried on the real generators and
    put back). Whether the weights and the optimizer fit a given model is checked where the model is known
    (load_weights_into, the trainer)."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a training state (a dict)"
    required = ("model", "optimizer", "schedule", "epoch", "step", "batch_in_epoch", "loss_sum", "loss_count",
                "callbacks", "rng")
    missing = [k for k in required if k not in state]
    if "history_json" not in state and "history" not in state:  # checkpoints before the JSON encoding: "history"
        missing.append("history_json")
    if missing:
        return f"it has no {', '.join(repr(k) for k in missing)}"
    weights = state["model"]
    if not isinstance(weights, dict) or not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        return "its 'model' is not a state_dict of tensors"
    for key in ("epoch", "step", "batch_in_epoch", "loss_count"):
        if type(state[key]) is not int or state[key] < 0:
            return f"its {key!r} is {_echo(state[key])}, not a whole number >= 0"
    if state["batch_in_epoch"] > state["step"]:
        return f"its 'batch_in_epoch' ({state['batch_in_epoch']}) is more than its 'step' ({state['step']})"
    if not _is_number(state["loss_sum"]):
        return f"its 'loss_sum' is {_echo(state['loss_sum'])}, not a number"
    losses, sizes = state.get("step_losses", []), state.get("step_sizes", [])
    if not (isinstance(losses, list) and all(_is_number(v) for v in losses)
            and isinstance(sizes, list) and all(type(v) is int for v in sizes) and len(losses) == len(sizes)):
        return "its 'step_losses' and 'step_sizes' are not two lists of numbers of one length"
    for key, legacy in (("history_json", "history"), ("actions_json", "actions")):
        try:
            rows = json.loads(state[key]) if key in state else state.get(legacy, [])
        except (TypeError, ValueError):
            return f"its {key!r} is not JSON"
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return f"its {key!r} is not a list of rows"
    opt = state["optimizer"]
    if not isinstance(opt, dict) or not isinstance(opt.get("state"), dict) \
            or not isinstance(opt.get("param_groups"), list) \
            or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"]):
        return "its 'optimizer' is not an optimizer's state"
    if not isinstance(state["schedule"], dict) or not isinstance(state["schedule"].get("scheduler"), dict):
        return "its 'schedule' is not an LR schedule's state"
    if state.get("scaler") is not None and not isinstance(state["scaler"], dict):
        return "its 'scaler' is not a loss scaler's state"
    if not isinstance(state["callbacks"], dict):
        return "its 'callbacks' is not a dict of callback states"
    current = rng_state()
    try:  # tried on the real generators (a check that cannot drift from set_rng_state), then put back
        set_rng_state(state["rng"])
    except Exception as exc:
        return f"its random-number state is damaged ({type(exc).__name__})"
    finally:
        set_rng_state(current)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _echo(value: Any) -> str:
    """A value from a file, shown short (a damaged file can hold anything, of any length)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def load_weights_into(model: torch.nn.Module, state: Any, path: Path) -> None:
    """Put `state["model"]` (a checkpoint read from `path`) into `model`, or say in one line why it does not fit.

    A checkpoint from another model, a list, or `{"model": {}}` is a CheckpointError naming the file and the first
    missing/unexpected/mis-shaped weights, never torch's multi-line RuntimeError.
    """
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"checkpoint '{path}' holds no model weights (expected a gradwise checkpoint: a dict "
                              "with a 'model' state_dict of tensors). Give a checkpoint this run wrote.")
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weight(s) missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown weight(s) (first: {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (first: {shapes[0]}, checkpoint vs model)")
        raise CheckpointError(f"checkpoint '{path}' is from another model: {'; '.join(parts)}. It does not fit the "
                              "model this run's config.yaml builds; give the run directory the checkpoint came from.")
    model.load_state_dict(weights)

"""Per-step records of a run: DIR/steps.jsonl (training loss and LR) and DIR/probes.jsonl (the doctor's probes).

steps.jsonl holds one row every ``train.log_every`` optimizer steps::

    {"step": 20, "epoch": 1, "loss": 0.61, "lr": 0.003, "steps": 10}

``loss`` is the mean training loss of the ``steps`` optimizer steps up to and including ``step``; the last row of a
run may cover fewer steps. The step losses stay on the device as they come and are read in one go when a row is
written, so the cost is one device sync every ``log_every`` steps, never one per step. A repair of the doctor (a
rollback to a checkpoint, an LR change) writes an event row where it happened::

    {"event": "rollback", "step": 0, "from_step": 66, "reason": "...", "changes": {...}}

after which ``step`` counts again from the state restored (rows after a rollback repeat step numbers; the rows
before it are the steps that were undone). probes.jsonl holds the doctor's measurements as it takes them (only on
its probe steps and at epoch ends, nothing extra is computed for it)::

    {"kind": "step", "step": 8, "epoch": 1, "lr": ..., "grad_norm": ..., "loss": ...,
     "layers": {"0.weight": {"grad": ..., "weight": ..., "update_ratio": ...}, ...}}
    {"kind": "activations", "step": 17, "epoch": 1, "layers": {"1 (ReLU)": {"dead": 0.02, "units": 256}, ...}}

A resumed run cuts both files back to what its checkpoint had seen, so a step is never recorded twice or lost.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gradwise.train.checkpoint import atomic_write_text
from gradwise.train.events import Callback

if TYPE_CHECKING:
    from gradwise.train.loop import Trainer

STEPS_FILE = "steps.jsonl"
PROBES_FILE = "probes.jsonl"


def finite_or_str(v: Any) -> Any:
    """A float as JSON can hold it: NaN/inf become "nan"/"inf" strings (as the doctor's evidence does)."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class StepLog(Callback):
    key = "step_log"
    order = 40  # after the doctor (30), which hands its probes over as it takes them

    def __init__(self, every: int) -> None:
        self.every = max(1, int(every))
        self._losses: list[torch.Tensor] = []  # step losses since the last row, still on the device
        self._last_step = 0
        self._last_epoch = 1
        self._last_lr: float | None = None
        self._lines = {STEPS_FILE: 0, PROBES_FILE: 0}
        self._loaded: dict[str, Any] | None = None  # state from a checkpoint (resume or rollback)
        self._n_actions = 0
        self._dir: Path | None = None
        self._files: dict[str, Any] = {}  # steps.jsonl / probes.jsonl, open for appending during the fit

    # -------------------------------------------------------------------------------------------- events
    def on_fit_start(self, trainer: Trainer) -> None:
        if not trainer.is_main:
            return
        self._close()
        self._dir = Path(trainer.run_dir.path)
        state, self._loaded = self._loaded, None
        if trainer.resumed:
            # back to what the checkpoint had seen: rows written after it are steps the resumed run trains again
            for name in (STEPS_FILE, PROBES_FILE):
                keep = state["lines"].get(name, 0) if state else None
                self._lines[name] = _cut(self._dir / name, keep, trainer.step)
            if state:
                self._losses = _as_tensors(state.get("pending", []), trainer.device)
        else:  # a fresh start (also in a directory a run stopped in before its first checkpoint)
            for name in (STEPS_FILE, PROBES_FILE):
                (self._dir / name).unlink(missing_ok=True)
                self._lines[name] = 0
        self._last_step, self._last_epoch = trainer.step, trainer.epoch + 1
        self._n_actions = len(trainer.actions)
        doctor = next((c for c in trainer.callbacks.callbacks if c.key == "doctor"), None)
        if doctor is not None and hasattr(doctor, "probe_sink"):
            doctor.probe_sink = self.probe

    def on_epoch_start(self, trainer: Trainer) -> None:
        # not on the other processes of a data-parallel run (no directory): they carry out rank 0's repairs too
        if self._dir is not None and len(trainer.actions) != self._n_actions:
            self._actions(trainer)

    def on_batch_end(self, trainer: Trainer) -> None:
        if self._dir is None:
            return
        if len(trainer.actions) != self._n_actions:  # a repair between the last step and this one
            self._actions(trainer)
        self._losses.append(trainer.last_loss)
        self._last_step = step = trainer.step
        self._last_epoch = trainer.epoch + 1
        self._last_lr = trainer.optimizer.param_groups[0]["lr"]  # a float: no sync (a repair may change it later)
        if step % self.every == 0:
            self._row(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        self.flush(trainer)

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        try:
            self.flush(trainer)
        finally:
            self._close()

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # the run's own error is the one to see
            self.flush(trainer)
        self._close()

    def flush(self, trainer: Trainer) -> None:
        """Write the steps since the last row (the end of a run that is no multiple of log_every)."""
        if self._dir is None:
            return
        if len(trainer.actions) != self._n_actions:
            self._actions(trainer)
        if self._losses:
            self._row(trainer)

    # ------------------------------------------------------------------------------------------- writing
    def _row(self, trainer: Trainer) -> None:
        losses, self._losses = self._losses, []
        try:  # one op and one sync for the lot
            mean = float(torch.stack(losses).double().mean())
        except RuntimeError:  # shapes () and (1,) side by side
            mean = float(torch.cat([v.reshape(-1).double() for v in losses]).mean())
        self._write(STEPS_FILE, {"step": self._last_step, "epoch": self._last_epoch, "loss": finite_or_str(mean),
                                 "lr": self._last_lr, "steps": len(losses)})

    def _actions(self, trainer: Trainer) -> None:
        """Event rows for the repairs done since the last look, after a row of the steps before them."""
        new = trainer.actions[self._n_actions:]
        self._n_actions = len(trainer.actions)
        if self._losses:  # the steps before the repair, at the step they reached (a rollback undoes them)
            self._row(trainer)
        restored, self._loaded = self._loaded, None
        for a in new:
            self._write(STEPS_FILE, {"event": a.get("action", "adjust"), "step": a.get("step"),
                                     "epoch": a.get("epoch"), "from_step": self._last_step,
                                     "reason": a.get("reason"), "restored": a.get("restored"),
                                     "changes": a.get("changes", {})})
        if restored is not None and any(a.get("restored") for a in new):
            # the window the restored checkpoint had open goes on from there
            self._losses = _as_tensors(restored.get("pending", []), trainer.device)
        self._last_step = trainer.step
        self._last_epoch = trainer.epoch + 1

    def probe(self, row: dict[str, Any]) -> None:
        """The doctor's measurements, as it takes them (see doctor.probes.ProbeRecord.to_row)."""
        if self._dir is not None:
            self._write(PROBES_FILE, row)

    def _write(self, name: str, row: dict[str, Any]) -> None:
        assert self._dir is not None
        f = self._files.get(name)
        if f is None:  # kept open for the fit: an open and close per row cost ~0.1 ms on a container's file system
            f = self._files[name] = open(self._dir / name, "a")  # noqa: SIM115 (closed in on_fit_end/on_exception)
        # buffered: flushed when a checkpoint records how many lines there are (state_dict), and at the end. A kill
        # loses at most the rows since the last checkpoint, which a resume cuts back to anyway.
        f.write(json.dumps(row, default=str) + "\n")
        self._lines[name] += 1

    def _close(self) -> None:
        files, self._files = self._files, {}
        for f in files.values():
            with contextlib.suppress(OSError):
                f.close()

    # ---------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        for f in self._files.values():  # every line the checkpoint counts is in the file before the checkpoint is
            f.flush()
        pending = torch.cat([v.reshape(-1).double() for v in self._losses]).tolist() if self._losses else []
        return {"lines": dict(self._lines), "pending": pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loaded = state


def _as_tensors(values: list[float], device: torch.device) -> list[torch.Tensor]:
    return list(torch.tensor(values, dtype=torch.float64, device=device).unbind()) if values else []


def _cut(path: Path, keep: int | None, step: int) -> int:
    """Cut a record file back to its first `keep` lines (what the checkpoint saw); without that count (a checkpoint
    from before these files existed) drop the rows past `step`. Returns the lines kept."""
    if not path.exists():
        return 0
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if keep is not None:
        kept = lines[:keep]
    else:
        kept = []
        for ln in lines:
            try:
                s = json.loads(ln).get("step")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(s, int) and s <= step:
                kept.append(ln)
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(ln + "\n" for ln in kept))
    return len(kept)

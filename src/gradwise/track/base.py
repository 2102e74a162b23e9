"""What every tracker shares: main process only, errors as one-line warnings, per-step values read in batches."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from gradwise.config import mask_secrets
from gradwise.train.events import Callback

if TYPE_CHECKING:
    from gradwise.config import RunConfig
    from gradwise.train.loop import Trainer

# metrics.jsonl columns that are bookkeeping, not metrics (the x axes)
NOT_METRICS = ("epoch", "step")
_MAX_KEPT_STEPS = 512  # per-step values kept before they are read (one device sync per this many logged steps)


class Tracker(Callback):
    """Base of the trackers: runs on the main process only, and never fails the run.

    An exception in a tracker becomes one warning line; the tracker then stops (closing what it opened) and the
    fit goes on. Subclasses implement ``start``, ``epoch_end``, ``fit_end`` and ``failed``.
    """

    name = "tracker"
    # after the doctor (30), early stopping (40), tune's pruning (80) and the progress display (90) have seen the
    # epoch, so its row holds everything they add; the report (report/) writes report.html before 98 at fit end
    order = 98

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        # `active`: started and not failed. Off until on_fit_start: a fit that fails before it (a callback earlier
        # in the order refusing the config) has nothing of this tracker's to close
        self.active = False

    # ------------------------------------------------------------------------------ events (guarded)
    def on_fit_start(self, trainer: Trainer) -> None:
        if not trainer.is_main:  # one record of the run, not one per process of a distributed fit
            return
        self.active = True
        self._guard(trainer, self.start, trainer)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self.active:
            self._guard(trainer, self.epoch_end, trainer, logs)

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        if self.active:
            self._guard(trainer, self.fit_end, trainer, summary)
            self.active = False

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        if self.active:
            self._guard(trainer, self.failed, trainer, exc)
            self.active = False

    # ------------------------------------------------------------------------------ what subclasses do
    def start(self, trainer: Trainer) -> None: ...
    def epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...
    def fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...
    def failed(self, trainer: Trainer, exc: BaseException) -> None: ...

    def close(self) -> None:
        """Release what the tracker holds (files, threads) after an error of its own."""

    # ------------------------------------------------------------------------------ helpers
    def _guard(self, trainer: Trainer, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a tracker must never fail the run
            self.active = False
            text = mask_secrets(str(exc).strip().splitlines()[0] if str(exc).strip() else "")[:200]
            trainer.console.print(f"warning: the {self.name} tracker failed ({type(exc).__name__}: {text}); it is "
                                  "off for the rest of this run, training goes on", markup=False, style="yellow")
            with contextlib.suppress(Exception):  # closing may fail the same way: the warning above says it
                self.close()


class StepTracker(Tracker):
    """A tracker that also records the training loss and LR every ``train.log_every`` optimizer steps.

    The step's loss is kept as the tensor the loop made (reading it as a float would cost a device sync every
    step); the kept values are read together, in one copy, at the end of each epoch (or every 512 logged steps).
    """

    def on_fit_start(self, trainer: Trainer) -> None:
        self.every = max(1, int(self.cfg.train.log_every))
        self._kept: list[tuple[int, torch.Tensor, float]] = []
        super().on_fit_start(trainer)

    def on_batch_end(self, trainer: Trainer) -> None:
        if self.active and trainer.step % self.every == 0:
            self._kept.append((trainer.step, trainer.last_loss, trainer.optimizer.param_groups[0]["lr"]))
            if len(self._kept) >= _MAX_KEPT_STEPS:
                self._guard(trainer, self._flush_steps)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self.active:
            self._guard(trainer, self._flush_steps)
        super().on_epoch_end(trainer, logs)

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        if self.active:
            self._guard(trainer, self._flush_steps)
        super().on_fit_end(trainer, summary)

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        if self.active:
            self._guard(trainer, self._flush_steps)
        super().on_exception(trainer, exc)

    def _flush_steps(self) -> None:
        if not self._kept:
            return
        kept, self._kept = self._kept, []
        losses = torch.cat([loss.detach().reshape(-1)[:1].double() for _, loss, _ in kept]).tolist()  # one sync
        self.write_steps([(step, loss, lr) for (step, _, lr), loss in zip(kept, losses, strict=True)])

    def write_steps(self, rows: list[tuple[int, float, float]]) -> None:
        """(step, training loss, LR) rows, in step order."""


def epoch_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """The numbers of an epoch's row (or of summary.json's test metrics), without the x axes."""
    return {k: float(v) for k, v in logs.items()
            if k not in NOT_METRICS and isinstance(v, int | float) and not isinstance(v, bool)}


def flat_config(cfg: RunConfig) -> dict[str, str | int | float | bool]:
    """The config as flat ``section.key`` -> value (lists and mappings as JSON text, null as "null"), with every
    password of a URL masked: what trackers record as parameters."""
    out: dict[str, str | int | float | bool] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
            return
        key = prefix[:-1]
        if isinstance(node, bool | int) or (isinstance(node, float) and math.isfinite(node)):
            out[key] = node
        elif isinstance(node, str):
            out[key] = mask_secrets(node)
        else:
            out[key] = mask_secrets(json.dumps(node, default=str))

    walk(cfg.to_dict(), "")
    return out


def findings_of(trainer: Trainer) -> list[Any]:
    """The doctor's findings so far ([] with the doctor off)."""
    from gradwise.doctor import Doctor

    doctor = trainer.callbacks.find(Doctor)
    return list(getattr(doctor, "findings", None) or [])

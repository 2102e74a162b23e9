"""Built-in callbacks: early stopping and the progress display."""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gradwise.train.events import Callback

if TYPE_CHECKING:
    from gradwise.config import EarlyStoppingConfig
    from gradwise.train.loop import Trainer

_MAXIMIZE = ("accuracy", "r2", "f1", "auc", "precision", "recall")


class EarlyStopping(Callback):
    """Tracks the monitored metric, saves best.pt when it improves, stops after `patience` epochs without."""

    key = "early_stopping"
    order = 40

    def __init__(self, cfg: EarlyStoppingConfig) -> None:
        self.cfg = cfg
        self.mode = cfg.mode if cfg.mode != "auto" else (
            "max" if any(k in cfg.monitor for k in _MAXIMIZE) else "min")
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.cfg.min_delta
        return value > self.best + self.cfg.min_delta

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        value = logs.get(self.cfg.monitor)
        if value is None and self.cfg.monitor.startswith("val_") and "train_loss" in logs:
            # no validation split: fall back to the training loss rather than never stopping or saving best
            value = logs["train_loss"] if self.cfg.monitor == "val_loss" else None
        if value is None or not math.isfinite(value):
            return
        if self.improved(value):
            self.best, self.best_epoch, self.wait = float(value), int(logs["epoch"]), 0
            trainer.save_checkpoint("best")
        else:
            self.wait += 1
            if self.cfg.enabled and self.wait > self.cfg.patience:
                trainer.should_stop = True
                trainer.stop_reason = (f"early stopping: {self.cfg.monitor} has not improved for {self.wait} "
                                       f"epochs (best {self.best:.4g} at epoch {self.best_epoch})")

    def on_train_end(self, trainer: Trainer) -> None:
        if self.cfg.enabled and self.cfg.restore_best and self.best_epoch is not None:
            trainer.load_weights("best")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]


class Unfreeze(Callback):
    """Gradual unfreezing: frozen parameters start training after `after` epochs (the optimizer already holds
    them, so they simply start receiving gradients)."""

    def __init__(self, after: int) -> None:
        self.after = after

    def on_epoch_start(self, trainer: Trainer) -> None:
        if trainer.epoch >= self.after:  # also right after a resume past that epoch
            from gradwise.models import unfreeze

            unfreeze(trainer.model)


def _fmt(logs: dict[str, Any]) -> str:
    parts = []
    for k in ("train_loss", "val_loss", "val_accuracy", "val_mae", "val_r2"):
        if k in logs and logs[k] is not None:
            parts.append(f"{k} {logs[k]:.4f}")
    return "  ".join(parts)


class ProgressBar(Callback):
    """A rich progress bar with loss, metrics and ETA on a terminal; one plain line per epoch otherwise."""

    order = 90

    def __init__(self, mode: str = "auto", refresh_seconds: float = 0.25) -> None:
        self.mode = mode
        if mode == "auto":
            self.mode = "bar" if sys.stdout.isatty() else "plain"
        self.refresh = refresh_seconds
        self.progress: Progress | None = None
        self._task: Any = None
        self._last = 0.0
        self._epoch_start = 0.0

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.mode == "bar" and trainer.is_main:
            self.progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                                     MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                     console=trainer.console, transient=False)
            self.progress.start()
            self._task = self.progress.add_task("train", total=trainer.steps_per_epoch, epoch=0, info="")

    def on_epoch_start(self, trainer: Trainer) -> None:
        self._epoch_start = time.perf_counter()
        if self.progress is not None:
            self.progress.reset(self._task, total=trainer.steps_per_epoch, completed=trainer.batch_in_epoch,
                                epoch=f"{trainer.epoch + 1}/{trainer.epochs}", info="")

    def on_batch_end(self, trainer: Trainer) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        self.progress.update(self._task, completed=trainer.batch_in_epoch)
        if now - self._last > self.refresh:  # reading the loss syncs the device: only a few times a second
            self._last = now
            self.progress.update(self._task, info=f"loss {trainer.last_loss.item():.4f}")

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if not trainer.is_main or self.mode == "none":
            return
        line = f"epoch {logs['epoch']}/{trainer.epochs}  {_fmt(logs)}  lr {logs['lr']:.3g}  {logs['seconds']:.1f}s"
        if self.progress is not None:
            self.progress.update(self._task, info=_fmt(logs))
            self.progress.console.print(line)
        else:
            trainer.console.print(line, highlight=False, soft_wrap=True)

    def on_train_end(self, trainer: Trainer) -> None:
        self._close()

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

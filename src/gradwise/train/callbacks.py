"""Built-in callbacks: early stopping, gradual unfreezing and the progress display (with the run header)."""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parameter import is_lazy

from gradwise.errors import CheckpointError, ConfigError
from gradwise.train.events import Callback
from gradwise.train.metrics import BINARY_METRICS, CLASSIFICATION_METRICS, REGRESSION_METRICS

if TYPE_CHECKING:
    from gradwise.config import EarlyStoppingConfig
    from gradwise.train.loop import Trainer

_MAXIMIZE = ("accuracy", "r2", "f1", "auc", "auroc", "precision", "recall")
_TASK_METRICS = {"classification": CLASSIFICATION_METRICS + BINARY_METRICS, "regression": REGRESSION_METRICS}
_NOT_METRICS = ("epoch", "step", "seconds")  # bookkeeping columns of metrics.jsonl


def produced_metrics(trainer: Trainer) -> list[str]:
    """The metrics gradwise itself logs each epoch of this run, by the names train.early_stopping.monitor uses.

    val_loss is always one: without a validation split early stopping follows train_loss in its place.
    """
    names = ["train_loss", "val_loss"]
    if trainer.val_loader is not None:
        names += [f"val_{m}" for m in _TASK_METRICS.get(trainer.task or "", ())]
    return names


class EarlyStopping(Callback):
    """Tracks the monitored metric, saves best.pt when it improves, stops after `patience` epochs without.

    `wait` counts the epochs since the last improvement; the run stops at the end of the epoch that makes it
    `patience` (patience 0: the first epoch without improvement), as Keras and Lightning do. It is checkpointed, so a
    resumed run stops where the uninterrupted one would, and a run early stopping ended trains no further epoch.
    """

    key = "early_stopping"
    order = 40

    def __init__(self, cfg: EarlyStoppingConfig) -> None:
        self.cfg = cfg
        self.mode = cfg.mode if cfg.mode != "auto" else (
            "max" if any(k in cfg.monitor for k in _MAXIMIZE) else "min")
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self._check_in_logs = False  # a user's callback may log the monitored metric: look for it in epoch 1

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.cfg.min_delta
        return value > self.best + self.cfg.min_delta

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self._check_in_logs and any(k.startswith("val_") for k in logs):
            self._check_in_logs = False  # an epoch that was evaluated logged every metric there is
            if self.cfg.monitor not in logs:
                self._unknown_monitor([k for k in logs if k not in _NOT_METRICS])
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
            self._maybe_stop(trainer)

    def on_fit_start(self, trainer: Trainer) -> None:
        self._check_monitor(trainer)
        # resumed from the checkpoint of the epoch that stopped the run (killed before the fit ended, or resumed
        # with more epochs): it is over, as it would be had it not been interrupted
        self._maybe_stop(trainer)

    def _check_monitor(self, trainer: Trainer) -> None:
        """An unknown monitor never improves, so early stopping, best.pt and restore_best silently did nothing
        (train.early_stopping.monitor=val_acc for val_accuracy): stop at the start with the names that exist."""
        names = produced_metrics(trainer)
        if self.cfg.monitor in names:
            if self.cfg.monitor.removeprefix("val_") in BINARY_METRICS:
                self._check_in_logs = True  # AUROC exists for two classes only: checked against epoch 1's logs
            return
        if any(not type(c).__module__.startswith("gradwise.") for c in trainer.callbacks.callbacks):
            self._check_in_logs = True  # a callback of the user's may add it: checked against epoch 1's logs
            return
        self._unknown_monitor(names)

    def _unknown_monitor(self, names: list[str]) -> None:
        import difflib

        from gradwise.config import echo

        # the nearest name (val_acc -> val_accuracy), else the loss every run logs
        close = [n for n in names if n.startswith(str(self.cfg.monitor))] or difflib.get_close_matches(
            str(self.cfg.monitor), names, n=1, cutoff=0.6)
        suggestion = close[0] if close else ("val_loss" if "val_loss" in names else names[0])

        raise ConfigError(f"train.early_stopping.monitor = {echo(self.cfg.monitor)} is not a metric this run logs, "
                          "so early stopping and the best checkpoint would never trigger; valid names: "
                          f"{', '.join(names)}. Set e.g. train.early_stopping.monitor={suggestion}.")

    def _maybe_stop(self, trainer: Trainer) -> None:
        # wait >= 1: an epoch that improved never stops the run, even with patience 0
        if self.cfg.enabled and self.best is not None and self.wait >= max(self.cfg.patience, 1):
            trainer.should_stop = True
            epochs = "epoch" if self.wait == 1 else "epochs"
            trainer.stop_reason = (f"early stopping: {self.cfg.monitor} has not improved for {self.wait} {epochs} "
                                   f"(best {self.best:.4g} at epoch {self.best_epoch})")

    def on_train_end(self, trainer: Trainer) -> None:
        if self.cfg.enabled and self.cfg.restore_best and self.best_epoch is not None:
            trainer.load_weights("best")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # checked here, not when first compared in an epoch's end: a damaged value would fail the run mid-way with a
        # TypeError; as a CheckpointError the resume is refused before anything runs (the loop names the file)
        best, best_epoch, wait = (state.get(k, "missing") if isinstance(state, dict) else "missing"
                                  for k in ("best", "best_epoch", "wait"))
        if not ((best is None or _is_number(best)) and (best_epoch is None or _is_count(best_epoch))
                and _is_count(wait)):
            raise CheckpointError(f"its early stopping state is damaged (best {_short(best)}, best_epoch "
                                  f"{_short(best_epoch)}, wait {_short(wait)}: expected numbers).")
        self.best, self.best_epoch, self.wait = best, best_epoch, wait


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else f"{text[:27]}..."


class Unfreeze(Callback):
    """Gradual unfreezing: frozen parameters start training after `after` epochs (the optimizer already holds
    them, so they simply start receiving gradients)."""

    def __init__(self, after: int) -> None:
        self.after = after

    def on_epoch_start(self, trainer: Trainer) -> None:
        if trainer.epoch >= self.after:  # also right after a resume past that epoch
            from gradwise.models import unfreeze

            unfreeze(trainer.model)


# Plain output (not a terminal: CI, nohup, a log file) prints a progress line inside an epoch at most every
# PLAIN_EVERY_SECONDS and never less than PLAIN_EVERY_FRACTION of the epoch after the previous one, so a long epoch
# does not leave a log silent for minutes while short epochs print nothing but their own line.
PLAIN_EVERY_SECONDS = 30.0
PLAIN_EVERY_FRACTION = 0.1


def _fmt(logs: dict[str, Any]) -> str:
    parts = []
    for k in ("train_loss", "val_loss", "val_accuracy", "val_mae", "val_r2"):
        if k in logs and logs[k] is not None:
            parts.append(f"{k} {logs[k]:.4f}")
    return "  ".join(parts)


def _seconds(s: float) -> str:
    return f"{s:.2f}s" if s < 10 else f"{s:.0f}s"


def _rows(loader: Any) -> str:
    if loader is None:
        return "none"
    n = getattr(loader, "dataset_size", None)
    return f"{n:,}" if isinstance(n, int) else "?"


def run_header(trainer: Trainer) -> list[str]:
    """What is about to run, in 4 lines of plain text: where, on what, which data and model, which settings.

    Names, paths and values come from the user: print these lines with markup off (rich would take ``[b]`` in a
    run name for a style)."""
    cfg, tc = trainer.config, trainer.config.train
    where = f"run '{cfg.name}' -> {trainer.run_dir.path}"
    if trainer.resumed:
        mid = f", step {trainer.batch_in_epoch}/{trainer.steps_per_epoch} of it" if trainer.batch_in_epoch else ""
        where += f"  (resumed at epoch {min(trainer.epoch + 1, trainer.epochs)}{mid})"
    device = str(trainer.device)
    if trainer.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(trainer.device)})"
    params = [p for p in trainer.model.parameters() if not is_lazy(p)]
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    label = type(trainer.model).__name__
    if trainer.model_name:
        label = f"{trainer.model_name} ({label})"
    lr = cfg.optim.lr if isinstance(cfg.optim.lr, int | float) else trainer.optimizer.param_groups[0]["lr"]
    batch = getattr(trainer.train_loader, "batch_size", tc.batch_size)
    world = trainer.dist.world if getattr(trainer, "dist", None) is not None else 1
    if world > 1:  # data-parallel: the batch is per process
        batch = f"{batch} x {world} processes"
    if trainer.accumulate > 1:
        batch = f"{batch} x {trainer.accumulate} accumulated"
    es = tc.early_stopping
    stopping = f"early stopping patience {es.patience} on {es.monitor}" if es.enabled else "early stopping off"
    return [
        where,
        f"device {device}  precision {trainer.precision}  torch threads {torch.get_num_threads()}  |  rows train "
        f"{_rows(trainer.train_loader)} / val {_rows(trainer.val_loader)} / test {_rows(trainer.test_loader)}",
        f"model {label}: {trainable:,} trainable / {total:,} parameters",
        f"{cfg.optim.name}  lr {lr:.3g}  batch {batch}  epochs {trainer.epochs}  "
        f"schedule {getattr(trainer.schedule, 'name', cfg.schedule.name)}  {stopping}",
    ]


class ProgressBar(Callback):
    """Progress output: a header (`run_header`), then each epoch's metrics once, as a line.

    On a terminal ("bar") a live bar shows the epoch's steps, the mean training loss of the epoch so far, samples/s
    and the ETA; it is transient, so what stays on screen is the header and the epoch lines. Otherwise ("plain": CI,
    nohup, a log file) long epochs also get progress lines (see PLAIN_EVERY_SECONDS). The loss shown is read only
    when the display refreshes (a device sync, a few times a second at most), never every step. samples/s counts
    the epoch's training steps only (evaluation excluded); an epoch line's seconds are the epoch's `seconds`.
    """

    order = 90

    def __init__(self, mode: str = "auto", refresh_seconds: float = 0.25) -> None:
        self.mode = mode
        if mode == "auto":
            self.mode = "bar" if sys.stdout.isatty() else "plain"
        self.refresh = refresh_seconds
        self.progress: Progress | None = None
        self._task: Any = None
        self._active = False
        self._last = 0.0  # the bar's last refresh of its text
        self._epoch_start = 0.0
        self._last_step = 0.0  # when the epoch's latest step ended
        self._samples0 = 0  # samples the epoch had seen when this process started it (a resumed epoch has some)
        self._steps0 = 0  # and its steps
        self._every_steps = 1
        self._next_step = 0  # plain progress line: not before this step...
        self._next_time = 0.0  # ...nor before this time

    def on_fit_start(self, trainer: Trainer) -> None:
        self._active = trainer.is_main and self.mode != "none"
        if not self._active:
            return
        for line in run_header(trainer):
            trainer.console.print(line, markup=False, highlight=False, soft_wrap=True)
        if self.mode == "bar":
            self._last = 0.0
            self.progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                                     MofNCompleteColumn(), TimeRemainingColumn(),
                                     TextColumn("{task.fields[info]}", markup=False),
                                     console=trainer.console, transient=True)
            self.progress.start()
            self._task = self.progress.add_task("train", total=trainer.steps_per_epoch,
                                                completed=trainer.batch_in_epoch, epoch=self._label(trainer), info="")

    @staticmethod
    def _label(trainer: Trainer) -> str:
        return f"{min(trainer.epoch + 1, trainer.epochs)}/{trainer.epochs}"

    def on_epoch_start(self, trainer: Trainer) -> None:
        now = time.perf_counter()
        self._epoch_start = self._last_step = now
        self._samples0, self._steps0 = trainer.samples_in_epoch, trainer.batch_in_epoch
        self._every_steps = max(1, math.ceil(PLAIN_EVERY_FRACTION * trainer.steps_per_epoch))
        self._next_step = trainer.batch_in_epoch + self._every_steps
        self._next_time = now + PLAIN_EVERY_SECONDS
        if self.progress is not None:
            self.progress.reset(self._task, total=trainer.steps_per_epoch, completed=trainer.batch_in_epoch,
                                epoch=self._label(trainer), info="")

    def on_batch_end(self, trainer: Trainer) -> None:
        if not self._active:
            return
        now = self._last_step = time.perf_counter()
        if self.progress is not None:
            self.progress.update(self._task, completed=trainer.batch_in_epoch)
            # reading the loss syncs the device: only a few times a second, and at the epoch's last step (the bar
            # then shows the epoch's whole mean while it is evaluated)
            if now - self._last > self.refresh or trainer.batch_in_epoch == trainer.steps_per_epoch:
                self._last = now
                self.progress.update(self._task, info=self._status(trainer, now))
        elif (trainer.batch_in_epoch >= self._next_step and now >= self._next_time
              and trainer.batch_in_epoch < trainer.steps_per_epoch):  # the last step gets the epoch's own line
            self._next_step = trainer.batch_in_epoch + self._every_steps
            self._next_time = now + PLAIN_EVERY_SECONDS
            b, n = trainer.batch_in_epoch, trainer.steps_per_epoch
            elapsed = now - self._epoch_start
            left = elapsed / max(b - self._steps0, 1) * (n - b)
            line = (f"epoch {self._label(trainer)}  step {b}/{n} ({b / n:.0%})  {self._status(trainer, now)}  "
                    f"{_seconds(elapsed)} elapsed, ~{_seconds(left)} left in the epoch")
            trainer.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _status(self, trainer: Trainer, now: float) -> str:
        elapsed = now - self._epoch_start
        rate = (trainer.samples_in_epoch - self._samples0) / elapsed if elapsed > 0 else 0.0
        return f"loss {trainer.epoch_loss():.4f} (epoch mean)  {rate:,.0f} samples/s"

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if not self._active:
            return
        train_seconds = self._last_step - self._epoch_start
        samples = trainer.samples_in_epoch - self._samples0
        rate = f"  {samples / train_seconds:,.0f} samples/s" if samples > 0 and train_seconds > 0 else ""
        line = (f"epoch {logs['epoch']}/{trainer.epochs}  {_fmt(logs)}  lr {logs['lr']:.3g}  "
                f"{_seconds(logs['seconds'])}{rate}")
        if self.progress is not None:
            self.progress.update(self._task, info="")  # the metrics are in the line: not twice on screen
        trainer.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def on_train_end(self, trainer: Trainer) -> None:
        self._close()

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

"""The training loop. The step reads top to bottom in `_train_step`; everything else plugs into events.

The loop knows nothing of the doctor, progress bars or trackers: they are callbacks (see `events.py`), and they
change the run only through its public methods: `request` (restore a snapshot or checkpoint, scale the LR, set
clipping), `snapshot`, `fail`, and a veto in on_checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from gradwise.config import RunConfig
from gradwise.errors import CheckpointError, ConfigError, GradwiseError, TrainingError
from gradwise.train.checkpoint import (
    DISK_ERRNOS,
    CheckpointWriter,
    DiskWriteError,
    disk_error,
    json_default,
    load_checkpoint,
    load_weights_into,
    remove_stale_temp_files,
    rng_state,
    set_rng_state,
    snapshot,
    training_state_problem,
)
from gradwise.train.events import Callback, CallbackList, Request
from gradwise.train.metrics import evaluate, to_device
from gradwise.train.rundir import RunDir

_FOLD = 1024  # steps between float64 sums of the kept step losses (bounds the list on very long epochs)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device = {name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {name!r} but this machine has no CUDA GPU; use train.device=auto or cpu.")
    return device


def make_autocast(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the forward pass's autocast context for a resolved precision."""
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    # fp32 gets a null context: autocast(enabled=False) still costs a little per call
    return (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        # bf16 autocast helps on GPUs with bf16 tensor cores; on CPU it is usually slower for small models
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision = 'fp16' needs a CUDA GPU (loss scaling); on CPU use "
                          "train.precision=bf16 or fp32.")
    return precision


class Trainer:
    """Runs epochs of mini-batches over ready-made components and writes the run directory.

    Counting epochs: ``epoch`` is the 0-based index of the epoch being trained (like Lightning's current_epoch); it
    moves on once the epoch is committed, after on_epoch_end. ``epochs_done`` is the number of epochs finished: from
    the end of an epoch's last step (on_validation_end, on_epoch_end) it counts that epoch, so in on_epoch_end
    ``trainer.epochs_done == logs["epoch"] == trainer.epoch + 1``. After the fit, both equal the epochs trained.

    The fit leaves the model in eval mode (ready for inference), holding the weights of ``weights_epoch``: the best
    epoch's when early stopping restored them (``restored_epoch``), else the last epoch's.
    """

    def __init__(self, model: nn.Module, train_loader: Any, val_loader: Any | None, test_loader: Any | None, *,
                 config: RunConfig, loss_fn: Callable, optimizer: torch.optim.Optimizer, schedule: Any,
                 run_dir: RunDir, task: str | None, device: torch.device, precision: str,
                 callbacks: list[Callback] | None = None, penalty: Callable[[nn.Module], Any] | None = None,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 forward: Callable | None = None, target_transform: Callable | None = None,
                 console: Console | None = None, dist: Any = None) -> None:
        self.config = config
        self.model = model
        self.train_loader, self.val_loader, self.test_loader = train_loader, val_loader, test_loader
        self.loss_fn, self.optimizer, self.schedule = loss_fn, optimizer, schedule
        self.run_dir = run_dir
        self.task = task
        self.device = device
        self.precision = precision
        self.penalty = penalty
        self.augment = augment
        self.forward = forward
        self.target_transform = target_transform
        self.callbacks = CallbackList(callbacks or [])
        self.trained_by: str | None = None  # set by gradwise.api: "gradwise.fit" or "gradwise.train"
        self.console = console or Console(highlight=False)
        # a data-parallel fit (gradwise.train.distributed.Distributed; None in one process): its steps go through
        # the DDP wrapper, and each step and epoch end with the processes agreeing (loss, stop, repair)
        self.dist = dist
        self.is_main = dist.is_main if dist is not None else int(os.environ.get("RANK", 0)) == 0

        tc = config.train
        self.epochs = tc.epochs
        self.accumulate = tc.accumulate
        self.steps_per_epoch = math.ceil(len(train_loader) / self.accumulate)
        self.clip_grad, self.clip_mode = tc.clip_grad, tc.clip_mode
        self.autocast = make_autocast(precision, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

        # progress of the fit; all of it goes into checkpoints
        self.epoch = 0  # the epoch being trained (0-based); see the class docstring and `epochs_done`
        self.step = 0  # optimizer steps taken
        self.batch_in_epoch = 0  # optimizer steps taken in this epoch
        self.history: list[dict[str, Any]] = []
        self._history_cache: list[tuple[dict[str, Any], str]] = []  # (row, its JSON) for checkpoints
        self.last_loss: torch.Tensor = torch.zeros(())
        self.last_batch: tuple[Any, Any] | None = None
        # The epoch's train loss: step losses are kept as they come (no op per step: on a small model each tensor
        # op in the step costs more than the arithmetic) and summed in float64 every _FOLD steps and at epoch end.
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._loss_count = 0
        self._step_losses: list[torch.Tensor] = []
        self._step_sizes: list[int] = []
        self.should_stop = False
        self.stop_reason: str | None = None
        self.status = "running"
        self._failure: str | None = None  # why a callback marked the run failed (fail(): e.g. the NaN guard)
        self.resumed = False
        self._signal: int | None = None
        self._deferred_saves: list[str] | None = None  # saves asked for while an epoch is being committed
        self._request: Request | None = None  # a change of course asked for (request()), carried out after the step
        self._snapshots: dict[str, dict[str, Any]] = {}  # name -> in-memory training state (snapshot())
        self.actions: list[dict[str, Any]] = []  # the requests carried out (restores + changes), for the summary
        self._batches_on_device = False  # set by fit() once the loaders are on the device
        self.checkpoints = CheckpointWriter()  # written on a background thread; flushed before any is read
        # a tuning trial (gradwise.train.trial): epoch-end checkpoints only when `.due()`, no best.pt, no test pass
        self.epoch_checkpoints: Any = None
        self.test_pass = True
        self._epoch_ending = False  # the current epoch's steps are done and it is being evaluated/committed
        # the epoch (1-based) whose end-of-epoch weights the model holds; None mid-epoch or before the first one
        self.weights_epoch: int | None = None
        self.restored_epoch: int | None = None  # the epoch load_weights() put back (early stopping's best.pt)
        self.model_name: str | None = None  # a display name for the run header (e.g. the config's model.name)
        # the weights evaluated and saved as a checkpoint's "model" when they are not the trained ones (weight
        # averaging sets it: gradwise.train.averaging); None: the model's own
        self.eval_model: nn.Module | None = None

    @property
    def epochs_done(self) -> int:
        """Epochs finished so far; in on_validation_end/on_epoch_end it already counts the epoch ending there."""
        return self.epoch + 1 if self._epoch_ending else self.epoch

    # ------------------------------------------------------------------------------------------- the step
    def _train_step(self, window: list[Any]) -> None:
        """One optimizer step over `accumulate` micro-batches."""
        model, opt = self.model, self.optimizer
        dist = self.dist
        if dist is not None:
            model = dist.ddp  # its backward averages the gradients over the processes
        # Weight each micro-batch by its share of the window's samples, so an accumulated step equals one big
        # batch even when the last micro-batch is short (a per-micro-batch mean would over-weight it).
        n_total = len(window[0][1]) if len(window) == 1 else sum(len(b[1]) for b in window)
        share = dist.loss_share(self, window) if dist is not None else 1.0  # processes with uneven rows
        step_loss: torch.Tensor | None = None
        for i, batch in enumerate(window):
            x, y = (batch[0], batch[1]) if self._batches_on_device else to_device(batch, self.device)
            if self.augment is not None:
                x = self.augment(x)
            # data-parallel: gradients are all-reduced once per optimizer step, at the last micro-batch
            with dist.sync_context(i == len(window) - 1) if dist is not None else contextlib.nullcontext():
                with self.autocast():
                    out = self.forward(model, x) if self.forward else model(x)
                    loss = self.loss_fn(out, y)
                if len(window) > 1 or share != 1.0:
                    loss = loss * (len(y) / n_total * share)
                self.scaler.scale(loss).backward()
            step_loss = loss.detach() if step_loss is None else step_loss + loss.detach()
        if dist is not None:  # the global batch's loss and rows, the same on every process
            assert step_loss is not None
            step_loss, n_total = dist.step_loss(step_loss, n_total)
        if self.penalty is not None:  # explicit L1/L2: once per optimizer step, not per micro-batch
            reg = self.penalty(model)
            if reg is not None:
                self.scaler.scale(reg).backward()
        self.scaler.unscale_(opt)  # gradients in true units before anyone looks at or clips them
        self.last_batch = (x, y)
        self.callbacks.fire("on_after_backward", self)
        if self.clip_grad is not None:
            if self.clip_mode == "norm":
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad, foreach=True)
            else:
                torch.nn.utils.clip_grad_value_(model.parameters(), self.clip_grad, foreach=True)
        self.scaler.step(opt)
        self.scaler.update()
        opt.zero_grad(set_to_none=True)
        self.schedule.step_batch()
        self.step += 1
        self.batch_in_epoch += 1
        assert step_loss is not None  # a window holds at least one batch
        self.last_loss = step_loss
        self._step_losses.append(step_loss)
        self._step_sizes.append(n_total)
        if self.batch_in_epoch % _FOLD == 0:  # at fixed steps of the epoch, so a resumed epoch folds the same way
            self._fold_losses()

    def _kept_sum(self) -> torch.Tensor:
        """The kept (not yet folded) step losses, weighted by their samples, summed in float64 on the device."""
        try:  # one op for the lot (a reshape per loss would cost as much as the per-step sum it replaces)
            losses = torch.stack(self._step_losses).double().reshape(-1)
        except RuntimeError:  # losses of shape (1,) next to 0-dim ones restored from a checkpoint
            losses = torch.cat([v.reshape(-1).double() for v in self._step_losses])
        sizes = torch.tensor(self._step_sizes, dtype=torch.float64).to(self._loss_sum.device, non_blocking=True)
        return (losses.to(self._loss_sum.device) * sizes).sum()

    def _fold_losses(self) -> None:
        """Add the kept step losses, weighted by their samples, to the epoch's float64 sum."""
        if self._step_losses:
            self._loss_sum += self._kept_sum()
            self._loss_count += sum(self._step_sizes)
            self._step_losses, self._step_sizes = [], []

    @property
    def samples_in_epoch(self) -> int:
        """Training samples this epoch has seen so far (a resumed epoch counts those before the resume). No sync."""
        return self._loss_count + sum(self._step_sizes)

    def epoch_loss(self) -> float:
        """The sample-weighted mean training loss of the epoch so far (what its metrics.jsonl row will say).

        Costs a device sync: call it when refreshing a display, not every step. It only reads the sums: folding
        here, at steps of the caller's choosing, would change the float order an exact resume reproduces."""
        total = self._loss_sum + self._kept_sum() if self._step_losses else self._loss_sum
        return (total / max(self.samples_in_epoch, 1)).item()

    # ------------------------------------------------------------------------------------------ the fit
    def fit(self, resume_state: dict[str, Any] | None = None) -> dict[str, Any]:
        start = time.perf_counter()
        if self.is_main:
            # a process killed while writing a checkpoint left its temp file; this run now owns the directory
            remove_stale_temp_files(self.run_dir.checkpoints)
        self.model.to(self.device)
        for loader in (self.train_loader, self.val_loader, self.test_loader):
            if loader is not None and hasattr(loader, "to"):
                loader.to(self.device)
        # in-memory tensor loaders now yield batches on the device; other loaders' batches are moved per step
        self._batches_on_device = hasattr(self.train_loader, "to")
        if resume_state is not None:
            self._load_state(resume_state, path=self.run_dir.last)
            self.resumed = True
            self._write("metrics.jsonl", self.run_dir.write_metrics, self.history)
        handlers = self._install_signal_handlers()
        test_metrics: dict[str, float] = {}
        try:
            self.callbacks.fire("on_fit_start", self)
            if resume_state is not None:
                set_rng_state(resume_state["rng"])  # last, so nothing run at fit start shifts the streams
            while self.epoch < self.epochs and not self.should_stop:
                self._run_epoch()
                if self._signal is not None:
                    break
            self.status = "failed" if self._failure else "stopped" if self._signal is not None else "completed"
            self.callbacks.fire("on_train_end", self)
            if self.test_loader is not None and self.test_pass and self.status == "completed":
                test_metrics = self._evaluate(self.test_loader, per_class=True)
            self.checkpoints.flush()  # a checkpoint the disk refused fails the run here, through the handler below
        except BaseException as exc:
            error = self._fail(exc, start)
            if error is exc:
                raise
            raise error from exc
        finally:
            self._restore_signal_handlers(handlers)
            # every checkpoint is on disk before fit returns (or raises); a failed write was raised by the flush
            # above, or the error being raised is the earlier one and must not be replaced by it
            with contextlib.suppress(CheckpointError):
                self.checkpoints.close()
            self.model.eval()  # what fit hands back is ready for inference (dropout off, BatchNorm statistics used)
        self.summary = self._summary(time.perf_counter() - start, test_metrics)
        try:
            self.callbacks.fire("on_fit_end", self, self.summary)
        except OSError as exc:  # a callback's file (report.html, ...) on a full or read-only disk
            raise self._as_disk_error(exc) from exc
        self._write("summary.json", self.run_dir.write_summary, self.summary)
        return self.summary

    def _fail(self, exc: BaseException, start: float) -> BaseException:
        """The error handler of fit: mark the run failed (or stopped), tell the callbacks, record summary.json, and
        return the error to raise. Its own steps are best-effort: on a full or read-only disk they fail too, and the
        error the user sees must be the first one, not the handler's."""
        error = self._as_disk_error(exc) if isinstance(exc, OSError) else exc
        try:
            self.checkpoints.flush()
        except CheckpointError as earlier:
            # a checkpoint write queued before a refused write of the loop's own (a metrics.jsonl row) was refused
            # first: on a full disk that write is the cause. (The writer raises its failures in the order it was
            # given the writes, so a checkpoint's error being raised is already the earliest.)
            if isinstance(error, DiskWriteError) and error.path.parent != self.run_dir.checkpoints:
                error = earlier
        except BaseException:  # a second Ctrl-C while waiting: the first error is still the one to raise
            pass
        self.status = "failed" if not isinstance(exc, KeyboardInterrupt) else "stopped"
        with contextlib.suppress(Exception):
            self.callbacks.fire("on_exception", self, error)
        try:
            self.summary = self._summary(time.perf_counter() - start, {}, error=error)
            self.run_dir.write_summary(self.summary)
        except Exception:
            if isinstance(error, DiskWriteError):  # say that the run's record could not be updated either
                error = DiskWriteError(f"{error} summary.json could not record the failure either.", error.path,
                                       error.os_error)
        return error

    def _write(self, name: str, write: Callable[..., Any], *args: Any) -> None:
        """A run-directory write of the loop's own (metrics.jsonl, summary.json): a refused write is one line."""
        try:
            write(*args)
        except OSError as exc:
            # the checkpoint queued before this write decides what the message may promise (--resume continues
            # from it, or there is nothing to resume); refused too, it is the earlier error and the one raised
            try:
                self.checkpoints.flush()
            except CheckpointError as earlier:
                raise earlier from exc
            raise disk_error(exc, self.run_dir.path / name, last=self.run_dir.last) from exc

    def _as_disk_error(self, exc: OSError) -> BaseException:
        """A refused write of a file in the run directory (a callback's: findings.jsonl, report.html, ...) as a
        DiskWriteError; any other OSError (e.g. reading a data file) as it is."""
        name = exc.filename if isinstance(exc.filename, str | os.PathLike) else None
        if exc.errno not in DISK_ERRNOS:
            return exc
        if name is None:  # a write to an open file (a full disk): no name, but only the run directory is written
            return disk_error(exc, self.run_dir.path, last=self.run_dir.last)
        path = Path(name)
        inside = path.resolve().is_relative_to(self.run_dir.path.resolve())
        return disk_error(exc, path, last=self.run_dir.last) if inside else exc

    def _run_epoch(self) -> None:
        t0 = time.perf_counter()
        self.model.train()
        self.weights_epoch = None  # from the first step on, the weights are no finished epoch's
        # A resumed epoch skips the optimizer steps it already took; the order is rebuilt from (seed, epoch).
        self.train_loader.set_epoch(self.epoch, skip_batches=self.batch_in_epoch * self.accumulate)
        if self.batch_in_epoch == 0:
            self._loss_sum.zero_()
            self._loss_count = 0
            self._step_losses, self._step_sizes = [], []
        self.callbacks.fire("on_epoch_start", self)
        batches = iter(self.train_loader)
        every = self.config.train.checkpoint_every
        while window := list(islice(batches, self.accumulate)):
            self.callbacks.fire("on_batch_start", self)
            self._train_step(window)
            self.callbacks.fire("on_batch_end", self)
            if self.dist is not None:
                self.dist.agree(self)  # every process stops, or carries out rank 0's request, at this same step
            if self._request is not None:
                self._carry_out()
                return
            if self._signal is not None or self.should_stop:
                if self._signal is not None:
                    self.save_checkpoint("last")  # mid-epoch: resume continues at this very step
                return
            if every and self.step % every == 0:
                self.save_checkpoint("last")
        self._end_epoch(t0)

    def _end_epoch(self, t0: float) -> None:
        self._epoch_ending = True  # epochs_done counts this epoch from here (evaluation, on_epoch_end)
        try:
            self._commit_epoch(t0)
        finally:
            self._epoch_ending = False

    def _commit_epoch(self, t0: float) -> None:
        self._fold_losses()
        train_loss = (self._loss_sum / max(self._loss_count, 1)).item()
        logs: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
                                "train_loss": train_loss}
        if self.val_loader is not None and (self.epoch + 1) % self.config.train.eval_every == 0:
            val = self._evaluate(self.val_loader)
            logs.update({f"val_{k}": v for k, v in val.items()})
            self.callbacks.fire("on_validation_end", self, logs)
        self.schedule.step_epoch(logs)
        # `seconds`: the epoch's wall time from its start (for an epoch resumed mid-way: from the resume) through its
        # training steps, the validation pass with its on_validation_end callbacks, and the LR schedule's epoch step.
        # It is stamped here so that on_epoch_end callbacks (the progress line) can show it; their own time and this
        # epoch's checkpoint are not in it. The checkpoint cannot be: it holds this row, so its capture (copying the
        # state to host memory, ~0.1 ms for a small MLP) comes after the row is final; its write runs on a background
        # thread and overlaps the next epoch.
        logs["seconds"] = round(time.perf_counter() - t0, 4)
        # A checkpoint asked for in on_epoch_end (best.pt) must hold the committed epoch, so it waits until then.
        self._deferred_saves = []
        try:
            self.callbacks.fire("on_epoch_end", self, logs)
        finally:
            deferred, self._deferred_saves = self._deferred_saves, None
        if self.dist is not None:
            self.dist.agree(self)
        if self._request is not None and self._request.restore:
            self._carry_out()  # the epoch is undone: its row is never committed
            return
        names = list(dict.fromkeys(("last", *deferred)))
        keep = self._may_checkpoint(names)
        if not math.isfinite(train_loss) and keep:
            # no callback took the broken state in hand (the doctor off: nobody vetoed its checkpoint): stop rather
            # than train on garbage for the remaining epochs
            self.history.append(logs)
            self._write("metrics.jsonl", self.run_dir.append_metrics, logs)
            raise TrainingError(f"the training loss became {train_loss} in epoch {self.epoch + 1} (step "
                                f"{self.step}). {_nonfinite_advice(self)}")
        self.history.append(logs)
        self._write("metrics.jsonl", self.run_dir.append_metrics, logs)
        self.epoch += 1
        self._epoch_ending = False  # committed: `epoch` now counts it
        self.batch_in_epoch = 0
        self.weights_epoch = self.epoch
        if self._request is not None:  # settings only: the epoch stands, the new settings apply from the next step
            self._carry_out()
        # a tuning trial (gradwise.train.trial) writes last.pt only when due (or a stop signal came during this
        # epoch's end: the fit ends here, and its retry continues from this state) and never best.pt
        if keep and (self.epoch_checkpoints is None or self._signal is not None or self.epoch_checkpoints.due()):
            self._save(names if self.epoch_checkpoints is None else ["last"])  # best.pt = last.pt: one write

    def _evaluate(self, loader: Any, per_class: bool = False) -> dict[str, Any]:
        model = self.model if self.eval_model is None else self.eval_model  # weight averaging: the average
        # data-parallel: each process evaluates its block of rows, and the metrics are those of the whole split
        gather = self.dist.eval_gather(model, loader) if self.dist is not None else None
        return evaluate(model, loader, self.loss_fn, self.device, self.task, self.autocast, self.forward,
                        self.target_transform, per_class=per_class, gather=gather)

    # ------------------------------------------------------------------------------------- checkpoints
    def _state(self, in_memory: bool = False) -> dict[str, Any]:
        state = {
            "model": (self.model if self.eval_model is None else self.eval_model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
            "loss_sum": self._loss_sum.item(), "loss_count": self._loss_count,
            # steps since the last fold (only a mid-epoch checkpoint has any), as exact float64 values
            "step_losses": (torch.cat([v.reshape(-1).double() for v in self._step_losses]).tolist()
                            if self._step_losses else []),
            "step_sizes": list(self._step_sizes),
            # One JSON string, not a list of dicts: pickling costs per object, and the history grows every epoch
            # (at 30 epochs its ~450 objects were 40% of a checkpoint's serialization time).
            "history_json": self._history_json(),
            "callbacks": self.callbacks.state_dict(),
            "rng": rng_state(),
            "actions_json": json.dumps(self.actions, default=json_default),
        }
        return snapshot(state) if in_memory else state

    def _history_json(self) -> str:
        """json.dumps(self.history), encoding each row once: a row is final once appended (metrics.jsonl already
        holds it), and re-encoding the whole history every epoch grows with the run (60 us at 30 epochs)."""
        cache = self._history_cache
        rows = []
        for i, row in enumerate(self.history):
            fresh = i >= len(cache) or cache[i][0] is not row
            rows.append((row, json.dumps(row, default=json_default)) if fresh else cache[i])
        self._history_cache = rows
        return "[" + ", ".join(text for _, text in rows) + "]"

    def _load_state(self, state: Any, weights_only: bool = False, path: Path | None = None) -> None:
        """Put a checkpoint's state (read from `path`) back: the weights only, or everything a resume needs.

        A foreign, damaged or cut-short state is refused before anything changes, as one CheckpointError naming the
        file and the first problem (never a KeyError or a RuntimeError from deep inside a load_state_dict)."""
        path = path if path is not None else self.run_dir.last
        if weights_only:
            load_weights_into(self.model, state, path)
            return
        problem = self._resume_problem(state)
        if problem is not None:
            raise CheckpointError(f"checkpoint '{path}' cannot be resumed: {problem}. It is damaged, cut short or "
                                  "not a training state gradwise wrote for this run; resume from the run directory "
                                  "that wrote it, or start the run again in a new directory.")
        load_weights_into(self.model, state, path)
        part = "optimizer"
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            part = "LR schedule"
            self.schedule.load_state_dict(state["schedule"])
            part = "loss scaler"
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            part = "callbacks'"
            self.callbacks.load_state_dict(state["callbacks"])
        except GradwiseError as exc:  # e.g. the schedule's own check (another schedule.name): add the file
            raise CheckpointError(f"checkpoint '{path}': {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint '{path}' cannot be resumed: its {part} state does not fit this run "
                                  f"({type(exc).__name__}: {_short(exc)}). Resume with the settings the run was "
                                  "trained with, or start the run again in a new directory.") from None
        self.epoch, self.step, self.batch_in_epoch = state["epoch"], state["step"], state["batch_in_epoch"]
        self.weights_epoch = _epoch_of(state)
        self._loss_sum.fill_(state["loss_sum"])
        self._loss_count = state["loss_count"]
        # the kept losses as exact float64 scalars: folding them gives the same sum as the uninterrupted epoch's
        kept = state.get("step_losses", [])
        self._step_losses = list(torch.tensor(kept, dtype=torch.float64, device=self.device).unbind()) if kept else []
        self._step_sizes = list(state.get("step_sizes", []))
        # checkpoints written before the JSON encoding hold the lists themselves
        self.history = json.loads(state["history_json"]) if "history_json" in state else list(state["history"])
        self.actions = json.loads(state["actions_json"]) if "actions_json" in state else list(state.get("actions", []))

    def _resume_problem(self, state: Any) -> str | None:
        """What makes `state` unfit to resume this trainer from (None when nothing does), checked without changing
        anything: the state itself (checkpoint.training_state_problem), then its optimizer against this one's. The
        weights are checked by load_weights_into."""
        return training_state_problem(state) or _optimizer_problem(state["optimizer"], self.optimizer)

    def save_checkpoint(self, which: str = "last", *also: str) -> None:
        """Write checkpoints/<which>.pt (and the same state as <also>.pt) atomically, unless the state is bad (a
        non-finite loss, or a callback's on_checkpoint vetoed it)."""
        if self._deferred_saves is not None:
            self._deferred_saves.extend(w for w in (which, *also) if w not in self._deferred_saves)
            return
        names = list(dict.fromkeys((which, *also)))
        if self._may_checkpoint(names):
            self._save(names)

    def _may_checkpoint(self, names: list[str]) -> bool:
        """Whether the callbacks let the current state be written as checkpoints/<names>.pt (one that judged the
        state broken vetoes it in on_checkpoint)."""
        return self.callbacks.ask("on_checkpoint", self, names)

    def _save(self, names: list[str]) -> None:
        """Write the state as checkpoints/<names>.pt (one write, several names), unless its last loss is broken."""
        if not bool(torch.isfinite(self.last_loss)):
            return  # never replace a good checkpoint with a broken state
        # data-parallel: every process's random streams go in (a collective: all processes save at the same step)
        ranks = self.dist.rng_states() if self.dist is not None else None
        if not self.is_main:
            return
        paths = [self.run_dir.checkpoints / f"{w}.pt" for w in names]
        state = self._state()
        if ranks is not None:
            state.update(rng_ranks=ranks, world_size=self.dist.world)
        self.checkpoints.save(paths[0], state, also=paths[1:])

    def load_weights(self, which: str = "best") -> None:
        """Put back the weights of checkpoints/<which>.pt (nothing else), if it exists; sets `restored_epoch`."""
        if self.dist is not None:  # rank 0 reads the file, the other processes take its weights
            self.weights_epoch = self.restored_epoch = self.dist.load_weights(self, which)
            return
        self.checkpoints.flush()
        path = self.run_dir.checkpoints / f"{which}.pt"
        if path.exists():
            state = load_checkpoint(path)
            self._load_state(state, weights_only=True, path=path)
            # the checkpoint's own epoch, not the one early stopping remembers: a best state that could not be
            # saved (a bad state is never checkpointed) leaves an older best.pt, and that is what the model holds
            self.weights_epoch = self.restored_epoch = _epoch_of(state)

    # ------------------------------------------------------------------------- requests from callbacks
    @property
    def failure(self) -> str | None:
        """Why a callback marked the run failed (`fail`), or None."""
        return self._failure

    def fail(self, reason: str) -> None:
        """Stop after this step (or epoch) and end the run with status "failed", `reason` as its stop_reason."""
        self._failure = reason
        self.stop_reason = reason
        self.should_stop = True

    def snapshot(self, name: str) -> None:
        """Keep the whole training state now in host memory under `name` (replacing one of that name), for a later
        `request(Request(restore=(name,)))`: e.g. the state at the start of the fit, to retrain from scratch."""
        self._snapshots[name] = self._state(in_memory=True)

    def request(self, request: Request) -> None:
        """Ask the loop to change course: restore a state, then scale the LR and set clipping (see events.py).
        Carried out after the current step or at the epoch end; a later request before then replaces it."""
        self._request = request

    def _carry_out(self) -> None:
        request, self._request = self._request, None
        assert request is not None
        # actions taken since the restored state was saved must survive loading it (they are the run's record)
        actions = list(self.actions)
        restored = None
        if request.restore:
            restored, path, state = self._find_state(request.restore)
            self._load_state(state, path=path)
            set_rng_state(state["rng"])
            self.actions = actions
            self.should_stop = False
        changes: dict[str, Any] = {}
        if request.lr_factor is not None:
            # the schedule owns the LR: it rescales the current LR and every LR it will compute from now on
            self.schedule.scale_lr(request.lr_factor)
            changes["lr_factor"] = request.lr_factor
            changes["lr"] = self.optimizer.param_groups[0]["lr"]
        if request.clip_grad is not None:
            self.clip_grad = request.clip_grad
            changes["clip_grad"] = request.clip_grad
        changes.update(request.note)
        action = {"step": self.step, "epoch": self.epoch, "action": "rollback" if restored else "adjust",
                  "reason": request.reason, "restored": restored, "changes": changes}
        self.actions.append(action)
        if restored:
            self._write("metrics.jsonl", self.run_dir.write_metrics, self.history)
        self.callbacks.fire("on_request_done", self, action)

    def _find_state(self, names: tuple[str, ...]) -> tuple[str, Path | None, dict[str, Any]]:
        """The first of `names` that exists: a snapshot of that name, else checkpoints/<name>.pt, with its path."""
        self.checkpoints.flush()

        def read() -> tuple[str | None, dict[str, Any] | None]:
            for name in names:
                if name in self._snapshots:  # every process took its own (the same step everywhere)
                    return name, None
                path = self.run_dir.checkpoints / f"{name}.pt"
                if path.exists():
                    return name, load_checkpoint(path)
            return None, None

        # data-parallel: rank 0 reads, every process takes the same state (with its own random streams)
        found, state = self.dist.read_on_main(read) if self.dist is not None else read()
        if found is None:
            raise TrainingError(f"a callback asked to restore one of {list(names)} but there is no such snapshot "
                                f"or checkpoint in {self.run_dir.checkpoints}.")
        if state is None:
            return found, None, self._snapshots[found]
        return found, self.run_dir.checkpoints / f"{found}.pt", self.dist.own_rng(state) if self.dist else state

    # ---------------------------------------------------------------------------------------- signals
    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}

        def handler(signum: int, frame: Any) -> None:
            if self.dist is not None:
                # data-parallel: the processes agree after this step to stop together (torchrun also passes a
                # Ctrl-C on as SIGTERM: a second signal is not a second Ctrl-C there)
                self.dist.pending_signal = self.dist.pending_signal or signum
                return
            if self._signal is not None:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._signal = signum
            self.stop_reason = f"received {signal.Signals(signum).name}: checkpoint saved, resume with --resume"

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    # ---------------------------------------------------------------------------------------- summary
    def _summary(self, seconds: float, test: dict[str, float], error: BaseException | None = None) -> dict[str, Any]:
        es = next((c for c in self.callbacks.callbacks if c.key == "early_stopping"), None)
        # per-class lists beside "test", not in it: cross-validation and tuning read every value there as a float
        test = dict(test)
        per_class = test.pop("per_class", None)
        summary: dict[str, Any] = {
            "status": self.status,
            "name": self.config.name,
            # gradwise.fit (a model object: only its weights can be rebuilt from the directory) or gradwise.train
            "trained_by": self.trained_by,
            "dir": str(self.run_dir.path),
            "epochs_completed": len(self.history),
            "resumed": self.resumed,
            "steps": self.step,
            "final": self.history[-1] if self.history else {},  # the last epoch trained
            # the epoch whose weights the run ends with (and which test metrics and `gradwise eval` see): the best
            # epoch when early stopping restored it, else the last; {} when stopped mid-epoch without a restore
            "kept": self._kept_row(),
            "restored_epoch": self.restored_epoch,
            "best": ({"monitor": es.cfg.monitor, "value": es.best, "epoch": es.best_epoch} if es else {}),
            "test": {f"test_{k}": v for k, v in test.items()},
            "test_per_class": per_class or {},
            "wall_seconds": round(seconds, 3),
            "device": str(self.device),
            "precision": self.precision,
            "threads": torch.get_num_threads(),  # CPU threads of torch's kernels during the run (train.threads)
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "processes": self.dist.world if self.dist is not None else 1,  # data-parallel processes
            "stop_reason": self.stop_reason,
            "actions": self.actions,
        }
        if error is not None:
            summary["error"] = f"{type(error).__name__}: {error}"
        return summary

    def _kept_row(self) -> dict[str, Any]:
        if self.weights_epoch is None:
            return {}
        return next((row for row in reversed(self.history) if row.get("epoch") == self.weights_epoch), {})


def _epoch_of(state: dict[str, Any]) -> int | None:
    """The epoch (1-based) whose end a checkpoint's state is, or None for a mid-epoch checkpoint (or the start, or a
    weights-only file that does not say)."""
    epoch = state.get("epoch")
    return epoch if type(epoch) is int and epoch > 0 and state.get("batch_in_epoch", 0) == 0 else None


def _short(exc: BaseException) -> str:
    """An exception's text on one line, cut short: torch's load_state_dict errors run over several lines."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else f"{text[:157]}..."


def _optimizer_problem(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> str | None:
    """What keeps a checkpoint's optimizer state (well-formed: training_state_problem checked it) from fitting
    `optimizer`: torch checks little of it on load, and a foreign one fails later, at a step (KeyError 'momentum'
    from an AdamW state loaded into SGD)."""
    theirs = [len(g["params"]) for g in saved["param_groups"]]
    ours = [len(g["params"]) for g in optimizer.param_groups]
    if theirs != ours:
        return (f"its optimizer has parameter groups of {theirs} tensors, this run's of {ours} (another model or "
                "another optim setting)")
    for group, own in zip(saved["param_groups"], optimizer.param_groups, strict=True):
        # another torch version adds or drops a setting on one side only (the optimizer fills it in on load);
        # another optimizer lacks some of this one's settings and has some of its own
        lacks = sorted(k for k in own if k not in group)
        extra = sorted(k for k in group if k not in own)
        if lacks and extra:
            return (f"its optimizer state is another optimizer's than this run's {type(optimizer).__name__} (it "
                    f"lacks {lacks[0]!r} and has {extra[0]!r}; was optim.name changed?)")
    return None


def _nonfinite_advice(trainer: Trainer) -> str:
    """What to change after a NaN/inf loss: the data when the last batch itself holds NaN/inf (no learning rate
    fixes that), the step size otherwise."""
    batch = trainer.last_batch
    for name, t in zip(("inputs", "targets"), batch or (), strict=False):
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return (f"The last training batch's {name} hold NaN or infinite values: clean or impute them before "
                    "training (tables read by gradwise: data.missing=median) or turn the doctor on "
                    "to find them before the first step.")
    return (f"Lower the learning rate (e.g. optim.lr={_tenth(trainer)}), keep gradient clipping on "
            "(train.clip_grad=1.0), or turn on doctor.repair=true.")


def _tenth(trainer: Trainer) -> str:
    return f"{trainer.optimizer.param_groups[0].get('initial_lr', trainer.optimizer.param_groups[0]['lr']) / 10:.2g}"

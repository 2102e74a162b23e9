"""The named events of a fit, where the doctor, trackers, pruning and progress bars plug in, and the requests a
callback can make of the loop.

The loop calls, in order::

    on_fit_start                      once, after the model, data and optimizer are ready (and after resume)
      on_epoch_start                  every epoch
        on_batch_start                every optimizer step, before the forward pass(es)
        on_after_backward             gradients are complete and unscaled, before clipping and the step
        on_batch_end                  after the optimizer step; trainer.last_loss holds the step's loss
      on_validation_end               after evaluating on val; `logs` holds the val metrics
      on_epoch_end                    logs = the epoch's row of metrics.jsonl (callbacks may add keys)
      on_checkpoint                   before checkpoints/<names>.pt are written; returning False vetoes the write
      on_request_done                 after the loop carried out a `Request` (see below)
    on_train_end                      training stopped (done, early stop, signal); before the test evaluation
    on_fit_end                        summary is final; the run directory is complete
    on_exception                      something raised inside the fit

``on_checkpoint(trainer, names)`` fires before every checkpoint write (the epoch's last.pt and best.pt, a
``train.checkpoint_every`` or signal save): a callback that judged the current state broken (a diverged loss)
returns False and nothing is written, so a good checkpoint is never replaced by a broken state. At an epoch end it
fires once the epoch's row is final; a non-finite epoch loss whose checkpoint no callback vetoed (nobody took the
broken state in hand: the doctor is off) stops the run with a TrainingError.

What a callback can read on the trainer (a read-only view: change the run only through the methods below):
``model``, ``optimizer``, ``schedule``, ``loss_fn``, ``forward`` (a model's forward function, or None),
``penalty`` (the explicit L1/L2 term, or None), ``autocast()`` (the forward pass's precision context),
``precision``, ``config``, ``task``, ``device``, ``dist`` (the data-parallel group, None in one process),
``is_main``, ``train_loader``/``val_loader``/``test_loader``, ``epoch`` (0-based index of the epoch being trained),
``epochs_done`` (epochs finished; in on_validation_end/on_epoch_end it counts the epoch ending there, so it equals
``logs["epoch"]`` and ``epoch + 1``), ``epochs`` (planned), ``step`` (optimizer steps so far), ``batch_in_epoch``,
``steps_per_epoch``, ``clip_grad`` (the clipping in force, None: off), ``last_loss`` (the last step's loss, a
detached tensor: reading it as a float costs a device sync), ``epoch_loss()`` (the epoch's mean training loss so
far; a device sync), ``samples_in_epoch``, ``last_batch``, ``history``, ``actions`` (the requests carried out),
``resumed``, ``failure``, ``status``, ``run_dir``, ``console``.

What it can change: ``should_stop`` (finish after this epoch/step), ``stop_reason``, ``eval_model`` (a module
evaluated and saved as checkpoints' "model" in the model's place: weight averaging's copy), and through methods:

* ``trainer.fail(reason)``: stop after this step and end the run with status "failed" (a data-parallel run agrees
  on it across the processes);
* ``trainer.snapshot(name)``: keep the whole training state now (weights, optimizer, schedule, progress, history,
  callbacks' states, random streams) in host memory under `name`, for a later `Request(restore=(name,))`;
* ``trainer.request(Request(...))``: change course (the one public way: repair uses nothing else). The loop carries
  it out after the current step, or, asked in on_validation_end/on_epoch_end, at the epoch end: a request that
  restores drops the uncommitted epoch, one that only changes settings lets the epoch stand. It restores the first
  of ``restore``'s names that exists (a snapshot of that name, else checkpoints/<name>.pt; empty: keep the current
  state; none of them: a TrainingError naming them), then scales the LR by ``lr_factor`` (the schedule rescales
  every LR it computes from then on) and sets ``clip_grad``. It appends a record to ``trainer.actions``
  (``action``: rollback | adjust, ``step``, ``epoch``, ``reason``, ``restored``: the name restored or None,
  ``changes``: the new settings and the request's ``note``) and fires ``on_request_done(trainer, action)``. A
  restore reloads every callback's state from the restored one: a callback whose knowledge must outlive it (the
  doctor's findings and repair count) puts it back in on_request_done.

A callback that keeps state across a resume implements ``state_dict``/``load_state_dict``; the state goes into
every checkpoint under the callback's ``key``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradwise.train.loop import Trainer


@dataclass(frozen=True)
class Request:
    """A change of course asked of the loop through `trainer.request` (see the module's docstring).

    `restore`: the states to go back to, tried in order: a snapshot's name (`trainer.snapshot`) or a checkpoint's
    ("last", "best"); empty: keep the current state. `lr_factor` scales the LR, `clip_grad` sets gradient clipping
    (norm or value, as train.clip_mode says). `note` goes into the action's record (who asked, and why)."""

    reason: str
    restore: tuple[str, ...] = ()
    lr_factor: float | None = None
    clip_grad: float | None = None
    note: dict[str, Any] = field(default_factory=dict)


class Callback:
    """Base class: override the events you need. All are no-ops here."""

    key: str | None = None  # name of this callback's state in checkpoints (None: stateless)
    order: int = 50  # lower runs first (early stopping must see metrics the doctor adds, progress prints last)

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer) -> None: ...
    def on_batch_start(self, trainer: Trainer) -> None: ...
    def on_after_backward(self, trainer: Trainer) -> None: ...
    def on_batch_end(self, trainer: Trainer) -> None: ...
    def on_validation_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...
    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...
    def on_checkpoint(self, trainer: Trainer, names: list[str]) -> bool | None: ...
    def on_request_done(self, trainer: Trainer, action: dict[str, Any]) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...
    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...
    def on_exception(self, trainer: Trainer, exc: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


_EVENTS = ("on_fit_start", "on_epoch_start", "on_batch_start", "on_after_backward", "on_batch_end",
           "on_validation_end", "on_epoch_end", "on_checkpoint", "on_request_done", "on_train_end", "on_fit_end",
           "on_exception")


class CallbackList:
    """Dispatches an event to every callback that overrides it (so unused per-batch events cost nothing)."""

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = sorted(callbacks, key=lambda c: c.order)
        self._handlers: dict[str, list[Any]] = {}
        self._rebuild()

    def _rebuild(self) -> None:
        for event in _EVENTS:
            self._handlers[event] = [getattr(c, event) for c in self.callbacks
                                     if getattr(type(c), event, None) is not getattr(Callback, event)]

    def add(self, callback: Callback) -> None:
        self.callbacks.append(callback)
        self.callbacks.sort(key=lambda c: c.order)
        self._rebuild()

    def has(self, event: str) -> bool:
        return bool(self._handlers[event])

    def fire(self, event: str, *args: Any) -> None:
        for handler in self._handlers[event]:
            handler(*args)

    def ask(self, event: str, *args: Any) -> bool:
        """Fire `event` at every callback that overrides it; False when any of them answered False (a veto)."""
        answers = [handler(*args) for handler in self._handlers[event]]  # all are told, also after a veto
        return not any(a is False for a in answers)

    def find(self, cls: type) -> Any:
        return next((c for c in self.callbacks if isinstance(c, cls)), None)

    def state_dict(self) -> dict[str, Any]:
        return {c.key: c.state_dict() for c in self.callbacks if c.key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for c in self.callbacks:
            if c.key and c.key in state:
                c.load_state_dict(state[c.key])

"""The named events of a fit, where the doctor, trackers, pruning and progress bars plug in.

The loop calls, in order::

    on_fit_start                      once, after the model, data and optimizer are ready (and after resume)
      on_epoch_start                  every epoch
        on_batch_start                every optimizer step, before the forward pass(es)
        on_after_backward             gradients are complete and unscaled, before clipping and the step
        on_batch_end                  after the optimizer step; trainer.last_loss holds the step's loss
      on_validation_end               after evaluating on val; `logs` holds the val metrics
      on_epoch_end                    logs = the epoch's row of metrics.jsonl (callbacks may add keys)
    on_train_end                      training stopped (done, early stop, signal); before the test evaluation
    on_fit_end                        summary is final; the run directory is complete
    on_exception                      something raised inside the fit

What a callback can read on the trainer: ``model``, ``optimizer``, ``schedule``, ``loss_fn``, ``config``,
``device``, ``epoch`` (0-based index of the epoch being trained), ``epochs_done`` (epochs finished; in
on_validation_end/on_epoch_end it counts the epoch ending there, so it equals ``logs["epoch"]`` and
``epoch + 1``), ``epochs`` (planned), ``step`` (optimizer steps so far), ``batch_in_epoch``, ``steps_per_epoch``,
``last_loss`` (the last step's loss, a detached tensor: reading it as a float costs a device sync),
``epoch_loss()`` (the epoch's mean training loss so far; a device sync), ``samples_in_epoch``, ``last_batch``,
``history``, ``run_dir``, ``is_main``. What it can change: ``should_stop`` (finish after this epoch/step),
``stop_reason``, ``request_rollback(...)`` (restore the last good checkpoint and go on with changed settings),
``eval_model`` (a module evaluated and saved as checkpoints' "model" in the model's place: weight averaging's copy).

A callback that keeps state across a resume implements ``state_dict``/``load_state_dict``; the state goes into
every checkpoint under the callback's ``key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradwise.train.loop import Trainer


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
    def on_train_end(self, trainer: Trainer) -> None: ...
    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...
    def on_exception(self, trainer: Trainer, exc: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


_EVENTS = ("on_fit_start", "on_epoch_start", "on_batch_start", "on_after_backward", "on_batch_end",
           "on_validation_end", "on_epoch_end", "on_train_end", "on_fit_end", "on_exception")


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

    def find(self, cls: type) -> Any:
        return next((c for c in self.callbacks if isinstance(c, cls)), None)

    def state_dict(self) -> dict[str, Any]:
        return {c.key: c.state_dict() for c in self.callbacks if c.key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for c in self.callbacks:
            if c.key and c.key in state:
                c.load_state_dict(state[c.key])

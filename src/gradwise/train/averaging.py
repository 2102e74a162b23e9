"""Weight averaging: an exponential moving average of the weights (`train.ema`) or stochastic weight averaging
(`train.swa`), on torch.optim.swa_utils (AveragedModel, get_ema_multi_avg_fn, SWALR, update_bn).

How it plugs into the loop: the averaged copy is the trainer's ``eval_model``, which the loop evaluates (validation,
so early stopping and best.pt follow the average) and saves as a checkpoint's ``"model"`` (so `gradwise eval`,
`predict` and `export`, which read that key, use the average with no change of their own). The raw weights the
optimizer trains go into the checkpoint beside it, under this callback's state, so that `--resume` continues the
very same optimization: bit for bit what the uninterrupted run does.

- EMA: after every optimizer step, ``ema = decay * ema + (1 - decay) * weights`` over parameters and buffers
  (BatchNorm's running statistics are averaged too, as timm's ModelEma does), so no BatchNorm pass is needed.
- SWA: from epoch ``floor(start * epochs) + 1`` on, the weights at the end of each epoch are averaged with equal
  weight; SWALR moves the LR to ``swa.lr`` over ``anneal_epochs`` (the LR part is `SwaLR`, a separate callback so it
  runs before the step log records the LR). At the end the BatchNorm statistics of the averaged weights are
  recomputed over the training data (update_bn) and written into the checkpoint the run ends with.

At the end of the fit the model holds the averaged weights (unless early stopping put back best.pt, which holds the
average of its epoch), so the test metrics and the model `gradwise.fit` returns are the average's.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

from gradwise.errors import CheckpointError
from gradwise.train.checkpoint import load_checkpoint, snapshot
from gradwise.train.events import Callback
from gradwise.train.metrics import to_device

if TYPE_CHECKING:
    from gradwise.config import EmaConfig, SwaConfig
    from gradwise.train.loop import Trainer


def swa_start_epoch(start: float, epochs: int) -> int:
    """The 0-based index of the first averaged epoch: floor(start * epochs), at most the last epoch."""
    return min(math.floor(start * epochs), epochs - 1)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class _Forward(nn.Module):
    """The model called the way the loop calls it (a custom `forward=` of gradwise.fit), for update_bn."""

    def __init__(self, model: nn.Module, forward: Any) -> None:
        super().__init__()
        self.model = model
        self.call = forward

    def forward(self, x: Any) -> Any:
        return self.call(self.model, x) if self.call is not None else self.model(x)


class WeightAveraging(Callback):
    """Keeps the averaged weights, hands them to the loop as `trainer.eval_model`, and puts them in the model at the
    end. Order 45: after early stopping (40), whose on_train_end may put best.pt back first."""

    key = "averaging"
    order = 45

    def __init__(self, model: nn.Module, ema: EmaConfig | None = None, swa: SwaConfig | None = None) -> None:
        if (ema is None) == (swa is None):
            raise ValueError("WeightAveraging needs exactly one of ema and swa")
        self.model = model
        self.ema, self.swa = ema, swa
        self.averaged: AveragedModel | None = None
        self.trainer: Trainer | None = None
        self.first_epoch: int | None = None  # SWA: the (1-based) epoch whose end was averaged first
        self._raw_at_end: dict[str, torch.Tensor] | None = None  # the raw weights once the average replaced them

    # ------------------------------------------------------------------------------------------- the average
    def _average(self) -> AveragedModel:
        """The AveragedModel, made on first use: from the fit's start, or from a checkpoint's load (the model is on
        its device by then)."""
        if self.averaged is None:
            if self.ema is not None:
                # buffers too: BatchNorm's running statistics then follow the averaged weights
                self.averaged = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.ema.decay),
                                              use_buffers=True)
            else:  # equal weights; the buffers follow the raw model until update_bn recomputes them at the end
                self.averaged = AveragedModel(self.model)
        return self.averaged

    @property
    def n_averaged(self) -> int:
        return int(self.averaged.n_averaged) if self.averaged is not None else 0

    def _publish(self) -> None:
        """Tell the loop which weights to evaluate and checkpoint: the average once it holds anything."""
        if self.trainer is not None:
            self.trainer.eval_model = self._average().module if self.n_averaged > 0 else None

    # ---------------------------------------------------------------------------------------------- events
    def on_fit_start(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self._average()
        self._publish()
        steps = trainer.epochs * trainer.steps_per_epoch
        if self.ema is not None and 1 / (1 - self.ema.decay) > steps / 3:
            # measured (bench/averaging.py): an EMA remembering a third of the run or more still holds early,
            # untrained weights at the end, and was 3 points worse than no averaging on MNIST-1D
            best = max(0.5, math.floor((1 - 10 / steps) * 1000) / 1000)  # remembering a tenth of the run
            warnings.warn(f"train.ema.decay = {self.ema.decay} averages over ~{1 / (1 - self.ema.decay):.0f} steps, "
                          f"more than a third of this run's {steps}: the average will still hold early weights. "
                          f"Use e.g. train.ema.decay={best}, or train longer.", UserWarning, stacklevel=2)

    def on_batch_end(self, trainer: Trainer) -> None:
        if self.ema is not None:
            self._average().update_parameters(trainer.model)
        else:
            assert self.swa is not None
            last_step = trainer.batch_in_epoch == trainer.steps_per_epoch  # the epoch's weights are final
            if not last_step or (self.n_averaged == 0
                                 and trainer.epoch < swa_start_epoch(self.swa.start, trainer.epochs)):
                return
            self._average().update_parameters(trainer.model)
            self.first_epoch = self.first_epoch or trainer.epoch + 1
        self._publish()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.n_averaged == 0:
            return
        averaged = self._average().module
        if trainer.restored_epoch is None:  # else early stopping put back best.pt: the average of its epoch
            self._raw_at_end = snapshot(trainer.model.state_dict())
            trainer.model.load_state_dict(averaged.state_dict())
        trainer.eval_model = None  # the model holds what is evaluated from here on (the test)
        kept = trainer.restored_epoch or trainer.weights_epoch
        if (self.swa is not None and trainer.status == "completed" and has_batch_norm(trainer.model)
                and kept is not None and self.first_epoch is not None and kept >= self.first_epoch):
            self._recompute_batch_norm(trainer, "best" if trainer.restored_epoch is not None else "last")

    def _recompute_batch_norm(self, trainer: Trainer, which: str) -> None:
        """update_bn over the training data, then the recomputed statistics into checkpoints/<which>.pt (export and
        predict read the weights from there)."""
        loader = trainer.train_loader
        # the same batches as the uninterrupted run's last epoch, whatever a resume left the loader at
        loader.set_epoch(max(trainer.epoch - 1, 0), skip_batches=0)
        inputs = ([to_device(batch, trainer.device)[0]] for batch in loader)  # [x]: update_bn calls model(batch[0])
        update_bn(inputs, _Forward(trainer.model, trainer.forward))
        trainer.model.eval()
        if not trainer.is_main:
            return
        path = trainer.run_dir.checkpoints / f"{which}.pt"
        trainer.checkpoints.flush()
        if path.exists():
            state = load_checkpoint(path)
            state["model"] = trainer.model.state_dict()
            trainer.checkpoints.save(path, state)

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        n = self.n_averaged
        raw = None
        if n > 0:  # the checkpoint's "model" is the average (the loop saves eval_model): the raw weights go here
            raw = self._raw_at_end if self._raw_at_end is not None else self.model.state_dict()
        return {"n_averaged": n, "raw": raw, "first_epoch": self.first_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n, raw, first = state.get("n_averaged"), state.get("raw"), state.get("first_epoch")
        if type(n) is not int or n < 0 or (n > 0 and not isinstance(raw, dict)) or (
                first is not None and type(first) is not int):
            raise CheckpointError("its weight-averaging state is damaged (n_averaged, raw weights); it was not "
                                  "written by this run's train.ema/train.swa")
        averaged = self._average()
        if n > 0:
            # the loop has just put the checkpoint's "model" (the average) into the model: it goes to the average,
            # and the raw weights back into the model the optimizer trains
            averaged.module.load_state_dict(self.model.state_dict())
            self.model.load_state_dict(raw)
        averaged.n_averaged.fill_(n)
        self.first_epoch = first
        self._raw_at_end = None
        self._publish()


class SwaLR(Callback):
    """The LR of SWA's averaging epochs, from torch's SWALR (stepped once an epoch). Order 35: before the step log
    (40) records the LR an optimizer step leaves; the loop's own schedule keeps stepping, and is overridden."""

    key = "swa_lr"
    order = 35

    def __init__(self, swa: SwaConfig, optimizer: torch.optim.Optimizer) -> None:
        self.swa = swa
        self.optimizer = optimizer
        self.scheduler: SWALR | None = None

    def _make(self, swa_lrs: list[float]) -> SWALR:
        with warnings.catch_warnings():  # SWALR's own first step, before this process's first optimizer step
            warnings.simplefilter("ignore")
            return SWALR(self.optimizer, swa_lr=swa_lrs, anneal_epochs=self.swa.anneal_epochs,
                         anneal_strategy=self.swa.anneal_strategy)

    def on_epoch_start(self, trainer: Trainer) -> None:
        if self.scheduler is None and trainer.epoch < swa_start_epoch(self.swa.start, trainer.epochs):
            return
        groups = trainer.optimizer.param_groups
        if trainer.batch_in_epoch == 0:  # a new epoch (a resumed epoch's start was counted before the kill)
            if self.scheduler is None:
                # the groups keep their ratios (lr_decay_groups); null holds the LR reached here
                target = self.swa.lr
                lrs = [g["lr"] if target is None else target * g.get("lr_scale", 1.0) for g in groups]
                self.scheduler = self._make(lrs)
            else:  # SWALR computes from the LR it set last, not from what the loop's schedule set since
                for group, lr in zip(groups, self.scheduler.get_last_lr(), strict=True):
                    group["lr"] = lr
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.scheduler.step()
        self._apply(trainer)

    def on_batch_end(self, trainer: Trainer) -> None:
        if self.scheduler is not None:
            self._apply(trainer)  # the loop's schedule stepped after the optimizer: the SWA LR wins

    def _apply(self, trainer: Trainer) -> None:
        assert self.scheduler is not None
        for group, lr in zip(trainer.optimizer.param_groups, self.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict() if self.scheduler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("scheduler")
        if saved is None:
            self.scheduler = None
            return
        if not isinstance(saved, dict) or "_last_lr" not in saved:
            raise CheckpointError("its SWA learning-rate state is damaged")
        # the optimizer's state (loaded first) holds each group's swa_lr; SWALR's own state then says where it is
        groups = self.optimizer.param_groups
        self.scheduler = self._make([g.get("swa_lr", g["lr"]) for g in groups])
        self.scheduler.load_state_dict(saved)
        for group, lr in zip(groups, self.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr

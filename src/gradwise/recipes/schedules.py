"""Learning-rate schedules from a ``ScheduleConfig``, and the learning-rate finder.

A :class:`Schedule` wraps one torch.optim.lr_scheduler object and tells the training loop when to step it:
``step_batch()`` after every optimizer step (steps per-batch schedules), ``step_epoch(metrics)`` at every
epoch end (steps per-epoch schedules; ``reduce_on_plateau`` reads ``val_loss``, else ``train_loss``).

Why LambdaLR for cosine / warmup_cosine / warmup_linear: torch's CosineAnnealingLR takes an *absolute* eta_min
shared by all param groups, so with per-group LRs (no-decay groups, discriminative LRs) and ``min_lr > 0``
the groups would not scale together; it also climbs back up if stepped past T_max. A LambdaLR factor is
applied to each group's own peak LR, and our factor is clamped at the end of the run. The warmup part equals
``LinearLR(start_factor=1/(W+1), total_iters=W)`` exactly; the decay part equals CosineAnnealingLR / LinearLR
with the floor scaled per group (the tests check both against the torch classes).

Resuming: build the optimizer, build the schedule, then load the optimizer state, then the schedule state.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim import lr_scheduler as lrs

from gradwise.config import ScheduleConfig
from gradwise.errors import CheckpointError, ConfigError, DataError
from gradwise.recipes.optim import canonical_name

SCHEDULES = ("constant", "step", "multistep", "exponential", "cosine", "warmup_cosine", "warmup_linear",
             "one_cycle", "reduce_on_plateau")
PER_BATCH = frozenset({"cosine", "warmup_cosine", "warmup_linear", "one_cycle"})
# LR finder: the "steepest" point is the middle of the stretch falling at >= this fraction of the fastest rate
STEEP_FRACTION = 0.8


@dataclass
class WarmupDecay:
    """LR factor (of each group's peak LR) at scheduler step ``s``, i.e. the LR of optimizer step ``s + 1``.

    * warmup (``s < warmup``): ``(s + 1) / (warmup + 1)`` - starts near 0, never exactly 0 (a wasted step);
    * then decay over the remaining ``total - warmup`` steps to ``min_factor``: ``cosine`` is
      ``min + (1 - min)·½(1 + cos(π·p))``, ``linear`` is ``min + (1 - min)·(1 - p)`` with
      ``p = (s - warmup) / (total - warmup)`` clamped to [0, 1], so stepping past the end holds the floor.

    A dataclass rather than a closure: LambdaLR saves a callable object's ``__dict__`` (ints, floats, a
    string) in its state_dict, which keeps checkpoints ``weights_only``-loadable and self-describing.
    """

    total: int
    warmup: int = 0
    min_factor: float = 0.0
    kind: str = "cosine"

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if self.kind == "cosine" else 1.0 - progress
        return self.min_factor + (1.0 - self.min_factor) * decay


@dataclass
class ConstantFactor:
    """LR factor 1 at every step (the ``constant`` schedule)."""

    def __call__(self, step: int) -> float:
        return 1.0


def warmup_steps(warmup: float, total: int) -> int:
    """``warmup`` < 1 is a fraction of all steps, otherwise a step count; clamped to [0, total]."""
    steps = round(warmup * total) if warmup < 1 else int(warmup)
    return max(0, min(total, steps))


class Schedule:
    """A torch LR scheduler plus when to step it. See the module docstring for the protocol."""

    def __init__(self, name: str, scheduler: lrs.LRScheduler | lrs.ReduceLROnPlateau, optimizer: torch.optim.Optimizer,
                 per_batch: bool, total_steps: int) -> None:
        self.name = name
        self.scheduler = scheduler
        self.optimizer = optimizer
        self.per_batch = per_batch
        self.total_steps = total_steps
        self._monitor: str | None = None  # the metric reduce_on_plateau follows, fixed once val_loss is seen

    def __repr__(self) -> str:
        return f"Schedule({self.name!r}, per_batch={self.per_batch}, lr={self.lr:.3g})"

    @property
    def lr(self) -> float:
        """Current learning rate of param group 0."""
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def lrs(self) -> list[float]:
        """Current learning rate of every param group."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def step_batch(self) -> None:
        """Call after every optimizer step; steps per-batch schedules only."""
        if not self.per_batch:
            return
        if isinstance(self.scheduler, lrs.OneCycleLR) and self.scheduler.last_epoch >= self.scheduler.total_steps:
            # OneCycleLR raises when stepped past total_steps; hold the final LR instead (e.g. one extra step
            # from a partial accumulation window should not crash a long run).
            return
        self.scheduler.step()

    def step_epoch(self, metrics: dict[str, float] | None = None) -> None:
        """Call at every epoch end; steps per-epoch schedules. reduce_on_plateau needs val_loss or train_loss."""
        if self.per_batch:
            return
        if isinstance(self.scheduler, lrs.ReduceLROnPlateau):
            metrics = metrics or {}
            # Once val_loss has been seen, epochs without it (eval_every > 1) are skipped rather than compared
            # on train_loss: mixing the two would make the lower train loss look like an improvement.
            key = "val_loss" if "val_loss" in metrics else ("train_loss" if self._monitor != "val_loss" else None)
            if key is None:
                return
            if key not in metrics:
                raise ConfigError("schedule.name = 'reduce_on_plateau' needs 'val_loss' or 'train_loss' in the "
                                  f"epoch metrics, got {sorted(metrics)}. Pass them to step_epoch or choose "
                                  "another schedule.")
            self._monitor = key
            self.scheduler.step(float(metrics[key]))
        else:
            self.scheduler.step()

    def scale_lr(self, factor: float) -> None:
        """Multiply the current LR *and* every reference future steps derive from by ``factor`` (doctor repair).

        Scales each group's ``lr``, ``initial_lr`` and (one_cycle) ``max_lr``/``min_lr``, the scheduler's
        ``base_lrs`` and (reduce_on_plateau) its LR floors, so the rest of the run is the schedule of a peak LR
        ``factor`` times lower. Idempotent with respect to a caller that already scaled the groups' ``lr`` and
        ``initial_lr`` itself: those two are recomputed from the scheduler's own records, not multiplied again.
        """
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"scale_lr: factor = {factor} must be a positive finite number, e.g. 0.1.")
        sched = self.scheduler
        last = [float(v) for v in sched.get_last_lr()]  # the LRs in effect before anyone scaled them
        base = getattr(sched, "base_lrs", None)
        if base is not None:
            sched.base_lrs = [b * factor for b in base]
        for i, group in enumerate(self.optimizer.param_groups):
            group["lr"] = last[i] * factor
            if base is not None and "initial_lr" in group:
                group["initial_lr"] = sched.base_lrs[i]  # base_lrs were taken from initial_lr at construction
            for key in ("max_lr", "min_lr"):  # set by OneCycleLR only; nobody else scales them
                if key in group:
                    group[key] *= factor
        if isinstance(sched, lrs.ReduceLROnPlateau):
            sched.min_lrs = [m * factor for m in sched.min_lrs]
        sched._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Primitives, lists and dicts only: loadable with ``torch.load(weights_only=True)``."""
        return {"name": self.name, "per_batch": self.per_batch, "total_steps": self.total_steps,
                "monitor": self._monitor, "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise CheckpointError(f"the checkpoint's LR schedule is {state.get('name')!r} but the config says "
                                  f"schedule.name = {self.name!r}; resume with the original schedule.")
        self.scheduler.load_state_dict(state["scheduler"])
        self._monitor = state.get("monitor")
        # Torch schedulers restore their counters but leave the groups' LR as the freshly built scheduler set
        # it (its step-0 value); put back the LR that was in effect when the state was saved.
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int,
                    epochs: int) -> Schedule:
    """Build the schedule named by ``cfg.name``. ``steps_per_epoch`` counts optimizer steps (after accumulation).

    ``min_lr`` is a fraction of each group's peak LR, so per-group LRs keep their ratios throughout.
    ``warmup`` is used by warmup_cosine and warmup_linear only (one_cycle has its own 30 % warmup).
    """
    name = canonical_name("schedule.name", cfg.name, SCHEDULES, "LR schedule",
                          aliases={"none": "constant", "onecycle": "one_cycle", "plateau": "reduce_on_plateau",
                                   "cos": "cosine"})
    if steps_per_epoch < 1 or epochs < 1:
        raise ConfigError(f"cannot build the LR schedule: steps_per_epoch = {steps_per_epoch} and epochs = "
                          f"{epochs} must both be >= 1; check train.epochs, the batch size and the data size.")
    total = int(steps_per_epoch) * int(epochs)
    peaks = [float(g["lr"]) for g in optimizer.param_groups]
    sched: lrs.LRScheduler | lrs.ReduceLROnPlateau
    if name == "constant":
        sched = lrs.LambdaLR(optimizer, ConstantFactor())
    elif name == "step":
        sched = lrs.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    elif name == "multistep":
        sched = lrs.MultiStepLR(optimizer, milestones=sorted(cfg.milestones), gamma=cfg.gamma)
    elif name == "exponential":
        sched = lrs.ExponentialLR(optimizer, gamma=cfg.gamma)
    elif name in ("cosine", "warmup_cosine", "warmup_linear"):
        warm = 0 if name == "cosine" else warmup_steps(cfg.warmup, total)
        kind = "linear" if name == "warmup_linear" else "cosine"
        sched = lrs.LambdaLR(optimizer, WarmupDecay(total=total, warmup=warm, min_factor=cfg.min_lr, kind=kind))
    elif name == "one_cycle":
        # cycling momentum is only meaningful where the optimizer has one (SGD/RMSprop with momentum > 0, or
        # Adam-style beta1); OneCycleLR raises for Adagrad and would switch momentum *on* for plain SGD.
        defaults = optimizer.defaults
        cycle = "betas" in defaults or float(defaults.get("momentum", 0.0)) > 0
        sched = lrs.OneCycleLR(optimizer, max_lr=peaks, total_steps=total, cycle_momentum=cycle)
    else:  # reduce_on_plateau
        if not cfg.gamma < 1:
            raise ConfigError(f"schedule.gamma = {cfg.gamma} is invalid for reduce_on_plateau: the LR is "
                              "multiplied by gamma on a plateau, so it must be in (0, 1), e.g. 0.1.")
        sched = lrs.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.gamma, patience=cfg.patience,
                                      min_lr=[cfg.min_lr * p for p in peaks])
    return Schedule(name, sched, optimizer, per_batch=name in PER_BATCH, total_steps=total)


# --------------------------------------------------------------------------------------------- lr finder


def round_sig(value: float | None) -> float | None:
    """``value`` to 3 significant digits (None stays None): what the finder's printouts and JSON show."""
    return None if value is None else float(f"{value:.3g}")


@dataclass
class LRFindResult:
    """What the LR finder saw: the swept LRs, the raw and smoothed losses, and the points read off the curve.

    ``losses`` is the raw loss smoothed *without lag* (:func:`smooth_losses`: a local-linear fit centred on each
    point, so the curve's minimum and its steepest point sit where the raw curve puts them; the exponential moving
    average the sweep uses to detect divergence lags ~1/(1-beta) steps and would move both to the right).

    * ``suggestion``: the steepest descent (Smith's "where the loss falls fastest"), a good *constant* LR: the
      middle of the stretch before the minimum where d(smoothed loss)/d(log10 lr) is within 80 % of its most
      negative value (see _suggest);
    * ``minimum``: the LR at the smoothed loss's minimum, the edge beyond which larger steps stop helping; no
      peak LR should exceed it;
    * ``valley``: fastai's valley rule (⅓ + ⅙ of the way along the longest decreasing run), kept for reference.

    Each is None when too few finite points were recorded. :meth:`recommend` turns them into a peak LR.
    """

    lrs: list[float]
    losses: list[float]  # smoothed without lag (see smooth_losses)
    raw_losses: list[float]
    suggestion: float | None
    valley: float | None
    stopped_early: bool = False
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    minimum: float | None = None

    def __repr__(self) -> str:
        # the full curves are hundreds of floats: show their length and the rounded suggestions instead
        seconds = self.extra.get("seconds")
        took = f", seconds={seconds:.3g}" if isinstance(seconds, float) else ""
        return (f"LRFindResult(points={len(self.lrs)}, steepest={round_sig(self.suggestion)}, "
                f"minimum={round_sig(self.minimum)}, valley={round_sig(self.valley)}, "
                f"stopped_early={self.stopped_early}, reason={self.reason!r}{took})")

    def recommend(self, schedule_factor: float = 1.0) -> float | None:
        """The peak LR for a run whose schedule averages ``schedule_factor`` × its peak (see schedule_mean_factor).

        The steepest descent is where a constant LR makes the most progress per step. An annealed schedule (e.g.
        warmup + cosine, mean factor ~0.5) spends most steps below its peak, so its peak is the steepest LR divided
        by the mean factor: the same average step size. The peak is capped at the curve's minimum, the LR at which
        the loss stopped improving during the sweep. Without a steepest point: the classic "minimum / 10".
        """
        if not (math.isfinite(schedule_factor) and schedule_factor > 0):
            raise ValueError(f"recommend: schedule_factor = {schedule_factor} must be a positive finite number.")
        if self.suggestion is None:
            return None if self.minimum is None else self.minimum / 10
        lr = self.suggestion / min(1.0, schedule_factor)
        return min(lr, self.minimum) if self.minimum is not None else lr

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def plot(self, path: str | Path, pick: float | None = None) -> Path:
        """Save loss vs LR (log x axis) with the suggestions (and ``pick``) marked, as a PNG; returns the path."""
        # Figure + FigureCanvasAgg instead of pyplot: no global backend switch, no GUI, safe in threads.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig = Figure(figsize=(7, 4.5), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        lrs_ = np.asarray(self.lrs, dtype=float)
        sm = np.asarray(self.losses, dtype=float)
        raw = np.asarray(self.raw_losses, dtype=float)
        ok = np.isfinite(sm)
        if raw.size:
            ax.plot(lrs_[np.isfinite(raw)], raw[np.isfinite(raw)], color="0.75", lw=0.8, label="raw loss")
        ax.plot(lrs_[ok], sm[ok], color="C0", lw=1.8, label="smoothed loss (no lag)")
        marks = ((self.suggestion, "steepest", "C3", "--"), (self.minimum, "minimum", "C1", "--"),
                 (pick, "picked", "k", "-"))
        for value, label, color, style in marks:
            if value is not None:
                ax.axvline(value, color=color, ls=style, lw=1.2, label=f"{label}: {value:.3g}")
        ax.set_xscale("log")
        if ok.any():  # the last points explode; keep the interesting range readable
            finite_raw = raw[np.isfinite(raw)]
            lo = min(float(sm[ok].min()), float(finite_raw.min()) if finite_raw.size else math.inf)
            hi = float(sm[ok][: max(1, ok.sum() // 10)].max())
            hi = max(hi, lo * 1.05 + 1e-12)
            pad = 0.1 * (hi - lo)
            ax.set_ylim(lo - pad, hi + 3 * pad)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title("learning-rate finder")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, format="png")
        return path


def _finite_prefix(lrs_: list[float], losses: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The sweep up to (not including) its first non-finite loss or LR: what follows is divergence."""
    lr_arr = np.asarray(lrs_, dtype=float)
    loss_arr = np.asarray(losses, dtype=float)
    bad = np.flatnonzero(~np.isfinite(loss_arr) | ~np.isfinite(lr_arr) | (lr_arr <= 0))
    n = int(bad[0]) if bad.size else loss_arr.size
    return lr_arr[:n], loss_arr[:n]


def smooth_losses(lrs_: list[float], losses: list[float], bandwidth: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Zero-lag smoothing of an LR sweep: (smoothed loss, its slope per decade), NaN from the first bad point on.

    Each point is a weighted least-squares *line* through its neighbours (Gaussian weights of width ``bandwidth``
    decades of LR, i.e. LOESS of degree 1 without robustness passes). The weights are symmetric, so a trend is not
    delayed the way an exponential moving average delays it (~beta/(1-beta) steps: ~50 of a 100-step sweep at
    beta=0.98, one to two decades); fitting a line rather than averaging also keeps the two ends unbiased, where a
    plain kernel average is pulled towards the interior. The bandwidth is in decades so the curve does not depend
    on the number of steps; it is widened to 1.5 steps when the sweep is coarser than that.
    """
    lr_arr, loss_arr = _finite_prefix(lrs_, losses)
    total = len(losses)
    level = np.full(total, np.nan)
    slope = np.full(total, np.nan)
    n = loss_arr.size
    if n == 0:
        return level, slope
    if n == 1:
        level[0], slope[0] = loss_arr[0], 0.0
        return level, slope
    x = np.log10(lr_arr)
    spacing = float(np.median(np.abs(np.diff(x)))) if n > 1 else 0.0
    bw = max(bandwidth, 1.5 * spacing, 1e-12)
    d = x[None, :] - x[:, None]  # d[i, j] = x_j - x_i
    w = np.exp(-0.5 * (d / bw) ** 2)
    s0, s1, s2 = w.sum(1), (w * d).sum(1), (w * d * d).sum(1)
    t0, t1 = w @ loss_arr, (w * d) @ loss_arr
    det = s0 * s2 - s1 * s1
    # det ~ 0 only when the neighbours all sit at one x (repeated LRs): fall back to the weighted mean, slope 0
    flat = det <= 1e-12 * np.maximum(s0 * s2, 1e-300)
    safe = np.where(flat, 1.0, det)
    level[:n] = np.where(flat, t0 / s0, (s2 * t0 - s1 * t1) / safe)
    slope[:n] = np.where(flat, 0.0, (s0 * t1 - s1 * t0) / safe)
    return level, slope


def _valley(lr_arr: np.ndarray, loss_arr: np.ndarray) -> float:
    """fastai's valley: the longest strictly decreasing subsequence (O(n²), n ~100), then ⅓ + ⅙ along it."""
    m = loss_arr.size
    lds = [1] * m
    max_start = max_end = 0
    for i in range(1, m):
        for j in range(i):
            if loss_arr[i] < loss_arr[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = min(m - 1, max(0, max_start + int(sections) + int(sections / 2)))
    return float(lr_arr[idx])


def _suggest(lrs_: list[float], losses: list[float], slopes: list[float] | np.ndarray | None = None,
             near: float = STEEP_FRACTION) -> tuple[float | None, float | None, float | None]:
    """(steepest, valley, minimum) from a smoothed curve, NaN-safe; ``slopes`` per decade if known, else estimated.

    The steepest point is looked for only up to the minimum: past it the loss rises, and a steep stretch there
    (or in the divergence tail) is not a descent. It is the middle (in log LR) of the stretch around the single
    steepest point where the loss still falls at >= ``near`` × that fastest rate. On an S-shaped descent that is
    the steepest point itself; on a long straight descent (common: the sweep also trains, so the loss falls with
    the step count as well as with the LR) every point is about as steep, and the arg-max alone would be decided
    by noise, anywhere from the start of the stretch to its end.
    """
    lr_arr, loss_arr = _finite_prefix(lrs_, losses)
    n = loss_arr.size
    if n < 3:
        return None, None, None
    x = np.log10(lr_arr)
    grads = np.gradient(loss_arr, x) if slopes is None else np.asarray(slopes, dtype=float)[:n]
    imin = int(np.argmin(loss_arr))
    if imin == 0:  # the loss never fell below its first value: no descent to read anything from
        return None, _valley(lr_arr, loss_arr), None
    head = np.where(np.isfinite(grads[: imin + 1]), grads[: imin + 1], np.inf)
    j = int(np.argmin(head))
    steep = None
    if head[j] < 0:
        lo = hi = j
        while lo > 0 and head[lo - 1] <= near * head[j]:
            lo -= 1
        while hi < imin and head[hi + 1] <= near * head[j]:
            hi += 1
        steep = float(10 ** ((x[lo] + x[hi]) / 2))
    return steep, _valley(lr_arr, loss_arr), float(lr_arr[imin])


def schedule_mean_factor(cfg: ScheduleConfig, steps_per_epoch: int, epochs: int) -> float:
    """The mean of the LR over a run, as a fraction of its peak (1 for constant; ~0.5 for warmup + cosine).

    Computed by stepping the real schedule on a throw-away one-parameter optimizer, so every schedule (warmup,
    one_cycle, step decays, min_lr floors) counts as it will run. reduce_on_plateau depends on the losses: 1.
    Long runs are simulated with fewer steps per epoch (at most ~2000 steps in all): the per-batch schedules are
    shapes over the whole run, so their mean barely changes; a warmup given as a step count is scaled along.
    """
    if steps_per_epoch < 1 or epochs < 1:
        return 1.0
    spe = max(1, min(int(steps_per_epoch), 2000 // max(1, int(epochs))))
    sim = cfg
    if cfg.warmup >= 1 and spe != steps_per_epoch:
        sim = cfg.model_copy(update={"warmup": max(1.0, cfg.warmup * spe / steps_per_epoch)})
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=1.0)
    try:
        sched = build_scheduler(opt, sim, spe, epochs)
    except ConfigError:
        return 1.0
    if isinstance(sched.scheduler, lrs.ReduceLROnPlateau):
        return 1.0
    total, lrs_seen = spe * int(epochs), []
    for step in range(total):
        lrs_seen.append(sched.lr)
        opt.step()  # (no gradient: a no-op, but torch warns when a scheduler steps before any optimizer step)
        sched.step_batch()
        if (step + 1) % spe == 0:
            sched.step_epoch({"train_loss": 1.0})
    mean = float(np.mean(lrs_seen))
    return mean if math.isfinite(mean) and mean > 0 else 1.0


def _cycle(loader: Iterable[Any]) -> Iterator[Any]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise DataError("the LR finder got an empty data loader; check the training data and batch size.")


def _to_device(obj: Any, device: torch.device | str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, list | tuple):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def lr_find(model: nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor], loader: Iterable[Any],
            optimizer: torch.optim.Optimizer, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
            device: torch.device | str = "cpu", forward: Callable[[nn.Module, Any], Any] | None = None,
            beta: float = 0.98, diverge: float = 4.0, clip_grad: float | None = None,
            bandwidth: float = 0.3) -> LRFindResult:
    """Exponential LR sweep from ``start_lr`` to ``end_lr`` over ``steps`` mini-batches (cycling ``loader``).

    ``loader`` yields ``(x, y)``; both are moved to ``device`` (the model and optimizer must already be there).
    ``forward(model, x)`` returns the model output (default ``model(x)``; use it for autocast or multi-input
    models); the loss is ``loss_fn(output, y)``. Per-group LRs keep their ratios: each group gets the swept
    LR × its ``lr_scale`` (set by build_optimizer) or its LR relative to the largest group LR.

    Stops when a running (bias-corrected EMA, ``beta``) loss exceeds ``diverge`` × its best, or is not finite: a
    stop test can only look back. The curve the suggestions are read from is smoothed afterwards without lag
    (:func:`smooth_losses`, ``bandwidth`` decades). The sweep's wall time is in ``extra["seconds"]``.
    Afterwards the model parameters and buffers, gradients, train/eval mode, optimizer state and the
    torch (CPU and CUDA), numpy and python RNG states are exactly what they were. A loader with its own
    ``generator`` advances that generator; pass a fresh loader if that matters.
    """
    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        raise ConfigError(f"lr_find: start_lr = {start_lr} and end_lr = {end_lr} must satisfy 0 < start < end.")
    if steps < 2:
        raise ConfigError(f"lr_find: steps = {steps} is too few; use at least 2 (100 is typical).")
    forward = forward or (lambda m, x: m(x))
    started = time.perf_counter()

    # ---- save everything the sweep touches (deep copies: state_dict() tensors alias the live ones)
    model_state = copy.deepcopy(model.state_dict())
    optim_state = copy.deepcopy(optimizer.state_dict())
    grads = [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]  # per module: e.g. a frozen BatchNorm kept in eval
    torch_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    np_rng = np.random.get_state()
    py_rng = random.getstate()

    base = [float(g["lr"]) for g in optimizer.param_groups]
    top = max(base) if max(base) > 0 else 1.0
    scales = [float(g.get("lr_scale", b / top)) for g, b in zip(optimizer.param_groups, base, strict=True)]

    lrs_: list[float] = []
    raw: list[float] = []
    best = math.inf
    avg = 0.0
    stopped, reason = False, "completed all steps"
    ratio = end_lr / start_lr
    try:
        model.train()
        batches = _cycle(loader)
        for i in range(steps):
            lr = start_lr * ratio ** (i / (steps - 1))
            for g, s in zip(optimizer.param_groups, scales, strict=True):
                g["lr"] = lr * s
            x, y = next(batches)
            x, y = _to_device(x, device), _to_device(y, device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(forward(model, x), y)
            value = float(loss.detach())
            lrs_.append(lr)
            raw.append(value)
            if not math.isfinite(value):
                stopped, reason = True, f"loss became non-finite ({value}) at lr={lr:.3g}"
                break
            avg = beta * avg + (1 - beta) * value
            running = avg / (1 - beta ** (i + 1))
            if not math.isfinite(running):
                stopped, reason = True, f"smoothed loss became non-finite at lr={lr:.3g}"
                break
            if i > 0 and running > diverge * best:
                stopped, reason = True, f"loss diverged (> {diverge:g}× the best) at lr={lr:.3g}"
                break
            best = min(best, running)
            loss.backward()
            if clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
    finally:
        # ---- restore, even when the sweep raised
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g
        for m, mode in modes:
            m.training = mode
        torch.set_rng_state(torch_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)

    smoothed, slopes = smooth_losses(lrs_, raw, bandwidth)
    steep, valley, minimum = _suggest(lrs_, list(smoothed), slopes)
    return LRFindResult(lrs=lrs_, losses=[float(v) for v in smoothed], raw_losses=raw, suggestion=steep,
                        valley=valley, stopped_early=stopped, reason=reason, minimum=minimum,
                        extra={"seconds": time.perf_counter() - started, "bandwidth": bandwidth})

"""Curve and capacity checks: pure functions of a run's per-epoch rows (metrics.jsonl) and its pre-flight facts.

The live doctor (every epoch end, and once more when the run ends) and `analyze_run` (a run directory) build the
same `CurveFacts` from the same rows and get the same findings. Every loss level is judged relative to the run's
know-nothing loss S (see doctor/thresholds.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradwise.doctor.checks.base import Check, register
from gradwise.doctor.evidence import _finite
from gradwise.doctor.facts import Facts
from gradwise.doctor.findings import (
    BATCH_UP,
    COSINE,
    DIVERGENCE_FIXES,
    HE_INIT,
    LR_DOWN,
    LR_DOWN_SOME,
    LR_UP,
    LR_UP_SOME,
    REPAIR,
    Code,
    Finding,
    Fix,
    advice,
)
from gradwise.doctor.thresholds import Thresholds


@dataclass
class CurveFacts:
    """What the curve checks read: the loss curves up to the first non-finite epoch, the loss scale S and the
    findings earlier checks of this pass raised (`found`; the runner appends, checks only read)."""

    history: list[dict[str, Any]]
    facts: Facts | None
    final: bool = False
    planned_epochs: int | None = None
    early_stopping: bool = False
    L: list[Any] = field(default_factory=list)  # epoch-mean training loss
    V: list[Any] = field(default_factory=list)  # validation loss (None where it does not compare with L)
    E: list[Any] = field(default_factory=list)  # eval-mode loss on training rows
    ep: list[int] = field(default_factory=list)
    step: list[Any] = field(default_factory=list)
    lr: list[Any] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)  # the highest LR so far, per epoch
    S: float | None = None  # the know-nothing loss
    start: float | None = None  # the loss before step 1
    nonfinite: dict[str, Any] | None = None  # the first epoch with a non-finite loss
    found: list[Finding] = field(default_factory=list)

    @classmethod
    def of(cls, history: list[dict[str, Any]], facts: Facts | None, final: bool = False,
           planned_epochs: int | None = None, early_stopping: bool = False) -> CurveFacts:
        c = cls(history, facts, final, planned_epochs, early_stopping)
        c.L = [r.get("train_loss") for r in history]
        # a loss summed over its rows: validation losses are sums over other batch sizes and do not compare with L
        c.V = [None if facts is not None and facts.sum_reduced else r.get("val_loss") for r in history]
        c.E = [r.get("train_loss_eval_mode") for r in history]
        c.ep = [int(r.get("epoch", i + 1)) for i, r in enumerate(history)]
        c.step = [r.get("step") for r in history]
        c._cut_at_nonfinite()
        if c.L and all(_finite(v) for v in c.L):
            c._scale()
        return c

    def _cut_at_nonfinite(self) -> None:
        """Keep the epochs before the first non-finite training or validation loss (noted in `nonfinite`)."""
        for i, (lv, vv) in enumerate(zip(self.L, self.V, strict=True)):
            if (lv is not None and not _finite(lv)) or (vv is not None and not _finite(vv)):
                self.nonfinite = {"i": i, "train_loss": lv, "val_loss": vv, "epoch": self.ep[i], "step": self.step[i]}
                self.L, self.V, self.E, self.ep, self.step = (x[:i] for x in (self.L, self.V, self.E, self.ep,
                                                                               self.step))
                return

    def _scale(self) -> None:
        """S (the facts' know-nothing loss, else the first epoch's loss), the start and the LR's running peak."""
        f, L = self.facts, self.L
        s = f.scale if f is not None else None
        self.S = s if s is not None else (L[0] if L[0] > 0 else None)
        self.start = f.initial_loss if f is not None and _finite(f.initial_loss) else L[0]
        self.lr = [r.get("lr") for r in self.history[:len(L)]]
        peak = 0.0
        for x in self.lr:
            peak = max(peak, x) if _finite(x) else peak
            self.peaks.append(peak)

    @property
    def n(self) -> int:
        return len(self.L)

    @property
    def ok(self) -> bool:
        """Finite curves with a loss scale: what every check but the non-finite one needs."""
        return self.S is not None

    @property
    def stuck(self) -> bool:
        """An earlier check found the run learned nothing (then a stall or a gap is no separate problem)."""
        return any(f.code == Code.NO_LEARNING or (f.code == Code.UNDERFITTING and f.evidence.get("linear_model"))
                   for f in self.found)

    def has(self, code: str, rule: str | None = None) -> bool:
        return any(f.code == code and (rule is None or f.evidence.get("rule") == rule) for f in self.found)

    def settled(self, t: Thresholds) -> bool:
        """The run is over, learned something and its loss stopped falling (>= `settled` of 3 epochs before)."""
        return (self.final and not self.stuck and self.n >= t.settled_epochs
                and self.L[-1] >= t.settled * self.L[-t.settled_epochs])


class CurveCheck(Check):
    """A check of the curves: `judge` runs only on finite curves with a loss scale."""

    family = "curves"
    stage = "epoch"

    def check(self, facts: CurveFacts, t: Thresholds) -> Finding | None:
        return self.judge(facts, t) if facts.ok else None

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        raise NotImplementedError


@register
class NonfiniteLoss(Check):
    name = "nonfinite_loss"
    code = Code.NONFINITE_VALUES
    family = "curves"
    stage = "epoch"
    severity = "error"
    measures = "an epoch's training or validation loss is NaN or infinite"
    causes = ("learning rate too high", "exploding gradients", "log of 0 / division by 0 in the loss")
    fixes = DIVERGENCE_FIXES

    def check(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        x = c.nonfinite
        if x is None:
            return None
        lv, vv = x["train_loss"], x["val_loss"]
        which = "training" if lv is not None and not _finite(lv) else "validation"
        return self.finding(f"the {which} loss became {lv if which == 'training' else vv} in epoch {x['epoch']}",
                            {"epoch": x["epoch"], "train_loss": lv, "val_loss": vv}, epoch=x["epoch"],
                            step=x["step"])


def _divergence(c: CurveFacts, t: Thresholds) -> tuple[int, float] | None:
    """The first epoch i whose loss climbed far above its best (two epochs in a row, or once far above the start),
    with that best; or, after it had learned something, collapsed back to the know-nothing loss."""
    L, S = c.L, c.S
    assert S is not None
    for i in range(1, c.n):
        best = min(L[:i])

        def up(j: int, best: float = best) -> bool:
            return L[j] - best >= t.diverge_rise * S and (
                L[j] >= t.diverge_factor * best or (best <= t.collapse_best * S and L[j] >= t.collapse_level * S))

        if up(i) and ((i >= 2 and up(i - 1) and min(L[:i - 1]) == best) or L[i] >= t.diverge_once * max(L[0], S)):
            return i, best
    return None


@register
class DivergingLoss(CurveCheck):
    name = "diverging_loss"
    code = Code.DIVERGING_LOSS
    measures = "the training loss climbs far above the best it reached, or collapses back to the know-nothing loss"
    thresholds = ("diverge_factor", "diverge_rise", "collapse_best", "collapse_level", "diverge_once")
    causes = ("learning rate too high for this model and batch size", "no gradient clipping",
              "a warmup that ends at too high an LR")
    fixes = DIVERGENCE_FIXES

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        d = _divergence(c, t)
        if d is None:
            return None
        i, best = d
        L = c.L
        return self.finding(
            f"the training loss rose to {L[i]:.4g} in epoch {c.ep[i]}, {L[i] / max(best, 1e-12):.3g}x its best "
            f"({best:.4g})",
            {"epoch": c.ep[i], "train_loss": L[i], "best": best, "factor": L[i] / max(best, 1e-12),
             "threshold": t.diverge_factor, "loss_scale": c.S,
             # it came back down later: a bouncing loss (then oscillating_loss is no mere symptom)
             "recovered": any(L[j] < t.diverge_factor * best for j in range(i + 1, c.n))},
            epoch=c.ep[i], step=c.step[i])


@register
class LrTooHighAtDivergence(CurveCheck):
    name = "lr_too_high_diverged"
    code = Code.LR_TOO_HIGH
    measures = "the loss diverged at (near) the highest LR the run had used so far"
    thresholds = ("diverge_factor", "diverge_rise", "lr_active")
    causes = ("learning rate too high for this model and batch size", "no gradient clipping")
    fixes = (LR_DOWN, DIVERGENCE_FIXES[1])

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        # A loss that learned and then blew up at (near) the highest LR the run has used so far says the LR is
        # too high, whatever the update/weight probes saw (a blow-up can build up between two probes). Not after
        # the LR was cut well below that (a decayed or repaired LR: then it is something else).
        d = _divergence(c, t)
        if d is None:
            return None
        i, best = d
        lrs = [v for v in c.lr[:i + 1] if _finite(v)]
        if not (lrs and _finite(c.lr[i]) and c.lr[i] >= t.lr_active * max(lrs) and max(lrs) > 0):
            return None
        L = c.L
        return self.finding(
            f"the loss diverged at LR {c.lr[i]:.3g} (epoch {c.ep[i]}, {L[i] / max(best, 1e-12):.3g}x its best): the "
            "steps are too large for this model",
            {"epoch": c.ep[i], "lr": c.lr[i], "peak_lr": max(lrs), "train_loss": L[i], "best": best,
             "rule": "diverged"}, epoch=c.ep[i], step=c.step[i])


def _moves(seg: list[float], rel: float, floor: float, level: float | None = None) -> list[int]:
    """The epoch-to-epoch moves of `seg` that change it by >= rel (of the lower end) and >= floor (absolute), as
    +1 (up) / -1 (down); with `level`, only moves whose both ends are >= level."""
    out = []
    for x0, x1 in zip(seg, seg[1:], strict=False):
        d = x1 - x0
        if abs(d) >= rel * min(x0, x1) and abs(d) >= floor and (level is None or min(x0, x1) >= level):
            out.append(1 if d > 0 else -1)
    return out


def _flips(moves: list[int]) -> int:
    return sum(1 for m0, m1 in zip(moves, moves[1:], strict=False) if m0 != m1)


@register
class OscillatingLoss(CurveCheck):
    name = "oscillating_loss"
    code = Code.OSCILLATING_LOSS
    measures = "the epoch loss jumps up and down by large relative amounts, again and again"
    thresholds = ("osc_window", "osc_rel", "osc_abs", "osc_moves", "osc_abs_high", "osc_level")
    causes = ("learning rate too high (steps overshoot the valley)", "batch too small for the LR", "unscaled inputs")
    fixes = (LR_DOWN_SOME, BATCH_UP, Fix("schedule.name", "warmup_cosine", note="decays the LR"))

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        S, w = c.S, t.osc_window
        assert S is not None
        for end in range(w, c.n + 1):
            seg = c.L[end - w:end]
            moves, abs_used = _moves(seg, t.osc_rel, t.osc_abs * S), t.osc_abs
            # smaller moves count where the loss is still far from its floor (both ends >= osc_level·S): there a
            # 20% swing of an epoch's mean is the model jumping around, not noise near a small number. This second
            # tier asks for more: nearly every epoch a swing, alternating.
            first_tier = len(moves) >= t.osc_moves and moves.count(1) >= 2 and _flips(moves) >= 2
            small = _moves(seg, t.osc_rel, t.osc_abs_high * S, t.osc_level * S)
            if not first_tier and len(small) >= t.osc_moves + 1 and small.count(1) >= 2 and _flips(small) >= 3:
                moves, abs_used = small, t.osc_abs_high
            if len(moves) >= t.osc_moves and moves.count(1) >= 2 and _flips(moves) >= 2:
                i = end - 1
                return self.finding(
                    f"the training loss jumped up {moves.count(1)} times and down {moves.count(-1)} times by >= "
                    f"{t.osc_rel:.0%} (and >= {abs_used:.0%} of the know-nothing loss {S:.4g}) over epochs "
                    f"{c.ep[end - w]}-{c.ep[i]}",
                    {"epochs": [c.ep[end - w], c.ep[i]], "train_loss": seg, "rises": moves.count(1),
                     "falls": moves.count(-1), "threshold": t.osc_rel, "threshold_abs": abs_used, "loss_scale": S},
                    epoch=c.ep[i], step=c.step[i])
        return None


def _no_better(c: CurveFacts, t: Thresholds) -> bool:
    """After no_learning_epochs the best loss is still >= no_learning·min(start, S) and the last 3 epochs are flat
    (a run still learning the class prior of imbalanced data, or an RNN leaving its initial plateau, is moving)."""
    S = c.S
    assert S is not None and c.start is not None
    if c.n < t.no_learning_epochs:
        return False
    flat = max(c.L[-3:]) - min(c.L[-3:]) <= t.flat_share * S
    return min(c.L) >= t.no_learning * min(c.start, S) and flat


@register
class LinearModelUnderfits(CurveCheck):
    name = "linear_model_underfits"
    code = Code.UNDERFITTING
    family = "capacity"
    measures = "a linear model (one Linear layer) learns nothing: the targets are not a linear function of the inputs"
    thresholds = ("no_learning", "no_learning_epochs", "flat_share")
    causes = ("a linear model on data that is not linearly separable", "learning rate far too low")
    fixes = (advice("add a hidden layer with a nonlinearity ({})", Fix("model.name", "mlp")),
             "or features that make the classes separable",
             LR_UP)

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        if not (c.facts is not None and c.facts.linear_model and _no_better(c, t)):
            return None
        return self.finding(
            f"after {c.n} epochs a linear model (one Linear layer) is no better ({c.L[-1]:.4g}) than a model that "
            f"knows nothing ({c.S:.4g}): these targets are not a linear function of the inputs",
            {"epochs": c.n, "best_train_loss": min(c.L), "know_nothing_loss": c.S, "linear_model": True},
            epoch=c.ep[-1], step=c.step[-1])


@register
class NoLearning(CurveCheck):
    name = "no_learning"
    code = Code.NO_LEARNING
    measures = "after a few epochs the training loss is no better than a model that knows nothing, and flat"
    thresholds = ("no_learning", "no_learning_epochs", "flat_share")
    causes = ("learning rate far too low", "no gradient reaches the weights (zero init, detach, dead units)",
              "labels unrelated to the inputs")
    fixes = (LR_UP, HE_INIT, "check that forward() uses every layer")

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        if c.facts is not None and c.facts.linear_model or not _no_better(c, t):
            return None
        return self.finding(
            f"after {c.n} epochs the training loss ({c.L[-1]:.4g}) is no better than a model that knows nothing "
            f"({c.S:.4g})",
            {"epochs": c.n, "best_train_loss": min(c.L), "know_nothing_loss": c.S, "initial_loss": c.start,
             "threshold": t.no_learning}, epoch=c.ep[-1], step=c.step[-1])


@register
class EndsAboveKnowNothing(CurveCheck):
    name = "final_above_know_nothing"
    code = Code.NO_LEARNING
    stage = "final"
    measures = "the finished run's loss is no better than a model that knows nothing, whatever its slope"
    causes = ("an initialization that starts the model far off (saturated units, huge logits) and too few or too "
              "small steps to undo it", "a loss that does not match the model's output", "labels unrelated to the "
              "inputs")
    fixes = (Fix("model.init", "he_normal", note="ReLU"), Fix("model.init", "xavier_uniform", note="tanh/sigmoid"),
             LR_UP_SOME, "check the loss against the model's last layer")

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        # a loss still falling from a far worse start (a saturating init) is not "nearly there", and underfitting's
        # "train longer" would be the wrong advice; judged on the finished run only (mid-run it may be on its way)
        S = c.S
        assert S is not None
        if not c.final or c.stuck or c.n < 2 or c.L[-1] < S:
            return None
        return self.finding(
            f"the run ends with a training loss of {c.L[-1]:.4g}, {c.L[-1] / S:.3g}x the loss of a model that knows "
            f"nothing ({S:.4g}): it has learned nothing usable",
            {"epochs": c.n, "final_train_loss": c.L[-1], "best_train_loss": min(c.L), "know_nothing_loss": S,
             "initial_loss": c.start, "rule": "final_above_know_nothing"}, epoch=c.ep[-1], step=c.step[-1])


@register
class Plateau(CurveCheck):
    name = "plateau"
    code = Code.PLATEAU
    measures = "the best training loss improved < plateau_gain over plateau_epochs epochs while still high"
    thresholds = ("plateau_epochs", "plateau_gain", "plateau_flat", "plateau_lr_tail", "high_loss", "early_share")
    causes = ("learning rate too low or too high", "saturated or dead units", "a poor initialization")
    fixes = (LR_UP_SOME, REPAIR, COSINE, HE_INIT)

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        S, L, p = c.S, c.L, t.plateau_epochs
        assert S is not None
        if c.stuck:
            return None
        for i in range(p, c.n):
            before, window = min(L[:i - p + 1]), min(L[i - p + 1:i + 1])
            flat = max(L[i - p + 1:i + 1]) <= t.plateau_flat * window  # a flat stretch, not a climb (divergence)
            # a stall at the end of a decay schedule (LR < plateau_lr_tail of its peak) is the schedule's doing
            lr_ok = not (_finite(c.lr[i]) and c.peaks[i] > 0 and c.lr[i] < t.plateau_lr_tail * c.peaks[i])
            if (before - window) < t.plateau_gain * before and flat and L[i] >= t.high_loss * S and lr_ok:
                early = c.planned_epochs is not None and c.ep[i] <= t.early_share * c.planned_epochs
                return self.finding(
                    f"the training loss has stalled at {L[i]:.4g} for {p} epochs ({L[i] / S:.0%} of the "
                    f"know-nothing loss {S:.4g})",
                    {"epoch": c.ep[i], "train_loss": L[i], "gain_over_window": (before - window) / before,
                     "threshold": t.plateau_gain, "loss_scale": S, "window_epochs": p, "early": early},
                    epoch=c.ep[i], step=c.step[i], fixes=self._fixes(c))
        return None

    def _fixes(self, c: CurveFacts) -> tuple[Fix | str, ...]:
        # a loss that bounces up and down is not stalled for want of larger steps: raising the LR of a noisy run
        # (tiny batches) makes it worse; a larger batch or a lower LR quiets it
        if c.has(Code.OSCILLATING_LOSS):
            return (BATCH_UP, LR_DOWN_SOME, COSINE)
        return self.fixes


def _lr_cut(c: CurveFacts, t: Thresholds) -> int | None:
    """The epoch the LR first fell below lr_cut of its peak, if the loss was still falling (by >= plateau_gain
    over the two epochs before): a schedule that cut a learning run, not reduce_on_plateau answering a stall."""
    L, lr, peaks = c.L, c.lr, c.peaks
    cut = next((j for j in range(1, c.n) if _finite(lr[j]) and peaks[j] > 0 and lr[j] < t.lr_cut * peaks[j]), None)
    if cut is None or cut < 2 or L[cut - 2] - L[cut] < t.plateau_gain * L[cut - 2]:
        return None
    return cut


def _schedule_stop(c: CurveFacts, t: Thresholds) -> tuple[int, int] | None:
    """(cut, i): a schedule that has all but stopped the training early. At epoch i the LR is below lr_stopped of
    its peak with >= lr_stopped_left of the planned epochs to go, and the loss (still >= lr_stopped_loss·S)
    stopped moving; a cosine or linear decay only gets that low in its last few percent."""
    S, L, lr, peaks, p = c.S, c.L, c.lr, c.peaks, t.plateau_epochs
    assert S is not None
    plateau = any(f.code == Code.PLATEAU and f.evidence.get("rule") != "lr_decayed_early" for f in c.found)
    cut = None if c.stuck or not c.planned_epochs or plateau else _lr_cut(c, t)
    if cut is None:
        return None
    for i in range(p, c.n):
        window = L[i - p + 1:i + 1]
        if (_finite(lr[i]) and peaks[i] > 0 and lr[i] < t.lr_stopped * peaks[i]
                and c.ep[i] <= (1 - t.lr_stopped_left) * c.planned_epochs and L[i] >= t.lr_stopped_loss * S
                and max(window) - min(window) < t.plateau_gain * min(window)):
            return cut, i
    return None


_SCHEDULE_FIX = "a larger gamma or a longer step_size"


@register
class ScheduleStoppedEarly(CurveCheck):
    name = "schedule_stopped_early"
    code = Code.PLATEAU
    measures = "the schedule cut the LR to almost nothing with much of the run to go, and the loss stopped moving"
    thresholds = ("lr_stopped", "lr_stopped_left", "lr_stopped_loss", "lr_cut", "plateau_gain", "plateau_epochs")
    causes = ("a step/exponential schedule that decays far too fast (gamma too small, step too short)",)
    fixes = (COSINE, _SCHEDULE_FIX)

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        stop = _schedule_stop(c, t)
        if stop is None:
            return None
        _, i = stop
        lr, peak = c.lr[i], c.peaks[i]
        # (stated as of epoch i: early stopping may end the run before the planned epochs)
        return self.finding(
            f"the training loss stopped at {c.L[i]:.4g} after the schedule cut the LR to {lr:.2g} ({lr / peak:.0e} "
            f"of its peak), at epoch {c.ep[i]} of {c.planned_epochs} planned",
            {"epoch": c.ep[i], "train_loss": c.L[i], "lr": lr, "peak_lr": peak, "planned_epochs": c.planned_epochs,
             "loss_scale": c.S, "rule": "lr_decayed_early"}, epoch=c.ep[i], step=c.step[i])


@register
class LrTooLowAfterSchedule(CurveCheck):
    name = "lr_too_low_scheduled"
    code = Code.LR_TOO_LOW
    measures = "the LR a too-fast schedule left is far too low to train with (the loss was falling before the cut)"
    thresholds = ScheduleStoppedEarly.thresholds
    causes = ("a step/exponential schedule that decays far too fast",)
    fixes = (Fix("schedule.name", "warmup_cosine", note="decays over the whole run"), _SCHEDULE_FIX)

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        stop = _schedule_stop(c, t)
        if stop is None:
            return None
        cut, i = stop
        lr, peak = c.lr[i], c.peaks[i]
        return self.finding(
            f"the schedule left an LR of {lr:.2g}, {lr / peak:.0e} of the {peak:.2g} the loss was falling with, at "
            f"epoch {c.ep[i]} of {c.planned_epochs} planned: too low to train",
            {"epoch": c.ep[i], "lr": lr, "peak_lr": peak, "cut_epoch": c.ep[cut], "loss_before_cut": c.L[cut - 2],
             "loss_at_cut": c.L[cut], "train_loss": c.L[i], "rule": "lr_decayed_early"},
            epoch=c.ep[i], step=c.step[i])

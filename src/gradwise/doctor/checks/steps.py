"""Step checks: the learning rate, exploding and vanishing gradients, from the sampled optimizer steps (probe
records: per-layer gradient, weight and update norms; see doctor/probes.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from gradwise.doctor.checks.base import Check, register
from gradwise.doctor.evidence import _finite
from gradwise.doctor.facts import Facts
from gradwise.doctor.findings import (
    CLIP,
    COSINE,
    DIVERGENCE_FIXES,
    HE_INIT,
    LR_DOWN,
    LR_UP,
    Code,
    Finding,
    Fix,
    both,
)
from gradwise.doctor.measures import (
    _blew_up,
    _den,
    _first_reg_ratio,
    _killed_by_large_steps,
    _latest_loss,
    _layer_ok,
    _loss_falling,
    _median,
    depth_ratio,
    max_rel_grad,
    update_ratio,
)
from gradwise.doctor.probes import ProbeRecord
from gradwise.doctor.thresholds import Thresholds


@dataclass
class StepFacts:
    """What the step checks read: the probe records (since the start or the last repair), the pre-flight facts and
    the per-epoch rows. `clipping`: the run clips the gradient norm (a step is bounded whatever the gradient);
    `final`: the run is over (one too short to reach lr_too_low's burn-in is judged on all its steps)."""

    records: list[ProbeRecord]
    facts: Facts | None
    history: list[dict[str, Any]]
    t: Thresholds
    clipping: bool = False
    final: bool = False
    found: list[Finding] = field(default_factory=list)

    @property
    def last(self) -> ProbeRecord:
        return self.records[-1]

    @property
    def ref(self) -> ProbeRecord:
        return self.records[0]

    @cached_property
    def order(self) -> list[str]:
        f = self.facts
        return f.layer_order if f is not None and f.layer_order else list(self.last.weight)

    @property
    def S(self) -> float | None:
        return self.facts.scale if self.facts is not None else None

    @cached_property
    def loss(self) -> float | None:
        return _latest_loss(self.history, self.records)

    @property
    def epoch(self) -> int | None:
        return self.history[-1].get("epoch") if self.history else self.last.epoch

    @property
    def init_ok(self) -> bool:
        """An abnormal init makes update/weight ratios meaningless."""
        return self.facts is None or not self.facts.init_abnormal

    @cached_property
    def peak(self) -> float:
        return max(r.lr for r in self.records)

    @cached_property
    def active(self) -> list[ProbeRecord]:
        """The last 5 probes at (near) the peak LR: warmup and a decay's tail take small steps on purpose."""
        return [r for r in self.records if r.lr >= self.t.lr_active * self.peak and r.step >= 1][-5:]

    @cached_property
    def peak_low(self) -> float:
        """The schedule's real peak LR (a warmup's running maximum is only the current warmup LR)."""
        return max([self.peak] + [r.peak_lr for r in self.records if r.peak_lr is not None
                                  and math.isfinite(r.peak_lr)])

    @cached_property
    def active_low(self) -> list[ProbeRecord]:
        """lr_too_low's window: steps after the optimizer's start-up (counted from the first record: a repair
        clears the records and starts the trajectory again) at >= lr_active of the schedule's real peak."""
        t, start = self.t, self.records[0].step
        burn_in = t.lr_low_burn_in
        if self.final and sum(1 for r in self.records if r.step - start >= burn_in) < t.min_probes:
            burn_in = 1  # a finished run of a handful of steps (full-batch training): its steps are all there is
        return [r for r in self.records if r.lr >= t.lr_active * self.peak_low and r.step - start >= burn_in][-5:]

    def ratios(self, recs: list[ProbeRecord]) -> list[float]:
        return [u for u in (update_ratio(r, self.ref) for r in recs) if _finite(u)]

    @cached_property
    def large_steps(self) -> float | None:
        """The median update/weight ratio of the active probes when it is >= update_high and the decay does not
        set the step size (else None): lr_too_high's measure, and what rules out lr_too_low."""
        t = self.t
        ur = self.ratios(self.active)
        regs = [r.reg_ratio for r in self.active if r.reg_ratio is not None]
        reg_dominates = bool(regs) and _median(regs) >= t.reg_ratio  # decay, not the LR, sets the step size
        med = _median(ur) if len(ur) >= t.min_probes else None
        return med if self.init_ok and med is not None and med >= t.update_high and not reg_dominates else None

    @cached_property
    def recent_big(self) -> tuple[list[bool], list[bool], float | None]:
        """Per recent probe (last 5): is a gradient far out of scale, and has the gradient norm grown (or gone
        non-finite) since the first probes; and the first probes' median gradient norm."""
        t, ref, recs = self.t, self.ref, self.records
        first = [r.grad_norm for r in recs[:3] if r.grad_norm > 0]
        g0 = _median(first) if first else None
        big, growing = [], []
        for r in recs[-5:]:
            grown = (g0 is not None and r.grad_norm >= t.explode_growth * g0) or not math.isfinite(r.grad_norm)
            dr = depth_ratio(r, self.order, ref)
            big.append(max_rel_grad(r, ref) >= t.explode_rel or grown or (dr is not None and dr >= t.explode_depth))
            growing.append(grown)
        return big, growing, g0


class StepCheck(Check):
    family = "steps"
    stage = "step"
    reads = "probes"

    def check(self, facts: StepFacts, t: Thresholds) -> Finding | None:
        return self.judge(facts, t) if len(facts.records) >= t.min_probes else None

    def judge(self, s: StepFacts, t: Thresholds) -> Finding | None:
        raise NotImplementedError


@register
class LrTooHigh(StepCheck):
    name = "lr_too_high"
    code = Code.LR_TOO_HIGH
    measures = "the median update/weight ratio ‖ΔW‖/‖W‖ of the last probes at the peak LR (healthy ~0.1-1%)"
    thresholds = ("update_high", "lr_active", "reg_ratio", "lr_high_progress", "min_probes", "progress_rise")
    causes = ("learning rate about a decade too high", "Adam-family optimizer with an SGD-sized LR")
    fixes = (LR_DOWN, COSINE)

    def judge(self, s: StepFacts, t: Thresholds) -> Finding | None:
        med = s.large_steps
        if med is None:
            return None
        ur = s.ratios(s.active)
        # Large relative steps are harmless while they pay off: a freshly initialized layer (a new head on a frozen
        # backbone, a high fan-in layer with small weights) takes steps large next to its small weights, and the
        # loss falls fast. A too-high LR leaves the loss where it started or throws it up. So: a warning unless the
        # loss on these very steps fell to half its first value without rising above it; then info (re-judged).
        losses = [r.loss for r in s.active if r.loss is not None and math.isfinite(r.loss)]
        first = s.ref.loss if s.ref.loss is not None and math.isfinite(s.ref.loss) else None
        productive = (first is not None and first > 0 and len(losses) >= t.min_probes
                      and losses[-1] <= t.lr_high_progress * first and max(losses) <= t.progress_rise * first)
        msg = (f"each step changes the weights by {med:.1%} of their norm (median of {len(ur)} probes; healthy is "
               f"~0.1-1%, the limit {t.update_high:.0%})")
        if productive:
            msg += f", but the loss fell from {first:.3g} to {losses[-1]:.3g} over those steps"
        return self.finding(msg, {"update_to_weight": med, "threshold": t.update_high,
                                  "steps": [r.step for r in s.active], "lr": s.last.lr, "probe_losses": losses,
                                  "first_loss": first, "productive": productive},
                            epoch=s.epoch, step=s.last.step, severity="info" if productive else "warning")


def _was_high(s: StepFacts, t: Thresholds) -> bool:
    """Small steps now are damage, not a low LR: the steps at this LR were too large before (>= min_probes probes
    above update_high), the loss blew up (a probe's or an epoch's loss far above what came before), lost ground it
    had won (>= diverge_rise·S above its best), or large steps left no gradient on the weights."""
    recs, ref = s.records, s.ref
    high = sum(1 for r in recs if r.step >= 1 and r.lr >= t.lr_active * s.peak_low
               and _finite(update_ratio(r, ref)) and update_ratio(r, ref) >= t.update_high) >= t.min_probes
    if high or _blew_up([r.loss for r in recs]) or _blew_up([h.get("train_loss") for h in s.history]):
        return True
    Lh = [h.get("train_loss") for h in s.history if _finite(h.get("train_loss"))]
    if s.S is not None and len(Lh) >= 2 and Lh[-1] - min(Lh) >= t.diverge_rise * s.S:
        return True
    return _killed_by_large_steps(recs, s.peak, t) is not None


@register
class LrTooLow(StepCheck):
    name = "lr_too_low"
    code = Code.LR_TOO_LOW
    measures = ("the median update/weight ratio of the probes at the schedule's peak LR, after the optimizer's "
                "start-up steps, while the loss is still high")
    thresholds = ("update_low", "lr_low_burn_in", "lr_active", "reg_ratio", "update_high", "diverge_rise",
                  "low_lr_loss", "min_probes")
    causes = ("learning rate a decade or more too low", "an SGD-sized LR divided once too often")
    fixes = (LR_UP, Fix("doctor.repair", True, note="raises the LR on a slow start"))

    def judge(self, s: StepFacts, t: Thresholds) -> Finding | None:
        if not s.init_ok or s.large_steps is not None:
            return None
        ur = s.ratios(s.active_low)
        med = _median(ur) if len(ur) >= t.min_probes else None
        learned = s.S is not None and s.loss is not None and s.loss < t.low_lr_loss * s.S
        if med is None or med > t.update_low or learned:
            return None
        # no LR verdict where the decay sets the step size: now, or on the first steps (a decay that dominated from
        # the start holds the weights at an equilibrium where the two forces are about equal)
        regs = [r.reg_ratio for r in s.active_low if r.reg_ratio is not None]
        first_reg = _first_reg_ratio(s.records, t)
        if (regs and _median(regs) >= t.reg_ratio) or (first_reg is not None and first_reg >= t.reg_ratio):
            return None
        if _was_high(s, t):
            return None
        return self.finding(
            f"each step changes the weights by only {med:.1e} of their norm (median of {len(ur)} probes; limit "
            f"{t.update_low:.0e}) while the loss is still high",
            {"update_to_weight": med, "threshold": t.update_low, "lr": s.last.lr, "peak_lr": s.peak_low,
             "steps": [r.step for r in s.active_low], "train_loss": s.loss, "loss_scale": s.S},
            epoch=s.epoch, step=s.last.step)


@register
class KilledByLargeSteps(StepCheck):
    name = "lr_too_high_killed"
    code = Code.LR_TOO_HIGH
    measures = ("after probed steps far above the healthy size no gradient reaches the weights and the loss is back "
                "at the know-nothing loss (units pushed where they pass no gradient, any activation)")
    thresholds = ("dead_repair_step", "dead_grad", "lr_low_burn_in", "lr_active", "min_probes", "collapse_level")
    causes = ("learning rate too high for this model and optimizer", "no gradient clipping")
    fixes = (LR_DOWN, CLIP, Fix("doctor.repair", True, note="retrains from the start with a lower LR"))

    def judge(self, s: StepFacts, t: Thresholds) -> Finding | None:
        S, loss = s.S, s.loss
        if not s.init_ok or S is None or loss is None or loss < t.collapse_level * S:
            return None
        dead = _killed_by_large_steps(s.records, s.peak, t)
        if dead is None:
            return None
        big, big_step, g0, g_now = dead
        return self.finding(
            f"after update steps of up to {big:.1%} of the weights (step {big_step}; healthy steps are ~0.1-1%) no "
            f"gradient reaches the weights any more (norm {g_now:.2g} against {g0:.2g} on the first steps) and the "
            f"loss ({loss:.4g}) is back at the know-nothing loss ({S:.4g}): the large steps pushed the units where "
            "they pass no gradient",
            {"update_to_weight": big, "largest_update_step": big_step, "threshold": t.dead_repair_step,
             "weight_grad_first": g0, "weight_grad_now": g_now, "threshold_grad": t.dead_grad, "train_loss": loss,
             "loss_scale": S, "rule": "no_gradient_after_large_steps"}, epoch=s.epoch, step=s.last.step)


@register
class ProbeLossBlowup(StepCheck):
    name = "diverging_probe_loss"
    code = Code.DIVERGING_LOSS
    measures = ("the per-step loss on the probes shot up to >= probe_blowup x where it started (and the "
                "know-nothing loss) and the last two probes are still >= diverge_factor x it (a blow-up in epoch 1)")
    thresholds = ("probe_blowup", "diverge_factor", "min_probes")
    causes = ("learning rate far too high (the first steps overshoot)", "no gradient clipping")
    fixes = DIVERGENCE_FIXES

    def judge(self, s: StepFacts, t: Thresholds) -> Finding | None:
        losses = [(r.step, r.loss) for r in s.records if r.loss is not None and math.isfinite(r.loss)]
        ref = s.ref
        base = max(ref.loss if ref.loss is not None and math.isfinite(ref.loss) else 0.0, s.S or 0.0)
        if base <= 0 or len(losses) < t.min_probes:
            return None
        peak_step, peak_loss = max(losses, key=lambda sl: sl[1])
        if peak_loss < t.probe_blowup * base or not all(v >= t.diverge_factor * base for _, v in losses[-2:]):
            return None
        return self.finding(
            f"the per-step loss shot up from {base:.4g} to {peak_loss:.4g} (step {peak_step}) and is still "
            f"{losses[-1][1]:.4g} at step {losses[-1][0]}",
            {"start_loss": base, "peak_loss": peak_loss, "peak_step": peak_step, "latest_loss": losses[-1][1],
             "threshold": t.probe_blowup, "rule": "probe_losses"}, epoch=s.epoch, step=s.last.step)


@register
class ExplodingGradients(StepCheck):
    name = "exploding_gradients"
    code = Code.EXPLODING_GRADIENTS
    measures = ("on most recent probes a layer's ‖g‖/‖W‖ is huge, the gradient norm grew since the start, or the "
                "first layer's relative gradient is far above the last one's")
    thresholds = ("explode_rel", "explode_growth", "explode_depth", "min_probes")
    causes = ("no gradient clipping (RNNs especially)", "a too-large initialization of recurrent or deep layers",
              "learning rate too high")
    fixes = (CLIP, Fix("model.init", "orthogonal", note="RNN"), HE_INIT, LR_DOWN)
    target_fixes = (Fix("data.scale_target", True, note="standardized regression targets"),
                    "fit(): standardize the regression targets, y = (y - y.mean()) / y.std()")

    def judge(self, s: StepFacts, t: Thresholds) -> Finding | None:
        big, growing, g0 = s.recent_big
        if sum(big) < t.min_probes or not all(big[-2:]):
            return None
        last, ref, recent = s.last, s.ref, s.records[-5:]
        worst = max((n for n in last.grad if _layer_ok(last, n)), key=lambda n: last.grad[n] / _den(last, n, ref),
                    default=None)
        hot = [r for r, b in zip(recent, big, strict=True) if b]
        grew = any(growing)
        # gradients only *large* (not growing) while clipping bounds every step and the loss falls do no harm;
        # growth or non-finite values stay a warning (clipping hides a blow-up, it does not stop one)
        bounded = s.clipping and not grew and _loss_falling(s.records, s.facts, s.history)
        msg = (f"the gradients are far out of scale on {sum(big)} of the last {len(big)} probes (norm up to "
               f"{max(r.grad_norm for r in hot):.3g}; largest ‖g‖/‖W‖ {max(max_rel_grad(r, ref) for r in hot):.3g}, "
               "healthy < 2)")
        if bounded:
            msg += "; clipping bounds the steps and the loss is falling"
        targets = s.facts is not None and (s.facts.target_rms or 0) > t.target_rms_large
        return self.finding(
            msg, {"grad_norm": [r.grad_norm for r in recent], "start_grad_norm": g0,
                  "max_grad_to_weight": [max_rel_grad(r, ref) for r in recent], "threshold_rel": t.explode_rel,
                  "threshold_growth": t.explode_growth, "layer": worst, "growing": grew, "clipping": s.clipping,
                  "depth_ratio": [depth_ratio(r, s.order, ref) for r in recent]},
            epoch=s.epoch, step=last.step, severity="info" if bounded else "warning",
            fixes=(*(self.target_fixes if targets else ()), *self.fixes))


@register
class VanishingGradients(StepCheck):
    name = "vanishing_gradients"
    code = Code.VANISHING_GRADIENTS
    measures = "the first layer's ‖g‖/‖W‖ against the last layer's, median of the recent probes"
    thresholds = ("vanish_depth", "min_probes")
    causes = ("sigmoid/tanh in a deep stack", "a too-small initialization",
              "no normalization or residual connections in a deep model")
    fixes = (both(Fix("model.activation", "relu"), HE_INIT), Fix("model.norm", "batch"))

    def judge(self, s: StepFacts, t: Thresholds) -> Finding | None:
        drs = [d for d in (depth_ratio(r, s.order, s.ref) for r in s.records[-5:]) if d is not None]
        if len(drs) < t.min_probes or _median(drs) > t.vanish_depth:
            return None
        names = [n for n in s.order if n in s.last.grad]
        return self.finding(
            f"the first layer's gradient (relative to its weights) is {_median(drs):.1e} of the last layer's (median "
            f"of {len(drs)} probes; limit {t.vanish_depth:.0e}): the early layers barely learn",
            {"depth_ratio": drs, "threshold": t.vanish_depth, "first_layer": names[0] if names else None,
             "last_layer": names[-1] if names else None}, epoch=s.epoch, step=s.last.step)

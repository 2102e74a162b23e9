"""Checks the live doctor makes on the step it happens: a non-finite loss and what led to it (a loss that grew by
orders of magnitude, a gradient spike just before), and units killed by large steps. The Doctor callback measures
`LiveFacts` from the trainer at that moment and runs these checks on them, guarded like every other check."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from gradwise.doctor.checks.base import Check, register
from gradwise.doctor.checks.steps import KilledByLargeSteps
from gradwise.doctor.facts import Facts
from gradwise.doctor.findings import CLIP, DIVERGENCE_FIXES, LR_DOWN, REPAIR, Code, Finding
from gradwise.doctor.probes import ProbeRecord
from gradwise.doctor.thresholds import Thresholds


@dataclass(frozen=True)
class LiveFacts:
    """The trainer's state where a live check runs (read-only). `epoch` counts from 1, as findings do."""

    step: int
    epoch: int
    loss: float = math.nan  # the step's training loss (non-finite: the NaN guard fired)
    lr: float = 0.0
    where: dict[str, Any] = field(default_factory=dict)  # the first module with a non-finite value (located)
    first_loss: float | None = None  # the run's first step loss
    recent_losses: tuple[float, ...] = ()  # the last finite step losses
    records: tuple[ProbeRecord, ...] = ()  # the probed steps
    # at an epoch end: the activation findings of this epoch, codes already found, the pre-flight's facts and the
    # largest update/weight ratio probed at full LR after the optimizer's start-up steps
    activations: tuple[Finding, ...] = ()
    seen: frozenset[str] = frozenset()
    facts: Facts | None = None
    largest_step: float | None = None


class LiveCheck(Check):
    family = "steps"
    stage = "step"
    severity = "error"
    reads = "live"


@register
class NonfiniteStep(LiveCheck):
    name = "nonfinite_step"
    code = Code.NONFINITE_VALUES
    measures = "the loss or the watched gradient of a step is NaN or infinite (and the module where it first appears)"
    causes = ("learning rate too high", "exploding gradients", "log of zero / division by zero in the loss")
    fixes = DIVERGENCE_FIXES

    def check(self, facts: LiveFacts, t: Thresholds) -> Finding:
        """Run when the NaN guard fired: always a finding."""
        what = f"the training loss became {facts.loss}" if not math.isfinite(facts.loss) else \
            "the gradients became non-finite"
        first = facts.where.get("first_nonfinite")
        msg = f"{what} at step {facts.step}" + (f"; first non-finite value in {first}" if first else "")
        return self.finding(msg, {"step": facts.step, "loss": facts.loss, "lr": facts.lr, **facts.where},
                            step=facts.step, epoch=facts.epoch)


@register
class OverflowAfterGrowth(LiveCheck):
    name = "diverged_to_nan"
    code = Code.DIVERGING_LOSS
    measures = "the step loss grew by orders of magnitude before it overflowed (the NaN ends a divergence)"
    thresholds = ("nan_growth", "recent_losses")
    causes = ("learning rate too high", "exploding gradients (no clipping)", "a too-large initialization")
    fixes = DIVERGENCE_FIXES

    def check(self, facts: LiveFacts, t: Thresholds) -> Finding | None:
        """Growth is a ratio of positive losses: a loss that can be 0 or negative (a Gaussian NLL, an ELBO) says
        nothing. Then the NaN is the end of a divergence, not a bad value in the data or a log(0) in the loss."""
        start, recent = facts.first_loss, facts.recent_losses
        if math.isfinite(facts.loss) or start is None or start <= 0 or not recent or min(recent) <= 0:
            return None
        high = max(recent)
        if high < t.nan_growth * start:
            return None
        return self.finding(f"the training loss grew from {start:.4g} to {high:.4g} and then overflowed to "
                            f"{facts.loss} at step {facts.step}: the updates blew the weights up",
                            {"step": facts.step, "first_loss": start, "highest_finite_loss": high,
                             "threshold_growth": t.nan_growth, "lr": facts.lr}, step=facts.step, epoch=facts.epoch)


def gradient_spike(records: tuple[ProbeRecord, ...] | list[ProbeRecord], step: int, t: Thresholds
                   ) -> tuple[ProbeRecord, float] | None:
    """The probe within spike_window steps before `step` whose gradient norm is largest, with the first probes'
    median norm, when it is >= explode_growth times that median (or not finite)."""
    first = [r.grad_norm for r in records[:3] if 0 < r.grad_norm < math.inf]
    recent = [r for r in records if 0 <= step - r.step <= t.spike_window and not math.isnan(r.grad_norm)]
    if not first or not recent:
        return None
    g0 = statistics.median(first)
    hot = max(recent, key=lambda r: r.grad_norm)
    return (hot, g0) if hot.grad_norm >= t.explode_growth * g0 else None


@register
class GradientSpike(LiveCheck):
    name = "gradient_spike"
    code = Code.EXPLODING_GRADIENTS
    measures = "a probed gradient norm far above the first probes' shortly before the loss became non-finite"
    thresholds = ("explode_growth", "spike_window")
    causes = ("no gradient clipping", "an activation or residual path that amplifies (x**2, exp, a block applied "
              "many times)", "learning rate too high")
    fixes = (CLIP, LR_DOWN, REPAIR)

    def check(self, facts: LiveFacts, t: Thresholds) -> Finding | None:
        """The gradients blew up shortly before the values did: the NaN is the end of an explosion (an activation
        that amplifies, a too-high LR without clipping), not a bad value in the data."""
        spike = gradient_spike(facts.records, facts.step, t)
        if spike is None:
            return None
        hot, g0 = spike
        return self.finding(f"the gradient norm jumped to {hot.grad_norm:.4g} at step {hot.step}, "
                            f"{hot.grad_norm / g0:.3g}x its size on the first steps ({g0:.3g}), "
                            f"{facts.step - hot.step} steps before the loss became {facts.loss}",
                            {"spike_step": hot.step, "spike_grad_norm": hot.grad_norm, "start_grad_norm": g0,
                             "nonfinite_step": facts.step, "threshold_growth": t.explode_growth, "growing": True,
                             "rule": "spike_before_nonfinite"}, step=facts.step, epoch=facts.epoch)


@register
class DeadAfterLargeSteps(Check):
    name = "dead_after_large_steps"
    code = Code.LR_TOO_HIGH
    family = "activations"
    stage = "epoch"
    reads = "live"
    measures = "ReLU units that died during training after probed steps far above the healthy size"
    thresholds = ("dead_repair_step", "lr_low_burn_in", "lr_active")
    causes = ("learning rate too high for this model and optimizer",)
    fixes = KilledByLargeSteps.fixes[::2]

    def check(self, facts: LiveFacts, t: Thresholds) -> Finding | None:
        """The LR killed them. Not when they were dead from the start (pre-flight reports that as
        bad_initialization), when the init is abnormal (then the steps did not do it) or when Adam's coupled L2
        decay explains them."""
        dead = next((f for f in facts.activations if f.code == "dead_units" and f.severity == "warning"), None)
        if (dead is None or "lr_too_high" in facts.seen or "bad_initialization" in facts.seen
                or dead.evidence.get("coupled_weight_decay")
                or (facts.facts is not None and facts.facts.init_abnormal)):
            return None
        big = facts.largest_step
        if big is None or big < t.dead_repair_step:
            return None
        layers = dead.evidence.get("layers") or {}
        worst = max(layers, key=layers.get) if layers else "a layer"
        return self.finding(f"{layers.get(worst, 0):.0%} of {worst}'s units died after update steps of up to "
                            f"{big:.1%} of the weights per step (healthy steps are ~0.1-1%): the LR is too high for "
                            "this model, and units pushed below zero for every input do not come back",
                            {"largest_update_to_weight": big, "threshold": t.dead_repair_step, "dead_layers": layers,
                             "rule": "dead_after_large_steps"}, step=facts.step, epoch=facts.epoch)

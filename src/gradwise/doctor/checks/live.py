"""Checks the live doctor makes on the step it happens (a non-finite loss and what led to it, units killed by large
steps). Declared here; carried out by the Doctor callback (`runs_in`), switched off by `doctor.disable`."""

from __future__ import annotations

from gradwise.doctor.checks.base import Check, register
from gradwise.doctor.findings import Code


@register
class NonfiniteStep(Check):
    name = "nonfinite_step"
    code = Code.NONFINITE_VALUES
    family = "steps"
    stage = "step"
    severity = "error"
    reads = "live"
    measures = "the loss or the watched gradient of a step is NaN or infinite (and the module where it first appears)"
    runs_in = "Doctor._nonfinite"


@register
class OverflowAfterGrowth(Check):
    name = "diverged_to_nan"
    code = Code.DIVERGING_LOSS
    family = "steps"
    stage = "step"
    severity = "error"
    reads = "live"
    measures = "the step loss grew by orders of magnitude before it overflowed (the NaN ends a divergence)"
    thresholds = ("nan_growth", "recent_losses")
    runs_in = "Doctor._nonfinite"


@register
class GradientSpike(Check):
    name = "gradient_spike"
    code = Code.EXPLODING_GRADIENTS
    family = "steps"
    stage = "step"
    severity = "error"
    reads = "live"
    measures = "a probed gradient norm far above the first probes' shortly before the loss became non-finite"
    thresholds = ("explode_growth", "spike_window")
    runs_in = "Doctor._gradient_spike"


@register
class DeadAfterLargeSteps(Check):
    name = "dead_after_large_steps"
    code = Code.LR_TOO_HIGH
    family = "activations"
    stage = "epoch"
    reads = "live"
    measures = "ReLU units that died during training after probed steps far above the healthy size"
    thresholds = ("dead_repair_step", "lr_low_burn_in", "lr_active")
    runs_in = "Doctor._dead_by_large_steps"

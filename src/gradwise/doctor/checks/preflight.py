"""The pre-flight checks' base class and the order they run in (before step 1).

Each pre-flight check reads a `PreflightFacts` (doctor/preflight_facts.py: measured once, up front, read-only)
and returns a finding, a list of findings, or None. The checks themselves live with their family: data.py,
splits.py, wiring.py, init.py.

The order matters in three ways, so it is declared here once: the findings are reported in it; a check may read
what the checks before it found (`facts.found`: near_copies and label_column skip once leakage found identical
rows, split_structure once another train/eval mismatch was found, initialization discounts an initial loss that
unnormalized inputs explain); and a check that `halts` (the data cannot be trained on) ends the pre-flight, so the
phases follow the measuring steps: the data alone, the model's outputs, the rest.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gradwise.doctor.checks.base import Check


class PreflightCheck(Check):
    stage = "preflight"
    reads = "preflight"
    phase: ClassVar[str] = "rest"  # data | outputs | rest: the measuring step whose facts it needs

    @classmethod
    def halts(cls, facts: Any) -> bool:
        """Whether what this check found makes training impossible (the pre-flight stops; the run fails unless
        doctor.halt_on_error=false). Only read when the check raised a finding."""
        return False


# The phases and, within each, the order the checks run and report in.
PHASES: dict[str, tuple[str, ...]] = {
    "data": ("nonfinite_data", "text_splits"),
    "outputs": ("labels", "class_imbalance"),
    "rest": ("sample_order", "norm_batch", "sum_reduction", "input_scale", "wiring", "eval_determinism", "leakage",
             "near_copies", "split_scale", "label_column", "split_structure", "initialization", "first_gradients"),
}

"""The doctor's rules: pure functions from measurements to findings, with one set of thresholds for every run.

Why the thresholds generalize: see doctor/thresholds.py. These runners build each stage's facts and run its
declared checks (doctor/checks/).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradwise.doctor import checks
from gradwise.doctor.checks.activations import ActivationFacts, RegularizationFacts
from gradwise.doctor.checks.curves import CurveFacts
from gradwise.doctor.checks.steps import StepFacts
from gradwise.doctor.evidence import _finite
from gradwise.doctor.facts import Facts
from gradwise.doctor.findings import Finding
from gradwise.doctor.measures import (  # noqa: F401 - re-exported
    _blew_up,
    _den,
    _first_reg_ratio,
    _killed_by_large_steps,
    _latest_loss,
    _layer_ok,
    _loss_falling,
    _median,
    _weight_grad,
    depth_ratio,
    max_rel_grad,
    steps_look_healthy,
    summarize_probes,
    update_ratio,
)
from gradwise.doctor.probes import ProbeRecord
from gradwise.doctor.thresholds import DEFAULT, Thresholds
from gradwise.doctor.verdict import SUPERSEDES, explained, supersede  # noqa: F401 - re-exported


def _scale(facts: Facts | None, losses: Sequence[float]) -> float | None:
    s = facts.scale if facts is not None else None
    if s is None and losses and _finite(losses[0]) and losses[0] > 0:
        s = losses[0]
    return s


def _f(code: str, severity: str, message: str, evidence: dict[str, Any], causes: list[str], fixes: list[str],
       epoch: int | None, step: int | None = None) -> Finding:
    return Finding(code, severity, message, evidence, causes, fixes, step=step, epoch=epoch)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- curves


def curve_findings(history: list[dict[str, Any]], facts: Facts | None, final: bool = False,
                   t: Thresholds = DEFAULT, planned_epochs: int | None = None,
                   early_stopping: bool = False, disabled: Sequence[str] = (), guard: bool = True
                   ) -> list[Finding]:
    """Every curve check (doctor/checks/curves*.py) over a run's per-epoch rows (metrics.jsonl). Pure: the live
    doctor and `analyze_run` call it with the same rows and get the same findings. `early_stopping`: the run keeps
    its best epoch by validation loss, so overfitting after that epoch costs nothing (reported as info unless even
    the best epoch generalizes poorly). `guard=False`: a check that fails raises (analyze_run falls back to judging
    without damaged facts) instead of being skipped."""
    if not history:
        return []
    c = CurveFacts.of(history, facts, final, planned_epochs, early_stopping)
    selected = [k for k in checks.REGISTRY.values() if k.reads == "curves"]
    return supersede(checks.run(selected, c, t, disabled, guard=guard))


def probe_findings(records: list[ProbeRecord], facts: Facts | None, history: list[dict[str, Any]],
                   t: Thresholds = DEFAULT, epoch_end: bool = False, clipping: bool = False,
                   final: bool = False, disabled: Sequence[str] = ()) -> list[Finding]:
    """Every step check (doctor/checks/steps.py) over the sampled steps: learning rate (update/weight ratio),
    exploding and vanishing gradients. `clipping`: the run clips the gradient norm (the size of a step is bounded
    whatever the gradient's). `final`: the run is over; one too short to reach lr_too_low's burn-in is judged on
    all its steps."""
    if len(records) < t.min_probes:
        return []
    s = StepFacts(records, facts, history, t, clipping=clipping, final=final)
    return checks.run([c for c in checks.checks(stage="step") if c.reads == "probes"], s, t, disabled)


def activation_findings(rows: list[dict[str, dict[str, float]]], epoch: int | None, step: int | None,
                        t: Thresholds = DEFAULT, coupled_decay: float = 0.0, disabled: Sequence[str] = ()
                        ) -> list[Finding]:
    """Dead ReLUs and saturated sigmoid/tanh units on the fixed probe batch, two epoch checks in a row
    (doctor/checks/activations.py)."""
    a = ActivationFacts(rows, epoch, step, coupled_decay)
    return checks.run([c for c in checks.REGISTRY.values() if c.reads == "activations"], a, t, disabled)


def over_regularization(records: list[ProbeRecord], facts: Facts | None, history: list[dict[str, Any]],
                        config: Any, t: Thresholds = DEFAULT, dropout: float = 0.0, disabled: Sequence[str] = ()
                        ) -> list[Finding]:
    """The regularizer out-pulls the data: its force exceeds the data gradient's on the first probes, and the
    model ends up underfitting (doctor/checks/activations.py)."""
    r = RegularizationFacts(records, facts, history, config, dropout)
    return checks.run([c for c in checks.REGISTRY.values() if c.reads == "regularization"], r, t, disabled)

"""The live checks (doctor/checks/live.py) one at a time on synthetic LiveFacts: the NaN guard's finding, a loss that
grew before it overflowed, a gradient spike shortly before, units killed by large steps; thresholds on both sides."""

from __future__ import annotations

import math

import pytest

from gradwise.doctor import checks
from gradwise.doctor.checks.live import LiveFacts
from gradwise.doctor.facts import Facts
from gradwise.doctor.findings import Finding
from gradwise.doctor.probes import ProbeRecord
from gradwise.doctor.thresholds import configured


def run(name: str, facts: LiveFacts, **thresholds: float) -> Finding | None:
    return checks.REGISTRY[name]().check(facts, configured(thresholds))


def _records(norms: list[float], every: int = 10) -> tuple[ProbeRecord, ...]:
    return tuple(ProbeRecord(step=i * every, epoch=1, lr=0.1, grad_norm=g) for i, g in enumerate(norms))


def test_nonfinite_step_names_the_first_module() -> None:
    f = run("nonfinite_step", LiveFacts(42, 2, math.nan, 0.1, {"first_nonfinite": "fc2"}))
    assert f is not None and (f.code, f.severity, f.step, f.epoch) == ("nonfinite_values", "error", 42, 2)
    assert "first non-finite value in fc2" in f.message and f.evidence["first_nonfinite"] == "fc2"
    assert f.fixes[0] == "optim.lr=<lr*0.1>"


@pytest.mark.parametrize(("high", "found"), [(100.0, True), (99.0, False)])
def test_diverged_to_nan_growth_edges(high: float, found: bool) -> None:
    facts = LiveFacts(50, 1, math.inf, 0.1, first_loss=1.0, recent_losses=(2.0, high, 50.0))
    f = run("diverged_to_nan", facts)
    assert (f is not None) is found
    if f is not None:
        assert f.code == "diverging_loss" and f.evidence["highest_finite_loss"] == high


def test_diverged_to_nan_needs_positive_losses_and_a_nan() -> None:
    grown = LiveFacts(50, 1, math.nan, 0.1, first_loss=1.0, recent_losses=(500.0,))
    assert run("diverged_to_nan", grown) is not None
    assert run("diverged_to_nan", LiveFacts(50, 1, math.nan, 0.1, first_loss=1.0, recent_losses=(500.0, -1.0))) is None
    assert run("diverged_to_nan", LiveFacts(50, 1, 3.0, 0.1, first_loss=1.0, recent_losses=(500.0,))) is None
    assert run("diverged_to_nan", grown, nan_growth=600) is None


@pytest.mark.parametrize(("spike", "found"), [(100.0, True), (99.0, False)])
def test_gradient_spike_growth_edges(spike: float, found: bool) -> None:
    facts = LiveFacts(45, 1, math.nan, 0.1, records=_records([1.0, 1.0, 1.0, spike]))  # spike at step 30
    f = run("gradient_spike", facts)
    assert (f is not None) is found
    if f is not None:
        assert f.code == "exploding_gradients" and f.evidence["spike_step"] == 30


def test_gradient_spike_window() -> None:
    facts = LiveFacts(80, 1, math.nan, 0.1, records=_records([1.0, 1.0, 1.0, 500.0]))  # 50 steps after the spike
    assert run("gradient_spike", facts) is not None
    assert run("gradient_spike", facts, spike_window=49) is None


def _dead(**evidence: object) -> Finding:
    return Finding("dead_units", "warning", "dead", {"layers": {"1": 0.8}, **evidence})


@pytest.mark.parametrize(("largest", "found"), [(0.05, True), (0.049, False)])
def test_dead_after_large_steps_edges(largest: float, found: bool) -> None:
    facts = LiveFacts(100, 3, activations=(_dead(),), facts=Facts(), largest_step=largest)
    f = run("dead_after_large_steps", facts)
    assert (f is not None) is found
    if f is not None:
        assert (f.code, f.severity, f.evidence["dead_layers"]) == ("lr_too_high", "warning", {"1": 0.8})


def test_dead_after_large_steps_other_causes_first() -> None:
    base = dict(activations=(_dead(),), largest_step=0.5)
    assert run("dead_after_large_steps", LiveFacts(1, 1, seen=frozenset({"bad_initialization"}), **base)) is None
    assert run("dead_after_large_steps", LiveFacts(1, 1, facts=Facts(init_abnormal=True), **base)) is None
    assert run("dead_after_large_steps", LiveFacts(1, 1, activations=(_dead(coupled_weight_decay=0.5),),
                                                   largest_step=0.5)) is None

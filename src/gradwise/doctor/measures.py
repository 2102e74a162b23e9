"""Measurements over the sampled steps (probe records): update/weight and gradient/weight ratios, the depth ratio
between the first and the last layer, and the verdicts several step checks share. Pure functions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from gradwise.doctor.evidence import _finite
from gradwise.doctor.facts import Facts
from gradwise.doctor.probes import ProbeRecord
from gradwise.doctor.thresholds import DEFAULT, Thresholds


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _den(rec: ProbeRecord, name: str, ref: ProbeRecord | None) -> float:
    """‖W‖, but never below half its size at the first probe: weights a huge weight decay has shrunk towards 0
    would otherwise make every ratio look enormous (that is over-regularization, not a large LR or gradient)."""
    w = rec.weight.get(name, 0.0)
    if ref is not None:
        w = max(w, 0.5 * ref.weight.get(name, 0.0))
    return max(w, 1e-12)


def _cached(fn: Any) -> Any:
    """Memoize a per-record ratio (the rules re-read the same records at every probe and epoch end)."""
    def wrapper(rec: ProbeRecord, *args: Any) -> Any:
        key = (fn.__name__, *(a.step if isinstance(a, ProbeRecord) else id(a) for a in args))
        if key not in rec.cache:
            rec.cache[key] = fn(rec, *args)
        return rec.cache[key]
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _blew_up(losses: list[Any], factor: float = 2.0) -> bool:
    """Some loss is >= `factor` times the lowest loss before it (non-finite values count as a blow-up)."""
    low = math.inf
    for v in losses:
        if v is None:
            continue
        if not _finite(v):
            return True
        if low < math.inf and v >= factor * low and v - low > 0:
            return True
        low = min(low, v)
    return False


@_cached
def update_ratio(rec: ProbeRecord, ref: ProbeRecord | None = None) -> float:
    """Median over weight matrices of ‖ΔW‖/‖W‖ for one step."""
    vals = [rec.update.get(n, 0.0) / _den(rec, n, ref) for n in rec.weight if n in rec.update and rec.weight[n] > 0]
    return _median(vals)


@_cached
def depth_ratio(rec: ProbeRecord, order: list[str], ref: ProbeRecord | None = None) -> float | None:
    """(‖g‖/‖W‖ of the first weight matrix) / (the same for the last), in the order the modules run."""
    names = [n for n in order if _layer_ok(rec, n)]
    if len(names) < 3:  # two layers are too shallow to vanish or explode through depth
        return None
    last = rec.grad[names[-1]] / _den(rec, names[-1], ref)
    if last <= 0:
        return None
    return rec.grad[names[0]] / _den(rec, names[0], ref) / last


def summarize_probes(records: list[ProbeRecord], order: list[str]) -> dict[str, Any]:
    """The numbers the probe rules use, for evidence and for tests."""
    ref = records[0] if records else None
    return {"steps": [r.step for r in records], "update_ratio": [update_ratio(r, ref) for r in records],
            "grad_norm": [r.grad_norm for r in records], "depth_ratio": [depth_ratio(r, order, ref) for r in records],
            "max_grad_to_weight": [max_rel_grad(r, ref) for r in records], "reg_ratio": [r.reg_ratio for r in records]}


def _recent(records: list[ProbeRecord], k: int = 5, min_step: int = 0) -> list[ProbeRecord]:
    return [r for r in records if r.step >= min_step][-k:]


def _latest_loss(history: list[dict[str, Any]], records: list[ProbeRecord]) -> float | None:
    if history and _finite(history[-1].get("train_loss")):
        return float(history[-1]["train_loss"])
    return records[-1].loss if records and records[-1].loss is not None else None


def _layer_ok(rec: ProbeRecord, name: str) -> bool:
    """Layers with (near-)zero weights on purpose (a zero-initialized output layer) have no meaningful ratio."""
    return rec.weight.get(name, 0.0) > 1e-8 and name in rec.grad


@_cached
def max_rel_grad(rec: ProbeRecord, ref: ProbeRecord | None = None) -> float:
    vals = [rec.grad[n] / _den(rec, n, ref) for n in rec.grad if _layer_ok(rec, n)]
    return max(vals) if vals else 0.0


def _weight_grad(rec: ProbeRecord) -> float:
    """The gradient norm over the probed weight matrices (biases left out: they still train in a dead network)."""
    return math.sqrt(sum(v * v for v in rec.grad.values())) if rec.grad else float("nan")


def _killed_by_large_steps(records: list[ProbeRecord], peak: float, t: Thresholds = DEFAULT
                           ) -> tuple[float, int, float, float] | None:
    """(largest step, its probe's step, first weight-gradient norm, latest) when a probed step at >= lr_active of
    the peak LR, after the optimizer's start-up, was >= dead_repair_step of the weights and the last min_probes
    probes after it all have weight gradients <= dead_grad of the first probes' (median of the first 3)."""
    ref = records[0]
    first = [g for g in (_weight_grad(r) for r in records[:3]) if _finite(g) and g > 0]
    if len(first) < 3:
        return None
    g0 = _median(first)
    steps = [(update_ratio(r, ref), i) for i, r in enumerate(records)
             if r.step - ref.step >= t.lr_low_burn_in and r.lr >= t.lr_active * peak]
    steps = [(u, i) for u, i in steps if _finite(u) and u >= t.dead_repair_step]
    if not steps:
        return None
    big, i = max(steps)
    after = records[i + 1:][-t.min_probes:]
    if len(after) < t.min_probes or not all(_finite(_weight_grad(r)) and _weight_grad(r) <= t.dead_grad * g0
                                            for r in after):
        return None
    return big, records[i].step, g0, _weight_grad(records[-1])


def _loss_falling(records: list[ProbeRecord], facts: Facts | None, history: list[dict[str, Any]]) -> bool:
    """The training loss is below where it started: the latest epoch mean (else the median of the last probed
    batches) against the initialized model's loss (else the first probed batch)."""
    start = facts.initial_loss if facts is not None and _finite(facts.initial_loss) else records[0].loss
    if history and _finite(history[-1].get("train_loss")):
        now: float | None = float(history[-1]["train_loss"])
    else:
        recent = [r.loss for r in records[-3:] if r.loss is not None and math.isfinite(r.loss)]
        now = _median(recent) if recent else None
    return start is not None and now is not None and math.isfinite(start) and now < start


def steps_look_healthy(records: list[ProbeRecord], order: list[str], t: Thresholds = DEFAULT) -> bool:
    """The optimizer is doing its job: on the recent probes past the start-up steps the update/weight ratio lies
    in the healthy range (update_healthy .. update_high), no layer's gradient is out of scale and the first layer's
    relative gradient is not vanishing against the last one's. A run that still learns nothing then points at
    the data (labels unrelated to the inputs) rather than at the optimization."""
    recent = [r for r in records if r.step - records[0].step >= t.lr_low_burn_in][-5:] if records else []
    if len(recent) < t.min_probes:
        return False
    ref = records[0]
    ur = [u for u in (update_ratio(r, ref) for r in recent) if _finite(u)]
    drs = [d for d in (depth_ratio(r, order, ref) for r in recent) if d is not None]
    return (len(ur) >= t.min_probes and t.update_healthy <= _median(ur) < t.update_high
            and _median([max_rel_grad(r, ref) for r in recent]) < t.explode_rel
            and (not drs or _median(drs) > t.vanish_depth))


def _first_reg_ratio(records: list[ProbeRecord], t: Thresholds = DEFAULT) -> float | None:
    """Regularization force / data force, median over the first probes after step 0 (None: no regularization)."""
    ratios = [r.reg_ratio for r in records[:6] if r.reg_ratio is not None and r.step >= 1]
    return _median(ratios) if len(ratios) >= t.min_probes else None

"""Activation checks (dead ReLUs, saturated sigmoid/tanh units on the fixed probe batch, two epoch ends in a row)
and the regularization checks of the finished run (a regularizer that out-pulls the data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradwise.doctor.checks.base import Check, register
from gradwise.doctor.evidence import _finite, _fits_no_better, _gap_evidence
from gradwise.doctor.facts import Facts
from gradwise.doctor.findings import HE_INIT, LR_DOWN_SOME, Code, Finding, Fix, both, either
from gradwise.doctor.measures import _first_reg_ratio
from gradwise.doctor.probes import ProbeRecord
from gradwise.doctor.thresholds import Thresholds


@dataclass
class ActivationFacts:
    """Per epoch end: layer -> dead share (ReLU) or saturated shares (sigmoid/tanh/hardtanh) on the probe batch.
    `coupled_decay`: the weight decay an adaptive optimizer (Adam, RMSprop, ...) applies as an L2 term inside its
    gradient (0 when there is none or it is decoupled, as in AdamW)."""

    rows: list[dict[str, dict[str, Any]]]
    epoch: int | None
    step: int | None
    coupled_decay: float = 0.0
    found: list[Finding] = field(default_factory=list)


class ActivationCheck(Check):
    family = "activations"
    stage = "epoch"
    reads = "activations"

    def check(self, facts: ActivationFacts, t: Thresholds) -> Finding | None:
        return self.judge(facts, t, facts.rows[-2], facts.rows[-1]) if len(facts.rows) >= 2 else None

    def judge(self, f: ActivationFacts, t: Thresholds, a: dict[str, Any], b: dict[str, Any]) -> Finding | None:
        raise NotImplementedError


@register
class DeadUnits(ActivationCheck):
    name = "dead_units"
    code = Code.DEAD_UNITS
    measures = "the share of a ReLU layer's units that output 0 on every probe row, two epoch ends in a row"
    thresholds = ("dead_share", "dead_min_units")
    causes = ("learning rate too high (a large step pushed the units negative)", "unscaled inputs",
              "a large negative bias init")
    fixes = (LR_DOWN_SOME, Fix("model.activation", "leaky_relu", note="or gelu"), Fix("model.norm", "batch"))

    def judge(self, f: ActivationFacts, t: Thresholds, a: dict[str, Any], b: dict[str, Any]) -> Finding | None:
        dead = {k: v["dead"] for k, v in b.items() if "dead" in v and v["units"] >= t.dead_min_units and k in a
                and a[k].get("dead", 0) >= t.dead_share and v["dead"] >= t.dead_share}
        if not dead:
            return None
        k = max(dead, key=lambda n: dead[n])
        causes, fixes = list(self.causes), list(self.fixes)
        if f.coupled_decay > 0:
            # an adaptive optimizer divides the L2 term by the running size of the unit's gradient: a unit that
            # rarely fires has a tiny data gradient, so the decay becomes a full-size step that shrinks its weights
            # to 0 and leaves only a (possibly negative) bias -- a known way to kill ReLUs
            causes.insert(0, f"weight decay {f.coupled_decay:g} applied as an L2 term through an adaptive optimizer "
                          "(Adam's weight_decay is not AdamW's): rescaled by the tiny gradients of rarely firing "
                          "units it drives their weights to 0")
            fixes.insert(0, either(Fix("optim.name", "adamw", note="decoupled weight decay"),
                                   Fix("optim.weight_decay", 0)))
        return self.finding(
            f"{dead[k]:.0%} of the ReLU units of {k} output 0 on every probe row (two epochs in a row): they no "
            "longer learn", {"layers": dead, "threshold": t.dead_share, "probe_rows": "<=128 training rows",
                             **({"coupled_weight_decay": f.coupled_decay} if f.coupled_decay > 0 else {})},
            epoch=f.epoch, step=f.step, causes=causes, fixes=fixes)


@register
class SaturatedUnits(ActivationCheck):
    name = "saturated_units"
    code = Code.SATURATED_UNITS
    measures = ("the share of a sigmoid/tanh layer's units saturated on most probe rows, or of all its outputs, "
                "two epoch ends in a row")
    thresholds = ("sat_unit", "sat_share", "sat_layer")
    causes = ("unscaled inputs", "weights initialized too large", "learning rate too high")
    fixes = (Fix("data.scale", "standard"), both(Fix("model.activation", "relu"), HE_INIT), Fix("model.norm", "batch"))

    def judge(self, f: ActivationFacts, t: Thresholds, a: dict[str, Any], b: dict[str, Any]) -> Finding | None:
        def saturated(v: dict[str, Any]) -> bool:
            if v.get("kind") == "hardtanh":  # a clipped output is a ReLU's zero: only units clipped on nearly
                return v.get("saturated", 0.0) >= t.sat_share  # every row are stuck (half clipped is normal work)
            return v.get("saturated", 0.0) >= t.sat_share or v.get("sat_mean", 0.0) >= t.sat_layer

        sat = {k: v for k, v in b.items() if "saturated" in v and v["units"] >= 2 and k in a and saturated(a[k])
               and saturated(v)}
        if not sat:
            return None
        k = max(sat, key=lambda n: max(sat[n]["saturated"], sat[n].get("sat_mean", 0.0)))
        kind = b[k].get("kind", "sigmoid")
        units, outs = sat[k]["saturated"], sat[k].get("sat_mean", 0.0)
        return self.finding(
            f"{outs:.0%} of the outputs of the {kind} layer {k} are saturated and {units:.0%} of its units on "
            f"≥{t.sat_unit:.0%} of the probe rows (two epochs in a row): their gradients are ~0",
            {"layers": {n: {"units_saturated": v["saturated"], "outputs_saturated": v.get("sat_mean")}
                        for n, v in sat.items()},
             "threshold": t.sat_share, "unit_threshold": t.sat_unit, "layer_threshold": t.sat_layer},
            epoch=f.epoch, step=f.step)


@dataclass
class RegularizationFacts:
    """The finished run: its probes (the regularization force against the data force), per-epoch rows, pre-flight
    facts, config (optim's weight decay / L1 / L2) and largest dropout rate."""

    records: list[ProbeRecord]
    facts: Facts | None
    history: list[dict[str, Any]]
    config: Any
    dropout: float = 0.0
    found: list[Finding] = field(default_factory=list)

    @property
    def losses(self) -> list[float]:
        return [r.get("train_loss") for r in self.history if _finite(r.get("train_loss"))]

    @property
    def S(self) -> float | None:
        L = self.losses
        s = self.facts.scale if self.facts is not None else None
        return s if s is not None else (L[0] if L and L[0] > 0 else None)

    def knobs(self) -> dict[str, Any]:
        oc = getattr(self.config, "optim", None)
        wd = oc.resolved_weight_decay() if hasattr(oc, "resolved_weight_decay") else getattr(oc, "weight_decay", None)
        return {"weight_decay": wd, "l1": getattr(oc, "l1", None), "l2": getattr(oc, "l2", None),
                "dropout": self.dropout}

    def no_gap(self, t: Thresholds) -> bool:
        return not (self.facts is not None and self.facts.sum_reduced) and _fits_no_better(self.history, t)

    def held_back(self, t: Thresholds, dominant: bool) -> bool:
        """The run underfits: half the know-nothing loss left, or under_low of it with no generalization gap --
        or, when the regularizer out-pulled the data from the first steps, under_low_reg of it with no gap (healthy
        runs start with the regularizer at ~1e-3..1e-1 of the data gradient)."""
        L, S = self.losses, self.S
        assert S is not None
        return L[-1] >= t.reg_high_loss * S or (
            L[-1] >= (t.under_low_reg if dominant else t.under_low) * S and self.no_gap(t))

    @property
    def where(self) -> dict[str, Any]:
        return {"epoch": self.history[-1].get("epoch"), "step": self.history[-1].get("step")}


class RegularizationCheck(Check):
    family = "capacity"
    stage = "final"
    reads = "regularization"

    def check(self, facts: RegularizationFacts, t: Thresholds) -> Finding | None:
        return self.judge(facts, t) if facts.losses and facts.S is not None else None

    def judge(self, r: RegularizationFacts, t: Thresholds) -> Finding | None:
        raise NotImplementedError


def _decay_fixes(r: RegularizationFacts) -> list[str]:
    """Less regularization: L1 off (when on), and a usual decay for the optimizer in use (decoupled in AdamW, an L2
    term in the others)."""
    oc = getattr(r.config, "optim", None)
    usual = 0.01 if str(getattr(oc, "name", "")).lower() == "adamw" else 5e-4
    return (["optim.l1=0 (or 1e-6)"] if (r.knobs()["l1"] or 0) > 1e-5 else []) + [
        Fix("optim.weight_decay", usual).render(), Fix("optim.l2", 0).render()]


@register
class OverRegularization(RegularizationCheck):
    name = "over_regularization"
    code = Code.OVER_REGULARIZATION
    measures = ("the regularization force against the data gradient on the first probes, in a run that ends "
                "underfitting")
    thresholds = ("reg_ratio", "reg_high_loss", "under_low", "under_low_reg", "under_gap", "min_probes")
    causes = ("weight decay / L2 / L1 a decade or more too strong",)

    def judge(self, r: RegularizationFacts, t: Thresholds) -> Finding | None:
        med = _first_reg_ratio(r.records, t)
        if med is None or med < t.reg_ratio or not r.held_back(t, True):
            return None
        L, S = r.losses, r.S
        assert S is not None
        return self.finding(
            f"the regularization force is {med:.3g}x the data gradient on the first steps and the training loss "
            f"stays at {L[-1] / S:.0%} of the know-nothing loss",
            {"reg_to_data": med, "threshold": t.reg_ratio, **r.knobs(), "train_loss": L[-1], "loss_scale": S},
            **r.where, fixes=_decay_fixes(r))


@register
class DropoutTooStrong(RegularizationCheck):
    name = "dropout_too_strong"
    code = Code.OVER_REGULARIZATION
    measures = "a dropout rate >= dropout_high in a run that ends underfitting"
    thresholds = ("dropout_high", "reg_high_loss", "under_low", "under_gap")
    causes = ("dropout too strong for the model's width",)
    fixes = (Fix("model.dropout", 0.2),)

    def judge(self, r: RegularizationFacts, t: Thresholds) -> Finding | None:
        med = _first_reg_ratio(r.records, t)
        if (med is not None and med >= t.reg_ratio and r.held_back(t, True)) or r.dropout < t.dropout_high:
            return None  # (the regularizer's own finding says it first)
        if not r.held_back(t, med is not None and med >= t.reg_ratio):
            return None
        L, S = r.losses, r.S
        assert S is not None
        return self.finding(
            f"dropout p={r.dropout:g} and the training loss stays at {L[-1] / S:.0%} of the know-nothing loss",
            {"dropout": r.dropout, "train_loss": L[-1], "loss_scale": S}, **r.where)


@register
class RegularizedUnderfit(RegularizationCheck):
    name = "underfitting_regularized"
    code = Code.UNDERFITTING
    measures = "a run that over-regularization holds back below high_loss (above it the curve check reports it)"
    thresholds = ("high_loss",)
    causes = ("too much regularization (see over_regularization)",)

    def judge(self, r: RegularizationFacts, t: Thresholds) -> Finding | None:
        root = next((f for f in r.found if f.code == Code.OVER_REGULARIZATION), None)
        L, S = r.losses, r.S
        assert S is not None
        if root is None or L[-1] >= t.high_loss * S:
            return None
        no_gap = r.no_gap(t)
        return self.finding(
            f"the final training loss {L[-1]:.4g} is {L[-1] / S:.0%} of the know-nothing loss"
            + (" and the model fits its training rows hardly better than new ones" if no_gap else "")
            + ": the regularization holds it back",
            {"train_loss": L[-1], "loss_scale": S, "ratio": L[-1] / S, **_gap_evidence(r.history), **r.knobs()},
            **r.where, fixes=list(root.fixes))

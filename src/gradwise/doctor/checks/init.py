"""Pre-flight checks of the initialized model: the weights' scale against the He/Glorot/LeCun family (std·√fan_in
between ~0.5 and ~1.5), the initial loss against an all-zero output's (ln C for C classes), ReLU units dead before
step 1, a signal that collapses through too-small weights, and parameters the first backward pass never reaches."""

from __future__ import annotations

from typing import Any

from gradwise.doctor.checks.base import register
from gradwise.doctor.checks.preflight import PreflightCheck
from gradwise.doctor.findings import Code, Finding, Fix
from gradwise.doctor.preflight_facts import Init, PreflightFacts
from gradwise.doctor.thresholds import Thresholds


def bad_layers(init: Init, t: Thresholds) -> list[dict[str, Any]]:
    """Weight matrices constant across their units (every unit computes the same function, so they stay identical)
    or with std·√fan_in above init_gain_high."""
    out: list[dict[str, Any]] = []
    for name, std, gain, symmetric, units in init.layers:
        if symmetric:  # units: how many there are, all with one weight row (distinct_rows 1): the layer acts as one
            out.append({"layer": name, "issue": "constant across units (every unit computes the same function, so "
                        "they stay identical)", "std": std, "units": units, "distinct_rows": 1})
        elif gain > t.init_gain_high:
            out.append({"layer": name, "issue": f"std·√fan_in = {gain:.3g} (He: 1.41)", "std": std})
    return out


def tiny_init(init: Init, t: Thresholds) -> dict[str, Any] | None:
    """Evidence of a too-small init: most hidden weight matrices below init_gain_low and the signal reaching the
    output layer below signal_collapse of the input's size (see thresholds.py), or None."""
    gains, first, last = init.hidden_gains, init.signal_first, init.signal_last
    if not gains or first is None or last is None or first <= 0:
        return None
    small = [n for n, g in gains.items() if g < t.init_gain_low]
    signal = last / first
    if signal >= t.signal_collapse:
        return None
    if 2 * len(small) <= len(gains):
        # the weights look fine one by one: only a signal gone altogether says otherwise -- a millionth of its scale
        # after the first layer reaching the last one (measured from the first layer's output: raw inputs squashed
        # by a tanh or a norm would otherwise look like a collapse)
        second = init.signal_second
        if second is None or second <= 0 or last / second >= t.signal_gone:
            return None
    return {"hidden": len(gains), "small": len(small), "min_gain": min(gains.values()),
            "gains": {n: gains[n] for n in small[:6]}, "signal_ratio": signal, "threshold_gain": t.init_gain_low,
            "threshold_signal": t.signal_collapse}


def loss_ratio(facts: PreflightFacts) -> float | None:
    """The initial loss over an all-zero output's."""
    if facts.initial_loss is not None and facts.zero_loss:
        return facts.initial_loss / facts.zero_loss
    return None


def loss_off(facts: PreflightFacts, t: Thresholds) -> bool:
    """The initial loss is init_loss_ratio or more times an all-zero output's, and unnormalized inputs (found
    before) do not explain it."""
    ratio = loss_ratio(facts)
    unnormalized = any(f.code == "unnormalized_inputs" and f.severity != "info" for f in facts.found)
    return ratio is not None and ratio > t.init_loss_ratio and not unnormalized


def init_abnormal(facts: PreflightFacts, t: Thresholds) -> bool:
    """The weights' scale is far off (then update/weight ratios mean little): later checks read it (Facts)."""
    init = facts.init
    return init is not None and (bool(bad_layers(init, t)) or loss_off(facts, t) or tiny_init(init, t) is not None)


@register
class Initialization(PreflightCheck):
    name = "initialization"
    code = Code.BAD_INITIALIZATION
    family = "init"
    measures = ("the weights' scale std·√fan_in against the He/Glorot/LeCun family, the initial loss against an "
                "all-zero output's, ReLU units dead at init, the signal collapsing through a too-small init")
    thresholds = ("init_gain_high", "init_gain_low", "signal_collapse", "signal_gone", "init_loss_ratio",
                  "dead_at_init")
    causes = ("weights filled with a constant or zeros", "a hand-written init with the wrong std (e.g. normal std 1 "
              "or 10, or 0.01 in a deep stack)", "a large negative bias")
    fixes = (Fix("model.init", "he_normal", note="ReLU"), Fix("model.init", "xavier_uniform", note="tanh/sigmoid"),
             "fit(): drop the custom init (PyTorch's default is sane) or use nn.init.kaiming_normal_")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        init = facts.init
        if init is None:
            return None
        bad, tiny, off = bad_layers(init, t), tiny_init(init, t), loss_off(facts, t)
        dead = {k: v for k, v in init.dead.items() if v >= t.dead_at_init}
        if not bad and not off and not dead and not tiny:
            return None
        ratio = loss_ratio(facts)
        ev: dict[str, Any] = {"initial_loss": facts.initial_loss, "expected_loss": facts.zero_loss, "ratio": ratio,
                              "threshold": t.init_loss_ratio}
        parts = []
        if bad:
            ev["layers"] = bad[:6]
            parts.append(f"{bad[0]['layer']} is {bad[0]['issue']}")
        if tiny:
            ev["small_init"] = tiny
        if dead:
            ev["dead_relu_share"] = dead
        if off:
            parts.append(f"the initial loss {facts.initial_loss:.4g} is {ratio:.3g}x that of an all-zero output "
                         f"({facts.zero_loss:.4g})")
        if dead:
            k = next(iter(dead))
            parts.append(f"{dead[k]:.0%} of the units of {k} never fire at initialization")
        if tiny:
            parts.append(f"{tiny['small']} of {tiny['hidden']} hidden weight matrices have std·√fan_in < "
                         f"{t.init_gain_low} (smallest {tiny['min_gain']:.3g}; PyTorch's default is 0.58) and the "
                         f"signal reaching the output layer is {tiny['signal_ratio']:.2g} of the input's size")
        return self.finding("; ".join(parts), ev, epoch=0, step=0)


@register
class FirstGradients(PreflightCheck):
    name = "first_gradients"
    code = Code.NO_LEARNING
    family = "init"
    measures = "the share of trainable parameters whose first gradient is None or exactly zero"
    thresholds = ("no_grad_share",)
    causes = ("all-zero or constant initialization (ReLU units with zero input pass no gradient)",
              "a layer defined but not used in forward()", ".detach() or torch.no_grad() inside forward()")
    fixes = (Fix("model.init", "he_normal", note="a random init"), "fit(): drop the zero init (PyTorch's default is "
             "random)", "remove the unused layer or the detach")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        g = facts.gradients
        if g is None or (not g.unused and not g.zero):
            return None
        return self.finding(f"{g.share:.0%} of the trainable parameters get no gradient at step 0 ({len(g.unused)} "
                            f"tensors unused, {len(g.zero)} with an all-zero gradient)",
                            {"unused": g.unused[:8], "zero_gradient": g.zero[:8], "share_of_parameters": g.share,
                             "threshold": t.no_grad_share}, epoch=0, step=0,
                            severity="warning" if g.share >= t.no_grad_share else "info")

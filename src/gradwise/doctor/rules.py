"""The doctor's rules: pure functions from measurements to findings, with one set of thresholds for every run.

Why these thresholds generalize
-------------------------------
* Loss levels are never compared with absolute numbers. They are divided by the run's *know-nothing loss* S:
  the loss of the best constant prediction on the training targets (the prior's entropy for cross-entropy, the
  target variance for MSE), measured before step 1. "The loss is still above 0.6·S" means "the model explains
  less than 40% of what there is to explain" on any dataset, in any units.
* Loss changes are relative (a rise to 2x the running minimum) *and* must matter on the scale S (the rise is at
  least 10% of S), so that late, tiny losses (0.001 -> 0.002) never count as a divergence.
* Gradient and update sizes are ratios: ‖ΔW‖/‖W‖ per weight matrix, ‖g‖/‖W‖ compared between the first and the
  last layer, the regularization force against the data force. They do not depend on the units of the data.
* Every warning needs persistence: two or more consecutive epochs, or the median of several sampled steps, so a
  single noisy batch or epoch never raises one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from gradwise.doctor import checks
from gradwise.doctor.checks.curves import CurveFacts
from gradwise.doctor.evidence import _finite, _fits_no_better, _gap_evidence
from gradwise.doctor.findings import Finding
from gradwise.doctor.preflight import Facts
from gradwise.doctor.probes import ProbeRecord
from gradwise.doctor.thresholds import DEFAULT, Thresholds


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
                   early_stopping: bool = False, disabled: Sequence[str] = ()) -> list[Finding]:
    """Every curve check (doctor/checks/curves*.py) over a run's per-epoch rows (metrics.jsonl). Pure: the live
    doctor and `analyze_run` call it with the same rows and get the same findings. `early_stopping`: the run keeps
    its best epoch by validation loss, so overfitting after that epoch costs nothing (reported as info unless even
    the best epoch generalizes poorly)."""
    if not history:
        return []
    c = CurveFacts.of(history, facts, final, planned_epochs, early_stopping)
    return supersede(checks.run([k for k in checks.REGISTRY.values() if k.reads == "curves"], c, t, disabled))


# A root cause hides the symptoms it explains (a diverged run also 'plateaus', 'underfits' and has a 'gap').
# Inside one curve_findings call a symptom is dropped (`supersede`); across the check types (pre-flight, probes,
# curves, end of training) the doctor keeps it, downgraded to info and marked with its root (`explained`).
SUPERSEDES: dict[str, tuple[str, ...]] = {
    "diverging_loss": ("plateau", "underfitting", "overfitting", "oscillating_loss", "train_eval_mismatch",
                       "no_learning"),
    "no_learning": ("plateau", "underfitting"),
    # steps too large for the weights, and the units they killed, stall a run: raising its LR (no_learning's and
    # plateau's advice) would make it worse
    "lr_too_high": ("no_learning", "plateau"),
    "dead_units": ("no_learning", "plateau"),
    # shuffled labels: the training loss creeps down slowly and stalls high ('underfitting', 'plateau', early on
    # 'no_learning'); none of those fixes (a bigger model, more epochs, a higher LR) helps
    "label_problem": ("overfitting", "plateau", "underfitting", "no_learning"),
    "train_eval_mismatch": ("overfitting", "label_problem"),  # a broken eval mode inflates the val loss
    # a loss that does not match the output (softmax before cross-entropy, sigmoid before BCE-with-logits, a
    # squashing output on a regression target) floors or flattens the loss: the stall and the high loss are its doing
    "loss_output_mismatch": ("underfitting", "plateau", "no_learning"),
    # a too-small init makes the data gradient vanish, so any regularization looks dominant on the first steps
    # (vanishing_gradients is no such root: a decay that shrinks the weights makes the gradients vanish itself)
    "bad_initialization": ("over_regularization",),
    # raw inputs make the first layers' gradients large relative to their weights from step 0 on; only gradients
    # that are large but not growing are explained by that (see `_covers`)
    "unnormalized_inputs": ("exploding_gradients",),
}


def _covers(root: Finding, symptom: Finding) -> bool:
    if symptom.code not in SUPERSEDES.get(root.code, ()):
        return False
    if root.evidence.get("repaired") and (symptom.step or 0) > (root.step or 0):
        return False  # a root the doctor repaired explains nothing that came after the repair
    if root.code == "diverging_loss" and symptom.code == "oscillating_loss":  # up and back down, again and again
        return not root.evidence.get("recovered", False)
    if symptom.code == "exploding_gradients":  # growth or non-finite values are a blow-up of their own
        return not symptom.evidence.get("growing", True)
    return True


def supersede(found: list[Finding]) -> list[Finding]:
    roots = [f for f in found if f.code in SUPERSEDES]
    return [f for f in found if not any(r.code != f.code and _covers(r, f) for r in roots)]


def explained(found: list[Finding]) -> list[Finding]:
    """The findings of a whole run with every symptom of a root cause found elsewhere (a warning or error of
    another check type) turned into info, marked with the root in its evidence. Pre-flight findings (epoch 0)
    describe the setup itself and are never a symptom; the first matching root in SUPERSEDES order is named."""
    rank = {code: i for i, code in enumerate(SUPERSEDES)}
    roots = sorted((f for f in found if f.rank >= 1 and f.code in rank), key=lambda f: rank[f.code])
    out: list[Finding] = []
    for f in found:
        root = next((r for r in roots if r.code != f.code and _covers(r, f)), None) \
            if f.rank >= 1 and f.epoch != 0 else None
        if root is None:
            out.append(f)
            continue
        # the symptom's own advice can contradict the root's (no_learning says "raise the LR", lr_too_high "lower
        # it"): what to change is the root's fix
        out.append(Finding(f.code, "info", f"{f.message} (explained by {root.code})",
                           {**f.evidence, "explained_by": root.code}, list(f.causes), list(root.fixes),
                           step=f.step, epoch=f.epoch))
    return out


# --------------------------------------------------------------------------------------------- sampled steps


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


def probe_findings(records: list[ProbeRecord], facts: Facts | None, history: list[dict[str, Any]],
                   t: Thresholds = DEFAULT, epoch_end: bool = False, clipping: bool = False,
                   final: bool = False) -> list[Finding]:
    """Rules over the sampled steps: learning rate (update/weight ratio), exploding and vanishing gradients.
    `clipping`: the run clips the gradient norm (the size of a step is bounded whatever the gradient's).
    `final`: the run is over; one too short to reach lr_too_low's burn-in is judged on all its steps."""
    out: list[Finding] = []
    if len(records) < t.min_probes:
        return out
    last = records[-1]
    order = facts.layer_order if facts is not None and facts.layer_order else list(last.weight)
    S = facts.scale if facts is not None else None
    loss = _latest_loss(history, records)
    ep = history[-1].get("epoch") if history else last.epoch
    ref = records[0]

    # learning rate: how much one step changes the weights, on steps run at (near) the peak LR. Warmup and the
    # tail of a decay schedule take small steps on purpose; an abnormal init makes the ratio meaningless.
    peak = max(r.lr for r in records)
    active = [r for r in records if r.lr >= t.lr_active * peak and r.step >= 1][-5:]
    ur = [u for u in (update_ratio(r, ref) for r in active) if _finite(u)]
    regs = [r.reg_ratio for r in active if r.reg_ratio is not None]
    reg_dominates = bool(regs) and _median(regs) >= t.reg_ratio  # decay, not the LR, sets the step size
    init_ok = facts is None or not facts.init_abnormal
    # lr_too_low: steps after the optimizer's own start-up (lr_low_burn_in), at >= 30% of the schedule's real
    # peak LR (the param group's initial_lr / max_lr, recorded with each probe): with a warmup, the running
    # maximum of the probed LRs is the current warmup LR, so warmup steps would count as full-LR steps
    peak_low = max([peak] + [r.peak_lr for r in records if r.peak_lr is not None and math.isfinite(r.peak_lr)])
    # (steps counted from the first record: after a repair the doctor clears its records and the new trajectory
    # -- restored weights, a cut LR -- starts up again)
    start = records[0].step
    burn_in = t.lr_low_burn_in
    if final and sum(1 for r in records if r.step - start >= burn_in) < t.min_probes:
        burn_in = 1  # a finished run of a handful of steps (full-batch training): its steps are all there is
    active_low = [r for r in records if r.lr >= t.lr_active * peak_low and r.step - start >= burn_in][-5:]
    ur_low = [u for u in (update_ratio(r, ref) for r in active_low) if _finite(u)]
    med_low = _median(ur_low) if len(ur_low) >= t.min_probes else None
    # as for lr_too_high, no LR verdict where the decay sets the step size: now, or on the first steps (the
    # over_regularization measure) -- a decay that dominated from the start holds the weights at an equilibrium
    # where the two forces are about equal, so the recent ratio hovers near 1
    regs_low = [r.reg_ratio for r in active_low if r.reg_ratio is not None]
    first_reg = _first_reg_ratio(records, t)
    reg_dominates_low = (bool(regs_low) and _median(regs_low) >= t.reg_ratio) or (
        first_reg is not None and first_reg >= t.reg_ratio)
    # ... and not in a run whose steps at this LR were too large before (>= min_probes probes above update_high):
    # small updates after large ones come from units the large steps killed or saturated, not from a low LR, and
    # raising the LR would make them worse
    was_high = sum(1 for r in records if r.step >= 1 and r.lr >= t.lr_active * peak_low
                   and _finite(update_ratio(r, ref)) and update_ratio(r, ref) >= t.update_high) >= t.min_probes
    # ... nor after the loss blew up (a probe's loss or an epoch's mean loss far above what came before): a blow-up
    # between two probes leaves dead or saturated units whose small steps are damage, not a low LR
    was_high = was_high or _blew_up([r.loss for r in records]) or _blew_up([h.get("train_loss") for h in history])
    # ... nor after the loss lost ground it had won (the epoch loss now >= its best + 0.1·S): small steps then come
    # from a collapse (dead or saturated units), not from a low LR
    Lh = [h.get("train_loss") for h in history if _finite(h.get("train_loss"))]
    was_high = was_high or (S is not None and len(Lh) >= 2 and Lh[-1] - min(Lh) >= t.diverge_rise * S)
    # ... nor once large steps left no gradient on the weights (a killed network takes no steps at all)
    was_high = was_high or _killed_by_large_steps(records, peak, t) is not None
    if init_ok:
        med = _median(ur) if len(ur) >= t.min_probes else None
        if med is not None and med >= t.update_high and not reg_dominates:
            # Large relative steps are harmless while they pay off: a freshly initialized layer (a new head on a
            # frozen backbone, a high fan-in layer with small weights) takes steps that are large next to its
            # small weights, and the loss falls fast. A too-high LR instead leaves the loss where it started or
            # throws it up. So: a warning unless the loss on these very steps fell to half its first value
            # without ever rising above it; then info, and a later window re-judges it.
            losses = [r.loss for r in active if r.loss is not None and math.isfinite(r.loss)]
            first_loss = ref.loss if ref.loss is not None and math.isfinite(ref.loss) else None
            productive = (first_loss is not None and first_loss > 0 and len(losses) >= t.min_probes
                          and losses[-1] <= t.lr_high_progress * first_loss
                          and max(losses) <= 1.1 * first_loss)
            msg = (f"each step changes the weights by {med:.1%} of their norm (median of {len(ur)} probes; healthy "
                   f"is ~0.1-1%, the limit {t.update_high:.0%})")
            if productive:
                msg += f", but the loss fell from {first_loss:.3g} to {losses[-1]:.3g} over those steps"
            out.append(_f("lr_too_high", "info" if productive else "warning", msg,
                          {"update_to_weight": med, "threshold": t.update_high, "steps": [r.step for r in active],
                           "lr": last.lr, "probe_losses": losses, "first_loss": first_loss, "productive": productive},
                          ["learning rate about a decade too high", "Adam-family optimizer with an SGD-sized LR"],
                          ["optim.lr=<lr*0.1>", "schedule.name=warmup_cosine"], ep, last.step))
        elif (med_low is not None and med_low <= t.update_low and not was_high and not reg_dominates_low
              and (S is None or loss is None or loss >= 0.5 * S)):
            out.append(_f("lr_too_low", "warning", f"each step changes the weights by only {med_low:.1e} of their "
                          f"norm (median of {len(ur_low)} probes; limit {t.update_low:.0e}) while the loss is still "
                          "high", {"update_to_weight": med_low, "threshold": t.update_low, "lr": last.lr,
                                   "peak_lr": peak_low, "steps": [r.step for r in active_low],
                                   "train_loss": loss, "loss_scale": S},
                          ["learning rate a decade or more too low", "an SGD-sized LR divided once too often"],
                          ["optim.lr=<lr*10>", "doctor.repair=true (raises the LR on a slow start)"], ep, last.step))

    # large steps that killed the network: the dead-units rule generalized to any activation. A GELU/SiLU/ELU unit
    # is not watched for death as a ReLU is (below zero its output is not exactly 0), but pushed far enough below
    # zero for every input it passes back no gradient either; once that holds for whole layers no gradient reaches
    # any weight matrix, only the biases train, and the loss sits at the class prior. After update steps far above
    # the healthy size (a probe at the peak LR >= dead_repair_step, the bar the dead-units rule uses) that is the
    # LR's doing, even where the loss never rose far enough on an epoch mean to count as a divergence (the blow-up
    # and the collapse happened between two probes, inside an epoch).
    if init_ok and S is not None and loss is not None and loss >= t.collapse_level * S:
        dead = _killed_by_large_steps(records, peak, t)
        if dead is not None:
            big, big_step, g0, g_now = dead
            out.append(_f("lr_too_high", "warning", f"after update steps of up to {big:.1%} of the weights (step "
                          f"{big_step}; healthy steps are ~0.1-1%) no gradient reaches the weights any more (norm "
                          f"{g_now:.2g} against {g0:.2g} on the first steps) and the loss ({loss:.4g}) is back at the "
                          f"know-nothing loss ({S:.4g}): the large steps pushed the units where they pass no gradient",
                          {"update_to_weight": big, "largest_update_step": big_step, "threshold": t.dead_repair_step,
                           "weight_grad_first": g0, "weight_grad_now": g_now, "threshold_grad": t.dead_grad,
                           "train_loss": loss, "loss_scale": S, "rule": "no_gradient_after_large_steps"},
                          ["learning rate too high for this model and optimizer", "no gradient clipping"],
                          ["optim.lr=<lr*0.1>", "train.clip_grad=1.0",
                           "doctor.repair=true (retrains from the start with a lower LR)"], ep, last.step))

    # diverging within the first epochs: the per-step loss on the probes shot up to >= 10x where it started (and
    # the know-nothing loss) and the last two probes are still >= 2x it. Epoch means miss a blow-up inside epoch 1:
    # the first epoch's mean is already huge, so no later epoch rises above it.
    losses = [(r.step, r.loss) for r in records if r.loss is not None and math.isfinite(r.loss)]
    base = max(ref.loss if ref.loss is not None and math.isfinite(ref.loss) else 0.0, S or 0.0)
    if base > 0 and len(losses) >= t.min_probes:
        peak_step, peak_loss = max(losses, key=lambda sl: sl[1])
        if peak_loss >= t.probe_blowup * base and all(v >= t.diverge_factor * base for _, v in losses[-2:]):
            out.append(_f("diverging_loss", "warning", f"the per-step loss shot up from {base:.4g} to {peak_loss:.4g} "
                          f"(step {peak_step}) and is still {losses[-1][1]:.4g} at step {losses[-1][0]}",
                          {"start_loss": base, "peak_loss": peak_loss, "peak_step": peak_step,
                           "latest_loss": losses[-1][1], "threshold": t.probe_blowup, "rule": "probe_losses"},
                          ["learning rate far too high (the first steps overshoot)", "no gradient clipping"],
                          ["optim.lr=<lr*0.1>", "train.clip_grad=1.0", "doctor.repair=true"], ep, last.step))

    # exploding: a layer's gradient far larger than its weights, the gradient norm grown 100x since the start, or
    # the first layer's relative gradient 100x the last one's -- on most of the recent probes
    recent = records[-5:]
    first = [r.grad_norm for r in records[:3] if r.grad_norm > 0]
    g0 = _median(first) if first else None
    big, growing = [], []
    for r in recent:
        grown = (g0 is not None and r.grad_norm >= t.explode_growth * g0) or not math.isfinite(r.grad_norm)
        dr = depth_ratio(r, order, ref)
        big.append(max_rel_grad(r, ref) >= t.explode_rel or grown or (dr is not None and dr >= t.explode_depth))
        growing.append(grown)
    if sum(big) >= t.min_probes and all(big[-2:]):
        worst = max((n for n in last.grad if _layer_ok(last, n)), key=lambda n: last.grad[n] / _den(last, n, ref),
                default=None)
        hot = [r for r, b in zip(recent, big, strict=True) if b]
        grew = any(growing)
        # gradients that are only *large* (not growing) while clipping bounds every step and the loss falls do no
        # harm: the clipped steps are the right size and training works. Growth or non-finite values stay a
        # warning (clipping hides a blow-up, it does not stop one).
        bounded = clipping and not grew and _loss_falling(records, facts, history)
        msg = (f"the gradients are far out of scale on {sum(big)} of the last {len(big)} probes (norm up to "
               f"{max(r.grad_norm for r in hot):.3g}; largest ‖g‖/‖W‖ {max(max_rel_grad(r, ref) for r in hot):.3g}, "
               "healthy < 2)")
        if bounded:
            msg += "; clipping bounds the steps and the loss is falling"
        out.append(_f("exploding_gradients", "info" if bounded else "warning", msg,
                      {"grad_norm": [r.grad_norm for r in recent], "start_grad_norm": g0,
                       "max_grad_to_weight": [max_rel_grad(r, ref) for r in recent], "threshold_rel": t.explode_rel,
                       "threshold_growth": t.explode_growth, "layer": worst, "growing": grew, "clipping": clipping,
                       "depth_ratio": [depth_ratio(r, order, ref) for r in recent]},
                      ["no gradient clipping (RNNs especially)", "a too-large initialization of recurrent or deep "
                       "layers", "learning rate too high"],
                      (["data.scale_target=true (standardized regression targets)",
                        "fit(): standardize the regression targets, y = (y - y.mean()) / y.std()"]
                       if facts is not None and (facts.target_rms or 0) > 10 else [])
                      + ["train.clip_grad=1.0", "model.init=orthogonal (RNN)", "model.init=he_normal",
                         "optim.lr=<lr*0.1>"],
                      ep, last.step))
    # vanishing: the first layer's relative gradient is a thousandth of the last layer's, persistently
    drs = [d for d in (depth_ratio(r, order, ref) for r in recent) if d is not None]
    if len(drs) >= t.min_probes and _median(drs) <= t.vanish_depth:
        names = [n for n in order if n in last.grad]
        out.append(_f("vanishing_gradients", "warning", f"the first layer's gradient (relative to its weights) is "
                      f"{_median(drs):.1e} of the last layer's (median of {len(drs)} probes; limit "
                      f"{t.vanish_depth:.0e}): the early layers barely learn",
                      {"depth_ratio": drs, "threshold": t.vanish_depth, "first_layer": names[0] if names else None,
                       "last_layer": names[-1] if names else None},
                      ["sigmoid/tanh in a deep stack", "a too-small initialization", "no normalization or residual "
                       "connections in a deep model"],
                      ["model.activation=relu model.init=he_normal", "model.norm=batch"], ep, last.step))
    return out


def activation_findings(rows: list[dict[str, dict[str, float]]], epoch: int | None, step: int | None,
                        t: Thresholds = DEFAULT, coupled_decay: float = 0.0) -> list[Finding]:
    """Dead ReLUs and saturated sigmoid/tanh units on the fixed probe batch, two epoch checks in a row.
    `coupled_decay`: the weight decay an adaptive optimizer (Adam, RMSprop, ...) applies as an L2 term inside its
    gradient (0 when there is none or it is decoupled, as in AdamW)."""
    out: list[Finding] = []
    if len(rows) < 2:
        return out
    a, b = rows[-2], rows[-1]
    dead = {k: v["dead"] for k, v in b.items() if "dead" in v and v["units"] >= 4 and k in a
            and a[k].get("dead", 0) >= t.dead_share and v["dead"] >= t.dead_share}
    if dead:
        k = max(dead, key=lambda n: dead[n])
        causes = ["learning rate too high (a large step pushed the units negative)", "unscaled inputs",
                  "a large negative bias init"]
        fixes = ["optim.lr=<lr*0.3>", "model.activation=leaky_relu (or gelu)", "model.norm=batch"]
        if coupled_decay > 0:
            # an adaptive optimizer divides the L2 term by the running size of the unit's gradient: a unit that
            # rarely fires has a tiny data gradient, so the decay becomes a full-size step that shrinks its
            # weights to 0 and leaves only a (possibly negative) bias -- a known way to kill ReLUs
            causes.insert(0, f"weight decay {coupled_decay:g} applied as an L2 term through an adaptive optimizer "
                          "(Adam's weight_decay is not AdamW's): rescaled by the tiny gradients of rarely firing "
                          "units it drives their weights to 0")
            fixes.insert(0, "optim.name=adamw (decoupled weight decay) or optim.weight_decay=0")
        out.append(_f("dead_units", "warning", f"{dead[k]:.0%} of the ReLU units of {k} output 0 on every probe row "
                      "(two epochs in a row): they no longer learn",
                      {"layers": dead, "threshold": t.dead_share, "probe_rows": "<=128 training rows",
                       **({"coupled_weight_decay": coupled_decay} if coupled_decay > 0 else {})},
                      causes, fixes, epoch, step))

    def saturated(v: dict[str, Any]) -> bool:
        if v.get("kind") == "hardtanh":  # a clipped output is a ReLU's zero: only units clipped on nearly every row
            return v.get("saturated", 0.0) >= t.sat_share  # are stuck (half the outputs clipped is normal work)
        return v.get("saturated", 0.0) >= t.sat_share or v.get("sat_mean", 0.0) >= t.sat_layer

    sat = {k: v for k, v in b.items() if "saturated" in v and v["units"] >= 2 and k in a and saturated(a[k])
           and saturated(v)}
    if sat:
        k = max(sat, key=lambda n: max(sat[n]["saturated"], sat[n].get("sat_mean", 0.0)))
        kind = b[k].get("kind", "sigmoid")
        units, outs = sat[k]["saturated"], sat[k].get("sat_mean", 0.0)
        out.append(_f("saturated_units", "warning", f"{outs:.0%} of the outputs of the {kind} layer {k} are saturated "
                      f"and {units:.0%} of its units on ≥{t.sat_unit:.0%} of the probe rows (two epochs in a row): "
                      "their gradients are ~0",
                      {"layers": {n: {"units_saturated": v["saturated"], "outputs_saturated": v.get("sat_mean")}
                                  for n, v in sat.items()},
                       "threshold": t.sat_share, "unit_threshold": t.sat_unit, "layer_threshold": t.sat_layer},
                      ["unscaled inputs", "weights initialized too large", "learning rate too high"],
                      ["data.scale=standard", "model.activation=relu model.init=he_normal",
                       "model.norm=batch"], epoch, step))
    return out


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


def over_regularization(records: list[ProbeRecord], facts: Facts | None, history: list[dict[str, Any]],
                        config: Any, t: Thresholds = DEFAULT, dropout: float = 0.0) -> list[Finding]:
    """The regularizer out-pulls the data: its force exceeds the data gradient's on the first probes, and the
    model ends up underfitting."""
    out: list[Finding] = []
    L = [r.get("train_loss") for r in history if _finite(r.get("train_loss"))]
    S = _scale(facts, L)
    if not L or S is None:
        return out
    med = _first_reg_ratio(records, t)
    # the run underfits: half the know-nothing loss left, or a quarter of it with no generalization gap -- or, when
    # the regularizer out-pulled the data from the first steps, a tenth of it with no gap: a model that can fit
    # nothing better than new rows while a force stronger than the data's holds its weights down is held back by
    # that force (healthy runs start with the regularizer at ~1e-3..1e-1 of the data gradient)
    no_gap = not (facts is not None and facts.sum_reduced) and _fits_no_better(history, t)
    dominant = med is not None and med >= t.reg_ratio
    high = L[-1] >= 0.5 * S or (L[-1] >= (t.under_low_reg if dominant else t.under_low) * S and no_gap)
    oc = getattr(config, "optim", None)
    wd = oc.resolved_weight_decay() if hasattr(oc, "resolved_weight_decay") else getattr(oc, "weight_decay", None)
    knobs = {"weight_decay": wd, "l1": getattr(oc, "l1", None),
             "l2": getattr(oc, "l2", None), "dropout": dropout}
    if med is not None and med >= t.reg_ratio and high:
        out.append(_f("over_regularization", "warning", f"the regularization force is {med:.3g}x the data "
                      f"gradient on the first steps and the training loss stays at {L[-1] / S:.0%} of the "
                      "know-nothing loss", {"reg_to_data": med, "threshold": t.reg_ratio, **knobs,
                                             "train_loss": L[-1], "loss_scale": S},
                      ["weight decay / L2 / L1 a decade or more too strong"],
                      (["optim.l1=0 (or 1e-6)"] if (knobs["l1"] or 0) > 1e-5 else [])
                      # a usual decay for the optimizer in use (decoupled in AdamW, an L2 term in the others)
                      + [f"optim.weight_decay={0.01 if str(getattr(oc, 'name', '')).lower() == 'adamw' else 5e-4:g}",
                         "optim.l2=0"],
                      history[-1].get("epoch"), history[-1].get("step")))
    elif dropout >= 0.7 and high:
        out.append(_f("over_regularization", "warning", f"dropout p={dropout:g} and the training loss stays at "
                      f"{L[-1] / S:.0%} of the know-nothing loss", {"dropout": dropout, "train_loss": L[-1],
                                                                   "loss_scale": S},
                      ["dropout too strong for the model's width"], ["model.dropout=0.2"],
                      history[-1].get("epoch"), history[-1].get("step")))
    if out and L[-1] < t.high_loss * S:  # (above high_loss the curve rule reports underfitting itself)
        out.append(_f("underfitting", "warning", f"the final training loss {L[-1]:.4g} is {L[-1] / S:.0%} of the "
                      "know-nothing loss" + (" and the model fits its training rows hardly better than new ones"
                                             if no_gap else "") + ": the regularization holds it back",
                      {"train_loss": L[-1], "loss_scale": S, "ratio": L[-1] / S,
                                                        **_gap_evidence(history), **knobs},
                      ["too much regularization (see over_regularization)"], list(out[0].fixes),
                      history[-1].get("epoch"), history[-1].get("step")))
    return out

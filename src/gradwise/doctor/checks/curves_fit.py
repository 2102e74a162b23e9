"""Curve checks of fit and generalization: underfitting (and its causes), overfitting, labels that do not carry
over, a model that computes another function in eval mode. They run after the curves.py checks, whose findings
(`CurveFacts.found`) some of them read."""

from __future__ import annotations

import math
from typing import Any

from gradwise.doctor.checks.base import register
from gradwise.doctor.checks.curves import CurveCheck, CurveFacts
from gradwise.doctor.evidence import _beats_majority, _finite, _fits_no_better, _gap_evidence, labels_look_random
from gradwise.doctor.findings import WIDER, Code, Finding, Fix, advice, both
from gradwise.doctor.thresholds import Thresholds

LESS_DECAY = Fix("optim.weight_decay", scale=0.1, note="less decay")
DECAY = Fix("optim.weight_decay", 0.05)
EARLY_STOP = both(Fix("train.early_stopping.enabled", True),
                  Fix("train.early_stopping.restore_best", True, note="keeps the best epoch"))


@register
class Underfitting(CurveCheck):
    name = "underfitting"
    code = Code.UNDERFITTING
    family = "capacity"
    stage = "final"
    measures = "the finished run's loss settled at a high share of the know-nothing loss"
    thresholds = ("high_loss", "settled", "settled_epochs")
    causes = ("the model is too small or too constrained (too much regularization)",
              "too few epochs or too low a learning rate")
    fixes = (advice("a wider/deeper model ({})", WIDER), LESS_DECAY,
             Fix("model.dropout", 0))

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        S = c.S
        assert S is not None
        if not (c.settled(t) and c.L[-1] >= t.high_loss * S):
            return None
        return self.finding(
            f"the final training loss {c.L[-1]:.4g} is {c.L[-1] / S:.0%} of the know-nothing loss {S:.4g}: the model "
            "cannot fit its own training data", {"train_loss": c.L[-1], "loss_scale": S, "ratio": c.L[-1] / S,
                                                 "threshold": t.high_loss},
            # relative to what the run has (the fix filter drops a change that changes nothing)
            epoch=c.ep[-1], step=c.step[-1],
            fixes=(*self.fixes, Fix("train.epochs", 2 * (c.planned_epochs or c.n))))


@register
class BelowNeighbours(CurveCheck):
    name = "underfitting_vs_neighbours"
    code = Code.UNDERFITTING
    family = "capacity"
    stage = "final"
    measures = ("validation accuracy far below how often a row's nearest training row shares its label, while the "
                "model fits its training rows hardly better: too little capacity")
    thresholds = ("nn_capacity_gap", "nn_val_rows", "under_gap_bottleneck", "settled", "settled_epochs")
    causes = ("a linear model on classes that are not linearly separable", "a model too small for the task",
              "too much regularization (weight decay, L1/L2 penalty, dropout)")
    fixes = (advice("add hidden layers with a nonlinearity, or widen them ({})", WIDER),
             "lower the regularization (optim.weight_decay, optim.l1, optim.l2, model.dropout)")

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        f = c.facts
        accs = [h["val_accuracy"] for h in c.history if _finite(h.get("val_accuracy"))]
        agree = f.neighbour_agreement if f is not None else None
        if (f is None or agree is None or not accs or not c.settled(t) or (f.val_rows or 0) < t.nn_val_rows
                or max(accs) > agree - t.nn_capacity_gap or f.sum_reduced or c.has(Code.UNDERFITTING)
                or not _fits_no_better(c.history, t, t.under_gap_bottleneck)):
            return None
        return self.finding(
            f"a row's nearest training row has the same label in {agree:.0%} of rows, but the model gets only "
            f"{max(accs):.0%} of the validation rows right and fits its training rows hardly better: it lacks the "
            "capacity for these classes",
            {"best_val_accuracy": max(accs), "neighbour_label_agreement": agree, "threshold_gap": t.nn_capacity_gap,
             "train_loss": c.L[-1], "loss_scale": c.S, **_gap_evidence(c.history)}, epoch=c.ep[-1], step=c.step[-1])


@register
class Bottleneck(CurveCheck):
    name = "bottleneck"
    code = Code.UNDERFITTING
    family = "capacity"
    stage = "final"
    measures = "a hidden layer narrower than the classes, and a run that fits its training rows hardly better than new"
    thresholds = ("under_low", "high_loss", "under_gap_bottleneck", "settled", "settled_epochs")
    causes = ("a hidden layer narrower than the number of classes",)

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        f, S, last = c.facts, c.S, c.L[-1]
        assert S is not None
        narrow = f.narrowest if f is not None else None
        classes = f.n_outputs if f is not None and f.loss_kind in ("ce", "nll", "hinge") else None
        if (not narrow or not classes or classes < 3 or narrow[1] >= classes - 1 or not c.settled(t)
                or not t.under_low * S <= last < t.high_loss * S or f.sum_reduced  # type: ignore[union-attr]
                or not _fits_no_better(c.history, t, t.under_gap_bottleneck)):
            return None
        factor = max(2, math.ceil(classes / max(narrow[1], 1)))
        return self.finding(
            f"the final training loss {last:.4g} is {last / S:.0%} of the know-nothing loss and the model fits its "
            f"training rows hardly better than new ones: layer {narrow[0]} has {narrow[1]} units for {classes} "
            "classes, a bottleneck",
            {"train_loss": last, "loss_scale": S, "ratio": last / S, "layer": narrow[0], "units": narrow[1],
             "classes": classes, **_gap_evidence(c.history)}, epoch=c.ep[-1], step=c.step[-1],
            fixes=[f"widen {narrow[0]} to at least {classes} units ({Fix('model.widths', scale=factor)})"])


def _memorized(c: CurveFacts, t: Thresholds, idx: list[int], Sv: float, best_v: float) -> bool:
    """The training loss fell, the validation loss never beat knowing nothing, and at the epoch that fits the
    training rows best the validation rows are worse by >= label_gap -- while eval mode still fits the training
    rows (else it is a train/eval mismatch)."""
    S, L, V, E = c.S, c.L, c.V, c.E
    assert S is not None
    if len(idx) < t.label_epochs or min(L) > t.label_train * S or best_v < t.label_val * Sv:
        return False
    fit = min(idx, key=lambda j: L[j])  # the epoch that fits the training rows best
    fits = [E[i] for i in idx if _finite(E[i])]
    return V[fit] / Sv - L[fit] / S >= t.label_gap and (not fits or min(fits) <= t.label_train * S)


def _labels(c: CurveFacts, t: Thresholds) -> dict[str, Any] | None:
    """What the label checks share: the validated epochs, the validation know-nothing loss and three verdicts.
    `memorized`: the training loss fell, the validation loss never beat knowing nothing, and at the epoch that fits
    the training rows best the validation rows are worse by >= label_gap (each relative to its own know-nothing
    loss), while eval mode still fits the training rows. `random`: the inputs' nearest neighbours share labels at
    chance and the model learned nothing usable. `carries`: memorized, yet new rows are predicted better than the
    majority class (too little data, not wrong labels). `small`: the smallest class has fewer than
    label_min_class_rows training rows -- then neighbours disagree and new rows score badly with correct labels too,
    so neither verdict is evidence of a label problem."""
    S, V, f = c.S, c.V, c.facts
    assert S is not None
    if not any(v is not None for v in V):
        return None
    idx = [i for i in range(c.n) if _finite(V[i])]
    Sv = f.val_baseline if f is not None and _finite(f.val_baseline) else S
    best_v = min(V[i] for i in idx) if idx else math.inf
    memorized = _memorized(c, t, idx, Sv, best_v)
    learned_nothing = (len(idx) >= t.label_nothing_epochs and best_v >= t.label_val * Sv) or c.stuck
    small = bool(f is not None and f.class_counts and min(f.class_counts) < t.label_min_class_rows)
    random = labels_look_random(f, t) if learned_nothing and not small else None
    carries = memorized and not random and _beats_majority(c.history, f, t)
    return {"idx": idx, "Sv": Sv, "best_v": best_v, "memorized": memorized, "random": random,
            "carries": carries or None, "small": small}


@register
class MemorizedTooLittleData(CurveCheck):
    name = "memorized_little_data"
    code = Code.OVERFITTING
    measures = ("the model memorized its training rows, the validation loss never beat knowing nothing, yet new "
                "rows are predicted better than the majority class (or the classes have very few rows)")
    thresholds = ("label_val", "label_train", "label_gap", "label_epochs", "neighbour_margin", "carry_gap",
                  "carry_margin", "label_min_class_rows")
    causes = ("a model with far more parameters than training rows", "no regularization or early stopping")
    fixes = (advice("more training data, or a smaller model ({})", Fix("model.widths", scale=0.25)),
             both(DECAY, Fix("model.dropout", 0.3), joiner=" and "),
             both(Fix("train.early_stopping.enabled", True), Fix("train.early_stopping.patience", 5)))

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        s = _labels(c, t)
        if s is None or not (s["carries"] or (s["memorized"] and s["small"])):
            return None
        i, S, Sv, best_v, f = s["idx"][-1], c.S, s["Sv"], s["best_v"], c.facts
        why = (f"although it predicts new rows better than the majority class ({s['carries']['best_val_accuracy']:.0%}"
               f" vs {s['carries']['majority_share']:.0%})" if s["carries"] else
               f"with {min(f.class_counts)} training rows in the smallest class")  # type: ignore[union-attr]
        return self.finding(
            f"the model memorized its training rows (training loss {min(c.L):.4g} of {S:.4g}) but up to epoch "
            f"{c.ep[i]} the validation loss never beat the know-nothing loss ({best_v:.4g} vs {Sv:.4g}), {why}: far "
            "too little data for the model's size",
            {"best_train_loss": min(c.L), "best_val_loss": best_v, "loss_scale": S, "val_know_nothing_loss": Sv,
             **(s["carries"] or {"class_counts": f.class_counts}),  # type: ignore[union-attr]
             "neighbour_label_agreement": f.neighbour_agreement if f else None}, epoch=c.ep[i], step=c.step[i])


@register
class LabelProblem(CurveCheck):
    name = "label_problem"
    code = Code.LABEL_PROBLEM
    measures = ("the labels do not carry over to new rows: memorized without any gain on validation, or learned "
                "nothing with nearest neighbours agreeing on labels at chance")
    thresholds = MemorizedTooLittleData.thresholds
    causes = ("shuffled or misaligned labels (X and y sorted differently)", "validation labels from another encoding",
              "pure noise targets")
    fixes = ("check that X[i] and y[i] describe the same example", "use the same label encoding for every split")

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        s = _labels(c, t)
        if s is None or s["carries"] or not (s["random"] or (s["memorized"] and not s["small"])):
            return None
        i, S, Sv, rnd = s["idx"][-1], c.S, s["Sv"], s["random"]
        best_v = min(c.V[j] for j in s["idx"])
        msg = (f"the training loss fell to {min(c.L):.4g} but up to epoch {c.ep[i]} the validation loss never beat "
               f"the know-nothing loss ({best_v:.4g} vs {Sv:.4g}): the labels do not carry over to new rows"
               if s["memorized"] else
               f"the model learned nothing usable (best validation loss {best_v:.4g}, know-nothing {Sv:.4g}; best "
               f"training loss {min(c.L):.4g} of {S:.4g}) and a training row's nearest neighbour has the same label in "
               f"{rnd['neighbour_label_agreement']:.0%} of rows, about what two random rows share "
               f"({rnd['chance_agreement']:.0%}): the labels look unrelated to the inputs")
        return self.finding(msg, {"best_train_loss": min(c.L), "best_val_loss": best_v, "loss_scale": S,
                                  "val_know_nothing_loss": Sv, "threshold": t.label_val, **(rnd or {})},
                            epoch=c.ep[i], step=c.step[i])


def _overfit(c: CurveFacts, t: Thresholds, idx: list[int]) -> tuple[int, int, str] | None:
    """(epoch index, best index, rule): the validation loss rising from its best while the training loss falls,
    two epochs in a row; or far above the training loss for gap_epochs epochs."""
    S, L, V = c.S, c.L, c.V
    assert S is not None
    run = 0
    for k, i in enumerate(idx):
        b = min(idx[:k + 1], key=lambda j: V[j])
        rising = (i - b >= 2 and V[i] >= t.overfit_rise * V[b] and V[i] - V[b] >= t.overfit_abs * S and L[i] < L[b])
        run = run + 1 if rising else 0
        if run >= 2:
            return i, b, "rising"
    run = 0
    for i in idx:
        run = run + 1 if V[i] - L[i] >= t.gap_abs * S and V[i] >= t.gap_factor * L[i] else 0
        if run >= t.gap_epochs:
            return i, min(idx, key=lambda j: V[j]), "gap"
    return None


@register
class Overfitting(CurveCheck):
    name = "overfitting"
    code = Code.OVERFITTING
    measures = "the validation loss rises from its best while the training loss falls, or stays far above it"
    thresholds = ("overfit_rise", "overfit_abs", "gap_abs", "gap_factor", "gap_epochs", "gap_best")
    causes = ("too little data for the model", "too many epochs", "too little regularization")
    fixes = (DECAY, Fix("model.dropout", 0.2), "more data or data.augment=[...]")

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        s = _labels(c, t)
        if s is None or s["carries"] or s["memorized"] or s["random"]:
            return None
        found = _overfit(c, t, s["idx"])
        if found is None:
            return None
        S, L, V, idx = c.S, c.L, c.V, s["idx"]
        assert S is not None
        i, b, why = found
        msg = (f"the validation loss rose from {V[b]:.4g} (epoch {c.ep[b]}) to {V[i]:.4g} while the training loss "
               f"kept falling ({L[i]:.4g})" if why == "rising" else
               f"the validation loss ({V[i]:.4g}) is far above the training loss ({L[i]:.4g})")
        # harmless when early stopping keeps the best epoch and even that epoch is not far worse on new rows than the
        # model does on its training rows (compared with the lowest training loss: early epoch means lag). The kept
        # epoch is the best validation epoch so far, stated as of now until the run is over.
        kept = min(idx, key=lambda j: V[j])
        best = f"epoch {c.ep[kept]}" + ("" if c.final else " so far")
        handled = c.early_stopping and V[kept] - min(L) < t.gap_best * S
        if handled:
            msg += f"; early stopping keeps the best epoch ({best})"
        elif c.early_stopping:
            msg += (f"; even the best epoch ({best}, val {V[kept]:.4g}) is {(V[kept] - min(L)) / S:.0%} of the "
                    f"know-nothing loss above the lowest training loss ({min(L):.4g})")
        return self.finding(
            msg, {"epoch": c.ep[i], "val_loss": V[i], "best_val_loss": V[kept], "best_epoch": c.ep[kept],
                  "train_loss": L[i], "lowest_train_loss": min(L), "loss_scale": S, "rule": why,
                  "early_stopping": c.early_stopping, "threshold_best_gap": t.gap_best},
            epoch=c.ep[i], step=c.step[i], severity="info" if handled else "warning",
            fixes=([] if c.early_stopping else [EARLY_STOP]) + list(self.fixes))


@register
class TrainEvalMismatch(CurveCheck):
    name = "train_eval_mismatch"
    code = Code.TRAIN_EVAL_MISMATCH
    measures = ("on the same training rows the eval-mode loss is far above the train-mode loss (or, the other way, "
                "far below it), two epochs in a row, in a model with modules that differ in eval mode")
    thresholds = ("mismatch_rel", "mismatch_abs", "mismatch_train_rel")
    causes = ("BatchNorm with tiny batches (running statistics do not match batch statistics)",
              "BatchNorm momentum/eps changed", "a module that behaves differently in eval()")
    fixes = (Fix("train.batch_size", scale=4),
             Fix("model.norm", "layer", note="LayerNorm does not depend on the batch"),
             "a hand-written dropout must scale by 1/(1-p) in training")
    noisy_causes = ("nn.Dropout after the output layer",
                    "noise or augmentation applied to the outputs or targets in training only")
    noisy_fixes = ("move the dropout before the last Linear layer",
                   "remove the training-only transform of the outputs")

    def judge(self, c: CurveFacts, t: Thresholds) -> Finding | None:
        S, L = c.S, c.L
        assert S is not None
        if c.facts is not None and not c.facts.train_eval_modules:
            return None  # elsewhere a gap only means the weights moved within the epoch
        run = run_train = 0
        for i, e in enumerate(c.E[:c.n]):
            if not _finite(e):
                continue  # an epoch without the check (it runs every few epochs on long runs of short epochs)
            run = run + 1 if e - L[i] >= t.mismatch_abs * S and e >= t.mismatch_rel * L[i] else 0
            # far stronger than dropout's usual price: noise injected where it cannot be learned around
            worse_train = L[i] - e >= t.mismatch_abs * S and L[i] >= t.mismatch_train_rel * e
            run_train = run_train + 1 if worse_train else 0
            ev = {"epoch": c.ep[i], "eval_mode_loss": e, "train_mode_loss": L[i], "loss_scale": S}
            if run_train >= 2:
                return self.finding(
                    f"on training rows the train-mode loss is {L[i]:.4g} but the eval-mode loss is {e:.4g}: something "
                    "active only in training (dropout after the last layer?) adds noise the model cannot learn around",
                    {**ev, "threshold": t.mismatch_train_rel}, epoch=c.ep[i], step=c.step[i],
                    causes=self.noisy_causes, fixes=self.noisy_fixes)
            if run >= 2:
                return self.finding(
                    f"on training rows the eval-mode loss is {e:.4g} but the train-mode loss is {L[i]:.4g}: the model "
                    "computes a different function at evaluation", {**ev, "threshold": t.mismatch_rel},
                    epoch=c.ep[i], step=c.step[i])
        return None

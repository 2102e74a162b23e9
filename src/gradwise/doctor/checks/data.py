"""Pre-flight checks of the training data: values the model cannot take, targets the loss cannot take, classes far
apart in size, batches of one class each, inputs far off unit scale."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradwise.doctor.checks.base import register
from gradwise.doctor.checks.preflight import PreflightCheck
from gradwise.doctor.facts import CLASS_LOSSES, classes_of, subsample
from gradwise.doctor.findings import Code, Finding, Fix
from gradwise.doctor.preflight_facts import PreflightFacts
from gradwise.doctor.thresholds import Thresholds


@register
class NonfiniteData(PreflightCheck):
    name = "nonfinite_data"
    code = Code.NONFINITE_VALUES
    family = "data"
    phase = "data"
    severity = "error"
    measures = "NaN or infinite values in the training inputs or targets (training stops: nothing can be learned)"
    causes = ("missing values in the data file", "a division by zero or log of 0 in preprocessing")
    fixes = (Fix("data.missing", "median", note="or drop"), "fit(): drop or impute the rows before training, e.g. "
             "X = np.nan_to_num(X) or sklearn SimpleImputer")

    def check(self, facts: PreflightFacts, t: Thresholds) -> list[Finding]:
        found = []
        for what, v in (("inputs", facts.x), ("targets", facts.y)):
            if not v.is_floating_point():
                continue
            bad = ~torch.isfinite(v)
            if bool(bad.any()):
                rows = int(bad.reshape(len(v), -1).any(1).sum())
                found.append(self.finding(f"the training {what} contain {int(bad.sum())} NaN/Inf values in {rows} "
                                          f"of {len(v)} rows", {"split": "train", "tensor": what,
                                                                "values": int(bad.sum()), "rows": rows},
                                          epoch=0, step=0))
        return found

    @classmethod
    def halts(cls, facts: Any) -> bool:
        return True


_LABEL_FINDINGS: dict[str, tuple[str, str, list[str], list[Fix | str]]] = {
    # problem: (code, message template, causes, fixes); the message reads the Labels' detail
    "one_logit": (Code.LOSS_OUTPUT_MISMATCH, "cross-entropy over a model with 1 output: softmax of one logit is "
                  "always 1, the loss is constant and nothing learns",
                  ["a binary classifier with one output and cross_entropy"],
                  ["loss=bce_with_logits (one output) or give the model 2 outputs",
                   Fix("loss.name", "bce_with_logits")]),
    "not_class_ids": (Code.LABEL_PROBLEM, "{kind} needs integer class labels but the targets are {dtype} with shape "
                      "{shape_tuple}", ["regression targets given to a classification loss"],
                      ["use a regression loss (loss=mse) or give class indices 0..C-1"]),
    "out_of_range": (Code.LABEL_PROBLEM, "class labels run from {min_label} to {max_label} but the model has "
                     "{outputs} outputs, so valid labels are 0..{last}",
                     ["labels numbered from 1 instead of 0", "the output layer is narrower than the number of "
                      "classes"],
                     ["fit(): y = y - y.min() (labels 0..C-1)", "make the last layer output {wide} values"]),
    "bce_range": (Code.LABEL_PROBLEM, "binary cross-entropy needs targets in [0, 1] but they run from {min:.3g} to "
                  "{max:.3g}", ["class indices 1/2 or -1/+1 given to a binary loss", "several classes given to a "
                                "binary loss"],
                  ["map the labels to 0/1", "loss=cross_entropy with one output per class"]),
    "regression_on_ids": (Code.LOSS_OUTPUT_MISMATCH, "a regression loss ({loss}) on integer targets with "
                          "{distinct_targets} distinct values: class labels treated as numbers (class 9 'twice as "
                          "far' from 0 as class 4) train a poor classifier", ["loss='mse' on class labels"],
                          ["loss=cross_entropy with one output per class", Fix("loss.name", "cross_entropy")]),
}


@register
class Labels(PreflightCheck):
    name = "labels"
    code = Code.LOSS_OUTPUT_MISMATCH
    also = (Code.LABEL_PROBLEM,)
    family = "data"
    phase = "outputs"
    severity = "error"
    measures = ("targets the loss cannot take: class ids outside the model's outputs, regression targets into a "
                "classification loss, BCE targets outside [0, 1], integer class ids into a regression loss, outputs "
                "no training label uses")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        labels = facts.labels
        if labels is None:
            return None
        if labels.problem is None:
            return self._missing(facts)
        code, message, causes, fixes = _LABEL_FINDINGS[labels.problem]
        d = labels.detail
        fill = {**d, "kind": facts.loss_kind, "shape_tuple": tuple(d.get("shape", ())),
                "last": d.get("outputs", 1) - 1, "wide": d.get("max_label", 0) + 1}
        rendered = [f.format(**fill) if isinstance(f, str) else f for f in fixes]
        severity = "warning" if labels.problem == "regression_on_ids" else "error"
        return Finding(code, severity, message.format(**fill), dict(d), list(causes),
                       [f.render() if isinstance(f, Fix) else f for f in rendered], step=0, epoch=0)

    def _missing(self, facts: PreflightFacts) -> Finding | None:
        """Outputs no training label uses (a class loss only): info, the output layer may be wider on purpose."""
        counts, width = facts.labels.counts if facts.labels else None, facts.labels.outputs if facts.labels else 1
        if counts is None or facts.loss_kind not in CLASS_LOSSES:
            return None
        missing = [c for c, k in enumerate(counts) if k == 0]
        if not missing or len(missing) >= width:
            return None
        return self.finding(f"{len(missing)} of the model's {width} outputs never appear as a training label",
                            {"classes_without_examples": missing[:20], "outputs": width}, epoch=0, step=0,
                            severity="info", causes=["the output layer is wider than the number of classes",
                                                     "a class was filtered out"],
                            fixes=[f"make the last layer output {width - len(missing)} values if those classes "
                                   "cannot occur"], code=Code.LABEL_PROBLEM)

    @classmethod
    def halts(cls, facts: Any) -> bool:
        labels = facts.labels
        return labels is not None and labels.problem in labels.FATAL


@register
class ClassImbalance(PreflightCheck):
    name = "class_imbalance"
    code = Code.CLASS_IMBALANCE
    family = "data"
    phase = "outputs"
    measures = "the largest class count against the smallest"
    thresholds = ("imbalance_ratio",)
    causes = ("a rare-event dataset", "a filtered or subsampled dataset")
    fixes = (Fix("loss.class_weights", "balanced"), Fix("data.balance", "weighted_sampler"),
             "fit(): loss=nn.CrossEntropyLoss(weight=...) and judge by balanced accuracy / F1")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        counts = [k for k in (facts.labels.counts or []) if k > 0] if facts.labels is not None else []
        if len(counts) < 2:
            return None
        ratio = max(counts) / max(min(counts), 1)
        if ratio < t.imbalance_ratio:
            return None
        weighted = facts.class_weighted
        share = min(counts) / sum(counts)
        return self.finding(f"the largest class has {ratio:.3g}x the examples of the smallest (smallest share "
                            f"{share:.1%}); accuracy rewards predicting the majority"
                            + (" (class weights are on)" if weighted else ""),
                            {"class_counts": counts, "ratio": ratio, "threshold": t.imbalance_ratio},
                            epoch=0, step=0, severity="info" if weighted else "warning")


@register
class SampleOrder(PreflightCheck):
    name = "sample_order"
    code = Code.TRAIN_EVAL_MISMATCH
    also = (Code.CLASS_IMBALANCE,)
    family = "data"
    measures = "batches of one class each: a loader that does not shuffle rows stored sorted by label"
    thresholds = ("single_class_batches",)
    causes = ("a DataLoader built with shuffle=False (the default) over data stored class by class",)
    fixes = ("DataLoader(dataset, batch_size=..., shuffle=True)", "or pass (X, y) arrays to fit(): gradwise "
             "shuffles them every epoch")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        """SGD on batches of one class sees one class at a time (each batch pulls the model towards its class), and
        BatchNorm's batch statistics carry the label in training, which eval mode's running statistics do not."""
        if facts.loss_kind not in CLASS_LOSSES or facts.loader_weights or not facts.ordered:
            return None  # shuffled, weighted, or an order of the user's own making
        bs, cls = facts.batch_size, classes_of(facts.y)
        if cls is None or bs is None or bs < 4 or len(cls) < 4 * bs or bool((cls < 0).any()):
            return None  # (negative labels, e.g. ignore_index=-100 rows: batches are not one class each then)
        counts = torch.bincount(cls.cpu())
        if int((counts > 0).sum()) < 2 or float(counts.max()) / len(cls) > 0.5:
            return None
        batches = cls[: len(cls) // bs * bs].cpu().reshape(-1, bs)
        pure = float((batches == batches[:, :1]).all(1).float().mean())
        if pure < t.single_class_batches:
            return None
        bn = bool(facts.batchnorm)
        return self.finding(f"{pure:.0%} of the training batches hold a single class: the rows are sorted by label "
                             "and the loader does not shuffle them"
                             + (", so BatchNorm's batch statistics in training carry the label and its running "
                                "statistics in eval do not" if bn else
                                ", so every step pulls the model towards one class"),
                             {"single_class_batches": pure, "batch_size": bs, "batches": len(batches),
                              "batchnorm": bn}, epoch=0, step=0, code=None if bn else Code.CLASS_IMBALANCE)


@register
class InputScale(PreflightCheck):
    name = "input_scale"
    code = Code.UNNORMALIZED_INPUTS
    family = "data"
    measures = "the RMS of each input feature (default inits assume O(1) inputs)"
    thresholds = ("input_large", "input_tiny")
    fixes = (Fix("data.scale", "standard"), "fit(): standardize with the training split's mean and std, e.g. "
             "X = (X - X_train.mean(0)) / X_train.std(0) (sklearn StandardScaler)")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        x = facts.x
        if not x.is_floating_point() or x.ndim < 2 or facts.trace is None:
            return None  # token ids or other discrete inputs
        first = facts.first_module
        if isinstance(first, nn.Embedding | nn.EmbeddingBag) and \
                facts.trace.input_numel.get(facts.trace.order[0]) == facts.probe_rows:
            return None  # the whole input is indices into a table (stored as floats): their scale means nothing
        rms, mean, std, label = _feature_rms(x, facts.feature_names)
        evidence = {"max_feature_rms": float(rms.max()), "feature": label, "mean": mean, "std": std,
                    "median_feature_rms": float(rms.median()), "threshold": t.input_large}
        normalized_first = isinstance(first, nn.modules.batchnorm._BatchNorm | nn.LayerNorm | nn.GroupNorm)
        severity = "info" if normalized_first else "warning"
        if float(rms.max()) > t.input_large:
            return self.finding(f"input {label} has RMS {float(rms.max()):.3g} (mean {mean:.3g}, std {std:.3g}); "
                                "networks initialized for unit-scale inputs saturate or take huge steps", evidence,
                                epoch=0, step=0, severity=severity,
                                causes=["raw features on their own units (prices, counts, pixel values 0-255)"])
        if float(rms.max()) < t.input_tiny:
            evidence["threshold"] = t.input_tiny
            return self.finding(f"every input feature has RMS below {t.input_tiny} (largest {float(rms.max()):.3g}); "
                                "the signal is tiny against the biases and learning is slow", evidence, epoch=0,
                                step=0, severity=severity, causes=["inputs scaled twice (e.g. /255 applied twice)"])
        return None


def _feature_rms(x: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, float, float, str]:
    """Each feature's RMS (an image's: each channel's) on up to 10000 rows, and the mean, std and name of the
    feature with the largest."""
    xs = x[subsample(len(x), 10000).to(x.device)].float()
    if xs.ndim >= 4 and xs.shape[1] <= 4:  # images: per channel
        cols = xs.transpose(0, 1).reshape(xs.shape[1], -1).T
    else:
        cols = xs.reshape(len(xs), -1)
    rms = cols.pow(2).mean(0).sqrt()
    std = cols.std(0) if len(cols) > 1 else torch.zeros_like(rms)
    worst = int(rms.argmax())
    label = names[worst] if worst < len(names) else f"feature {worst}"
    return rms, float(cols[:, worst].mean()), float(std[worst]), label

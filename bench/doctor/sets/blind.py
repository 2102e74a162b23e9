"""A blind evaluation set for the doctor: faulty and healthy training runs written without reading how the doctor
decides (nothing under `gradwise.doctor`, the case suite, its tests or its notes was read).

The runs differ from `bench/doctor/cases.py` and `bench/doctor_holdout.py`: a 1-D CNN with dilated convolutions,
a GRU over digit columns, a wide one-layer tanh net on make_moons, deep narrow ELU / GELU / LeakyReLU / sigmoid
stacks, a CNN with GroupNorm, a bottleneck autoencoder, data from make_classification / make_moons, class-sorted
loaders, NaN cells, duplicated rows, targets left in their units, frozen layers, SGD without momentum, Adamax,
RMSprop with momentum, one_cycle with label smoothing, batch sizes 16..512.

Each faulty run carries the finding codes a careful practitioner would say are clearly present given the mistake,
checked against the run's own curves (`run.history`) with the doctor switched off; a label was only changed when
the curves showed the fault did not manifest, and the run's `note` says so. Healthy runs are trained the careful
way (standardized inputs, a sensible LR, early stopping) and reach good accuracy; they must raise no warning or
error (info findings are fine).

Blind no longer: its first scored run (doctor at commit 8dc7b6a) found 18 of the 28 expected codes with no
false alarm on the 9 healthy runs. The doctor was then revised against the misses, with general rules rather than
per-run thresholds: a ReLU-like output before cross-entropy, class-sorted unshuffled batches, underfitting behind a
bottleneck or over-regularization when the model fits its rows no better than new ones, lr_too_high from a
divergence at the peak LR (and no lr_too_low after a blow-up), oscillation of a loss far from its floor, and a
divergence that came back down no longer hiding the oscillation. It now finds 27 of 28 (the miss: raw regression
targets are reported as no_learning and exploding_gradients, with "standardize the targets" as the fix, not as
underfitting). Treat it as a development set now, like the first batch of `doctor_holdout.py`.

Every run goes through the public API only: `gradwise.fit(model, (X, y), val=(Xv, yv), ..., progress="none")`
with the doctor on (its default), and reads `run.findings` (a run that stops with an exception, such as a NaN loss,
is scored from the `findings.jsonl` and `metrics.jsonl` it left in its run directory).

Run it: `python bench/doctor/run.py blind` (--only moons,gru; --keep /tmp/blind; --list; see bench/doctor/run.py).

(`python bench/doctor_blind.py ...` is the same command line.)
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from doctor.harness import CE, Built, Case, CaseSet, D, M, P, TorchOptim

DIGITS, MNIST1D = P(D.sk_table, "digits"), P(D.mnist1d_split)
MOONS = P(D.synthetic, "moons", 1200, noise=0.25, val_share=0.3, scale=True)
BLOBS4 = P(D.synthetic, "classification", 3000, n_features=20, n_informative=10, n_redundant=4, n_classes=4,
           n_clusters_per_class=2, class_sep=1.5, flip_y=0.01, weights=None, scale=True)  # separable, not trivially
DIABETES = P(D.sk_table, "diabetes")


# ---- the faults that are not a keyword, and the data a case makes its own way ----


def target_standardized(b: Built) -> None:
    b.xt, b.yt, b.xv, b.yv = D.standardized_target((b.xt, b.yt, b.xv, b.yv))


def float_target(b: Built) -> None:
    b.yt, b.yv = b.yt.astype(np.float32), b.yv.astype(np.float32)


def autoencoder_data(seed: int) -> D.Split:
    """digits: 64 pixels (pooled scaling) -> their 45 non-constant pixels, standardized."""
    xt, _, xv, _ = D.sk_table("digits", seed, scale=False)
    cols = np.flatnonzero((xt.std(0) > 2) & (xv.std(0) > 2))  # border pixels are ~always 0: no R^2 to speak of
    tt, tv = D.standardize(xt[:, cols], xv[:, cols])
    mu, sd = xt.mean(), xt.std()
    return (xt - mu) / sd, tt, (xv - mu) / sd, tv


def autoencoder(b: Built) -> None:
    b.model = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 32), nn.GELU(),
                            nn.Linear(32, b.yt.shape[1]))


def pixels_0_255(b: Built) -> None:
    b.xt, b.xv = b.xt * (255 / 16), b.xv * (255 / 16)


def malignant_subset(seed: int) -> D.Split:
    """breast_cancer: every benign row and 12 malignant ones (3% positives), split 75/25, standardized."""
    x, y = D.sklearn_data("breast_cancer")
    rs = np.random.RandomState(seed)
    keep = np.concatenate([np.flatnonzero(y == 1), rs.choice(np.flatnonzero(y == 0), 12, replace=False)])
    return D.split(x[keep], y[keep], 0.25, seed, scale=True)


def duplicated_before_split(seed: int) -> D.Split:
    """make_classification 800x20 stacked twice (an 'oversampling' step) before the split."""
    from sklearn.datasets import make_classification

    x, y = make_classification(800, n_features=20, n_informative=6, n_classes=3, class_sep=0.8, flip_y=0.05,
                               random_state=seed)
    return D.split(np.concatenate([x, x]).astype(np.float32), np.concatenate([y, y]), 0.25, seed, scale=True)


def labels_off_by_one(b: Built) -> None:
    b.yt = np.roll(b.yt, 1)


def frozen_but_head(b: Built) -> None:
    for p in b.model.parameters():
        p.requires_grad_(False)
    for p in b.model.head.parameters():
        p.requires_grad_(True)


def std1_init(b: Built) -> None:
    for m in M.linears(b.model):
        nn.init.normal_(m.weight, std=1.0)
        nn.init.zeros_(m.bias)


def bias_minus3(b: Built) -> None:
    for m in M.linears(b.model)[:-1]:
        nn.init.constant_(m.bias, -3.0)


def nan_cells(b: Built) -> None:
    b.xt = b.xt.copy()
    b.xt[np.random.RandomState(b.seed).rand(*b.xt.shape) < 0.02] = np.nan


def class_sorted_loader(b: Built) -> None:
    b.fit["train"] = D.class_sorted_loader(b.xt, b.yt)


def stale_copy_optimizer(b: Built) -> None:
    b.fit["optimizer"] = torch.optim.Adam(copy.deepcopy(b.model).parameters(), lr=1e-3)


CASES = [
    # ---- healthy: standardized inputs, a sensible LR for the optimizer, enough epochs, early stopping (default) ----
    Case("dilated_cnn1d_mnist1d_adamw", "mnist1d 4000/1000 (own split)", "cnn1d-dil", "adamw 2e-3, bs 64", MNIST1D,
         M.DilatedCNN1d, dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=20, batch_size=64),
         note="checked: val acc 0.89, val loss still falling at epoch 20", init=1),
    Case("gru_digits_columns_rmsprop_momentum", "digits (columns as steps)", "gru", "rmsprop 5e-4 m0.9, bs 32", DIGITS,
         M.GRUColumns, dict(loss=CE, optimizer="rmsprop", lr=5e-4, momentum=0.9, epochs=30, batch_size=32, patience=5),
         note="checked: val acc 0.984; early stopping (patience 5) ends it at epoch 14", init=2),
    Case("wide_tanh_moons_plain_sgd", "make_moons 1200, noise 0.25", "wide-1x512", "sgd 0.1 no momentum, bs 16", MOONS,
         P(M.stack, 2, 2, (512,), nn.Tanh), dict(loss=CE, optimizer="sgd", lr=0.1, momentum=0.0, epochs=40,
                                                 batch_size=16),
         note="checked: val acc 0.944 (noise 0.25 moons)", init=3),
    Case("deep_elu_blobs_adamax", "make_classification 3000x20, 4 classes", "elu-6x64", "adamax 3e-3, bs 64", BLOBS4,
         P(M.stack, 20, 4, (64,) * 6, nn.ELU), dict(loss=CE, optimizer="adamax", lr=3e-3, epochs=60, batch_size=64),
         note="checked: val acc 0.93 (an RBF SVM on the same split: 0.93)", init=4),
    Case("groupnorm_cnn_fashion_adamw", "fashion-mnist 4000/800", "cnn2d+gn", "adamw 2e-3 wd 0.05, bs 64",
         P(D.fashion, 4000, 800), M.GroupNormCNN,
         dict(loss=CE, optimizer="adamw", lr=2e-3, weight_decay=0.05, epochs=10, batch_size=64),
         note="checked: val acc 0.875 on 4000 training images", init=5),
    Case("digits_bottleneck_autoencoder_mse", "digits: 64 pixels -> their 45 non-constant pixels, standardized",
         "ae-64-32-16-32-45", "adam 2e-3, bs 32", autoencoder_data, None,
         dict(loss="mse", optimizer="adam", lr=2e-3, epochs=60, batch_size=32),
         note="checked: val R^2 0.845, train/val loss 0.146/0.156", init=6, corrupt=autoencoder),
    Case("wine_leaky_sgd_onecycle_smoothing", "wine (25% val)", "leaky-2x64", "sgd 0.05 m0.9 one_cycle, ls 0.1, bs 16",
         P(D.sk_table, "wine"), P(M.stack, 13, 3, (64, 64), P(nn.LeakyReLU, 0.1)),
         dict(loss=CE, optimizer="sgd", lr=0.05, momentum=0.9, schedule="one_cycle", label_smoothing=0.1, epochs=40,
              batch_size=16),
         note="checked: val acc 1.0; the loss floor ~0.31 is label smoothing's", init=7),
    Case("fashion_flat_gelu_nadam_bs512", "fashion-mnist 12000/1000 flat", "gelu-256-128", "nadam 1e-3, bs 512",
         P(D.fashion, 12000, 1000, flat=True), P(M.stack, 784, 10, (256, 128), nn.GELU),
         dict(loss=CE, optimizer="nadam", lr=1e-3, epochs=30, batch_size=512),
         note="checked: val acc 0.877, val loss flat at its minimum over the last 10 epochs", init=8),
    Case("diabetes_scaled_target_mlp_adam", "diabetes (25% val), X and y standardized", "relu-32-16",
         "adam 1e-3, bs 16", DIABETES, P(M.stack, 10, 1, (32, 16)),
         dict(loss="mse", optimizer="adam", lr=1e-3, weight_decay=1e-4, epochs=80, batch_size=16),
         note="checked: val R^2 0.55, about what a linear model gets on diabetes", init=9, corrupt=target_standardized),
    # ---- faulty ----
    Case("deep_gelu_digits_torch_sgd_lr_0.3", "digits (25% val)", "gelu-4x64", "torch SGD 0.3 m0.9, bs 32", DIGITS,
         P(M.stack, 64, 10, (64,) * 4, nn.GELU),
         dict(loss=CE, optimizer=TorchOptim("SGD", lr=0.3, momentum=0.9), epochs=20, batch_size=32),
         "torch.optim.SGD(lr=0.3, momentum=0.9): 6-10x the 0.03-0.05 that trains this net to 98%", ("lr_too_high",),
         "checked: at 0.05 val acc 0.98; at 0.3 the loss jumps to ~9.5 in epoch 3, then sits at chance (2.32)",
         init=21),
    Case("dilated_cnn1d_torch_adam_lr_1e-6", "mnist1d 4000/1000 (own split)", "cnn1d-dil", "torch Adam 1e-6, bs 64",
         MNIST1D, M.DilatedCNN1d, dict(loss=CE, optimizer=TorchOptim("Adam", lr=1e-6), epochs=12, batch_size=64),
         "torch.optim.Adam(lr=1e-6) on the net the healthy twin trains at 2e-3", ("lr_too_low",),
         "checked: train and val loss 2.30 in all 12 epochs, val acc 0.09 -> 0.11 (the twin at 2e-3: 0.89)", init=1),
    Case("deep_elu_blobs_sgd_wd_0.02", "make_classification 3000x20, 4 classes", "elu-6x64",
         "sgd 0.03 m0.9 wd 0.02, bs 64", BLOBS4, P(M.stack, 20, 4, (64,) * 6, nn.ELU),
         dict(loss=CE, optimizer="sgd", lr=0.03, momentum=0.9, weight_decay=0.02, epochs=60, batch_size=64),
         "SGD weight_decay=0.02 (an L2 term for SGD; meant 2e-4)", ("over_regularization", "underfitting"),
         "checked: with wd 5e-4 the same run reaches train loss 0.08 / val acc 0.93; with 0.02 train loss stays 0.56, "
         "val acc 0.76. AdamW with weight_decay=1.0 was tried first and only cost ~1 point (0.919 vs 0.928): dropped",
         init=4),
    Case("fashion_flat_width2_bottleneck", "fashion-mnist 4000/1000 flat", "relu-2", "adamw 2e-3, bs 64",
         P(D.fashion, 4000, 1000, flat=True), P(M.stack, 784, 10, (2,)),
         dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=64),
         "a 2-unit hidden layer between 784 pixels and 10 classes: far too little capacity", ("underfitting",),
         "checked: train loss floors at 0.95, val acc 0.65 (a 256-128 net on these pixels: 0.88)", init=22),
    Case("mnist1d_200_rows_wide_mlp_no_es", "mnist1d 200/1000", "relu-2x1024", "adam 1e-3 wd 0, bs 32, 200 ep",
         P(D.mnist1d_split, 200), P(M.stack, 40, 10, (1024, 1024)),
         dict(loss=CE, optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=200, batch_size=32, early_stopping=False),
         "2x1024 MLP on 200 signals for 200 epochs, early stopping off", ("overfitting",),
         "checked: val loss 2.27 (epoch 1) -> 3.6 (17) -> 5.25 (200) while train loss falls to 2e-4; val acc ~0.30",
         init=23),
    Case("gru_digits_columns_pixels_0_255", "digits (columns as steps) scaled to 0..255, not standardized", "gru",
         "rmsprop 5e-4 m0.9, bs 32", P(D.sk_table, "digits", scale=False), M.GRUColumns,
         dict(loss=CE, optimizer="rmsprop", lr=5e-4, momentum=0.9, epochs=30, batch_size=32),
         "pixels rescaled to 0..255 and fed raw into the GRU's gates", ("unnormalized_inputs",),
         "checked: the standardized twin reaches val loss 0.057 / acc 0.984; raw pixels 0.41 / 0.918. (Raw 0..255 into "
         "a LeakyReLU MLP with plain SGD 0.01 was tried first: it did as well as standardized inputs at that LR)",
         init=2, corrupt=pixels_0_255),
    Case("diabetes_raw_target_units_adam", "diabetes (25% val), X standardized, y raw 25..346", "relu-16",
         "adam 1e-3, bs 32", DIABETES, P(M.stack, 10, 1, (16,)),
         dict(loss="mse", optimizer="adam", lr=1e-3, epochs=40, batch_size=32),
         "regression target left in its units (mean ~152, sd ~77) for a net whose output starts ~0",
         ("underfitting",), "checked: loss 2.8e4 -> 2.7e4 in 40 epochs, val R^2 -3.2 (worse than predicting the mean); "
         "the standardized-target twin reaches R^2 0.55", init=25, corrupt=float_target),
    Case("blobs_ce_on_relu_output", "make_classification 3000x20, 4 classes", "gelu-3x64+ReLU", "adamw 2e-3, bs 64",
         BLOBS4, P(M.stack, 20, 4, (64,) * 3, nn.GELU, final=nn.ReLU()),
         dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=64),
         "the net ends in nn.ReLU and its output goes to cross_entropy as logits", ("loss_output_mismatch",),
         "checked: val acc 0.73, train loss 0.43; the same net without the ReLU: 0.92, 0.09", init=26),
    Case("breast_cancer_sigmoid_then_bce_with_logits", "breast_cancer (25% val), float 0/1 targets",
         "relu-32+Sigmoid", "adam 1e-3, bs 16", P(D.sk_table, "breast_cancer"),
         P(M.stack, 30, 1, (32,), final=nn.Sigmoid()),
         dict(loss="bce_with_logits", optimizer="adam", lr=1e-3, epochs=40, batch_size=16),
         "nn.Sigmoid at the end of the net and bce_with_logits as the loss (sigmoid applied twice)",
         ("loss_output_mismatch",),
         "checked: the same net without the Sigmoid reaches val loss 0.058 / acc 0.98; with it the loss floors at 0.46 "
         "and every row is called positive (acc 0.655). Tried first: 10 sigmoid outputs + MSE on one-hot digits, which "
         "matched CE on logits (97.6%) and was dropped as not clearly faulty", init=27, corrupt=float_target),
    Case("breast_cancer_3pct_malignant_subset", "breast_cancer: all benign + 12 malignant (25% val)", "relu-32",
         "adamw 1e-3, bs 32", malignant_subset, P(M.stack, 30, 2, (32,)),
         dict(loss=CE, optimizer="adamw", lr=1e-3, epochs=40, batch_size=32),
         "a collected subset with 3% positives, no class weights or resampling", ("class_imbalance",),
         "checked: 8 malignant of 277 training rows; on val (4 of 92) it calls 1 row malignant, acc 0.967 ~ 88/92",
         init=28),
    Case("blobs_duplicated_before_split", "make_classification 800x20 concatenated with itself, then split",
         "relu-2x128", "adam 1e-3, bs 32", duplicated_before_split, P(M.stack, 20, 3, (128, 128)),
         dict(loss=CE, optimizer="adam", lr=1e-3, epochs=40, batch_size=32),
         "dataset stacked twice (an 'oversampling' step) before the train/val split: most val rows are exact copies "
         "of train rows", ("data_leakage",), "checked: 79% of val rows are in train; val acc on them 0.97, on the "
         "others 0.71", init=29),
    Case("digits_labels_off_by_one_row", "digits (25% val), train labels rolled by one row", "relu-128-64",
         "adamw 2e-3, bs 32", DIGITS, P(M.stack, 64, 10, (128, 64)),
         dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=32),
         "the label column was read one row off (np.roll(y, 1)) for the training split", ("label_problem",),
         "checked: val acc at chance (0.06-0.17) while train loss falls 2.31 -> 1.95 and val loss rises", init=30,
         corrupt=labels_off_by_one),
    Case("fashion_flat_dropout_0.9", "fashion-mnist 12000/1000 flat", "gelu-256-128+do0.9", "nadam 1e-3, bs 512",
         P(D.fashion, 12000, 1000, flat=True), P(M.stack, 784, 10, (256, 128), nn.GELU, dropout=0.9),
         dict(loss=CE, optimizer="nadam", lr=1e-3, epochs=30, batch_size=512),
         "Dropout(p=0.9) after every hidden layer (meant keep-prob 0.9)", ("over_regularization", "underfitting"),
         "checked: train loss stays 0.85 (> val 0.60), val acc 0.76; the twin without dropout: 0.877", init=8),
    Case("dilated_cnn1d_frozen_but_head", "mnist1d 4000/1000 (own split)", "cnn1d-dil", "adamw 2e-3, bs 64", MNIST1D,
         M.DilatedCNN1d, dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=20, batch_size=64),
         "requires_grad=False on every parameter, then only the head re-enabled: a random conv backbone",
         ("underfitting",), "checked: train loss floors at 1.59, val acc 0.46; the same net trained end to end: train "
         "loss 0.10, val acc 0.89", init=1, corrupt=frozen_but_head),
    Case("deep_leaky_std1_init_torch_adam", "make_classification 3000x20, 4 classes", "leaky-6x64",
         "torch Adam 1e-3, bs 64", BLOBS4, P(M.stack, 20, 4, (64,) * 6, P(nn.LeakyReLU, 0.01)),
         dict(loss=CE, optimizer=TorchOptim("Adam", lr=1e-3), epochs=15, batch_size=64),
         "every weight re-initialized with nn.init.normal_(std=1.0) (fan-in 64)",
         ("bad_initialization", "exploding_gradients"),
         "checked: initial loss 9e4 (ln 4 = 1.39 with the default init), weight-gradient norms 2e4-6e4 per layer "
         "(default init: 1e-3-4e-2); after 15 epochs train loss still 2e3, val acc 0.65. With torch SGD the loss is "
         "NaN within the first epoch, so Adam keeps it finite", init=31, corrupt=std1_init),
    Case("digits_deep_sigmoid_plain_sgd", "digits (25% val)", "sigmoid-10x64", "sgd 0.05 no momentum, bs 32", DIGITS,
         P(M.stack, 64, 10, (64,) * 10, nn.Sigmoid),
         dict(loss=CE, optimizer="sgd", lr=0.05, momentum=0.0, epochs=20, batch_size=32),
         "ten sigmoid layers with PyTorch's default init, plain SGD", ("vanishing_gradients",),
         "checked: weight-gradient norm 5e-9 at the first layer vs 0.5 at the last; loss stays 2.30-2.32, acc at "
         "chance", init=32),
    Case("moons_relu_bias_minus3", "make_moons 1200, noise 0.25", "relu-3x64", "adamw 2e-3, bs 32", MOONS,
         P(M.stack, 2, 2, (64, 64, 64)), dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=32),
         "hidden biases initialized to -3 'for sparse activations'", ("dead_units", "bad_initialization"),
         "checked: no hidden ReLU unit is active on any training row at init; loss stays 0.693, val acc 0.489",
         init=33, corrupt=bias_minus3),
    Case("breast_cancer_nan_cells", "breast_cancer (25% val), 2% of train cells NaN", "relu-64",
         "adamw 1e-3, bs 32", P(D.sk_table, "breast_cancer"), P(M.stack, 30, 2, (64,)),
         dict(loss=CE, optimizer="adamw", lr=1e-3, epochs=20, batch_size=32),
         "missing measurements left as NaN (no imputation)", ("nonfinite_values",),
         "checked: the loss is NaN in the first epoch (the run stops with a TrainingError)", init=34,
         corrupt=nan_cells),
    Case("digits_bn_class_sorted_loader", "digits (25% val), own DataLoader sorted by class, shuffle=False",
         "relu-bn-2x128", "adam 1e-3, bs 64", DIGITS, P(M.stack, 64, 10, (128, 128), norm=nn.BatchNorm1d),
         dict(loss=CE, optimizer="adam", lr=1e-3, epochs=20),
         "a BatchNorm net fed batches of one class each (sorted, unshuffled loader): batch statistics leak the label "
         "in training, running statistics do not match in eval", ("train_eval_mismatch",),
         "checked: val acc 0.77 (the shuffled twin: 0.98); on the training rows, loss 1.81 in train mode vs 1.18 in "
         "eval mode", init=35, corrupt=class_sorted_loader),
    Case("gru_optimizer_on_stale_copy", "digits (columns as steps)", "gru", "torch Adam 1e-3 on a deepcopy, bs 32",
         DIGITS, M.GRUColumns, dict(loss=CE, epochs=10, batch_size=32),
         "the optimizer was built on a copy of the model made before training (the trained model never moves)",
         ("no_learning",), "checked: train loss 2.29 and val acc 0.116 identical in every epoch", init=36,
         corrupt=stale_copy_optimizer),
    Case("moons_tanh_torch_sgd_lr_0.5_m0.95", "make_moons 1200, noise 0.25", "tanh-2x32", "torch SGD 0.5 m0.95, bs 64",
         MOONS, P(M.stack, 2, 2, (32, 32), nn.Tanh),
         dict(loss=CE, optimizer=TorchOptim("SGD", lr=0.5, momentum=0.95), epochs=30, batch_size=64,
              early_stopping=False),
         "torch.optim.SGD(lr=0.5, momentum=0.95), constant: a step far too large for this small net",
         ("oscillating_loss", "lr_too_high"),
         "checked: val loss swings 0.45 -> 1.34 -> 0.49 -> 1.52 -> 0.78 ..., train loss wanders 0.4..2.6, val acc "
         "jumps between 0.58 and 0.92; the plain-SGD-0.1 healthy twin settles at 0.94", init=40),
    Case("diabetes_linear_torch_sgd_lr_0.28", "diabetes (25% val), X and y standardized", "linear",
         "torch SGD 0.28, bs 32", DIABETES, P(nn.Linear, 10, 1),
         dict(loss="mse", optimizer=TorchOptim("SGD", lr=0.28), epochs=15, batch_size=32, early_stopping=False),
         "plain SGD at 0.28 on a linear regression: just past the stability limit (0.2 trains)",
         ("diverging_loss", "lr_too_high"),
         "checked: train loss 6.8 (epoch 1) -> 9e2 -> 1e6 -> 8e11 -> 8e14 (epoch 15), still finite; at lr 0.2 the "
         "loss sits at 0.55-0.69", init=41, corrupt=target_standardized),
]

SET = CaseSet("blind", 11, CASES, doc=__doc__ or "")

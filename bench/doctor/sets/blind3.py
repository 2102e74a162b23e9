"""A third blind evaluation set for the doctor: faulty and healthy training runs written without reading how the
doctor decides (nothing under `gradwise.doctor`, the case suite, its tests, its notes, the README's doctor section
or the other sets' run expectations was read; the other sets were only listed by name to avoid repeating them).

The setups differ from `bench/doctor/cases.py`, `bench/doctor_holdout.py`, `bench/doctor_blind.py` and
`bench/doctor_blind2.py`: a Conv1d net with a BatchNorm1d head trained at batch size 2, a 512-unit GRU under plain
SGD at lr 3.0, a final layer initialized with std 10, a row-index "ID" column left unscaled, a feature that is the
label plus noise, an "augmentation" that always reverses the signal, 50 Fashion images for 100 epochs, regression
targets times 1000, a SiLU MLP at lr 1e-7, Adagrad at lr 10, SGD with momentum 0.99, AdamW with weight decay 5,
dropout 0.95 inside a CNN, an nn.Sigmoid before cross-entropy, a 99/1 class split, nn.Identity as the activation,
a tanh RNN that must remember the first steps of 200, per-pixel standardization dividing by a zero std, and an
(N, 1) output against (N,) targets under nn.MSELoss (broadcast to N x N). Healthy runs: Softsign, Hardtanh and
SiLU MLPs, a Conv1d+BatchNorm net at batch 64, a 128-unit GRU, float one-hot targets into cross-entropy, label
smoothing 0.1 on a 2-D CNN, an 85/15 split with class weights, noise augmentation in training only. 9 healthy runs,
19 faulty ones.

Each faulty run carries the finding codes a careful practitioner would say are clearly present given the mistake,
checked against the run's own curves (`run.history`) with the doctor switched off (and, where useful, against a
healthy twin); each run's `note` says what was checked. All labels were fixed before the doctor was first switched
on for this file (two ideas were dropped: RMSprop with alpha 0.5, whose fault did not show, and a 1-logit BCE on
3 classes, which stops at its first evaluation). Healthy runs are trained the careful way (standardized inputs, a
sensible LR, early stopping) and reach good accuracy; they must raise no warning or error (info findings are fine).

Every run goes through the public API only: `gradwise.fit(model, (X, y), val=(Xv, yv), ..., progress="none")`
with the doctor on (its default), and reads `run.findings` (a run that stops with an exception, such as a NaN loss,
is scored from the `findings.jsonl` and `metrics.jsonl` it left in its run directory).

Blind no longer: its first scored run (doctor at commit b81d94f, with code-review fixes being
applied in the working tree) found 19 of the 28 expected codes and raised a false alarm on 1 of the 9 healthy runs
(label_problem:error on float one-hot targets, which cross-entropy accepts: the soft-target check compared whole
shapes instead of per-row shapes). The doctor was then revised with general rules: soft targets judged per row,
a sigmoid before multi-class cross-entropy, (N, 1) outputs broadcast against (N,) targets, BatchNorm on batches
below 8 rows, a blow-up of the per-step loss inside the first epoch. It now finds 22 of 28 with no false alarm.
Not found: exploding gradients after the blow-up of a GRU at SGD 3.0, a leaked feature (label + noise), AdamW weight
decay 5, vanishing gradients through 200 time steps (the weight gradients stay normal), and no_learning where the
doctor shows it as info explained by its root cause (dead units, the broadcast loss).

Run it: `python bench/doctor/run.py blind3` (--only gru,rnn; --keep /tmp/blind3; --list; see bench/doctor/run.py).

(`python bench/doctor_blind3.py ...` is the same command line.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from doctor.harness import CE, Built, Case, CaseSet, D, M, P, TorchOptim

PIXELS = P(D.sk_table, "digits")  # the 8x8 digits, one mean/std over all pixels (what a careful user does for images)
WINE = P(D.sk_table, "wine", pooled_pixels=False)
CLASSIF = dict(n_features=12, n_informative=6, n_redundant=2, n_classes=3, n_clusters_per_class=2, class_sep=1.0,
               flip_y=0.01, weights=None)
FRIEDMAN = P(D.synthetic, "friedman1", 2000, n_features=10, noise=0.5, scale=True, float_target=True,
             scale_target=True)  # 10 features, 5 used, nonlinear


def classif(n: int = 3000, **kw: object) -> P:
    """make_classification, split by the set's seed, standardized."""
    return P(D.synthetic, "classification", n, scale=True, **(CLASSIF | kw))


def first_steps_sequences(seed: int, n: int = 2000, steps: int = 200, cue: int = 3) -> D.Split:
    """Binary sequences (N, steps, 1) of unit noise; the class is the sign of a cue over the first `cue` steps."""
    rs = np.random.RandomState(seed + 7)
    y = rs.randint(0, 2, n)
    x = rs.randn(n, steps, 1).astype(np.float32)
    x[:, :cue, 0] += (2.0 * y[:, None] - 1.0) * 1.5
    return D.split(x, y, 0.25, seed)


# ---- the faults that are not a keyword, and the data a case makes its own way ----


def onehot_targets(b: Built) -> None:
    b.yt = np.eye(10, dtype=np.float32)[b.yt]  # Keras habit: one-hot float targets (CE takes class probabilities)


def inverse_frequency_weights(b: Built) -> None:
    counts = np.bincount(b.yt, minlength=2)
    b.fit["class_weights"] = (counts.sum() / (2 * counts)).tolist()


def noise_augment(x: torch.Tensor) -> torch.Tensor:
    return x + 0.1 * torch.randn_like(x)


def always_reverse(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def final_layer_std10(b: Built) -> None:
    nn.init.normal_(b.model[-1].weight, std=10.0)


def row_index_column(b: Built) -> None:
    ids = np.random.RandomState(b.seed + 1).permutation(len(b.xt) + len(b.xv)).astype(np.float32)
    n = len(b.xt)
    b.xt = np.concatenate([ids[:n, None], b.xt], 1)
    b.xv = np.concatenate([ids[n:, None], b.xv], 1)


def label_plus_noise_column(b: Built) -> None:
    rs = np.random.RandomState(b.seed + 2)
    leak_t = (b.yt + 0.1 * rs.randn(len(b.yt))).astype(np.float32)
    leak_v = (b.yv + 0.1 * rs.randn(len(b.yv))).astype(np.float32)
    b.xt, b.xv = D.standardize(np.concatenate([b.xt, leak_t[:, None]], 1), np.concatenate([b.xv, leak_v[:, None]], 1))


def zero_std_division(seed: int) -> D.Split:
    """digits standardized per pixel by hand, dividing by the 0 std of the always-blank border pixels."""
    return D.unguarded_standardize(D.sk_table("digits", seed, scale=False))


CASES = [
    # ---- healthy: standardized inputs, a sensible LR for the optimizer, enough epochs, early stopping (default) ----
    Case("wine_softsign_mlp_adam", "wine 134/44", "softsign-2x32", "adam 3e-3, bs 16", WINE,
         P(M.stack, 13, 3, (32, 32), nn.Softsign), dict(loss=CE, optimizer="adam", lr=3e-3, epochs=40, batch_size=16),
         note="checked: val acc 0.977, val loss 0.056 (train 0.011), val loss still falling at epoch 40", init=1),
    Case("breast_cancer_hardtanh_mlp_adamw", "breast_cancer 427/142", "hardtanh-2x64", "adamw 2e-3, bs 32",
         P(D.sk_table, "breast_cancer", pooled_pixels=False), P(M.stack, 30, 2, (64, 64), nn.Hardtanh),
         dict(loss=CE, optimizer="adamw", lr=2e-3, epochs=30, batch_size=32),
         note="checked: val acc 0.993-1.0 from epoch 3, val loss 0.017-0.03 (train 0.05), early stop at 22", init=2),
    Case("friedman_silu_mlp_adamw", "make_friedman1 1500/500", "silu-2x64", "adamw 3e-3, bs 64", FRIEDMAN,
         P(M.stack, 10, 1, (64, 64), nn.SiLU), dict(loss="mse", optimizer="adamw", lr=3e-3, epochs=40, batch_size=64),
         note="checked: val r2 0.987, val loss 0.015 (train 0.012), monotone", init=3),
    Case("mnist1d_bn_conv1d_bs64", "mnist1d 2000/1000", "bn-cnn1d", "adamw 3e-3, bs 64", P(D.mnist1d_split, 2000),
         M.BNConv1d, dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=15, batch_size=64),
         note="checked: val acc 0.905, val loss 0.28 still falling at epoch 15 (train 0.02)", init=4),
    Case("mnist1d_gru128_adam", "mnist1d 3000/1000", "gru-128 (10x4)", "adam 3e-3, bs 64", P(D.mnist1d_split, 3000),
         P(M.ChunkGRU, 128), dict(loss=CE, optimizer="adam", lr=3e-3, epochs=30, batch_size=64),
         note="checked: val acc 0.82, val loss 0.548 flat over the last 8 epochs (train 0.165); a 64-unit GRU for "
              "15 epochs reached only 0.47 and was dropped", init=5),
    Case("digits_float_onehot_targets_ce", "digits 1348/449", "relu-128", "adamw 3e-3, bs 64", PIXELS,
         P(M.stack, 64, 10, (128,)), dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=30, batch_size=64),
         note="float one-hot training targets (class probabilities, valid for cross-entropy), integer val labels; "
              "checked: val acc 0.97, val loss 0.105 (train 0.018), flat at the end", init=6, corrupt=onehot_targets),
    Case("digits_cnn_label_smoothing_0.1", "digits 1348/449", "cnn2d-16-32", "adamw 3e-3, bs 64, smoothing 0.1",
         PIXELS, M.DigitsCNN,
         dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=25, batch_size=64, label_smoothing=0.1),
         note="checked: val acc 0.989, train loss 0.536 / val 0.577 (the smoothed targets' floor is ~0.50)", init=7),
    Case("classif_85_15_class_weights", "make_classification 2250/750, 85/15", "relu-2x64",
         "adamw 1e-3, bs 64, class weights", classif(n_classes=2, weights=[0.85, 0.15], class_sep=1.2),
         P(M.stack, 12, 2, (64, 64), dropout=0.1), dict(loss=CE, optimizer="adamw", lr=1e-3, epochs=30, batch_size=64),
         note="1906/344 training rows, inverse-frequency class weights; checked: val acc 0.995, val loss 0.079 "
              "flat from epoch 9 (train 0.05); at lr 3e-3 without dropout val loss rose 0.071 -> 0.104 and was "
              "changed", init=8, corrupt=inverse_frequency_weights),
    Case("mnist1d_cnn_noise_augment", "mnist1d 3000/1000", "cnn1d-2x32", "adamw 3e-3, bs 64, noise aug 0.1",
         P(D.mnist1d_split, 3000), M.Conv1dNet,
         dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=20, batch_size=64, augment=noise_augment),
         note="Gaussian noise (std 0.1) on training inputs only, as augmentation does; checked: val acc 0.86, val "
              "loss 0.38 (train 0.20), monotone", init=9),
    # ---- faulty ----
    Case("mnist1d_bn_conv1d_bs2", "mnist1d 1000/1000", "bn-cnn1d", "adamw 3e-3, bs 2", P(D.mnist1d_split, 1000),
         M.BNConv1d, dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=6, batch_size=2),
         "batch size 2 with BatchNorm1d in the MLP head: each batch normalizes two rows to exactly +-1",
         ("train_eval_mismatch", "underfitting"),
         "checked: train loss 2.32 -> 2.07 and stuck (2.06-2.14 over epochs 4-14 in a longer try), val acc 0.30; "
         "val loss (eval mode) sits 0.2-0.3 below the train loss all run; after training the same 1000 training "
         "rows score 1.75 in eval mode vs 2.09 in train mode at batch 2 (the batch-32 twin: 0.29 vs 0.36, and "
         "it reaches val acc 0.81)", init=10),
    Case("mnist1d_gru512_torch_sgd_lr_3", "mnist1d 1500/1000", "gru-512 (10x4)", "torch SGD lr 3.0, no clipping",
         P(D.mnist1d_split, 1500), P(M.ChunkGRU, 512),
         dict(loss=CE, optimizer=TorchOptim("SGD", lr=3.0), epochs=5, batch_size=64),
         "a 512-unit GRU under plain SGD at lr 3.0 with no gradient clipping",
         ("diverging_loss", "lr_too_high", "exploding_gradients"),
         "checked per step: loss 2.3 for 7 steps, then 2.9, 10.9, 38.6 ... ~100 and stays there (epoch train "
         "loss 31, 120, 97, 112, 91; val acc 0.09-0.13); gradient norm 0.2 at the start, 3.5 -> 14.5 -> 65.7 at "
         "steps 8-13, median 17 and max 124 afterwards (recurrent weights' median grad 12.9 vs 0.03 at step 0). "
         "Tried first at lr 1.0: grad norm <= 3.6, loss 2.2 -> 1.8, no worse than lr 0.1 (dropped)", init=11),
    Case("wine_final_layer_std10", "wine 134/44", "relu-2x64", "adamw 3e-3, bs 16", WINE,
         P(M.stack, 13, 3, (64, 64)), dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=30, batch_size=16),
         "the output layer's weights initialized with std 10 (meant 0.1): logits of ~15 at step 0",
         ("bad_initialization",),
         "checked: loss 11.7 at step 0 (ln 3 = 1.10 is the know-nothing loss; mean |logit| 15), steps 12.0, 8.1, "
         "7.2, 11.5, 6.3 ..., epoch-1 train loss 7.3, val loss 1.93 after it; it then "
         "fits (val acc 0.977) but train loss goes to 3e-6 while val loss rises 0.089 -> 0.217 (very confident "
         "logits); only the initialization is labelled", init=12, corrupt=final_layer_std10),
    Case("classif_row_index_column_unscaled", "make_classification 2250/750 + id column", "relu-2x64",
         "adamw 3e-3, bs 64", classif(), P(M.stack, 13, 3, (64, 64)),
         dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=30, batch_size=64),
         "a row-index ID column (0..2999) kept as a feature and not scaled; the other 12 features standardized",
         ("unnormalized_inputs",),
         "checked: train loss 11.4, 4.1, 5.3, 2.7, 4.3 ... 0.56; val loss jumps 4.2, 3.1, 3.9, 8.2, 0.99, 1.8 in "
         "the first epochs; best val acc 0.768 vs 0.90 (val loss 0.26) for the same model without the ID column",
         init=13, corrupt=row_index_column),
    Case("classif_label_plus_noise_feature", "make_classification 2250/750 + leaked column", "relu-2x64",
         "adamw 3e-3, bs 64", classif(class_sep=0.6, flip_y=0.05), P(M.stack, 13, 3, (64, 64)),
         dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=30, batch_size=64),
         "a feature that is the label plus small noise (a post-outcome field) kept among the inputs, in val too",
         ("data_leakage",),
         "checked: val acc 0.995 at epoch 2 and 1.000 from epoch 3, val loss 6e-4, although 5% of the labels "
         "are random flips; the same data without the leaked column: val acc 0.835, val loss 0.50", init=14,
         corrupt=label_plus_noise_column),
    Case("mnist1d_cnn_augment_always_reverses", "mnist1d 3000/1000", "cnn1d-2x32", "adamw 3e-3, bs 64",
         P(D.mnist1d_split, 3000), M.Conv1dNet,
         dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=20, batch_size=64, augment=always_reverse),
         "a 'random flip' augmentation that flips every training signal (the coin toss was left out); validation "
         "signals are not flipped", ("train_eval_mismatch",),
         "checked: train loss 2.11 -> 0.21 while val loss bottoms at 1.50 in epoch 4 and climbs to 2.12 (val acc "
         "0.50 best); the same CNN with noise augmentation: val acc 0.86, val loss 0.38. The rising val loss looks "
         "like overfitting but the cause is train and eval data that differ; only the mismatch is labelled", init=15),
    Case("fashion_cnn_50_images_100_epochs", "fashion 50/1000", "cnn2d-16-32", "adam 1e-3, bs 10, no early stop",
         P(D.fashion, 50, 1000), M.Conv2dNet,
         dict(loss=CE, optimizer="adam", lr=1e-3, epochs=100, batch_size=10, early_stopping=False),
         "50 training images, 100 epochs, early stopping off", ("overfitting",),
         "checked: train loss 2.28 -> 0.0023; val loss 1.15 at epochs 10-12, then rising to 2.18 by epoch 100; "
         "val acc ~0.60-0.63 throughout", init=16),
    Case("make_regression_targets_x1000_mse_adam", "make_regression 1500/500, y x1000", "relu-2x64",
         "adam 3e-3, bs 64", P(D.twisted_regression, 2000, 10, 6, 5.0, 30.0, 20.0, target_scale=1e3),
         P(M.stack, 10, 1, (64, 64)), dict(loss="mse", optimizer="adam", lr=3e-3, epochs=30, batch_size=64),
         "regression targets multiplied by 1000 (std ~1e5) and left unscaled under MSE", ("no_learning",),
         "checked: train loss 2.127e10 -> 2.035e10 in 30 epochs (-4%), val r2 -0.012 -> 0.030; the same model on "
         "standardized targets: val r2 0.990", init=17),
    Case("digits_silu_mlp_adamw_lr_1e-7", "digits 1348/449", "silu-2x128", "adamw 1e-7, bs 64", PIXELS,
         P(M.stack, 64, 10, (128, 128), nn.SiLU), dict(loss=CE, optimizer="adamw", lr=1e-7, epochs=20, batch_size=64),
         "lr 1e-7 for AdamW (typed 1e-7 for 1e-3)", ("lr_too_low", "no_learning"),
         "checked: train loss 2.315 -> 2.314 over 20 epochs, val loss 2.318 and val acc 0.076 unchanged from "
         "epoch 1 (the same data at lr 3e-3: val acc 0.97)", init=18),
    Case("classif_relu_torch_adagrad_lr_10", "make_classification 2250/750", "relu-2x64", "torch Adagrad lr 10",
         classif(), P(M.stack, 12, 3, (64, 64)),
         dict(loss=CE, optimizer=TorchOptim("Adagrad", lr=10.0), epochs=20, batch_size=64),
         "Adagrad at lr 10 (its first step moves every weight by ~10)", ("lr_too_high", "diverging_loss"),
         "checked per step: loss 1.10, then 5.7e5, 3.6e6, 8.3e5, 8.6e4 ... ~3e3 by step 20; epoch train loss "
         "1.6e5 -> 56 after 20 epochs (never back near 1.10), val loss 540-1800 jumping, val acc 0.75-0.85; grad "
         "norm 0.3 -> 5.7e4; 25% of the second layer's ReLUs dead. Adagrad at lr 0.05: train loss 0.13, val acc "
         "0.91", init=19),
    Case("digits_mlp_torch_sgd_momentum_0.99", "digits 1348/449", "relu-2x128", "torch SGD lr 0.05, momentum 0.99",
         PIXELS, P(M.stack, 64, 10, (128, 128)),
         dict(loss=CE, optimizer=TorchOptim("SGD", lr=0.05, momentum=0.99), epochs=40, batch_size=64),
         "momentum 0.99 (meant 0.9) at lr 0.05: an effective step of lr/(1-momentum) = 5",
         ("diverging_loss", "lr_too_high"),
         "checked: train loss 1.75 -> 0.225 by epoch 5, then 0.30, 1.16, 1.44, 1.68, 1.91, 2.12 (back near "
         "ln 10 = 2.30, where it started); val acc 0.92 -> 0.23; early stop at 15 (a 60-epoch try settles at "
         "2.31, chance). Replaced RMSprop alpha=0.5 lr 1e-2, which trained about like alpha=0.99 (no clear fault)",
         init=20),
    Case("classif_adamw_weight_decay_5", "make_classification 2250/750", "relu-2x64", "adamw 3e-3, wd 5",
         classif(class_sep=1.5), P(M.stack, 12, 3, (64, 64)),
         dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=30, batch_size=64, weight_decay=5.0),
         "AdamW weight_decay=5 (meant 5e-4)", ("over_regularization",),
         "checked: train loss 1.01 -> 0.27 by epoch 4, then flat at 0.27-0.28 (val 0.27-0.28, val acc 0.92); "
         "the same run with the default weight decay: train loss 0.084, val loss 0.135, val acc 0.96", init=21),
    Case("mnist1d_cnn_dropout_0.95", "mnist1d 3000/1000", "cnn1d-2x32 dropout 0.95", "adamw 3e-3, bs 64",
         P(D.mnist1d_split, 3000), P(M.Conv1dNet, dropout=0.95),
         dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=20, batch_size=64),
         "dropout 0.95 after each conv block (meant 0.05)", ("over_regularization", "no_learning"),
         "checked: train loss 4.31, 2.43, then 2.33 -> 2.16; val loss 2.30 -> 2.25 and val acc 0.09-0.11 (chance) "
         "for 20 epochs; the same CNN without dropout (noise augmentation): val acc 0.86", init=22),
    Case("digits_sigmoid_output_then_ce", "digits 1348/449", "relu-128 + nn.Sigmoid", "adamw 3e-3, bs 64", PIXELS,
         P(M.stack, 64, 10, (128,), final=nn.Sigmoid()),
         dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=30, batch_size=64),
         "an nn.Sigmoid after the last layer, then cross-entropy: the logits are squeezed into (0, 1)",
         ("loss_output_mismatch",),
         "checked: train loss 2.24 -> 1.483, flat at 1.48 from epoch 20 (the floor with logits in (0, 1) over 10 "
         "classes is ln(1 + 9/e) = 1.46), val loss 1.517, while val acc is 0.97; the same MLP without the "
         "sigmoid: val loss 0.105. Replaced a 1-logit BCE on 3-class iris, which stopped at its first "
         "evaluation (torchmetrics rejects target 2)", init=23),
    Case("classif_99_1_no_weights", "make_classification 3750/1250, 99/1", "relu-2x64", "adamw 3e-3, bs 64",
         classif(5000, n_classes=2, weights=[0.99, 0.01], class_sep=0.8, flip_y=0.0), P(M.stack, 12, 2, (64, 64)),
         dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=20, batch_size=64),
         "a 99/1 binary split trained with plain cross-entropy, no weights or resampling", ("class_imbalance",),
         "3710/40 training rows, 1240/10 val rows; checked: val acc 0.992 from epoch 1 (always-majority: 0.992), "
         "0.9928 best; after training the model predicts the minority 5 times and finds 3 of the 10", init=24),
    Case("mnist1d_identity_activation_mlp", "mnist1d 3000/1000", "identity-3x256", "adamw 3e-3, bs 64",
         P(D.mnist1d_split, 3000), P(M.stack, 40, 10, (256, 256, 256), nn.Identity),
         dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=20, batch_size=64),
         "nn.Identity as the activation (a placeholder left in): four Linear layers collapse to one linear map",
         ("underfitting",),
         "checked: train loss 1.98 -> 1.59, val loss 1.66, val acc 0.32; the same MLP with ReLU: train loss "
         "0.024, val loss 1.03, val acc 0.66", init=25),
    Case("tanh_rnn_cue_at_start_of_200_steps", "noise sequences 1500/500, T=200", "rnn-tanh-32", "adam 3e-3, bs 64",
         first_steps_sequences, M.TanhRNN, dict(loss=CE, optimizer="adam", lr=3e-3, epochs=12, batch_size=64),
         "a tanh RNN that must carry a cue from the first 3 steps across 197 steps of noise",
         ("vanishing_gradients", "no_learning"),
         "checked: train loss 0.696 -> 0.689, val loss 0.690 and val acc 0.49-0.52 (chance) for 12 epochs; "
         "|dL/dx_t| at init 0 (underflow) at t=0, 2e-28 at t=100, 1e-4 at t=199 (after training 2e-40 / 2e-22 "
         "/ 2e-4); the same RNN with the cue at the end: val acc 0.99", init=26),
    Case("digits_per_pixel_std_zero_division", "digits 1348/449", "relu-128", "adamw 3e-3, bs 64", zero_std_division,
         P(M.stack, 64, 10, (128,)), dict(loss=CE, optimizer="adamw", lr=3e-3, epochs=20, batch_size=64),
         "per-pixel standardization by hand, dividing by a std of 0 for the always-blank border pixels (NaN inputs)",
         ("nonfinite_values",),
         "checked: fit raises TrainingError 'the training loss became nan in epoch 1'; the NaN columns are in "
         "every row", init=27),
    Case("friedman_mse_broadcast_n1_vs_n", "make_friedman1 1500/500", "relu-2x64", "adamw 3e-3, bs 64", FRIEDMAN,
         P(M.stack, 10, 1, (64, 64)), dict(loss=nn.MSELoss(), optimizer="adamw", lr=3e-3, epochs=30, batch_size=64),
         "nn.MSELoss on (N, 1) outputs against (N,) targets: broadcast to an N x N matrix of pairs",
         ("loss_output_mismatch", "no_learning"),
         "checked: train loss 1.00-1.01 for 22 epochs (the standardized targets' variance: predicting the mean), "
         "val loss 1.14, val r2 0.01-0.03; the same model with matching shapes: val r2 0.977", init=28),
]

SET = CaseSet("blind3", 53, CASES, doc=__doc__ or "")

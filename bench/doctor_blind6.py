"""Blind set 6 for the training doctor: 19 faulty runs and 6 healthy ones, written without reading the doctor.

Written by an outside tester who read only the README's doctor section (the codes and what they look at), the
public API (`gradwise.fit`, `gradwise.train`), the config reference and the run directory format; never the
doctor's code, its case suite or the other blind sets. The acceptable codes of every case below were fixed from
the codes' meaning and committed before the doctor ever saw these runs (see `git log -- bench/doctor_blind6.py`);
the first doctor run is saved, unedited, in bench/doctor_blind6_first_contact.txt.

Each case is a mistake a practitioner makes, made the way they would make it: a config key (an LR typo, a weight
decay typo, a 12-deep sigmoid stack), a `model.factory` module (the functions at the bottom of this file: softmax
before cross-entropy, forgotten activations, `torch.randn` weights, dropout that ignores eval mode), or data
corrupted as it gets corrupted in practice (labels joined in another order, annotation noise, a column kept in
dollars, a field recorded after the outcome, minority rows upsampled before the split, a scaler applied to the
training split only, 1.5% positives left unbalanced). Datasets: scikit-learn digits / wine / breast_cancer,
MNIST-1D, Fashion-MNIST subsets (Debian's dataset-fashion-mnist) and small CSVs generated here with a fixed seed.

Scoring, decided before the first run:
- a faulty case is a **hit** when the run's final `findings.jsonl` holds a finding whose code is in the case's
  acceptable set at severity `warning` or `error`. An acceptable code present only at `info` (e.g. marked
  `explained_by` another finding) is shown as `info` and counts as a miss: the user is told something else first.
  Codes outside the acceptable set are listed (column `other w/e`) but neither help nor hurt the hit.
- a healthy case is a **false alarm** when its `findings.jsonl` holds any finding at `warning` or `error`.
- a run that gradwise refuses before training (a DataError/ConfigError, exit status 2) counts as a miss for the
  doctor and is marked `refused` (its message is in the case's log); a run that fails during training is scored
  on the findings it wrote.
Acceptable sets hold the code that names the root cause and, where a symptom code's meaning points the user at
the same fix, that symptom (e.g. `diverging_loss` for a too-high LR). Generic symptoms whose fix would be wrong for
the fault (`no_learning` for a softmax-before-loss, `exploding_gradients` for an unscaled column) are left out.

Before the first doctor run the whole set was trained once with the doctor off (`--no-doctor`, which shows no
findings) to check that each fault really harms or changes its run: AdamW with weight_decay=5.0 did not (val
accuracy 0.87, as healthy), so that case became SGD with weight_decay=0.5 (0.40); the healthy CNN got 6 epochs
instead of 4 (0.75 and still falling). No acceptable set was changed.

Every run uses one torch thread, seed 0 by default, short epochs. Run it:

    OMP_NUM_THREADS=1 python bench/doctor_blind6.py [--seed N] [--only NAME,NAME] [--work DIR]
    python bench/doctor_blind6.py --dry          # builds every case's data and model, trains nothing

Each case trains in its own subprocess (`--case NAME --out DIR`), so one crash or hang costs one row.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CASE_TIMEOUT_S = 180


# ----------------------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    name: str
    fault: str  # what is wrong ("" for a healthy run)
    how: str  # how the run is made
    accept: frozenset[str]  # codes that count as a hit; empty for a healthy run
    build: str  # name of the function below that trains the case: build(out, work, seed, doctor)
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def healthy(self) -> bool:
        return not self.accept


def _codes(*codes: str) -> frozenset[str]:
    return frozenset(codes)


CASES: list[Case] = [
    # ---- data / labels
    Case("digits_labels_misjoined",
         "labels joined to the images in another row order (y read from a file sorted differently): every label is "
         "unrelated to its row, in every split",
         "fit(): own MLP 64-256-256-10 on digits, y permuted over all rows, 40 epochs",
         _codes("label_problem", "no_learning"), "digits_labels_misjoined"),
    Case("fashion_annotation_noise_40",
         "crowd-sourced labels: 40% of the labels (all splits) replaced by a random class",
         "train(): .npz of 3000/600/600 Fashion-MNIST images, mlp [512, 512], 30 epochs, default early stopping",
         _codes("label_problem", "overfitting"), "fashion_annotation_noise"),
    Case("loan_income_in_dollars",
         "one feature (annual income) left in raw dollars (~1e5) with data.scale=none because the user thought the "
         "CSV was already scaled",
         "train(): generated loan CSV (3000 rows, 5 numeric columns), data.scale=none, mlp",
         _codes("unnormalized_inputs"), "loan_income_in_dollars"),
    Case("churn_cancellation_fee_leak",
         "a field recorded after the outcome (the cancellation fee, charged only to customers who left) is a feature",
         "train(): generated churn CSV (2500 rows), column cancellation_fee = churn x U(20, 60) (+3% downgrades)",
         _codes("data_leakage"), "churn_cancellation_fee_leak"),
    Case("cancer_upsampled_before_split",
         "minority class upsampled (duplicated rows) to balance the classes BEFORE the train/val/test split, so "
         "copies of the same rows sit in train and val/test",
         "fit(): breast_cancer, malignant rows resampled with replacement to 357, then a random 70/10/20 split",
         _codes("data_leakage"), "cancer_upsampled_before_split"),
    Case("fraud_1pct_unbalanced",
         "1.5% positives trained with plain cross-entropy and no balancing (accuracy 98.5% by saying 'no' always)",
         "train(): generated transactions CSV (5000 rows, 8 features), data.balance=none, mlp",
         _codes("class_imbalance"), "fraud_unbalanced"),
    Case("wine_scaler_on_train_only",
         "StandardScaler fitted and applied to the training split only; val and test fed in raw units (proline ~1000)",
         "fit(): own MLP on wine, X_train scaled, X_val / X_test raw",
         _codes("unnormalized_inputs", "train_eval_mismatch"), "wine_scaler_on_train_only"),
    # ---- losses and outputs
    Case("digits_mse_on_class_index",
         "classification trained as regression: one output, MSE against the class index 0..9",
         "fit(): own MLP 64-128-1 on digits, loss='mse', y = float class index (N, 1)",
         _codes("loss_output_mismatch", "label_problem"), "digits_mse_on_class_index"),
    Case("wine_softmax_then_ce",
         "the model ends in nn.Softmax and is trained with cross-entropy (which applies log-softmax again)",
         "train(): model.factory=doctor_blind6:softmax_mlp on wine, batch 32",
         _codes("loss_output_mismatch"), "wine_softmax_then_ce"),
    Case("cancer_sigmoid_then_bce_logits",
         "the model ends in nn.Sigmoid and is trained with BCEWithLogits (a sigmoid applied twice)",
         "fit(): own MLP 30-64-1 + Sigmoid on breast_cancer, loss='bce_with_logits', y float (N, 1)",
         _codes("loss_output_mismatch"), "cancer_sigmoid_then_bce_logits"),
    # ---- optimisation
    Case("fashion_sgd_lr_10x",
         "SGD with an LR ~10x too high (2.0 where ~0.1-0.2 is right), momentum 0.9, clipping off, constant schedule",
         "train(): fashion .npz 3000 rows, mlp, optim.name=sgd optim.lr=2.0 train.clip_grad=null, 10 epochs",
         _codes("lr_too_high", "diverging_loss", "nonfinite_values", "exploding_gradients", "oscillating_loss"),
         "fashion_sgd_lr_10x"),
    Case("cancer_lr_1e-7",
         "LR of 1e-7 (a unit slip: meant 1e-3)",
         "train(): breast_cancer, mlp, optim.lr=1e-7, 20 epochs",
         _codes("lr_too_low", "no_learning", "plateau"), "cancer_lr_tiny"),
    Case("digits_sigmoid_stack_12",
         "12 hidden sigmoid layers, no normalisation, default init, plain SGD: the gradient vanishes on the way down",
         "train(): digits, mlp widths [64]*12, activation sigmoid, sgd lr 0.05, 15 epochs",
         _codes("vanishing_gradients", "saturated_units", "bad_initialization"), "digits_sigmoid_stack"),
    Case("mnist1d_randn_init",
         "weights initialised with torch.randn (std 1, not 1/sqrt(fan_in)) in a 6-layer ReLU MLP: activations grow "
         "~11x per layer",
         "train(): model.factory=doctor_blind6:randn_mlp on MNIST-1D, 8 epochs",
         _codes("bad_initialization", "exploding_gradients"), "mnist1d_randn_init"),
    # ---- capacity / regularisation
    Case("fashion_weight_decay_typo",
         "weight decay 0.5 where 5e-4 was meant (SGD, where it is an L2 term pulling every step)",
         "train(): fashion .npz 3000 rows, mlp, optim.name=sgd optim.lr=0.1 optim.weight_decay=0.5, 12 epochs",
         _codes("over_regularization", "underfitting"), "fashion_weight_decay_typo"),
    Case("digits_dropout_keep_prob",
         "dropout 0.9 on every hidden layer (a TF1 keep_prob=0.9 ported as a drop probability) in a narrow MLP",
         "fit(): own MLP 64-64-64-10 with nn.Dropout(0.9) after each hidden layer, digits, 25 epochs",
         _codes("over_regularization", "train_eval_mismatch", "underfitting"), "digits_dropout_keep_prob"),
    Case("rings_forgot_activations",
         "the activations were left out of the model: three stacked Linears (a linear model) on concentric rings",
         "train(): model.factory=doctor_blind6:linear_stack on a generated 2-ring CSV (+2 noise columns)",
         _codes("underfitting"), "rings_forgot_activations"),
    Case("fashion_200_rows_big_mlp",
         "a 1.8M-parameter MLP trained 80 epochs on 200 images with no regularisation and early stopping off",
         "train(): fashion .npz 200 train / 600 val, mlp [1024, 1024], weight_decay 0, early stopping off",
         _codes("overfitting"), "fashion_overfit_tiny"),
    Case("cancer_dropout_always_on",
         "dropout written as F.dropout(x, p, training=True): it stays on in eval mode, so evaluation is random",
         "train(): model.factory=doctor_blind6:always_dropout_mlp on breast_cancer",
         _codes("train_eval_mismatch"), "cancer_dropout_always_on"),
    # ---- healthy
    Case("healthy_wine_mlp", "", "train(): wine, mlp, defaults", _codes(), "healthy_wine_mlp"),
    Case("healthy_cancer_own_module", "",
         "fit(): own MLP 30-64-32-2 on breast_cancer, scaler fitted on train and applied to every split, 25 epochs",
         _codes(), "healthy_cancer_own_module"),
    Case("healthy_fashion_cnn2d", "", "train(): fashion .npz 3000/600/600, cnn2d, 6 epochs", _codes(),
         "healthy_fashion_cnn2d"),
    Case("healthy_house_prices", "",
         "train(): generated house-price CSV (regression, a categorical column, 3% missing ages imputed), mlp",
         _codes(), "healthy_house_prices"),
    Case("healthy_churn_class_weights", "",
         "train(): generated churn CSV with 15% positives, data.balance=class_weights, mlp", _codes(),
         "healthy_churn_class_weights"),
    Case("healthy_digits_sgd_onecycle", "",
         "fit(): own MLP on digits, a torch SGD instance (lr 0.05, momentum 0.9, nesterov), schedule=one_cycle",
         _codes(), "healthy_digits_sgd_onecycle"),
]


# ----------------------------------------------------------------------------------------------- data helpers


def _split(n: int, rng: np.random.Generator, val: float = 0.1, test: float = 0.2) -> tuple[np.ndarray, ...]:
    idx = rng.permutation(n)
    n_test, n_val = int(round(n * test)), int(round(n * val))
    return idx[n_test + n_val:], idx[n_test:n_test + n_val], idx[:n_test]


def _standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0) + 1e-8
    return [(a - mu) / sd for a in (train, *others)]


def _sk(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    return bunch.data.astype(np.float64), bunch.target


def _fashion(n_train: int, n_val: int, n_test: int, seed: int) -> tuple[np.ndarray, ...]:
    """A Fashion-MNIST subset as float32 images in [0, 1]: train and val from the training file, test from t10k."""

    def idx(stem: str, offset: int) -> np.ndarray:
        with gzip.open(FASHION_DIR / f"{stem}.gz", "rb") as fh:
            return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)

    x = idx("train-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    y = idx("train-labels-idx1-ubyte", 8).astype(np.int64)
    xt = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    yt = idx("t10k-labels-idx1-ubyte", 8).astype(np.int64)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(x))[:n_train + n_val]
    tpick = rng.permutation(len(xt))[:n_test]
    f = np.float32
    return (x[pick[:n_train]].astype(f) / 255, y[pick[:n_train]], x[pick[n_train:]].astype(f) / 255,
            y[pick[n_train:]], xt[tpick].astype(f) / 255, yt[tpick])


def _fashion_npz(work: Path, seed: int, n_train: int = 3000, noise: float = 0.0, n_val: int = 600) -> Path:
    x, y, xv, yv, xt, yt = _fashion(n_train, n_val, 600, seed)
    if noise:
        rng = np.random.default_rng(seed + 1)
        y, yv, yt = (_noisy(a, noise, rng) for a in (y, yv, yt))
    path = work / "fashion.npz"
    np.savez(path, x=x, y=y, x_val=xv, y_val=yv, x_test=xt, y_test=yt)
    return path


def _noisy(y: np.ndarray, fraction: float, rng: np.random.Generator, classes: int = 10) -> np.ndarray:
    y = y.copy()
    flip = rng.random(len(y)) < fraction
    y[flip] = rng.integers(0, classes, int(flip.sum()))
    return y


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _write_csv(frame: Any, work: Path, name: str) -> Path:
    path = work / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def _loan_csv(work: Path, seed: int) -> Path:
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 3000
    age = rng.uniform(21, 70, n).round()
    income = np.exp(rng.normal(np.log(60_000), 0.5, n)).round(-2)  # dollars: ~3e4 .. 2e5
    debt_ratio = rng.beta(2, 5, n).round(3)
    late = rng.poisson(1.0, n)
    years = rng.uniform(0, 30, n).round(1)
    z = -0.8 + 4.0 * (debt_ratio - 0.28) - (income - 60_000) / 30_000 + 0.7 * (late - 1) - 0.04 * (years - 15)
    default = (rng.random(n) < _sigmoid(z)).astype(int)
    frame = pd.DataFrame({"age": age, "annual_income": income, "debt_ratio": debt_ratio, "late_payments": late,
                          "years_employed": years, "default": default})
    return _write_csv(frame, work, "loans")


def _churn_frame(rng: np.random.Generator, n: int, bias: float) -> Any:
    import pandas as pd

    tenure = rng.integers(1, 73, n)
    monthly = rng.uniform(20, 120, n).round(2)
    tickets = rng.poisson(1.5, n)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    contract = rng.choice(["monthly", "yearly"], n, p=[0.6, 0.4])
    z = (bias + 0.03 * (monthly - 70) - 0.05 * (tenure - 36) + 0.5 * (tickets - 1.5) + 1.0 * (contract == "monthly")
         - 0.4 * (plan == "pro"))
    churn = np.where(rng.random(n) < _sigmoid(z), "yes", "no")
    return pd.DataFrame({"tenure_months": tenure, "monthly_charges": monthly, "support_tickets": tickets,
                         "plan": plan, "contract": contract, "churn": churn})


def _churn_leak_csv(work: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    frame = _churn_frame(rng, 2500, bias=-0.5)
    left = (frame["churn"] == "yes").to_numpy()
    downgrade = rng.random(len(frame)) < 0.03  # a few who stayed paid a fee too (plan downgrades)
    fee = np.where(left | downgrade, rng.uniform(20, 60, len(frame)), 0.0).round(2)
    frame.insert(5, "cancellation_fee", fee)
    return _write_csv(frame, work, "churn_leak")


def _churn_weighted_csv(work: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return _write_csv(_churn_frame(rng, 2500, bias=-2.6), work, "churn")


def _fraud_csv(work: Path, seed: int) -> Path:
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 5000
    fraud = (rng.random(n) < 0.015).astype(int)
    x = rng.normal(0, 1, (n, 8))
    x[fraud == 1, :3] += 1.2  # the frauds differ in three features, overlapping with the rest
    frame = pd.DataFrame(x.round(4), columns=[f"v{i}" for i in range(8)])
    frame["amount"] = np.exp(rng.normal(3.5, 1.0, n)).round(2)
    frame["is_fraud"] = fraud
    return _write_csv(frame, work, "transactions")


def _rings_csv(work: Path, seed: int) -> Path:
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 3000
    outer = rng.integers(0, 2, n)
    radius = np.where(outer == 1, 2.0, 1.0) + rng.normal(0, 0.2, n)
    angle = rng.uniform(0, 2 * math.pi, n)
    frame = pd.DataFrame({"x1": radius * np.cos(angle), "x2": radius * np.sin(angle),
                          "n1": rng.normal(0, 1, n), "n2": rng.normal(0, 1, n),
                          "ring": np.where(outer == 1, "outer", "inner")}).round(4)
    return _write_csv(frame, work, "rings")


def _house_csv(work: Path, seed: int) -> Path:
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 2500
    sqft = rng.normal(1800, 500, n).clip(400, 5000).round()
    rooms = np.maximum(1, (sqft / 450 + rng.normal(0, 0.8, n)).round())
    age = rng.uniform(0, 80, n).round()
    dist = rng.uniform(1, 40, n).round(1)
    hood = rng.choice(["north", "south", "east", "west"], n)
    effect = pd.Series(hood).map({"north": 40_000, "south": -10_000, "east": 0, "west": 25_000}).to_numpy()
    price = (60_000 + 140 * sqft + 8_000 * rooms - 700 * age - 60_000 * np.log(dist) + effect
             + rng.normal(0, 20_000, n)).round(-2)
    age_seen = age.astype(float)
    age_seen[rng.random(n) < 0.03] = np.nan
    frame = pd.DataFrame({"sqft": sqft, "rooms": rooms, "age_years": age_seen, "distance_km": dist,
                          "neighborhood": hood, "price": price})
    return _write_csv(frame, work, "houses")


# ----------------------------------------------------------------------------------------------- models


def _mlp(d_in: int, widths: list[int], d_out: int, dropout: float = 0.0, final: Any = None) -> Any:
    from torch import nn

    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(d_in, w), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        d_in = w
    layers.append(nn.Linear(d_in, d_out))
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


# model.factory functions (imported by gradwise as doctor_blind6:<name>; bench/ is on sys.path as the script's dir)

def softmax_mlp(input_shape: tuple[int, ...], n_outputs: int) -> Any:
    from torch import nn

    return nn.Sequential(nn.Flatten(), _mlp(math.prod(input_shape), [64, 64], n_outputs, final=nn.Softmax(dim=1)))


def linear_stack(input_shape: tuple[int, ...], n_outputs: int) -> Any:
    from torch import nn

    d = math.prod(input_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 64), nn.Linear(64, 64), nn.Linear(64, n_outputs))


def randn_mlp(input_shape: tuple[int, ...], n_outputs: int) -> Any:
    import torch
    from torch import nn

    model = nn.Sequential(nn.Flatten(), _mlp(math.prod(input_shape), [256] * 5, n_outputs))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn_like(m.weight))  # the bug: std 1 whatever the fan-in
                m.bias.zero_()
    return model


def always_dropout_mlp(input_shape: tuple[int, ...], n_outputs: int) -> Any:
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = math.prod(input_shape)
            self.fc1, self.fc2, self.head = nn.Linear(d, 128), nn.Linear(128, 64), nn.Linear(64, n_outputs)

        def forward(self, x: Any) -> Any:
            x = x.flatten(1)
            x = F.dropout(F.relu(self.fc1(x)), 0.3, training=True)  # the bug: training=True, not self.training
            x = F.dropout(F.relu(self.fc2(x)), 0.3, training=True)
            return self.head(x)

    return Net()


# ----------------------------------------------------------------------------------------------- case bodies
# Each returns ("fit", kwargs) or ("train", overrides); the runner adds out, seed, threads and doctor.


def _tab(name: str, seed: int, scale: bool = True) -> tuple[np.ndarray, ...]:
    x, y = _sk(name)
    tr, va, te = _split(len(x), np.random.default_rng(seed))
    xs = _standardize(x[tr], x[va], x[te]) if scale else [x[tr], x[va], x[te]]
    return xs[0], y[tr], xs[1], y[va], xs[2], y[te]


def digits_labels_misjoined(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    x, y = _sk("digits")
    y = np.random.default_rng(seed + 7).permutation(y)  # labels from a file in another row order
    tr, va, te = _split(len(x), np.random.default_rng(seed))
    xtr, xva, xte = _standardize(x[tr], x[va], x[te])
    return "fit", dict(model=_mlp(64, [256, 256], 10), train=(xtr, y[tr]), val=(xva, y[va]), test=(xte, y[te]),
                       loss="cross_entropy", epochs=40)


def fashion_annotation_noise(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    path = _fashion_npz(work, seed, noise=0.4)
    return "train", {"data.dataset": str(path), "model.name": "mlp", "model.widths": [512, 512], "train.epochs": 30}


def loan_income_in_dollars(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": str(_loan_csv(work, seed)), "data.target": "default", "data.scale": "none",
                     "model.name": "mlp", "train.epochs": 20}


def churn_cancellation_fee_leak(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": str(_churn_leak_csv(work, seed)), "data.target": "churn", "model.name": "mlp",
                     "train.epochs": 20}


def cancer_upsampled_before_split(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    x, y = _sk("breast_cancer")
    rng = np.random.default_rng(seed)
    minority = np.flatnonzero(y == 0)  # 212 malignant vs 357 benign
    extra = rng.choice(minority, (y == 1).sum() - len(minority), replace=True)
    x, y = np.concatenate([x, x[extra]]), np.concatenate([y, y[extra]])
    tr, va, te = _split(len(x), rng)
    xtr, xva, xte = _standardize(x[tr], x[va], x[te])
    return "fit", dict(model=_mlp(30, [64, 32], 2), train=(xtr, y[tr]), val=(xva, y[va]), test=(xte, y[te]),
                       loss="cross_entropy", epochs=25)


def fraud_unbalanced(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": str(_fraud_csv(work, seed)), "data.target": "is_fraud", "data.balance": "none",
                     "model.name": "mlp", "train.epochs": 15}


def wine_scaler_on_train_only(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    x, y = _sk("wine")
    tr, va, te = _split(len(x), np.random.default_rng(seed))
    (xtr,) = _standardize(x[tr])  # the bug: val and test never go through the scaler
    return "fit", dict(model=_mlp(13, [64, 64], 3), train=(xtr, y[tr]), val=(x[va], y[va]), test=(x[te], y[te]),
                       loss="cross_entropy", epochs=30, batch_size=32)


def digits_mse_on_class_index(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    xtr, ytr, xva, yva, xte, yte = _tab("digits", seed)
    f = np.float32
    return "fit", dict(model=_mlp(64, [128], 1), train=(xtr, ytr.astype(f)[:, None]),
                       val=(xva, yva.astype(f)[:, None]), test=(xte, yte.astype(f)[:, None]), loss="mse", epochs=25)


def wine_softmax_then_ce(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": "wine", "model.factory": "doctor_blind6:softmax_mlp", "train.batch_size": 32,
                     "train.epochs": 30}


def cancer_sigmoid_then_bce_logits(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    from torch import nn

    xtr, ytr, xva, yva, xte, yte = _tab("breast_cancer", seed)
    f = np.float32
    return "fit", dict(model=_mlp(30, [64], 1, final=nn.Sigmoid()), train=(xtr, ytr.astype(f)[:, None]),
                       val=(xva, yva.astype(f)[:, None]), test=(xte, yte.astype(f)[:, None]),
                       loss="bce_with_logits", epochs=25)


def fashion_sgd_lr_10x(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": str(_fashion_npz(work, seed)), "model.name": "mlp", "optim.name": "sgd",
                     "optim.lr": 2.0, "train.clip_grad": None, "schedule.name": "constant", "train.epochs": 10}


def cancer_lr_tiny(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": "breast_cancer", "model.name": "mlp", "optim.lr": 1e-7, "train.epochs": 20}


def digits_sigmoid_stack(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": "digits", "model.name": "mlp", "model.widths": [64] * 12,
                     "model.activation": "sigmoid", "model.norm": "none", "optim.name": "sgd", "optim.lr": 0.05,
                     "train.epochs": 15}


def mnist1d_randn_init(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": "mnist1d", "model.factory": "doctor_blind6:randn_mlp", "train.epochs": 8}


def fashion_weight_decay_typo(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": str(_fashion_npz(work, seed)), "model.name": "mlp", "optim.name": "sgd",
                     "optim.lr": 0.1, "optim.weight_decay": 0.5, "train.epochs": 12}


def digits_dropout_keep_prob(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    xtr, ytr, xva, yva, xte, yte = _tab("digits", seed)
    return "fit", dict(model=_mlp(64, [64, 64], 10, dropout=0.9), train=(xtr, ytr), val=(xva, yva),
                       test=(xte, yte), loss="cross_entropy", epochs=25)


def rings_forgot_activations(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": str(_rings_csv(work, seed)), "data.target": "ring",
                     "model.factory": "doctor_blind6:linear_stack", "train.epochs": 15}


def fashion_overfit_tiny(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": str(_fashion_npz(work, seed, n_train=200)), "model.name": "mlp",
                     "model.widths": [1024, 1024], "optim.weight_decay": 0.0, "train.batch_size": 32,
                     "train.early_stopping.enabled": False, "train.epochs": 80}


def cancer_dropout_always_on(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": "breast_cancer", "model.factory": "doctor_blind6:always_dropout_mlp",
                     "train.epochs": 20}


def healthy_wine_mlp(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": "wine", "model.name": "mlp"}


def healthy_cancer_own_module(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    xtr, ytr, xva, yva, xte, yte = _tab("breast_cancer", seed)
    return "fit", dict(model=_mlp(30, [64, 32], 2), train=(xtr, ytr), val=(xva, yva), test=(xte, yte),
                       loss="cross_entropy", epochs=25)


def healthy_fashion_cnn2d(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": str(_fashion_npz(work, seed)), "model.name": "cnn2d", "train.epochs": 6}


def healthy_house_prices(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": str(_house_csv(work, seed)), "data.target": "price", "data.missing": "median",
                     "model.name": "mlp", "train.epochs": 30}


def healthy_churn_class_weights(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    return "train", {"data.dataset": str(_churn_weighted_csv(work, seed)), "data.target": "churn",
                     "data.balance": "class_weights", "model.name": "mlp", "train.epochs": 20}


def healthy_digits_sgd_onecycle(work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    import torch

    xtr, ytr, xva, yva, xte, yte = _tab("digits", seed)
    model = _mlp(64, [128, 64], 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    return "fit", dict(model=model, train=(xtr, ytr), val=(xva, yva), test=(xte, yte), loss="cross_entropy",
                       optimizer=opt, schedule="one_cycle", epochs=30)


# ----------------------------------------------------------------------------------------------- running one case


def _prepare(case: Case, work: Path, seed: int) -> tuple[str, dict[str, Any]]:
    import torch

    torch.manual_seed(seed)  # the fit() cases build their modules here, before gradwise seeds anything
    body: Callable[[Path, int], tuple[str, dict[str, Any]]] = globals()[case.build]
    return body(work, seed)


def run_case(case: Case, out: Path, work: Path, seed: int, doctor: bool) -> None:
    """Train one case into `out` (called in the child process)."""
    import torch

    import gradwise

    torch.set_num_threads(1)
    kind, spec = _prepare(case, work, seed)
    if kind == "fit":
        kw = dict(spec)
        model = kw.pop("model")
        train = kw.pop("train")
        gradwise.fit(model, train, out=out, seed=seed, doctor=doctor, threads=1, progress="plain", **kw)
    else:
        overrides = dict(spec)
        overrides.update({"out": str(out), "seed": seed, "train.threads": 1, "train.progress": "plain",
                          "doctor.enabled": doctor, "name": case.name})
        gradwise.train(None, overrides)


def dry_case(case: Case, work: Path, seed: int) -> str:
    """Build the case's data and model and run one forward pass; nothing is trained and the doctor never runs."""
    import torch

    from gradwise import load_config

    kind, spec = _prepare(case, work, seed)
    if kind == "fit":
        x = torch.as_tensor(np.asarray(spec["train"][0][:4]), dtype=torch.float32)
        y = spec["model"](x)
        return f"fit   x{tuple(spec['train'][0].shape)} -> out{tuple(y.shape)}"
    overrides = dict(spec)
    overrides.update({"seed": seed, "train.threads": 1})
    cfg = load_config(None, overrides)
    if cfg.model.factory:
        fn = globals()[cfg.model.factory.split(":")[1]]
        shape = (13,) if cfg.data.dataset == "wine" else (30,) if cfg.data.dataset == "breast_cancer" else (40,)
        if cfg.data.dataset.endswith("rings.csv"):
            shape = (4,)
        y = fn(shape, 2)(torch.randn(4, *shape))
        return f"train factory {cfg.model.factory} -> out{tuple(y.shape)}"
    return f"train {cfg.data.dataset} model {cfg.model.name}"


# ----------------------------------------------------------------------------------------------- the table


def _read_findings(out: Path) -> list[dict[str, Any]]:
    path = out / "findings.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows  # the final list (rewritten at the end of a run); a crashed run leaves what it appended


def _metric(out: Path) -> str:
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "-"
    row = summary.get("kept") or summary.get("final") or {}
    for key in ("val_accuracy", "val_r2"):
        if isinstance(row.get(key), int | float):
            return f"{key[4:]} {row[key]:.3f}"
    return "-"


def _status(out: Path, rc: int | None) -> str:
    try:
        return str(json.loads((out / "summary.json").read_text()).get("status", "?"))
    except (OSError, json.JSONDecodeError):
        pass
    if rc is None:
        return "timeout"
    return "refused" if rc == 2 else f"crashed rc={rc}"


def score(case: Case, findings: list[dict[str, Any]]) -> tuple[str, list[str], list[str]]:
    loud = sorted({str(f.get("code")) for f in findings if str(f.get("severity", "")).lower() in ("warning", "error")})
    quiet = sorted({str(f.get("code")) for f in findings} - set(loud))
    if case.healthy:
        return ("FALSE ALARM" if loud else "clean"), loud, quiet
    if set(loud) & case.accept:
        return "hit", loud, quiet
    if set(quiet) & case.accept:
        return "miss (info)", loud, quiet
    return "miss", loud, quiet


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--work", default="", help="directory for the runs (default: a new temp dir)")
    ap.add_argument("--dry", action="store_true", help="build data and models only; train nothing")
    ap.add_argument("--no-doctor", action="store_true",
                    help="train with the doctor off and print only the metrics (to check that a fault is real)")
    ap.add_argument("--case", default="", help=argparse.SUPPRESS)  # child: train this case into --out
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    by_name = {c.name: c for c in CASES}
    if args.case:
        out = Path(args.out)
        work = out.parent / f"{out.name}-data"
        work.mkdir(parents=True, exist_ok=True)
        run_case(by_name[args.case], out, work, args.seed, doctor=not args.no_doctor)
        return 0

    cases = [by_name[n] for n in args.only.split(",")] if args.only else CASES
    root = Path(args.work or tempfile.mkdtemp(prefix="doctor-blind6-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.dry:
        for case in cases:
            work = root / f"{case.name}-data"
            work.mkdir(parents=True, exist_ok=True)
            print(f"{case.name:32s} {dry_case(case, work, args.seed)}")
        return 0

    print(f"doctor blind set 6: {sum(not c.healthy for c in cases)} faulty, {sum(c.healthy for c in cases)} healthy; "
          f"seed {args.seed}; runs in {root}; doctor {'off' if args.no_doctor else 'on'}")
    print(f"{'case':32s} {'result':12s} {'metric':14s} {'status':10s} {'s':>5s}  accepted -> found (w/e) | info")
    hits = faulty = alarms = healthy = 0
    missed: list[str] = []
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")) if p))
    t_all = time.perf_counter()
    for case in cases:
        out = root / case.name
        log = root / f"{case.name}.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case.name, "--out", str(out),
               "--seed", str(args.seed)] + (["--no-doctor"] if args.no_doctor else [])
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            try:
                rc: int | None = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                                timeout=CASE_TIMEOUT_S).returncode
            except subprocess.TimeoutExpired:
                rc = None
        secs = time.perf_counter() - t0
        findings = _read_findings(out)
        result, loud, quiet = score(case, findings)
        if args.no_doctor:
            result = "-"
        elif case.healthy:
            healthy += 1
            alarms += result == "FALSE ALARM"
        else:
            faulty += 1
            hits += result == "hit"
            if result != "hit":
                missed.append(case.name)
        accepted = ",".join(sorted(case.accept)) or "(none)"
        print(f"{case.name:32s} {result:12s} {_metric(out):14s} {_status(out, rc):10s} {secs:5.1f}  "
              f"{accepted} -> {','.join(loud) or '-'} | {','.join(quiet) or '-'}", flush=True)
    if not args.no_doctor:
        print(f"\nrecall on faulty runs: {hits}/{faulty}   false alarms on healthy runs: {alarms}/{healthy}   "
              f"({time.perf_counter() - t_all:.0f} s)")
        if missed:
            print("missed: " + ", ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Blind set 6 for the training doctor: 19 faulty runs and 6 healthy ones, written without reading the doctor.

Written by an outside tester who read only the README's doctor section (the codes and what they look at), the
public API (`gradwise.fit`, `gradwise.train`), the config reference and the run directory format; never the
doctor's code, its case suite or the other blind sets. The acceptable codes of every case below were fixed from
the codes' meaning and committed before the doctor ever saw these runs (see `git log -- bench/doctor_blind6.py`);
the first doctor run is saved, unedited, in bench/doctor_blind6_first_contact.txt.

Each case is a mistake a practitioner makes, made the way they would make it: a config key (an LR typo, a weight
decay typo, a 12-deep sigmoid stack), a `model.factory` module (the functions in bench/doctor/models.py since the
move: softmax before cross-entropy, forgotten activations, `torch.randn` weights, dropout that ignores eval mode),
or data corrupted as it gets corrupted in practice (labels joined in another order, annotation noise, a column kept
in dollars, a field recorded after the outcome, minority rows upsampled before the split, a scaler applied to the
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

    OMP_NUM_THREADS=1 python bench/doctor/run.py blind6 [--seed N] [--only NAME,NAME] [--work DIR]
    python bench/doctor/run.py blind6 --list         # the cases and their acceptable codes

Each case trains in its own subprocess (`--case NAME --out DIR`, 180 s at most), so one crash or hang costs
one row. (The set's own `--dry` mode went with the move to the shared harness.)

(`python bench/doctor_blind6.py ...` is the same command line.)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from doctor.harness import CE, FILE, Built, Case, CaseSet, D, M, P, TorchOptim


def _codes(*codes: str) -> tuple[str, ...]:
    return tuple(sorted(codes))


# ---- the CSV files the `gradwise train` cases read (drawn from a numpy Generator seeded with the set's seed) ----


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def loan_csv(work: Path, seed: int) -> Path:
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
    return D.write_csv(frame, work, "loans")


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


def churn_leak_csv(work: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    frame = _churn_frame(rng, 2500, bias=-0.5)
    left = (frame["churn"] == "yes").to_numpy()
    downgrade = rng.random(len(frame)) < 0.03  # a few who stayed paid a fee too (plan downgrades)
    fee = np.where(left | downgrade, rng.uniform(20, 60, len(frame)), 0.0).round(2)
    frame.insert(5, "cancellation_fee", fee)
    return D.write_csv(frame, work, "churn_leak")


def churn_weighted_csv(work: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return D.write_csv(_churn_frame(rng, 2500, bias=-2.6), work, "churn")


def fraud_csv(work: Path, seed: int) -> Path:
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 5000
    fraud = (rng.random(n) < 0.015).astype(int)
    x = rng.normal(0, 1, (n, 8))
    x[fraud == 1, :3] += 1.2  # the frauds differ in three features, overlapping with the rest
    frame = pd.DataFrame(x.round(4), columns=[f"v{i}" for i in range(8)])
    frame["amount"] = np.exp(rng.normal(3.5, 1.0, n)).round(2)
    frame["is_fraud"] = fraud
    return D.write_csv(frame, work, "transactions")


def rings_csv(work: Path, seed: int) -> Path:
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 3000
    outer = rng.integers(0, 2, n)
    radius = np.where(outer == 1, 2.0, 1.0) + rng.normal(0, 0.2, n)
    angle = rng.uniform(0, 2 * math.pi, n)
    frame = pd.DataFrame({"x1": radius * np.cos(angle), "x2": radius * np.sin(angle),
                          "n1": rng.normal(0, 1, n), "n2": rng.normal(0, 1, n),
                          "ring": np.where(outer == 1, "outer", "inner")}).round(4)
    return D.write_csv(frame, work, "rings")


def house_csv(work: Path, seed: int) -> Path:
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
    return D.write_csv(frame, work, "houses")


# ---- the `gradwise.fit` cases' data: 70/10/20 train/val/test splits ----


def labels_misjoined(seed: int) -> tuple[np.ndarray, ...]:
    """digits with y from a file in another row order: every label unrelated to its row."""
    x, y = D.sklearn_data("digits", np.float64)
    y = np.random.default_rng(seed + 7).permutation(y)
    tr, va, te = D.split_indices(len(x), np.random.default_rng(seed))
    xtr, xva, xte = D.standardize(x[tr], x[va], x[te], eps=1e-8)
    return xtr, y[tr], xva, y[va], xte, y[te]


def upsampled_before_split(seed: int) -> tuple[np.ndarray, ...]:
    """breast_cancer's malignant rows resampled with replacement to 357 before the 70/10/20 split."""
    x, y = D.sklearn_data("breast_cancer", np.float64)
    rng = np.random.default_rng(seed)
    minority = np.flatnonzero(y == 0)  # 212 malignant vs 357 benign
    extra = rng.choice(minority, (y == 1).sum() - len(minority), replace=True)
    x, y = np.concatenate([x, x[extra]]), np.concatenate([y, y[extra]])
    tr, va, te = D.split_indices(len(x), rng)
    xtr, xva, xte = D.standardize(x[tr], x[va], x[te], eps=1e-8)
    return xtr, y[tr], xva, y[va], xte, y[te]


def scaler_on_train_only(seed: int) -> tuple[np.ndarray, ...]:
    """wine with the scaler fitted and applied to the training split only; val and test in raw units."""
    x, y = D.sklearn_data("wine", np.float64)
    tr, va, te = D.split_indices(len(x), np.random.default_rng(seed))
    (xtr,) = D.standardize(x[tr], eps=1e-8)
    return xtr, y[tr], x[va], y[va], x[te], y[te]


def float_column_targets(b: Built) -> None:
    f = np.float32
    b.yt, b.yv = b.yt.astype(f)[:, None], b.yv.astype(f)[:, None]
    b.test = (b.test[0], b.test[1].astype(f)[:, None])


def table(name: str) -> P:
    return P(D.sk_table3, name)


def factory(name: str) -> str:
    return f"doctor.models:{name}"


def fashion(**kw: Any) -> P:
    return P(D.fashion_npz, **kw)


def case(name: str, fault: str, how: str, accept: tuple[str, ...], load: Any = None, model: Any = None,
         fit: dict[str, Any] | None = None, config: dict[str, Any] | None = None, corrupt: Any = None) -> Case:
    """A case as the set first wrote it: what is wrong, how the run is made, the acceptable codes; a fit case
    (data, model, fit keywords) or a `gradwise train` case (config overrides, data file)."""
    return Case(name, how, "fit" if config is None else "train", "", load, model, fit or {}, fault, accept,
                corrupt=corrupt, config=config)


CASES: list[Case] = [
    # ---- data / labels
    case("digits_labels_misjoined",
         "labels joined to the images in another row order (y read from a file sorted differently): every label is "
         "unrelated to its row, in every split",
         "fit(): own MLP 64-256-256-10 on digits, y permuted over all rows, 40 epochs",
         _codes("label_problem", "no_learning"), labels_misjoined, P(M.stack, 64, 10, (256, 256), flatten=False),
         dict(loss=CE, epochs=40)),
    case("fashion_annotation_noise_40",
         "crowd-sourced labels: 40% of the labels (all splits) replaced by a random class",
         "train(): .npz of 3000/600/600 Fashion-MNIST images, mlp [512, 512], 30 epochs, default early stopping",
         _codes("label_problem", "overfitting"), fashion(noise=0.4),
         config={"data.dataset": FILE, "model.name": "mlp", "model.widths": [512, 512], "train.epochs": 30}),
    case("loan_income_in_dollars",
         "one feature (annual income) left in raw dollars (~1e5) with data.scale=none because the user thought the "
         "CSV was already scaled",
         "train(): generated loan CSV (3000 rows, 5 numeric columns), data.scale=none, mlp",
         _codes("unnormalized_inputs"), loan_csv,
         config={"data.dataset": FILE, "data.target": "default", "data.scale": "none", "model.name": "mlp",
                 "train.epochs": 20}),
    case("churn_cancellation_fee_leak",
         "a field recorded after the outcome (the cancellation fee, charged only to customers who left) is a feature",
         "train(): generated churn CSV (2500 rows), column cancellation_fee = churn x U(20, 60) (+3% downgrades)",
         _codes("data_leakage"), churn_leak_csv,
         config={"data.dataset": FILE, "data.target": "churn", "model.name": "mlp", "train.epochs": 20}),
    case("cancer_upsampled_before_split",
         "minority class upsampled (duplicated rows) to balance the classes BEFORE the train/val/test split, so "
         "copies of the same rows sit in train and val/test",
         "fit(): breast_cancer, malignant rows resampled with replacement to 357, then a random 70/10/20 split",
         _codes("data_leakage"), upsampled_before_split, P(M.stack, 30, 2, (64, 32), flatten=False),
         dict(loss=CE, epochs=25)),
    case("fraud_1pct_unbalanced",
         "1.5% positives trained with plain cross-entropy and no balancing (accuracy 98.5% by saying 'no' always)",
         "train(): generated transactions CSV (5000 rows, 8 features), data.balance=none, mlp",
         _codes("class_imbalance"), fraud_csv,
         config={"data.dataset": FILE, "data.target": "is_fraud", "data.balance": "none", "model.name": "mlp",
                 "train.epochs": 15}),
    case("wine_scaler_on_train_only",
         "StandardScaler fitted and applied to the training split only; val and test fed in raw units (proline "
         "~1000)", "fit(): own MLP on wine, X_train scaled, X_val / X_test raw",
         _codes("unnormalized_inputs", "train_eval_mismatch"), scaler_on_train_only,
         P(M.stack, 13, 3, (64, 64), flatten=False), dict(loss=CE, epochs=30, batch_size=32)),
    # ---- losses and outputs
    case("digits_mse_on_class_index",
         "classification trained as regression: one output, MSE against the class index 0..9",
         "fit(): own MLP 64-128-1 on digits, loss='mse', y = float class index (N, 1)",
         _codes("loss_output_mismatch", "label_problem"), table("digits"), P(M.stack, 64, 1, (128,), flatten=False),
         dict(loss="mse", epochs=25), corrupt=float_column_targets),
    case("wine_softmax_then_ce",
         "the model ends in nn.Softmax and is trained with cross-entropy (which applies log-softmax again)",
         "train(): model.factory=softmax_mlp on wine, batch 32", _codes("loss_output_mismatch"),
         config={"data.dataset": "wine", "model.factory": factory("softmax_mlp"), "train.batch_size": 32,
                 "train.epochs": 30}),
    case("cancer_sigmoid_then_bce_logits",
         "the model ends in nn.Sigmoid and is trained with BCEWithLogits (a sigmoid applied twice)",
         "fit(): own MLP 30-64-1 + Sigmoid on breast_cancer, loss='bce_with_logits', y float (N, 1)",
         _codes("loss_output_mismatch"), table("breast_cancer"),
         P(M.stack, 30, 1, (64,), final=nn.Sigmoid(), flatten=False), dict(loss="bce_with_logits", epochs=25),
         corrupt=float_column_targets),
    # ---- optimisation
    case("fashion_sgd_lr_10x",
         "SGD with an LR ~10x too high (2.0 where ~0.1-0.2 is right), momentum 0.9, clipping off, constant schedule",
         "train(): fashion .npz 3000 rows, mlp, optim.name=sgd optim.lr=2.0 train.clip_grad=null, 10 epochs",
         _codes("lr_too_high", "diverging_loss", "nonfinite_values", "exploding_gradients", "oscillating_loss"),
         fashion(), config={"data.dataset": FILE, "model.name": "mlp", "optim.name": "sgd", "optim.lr": 2.0,
                            "train.clip_grad": None, "schedule.name": "constant", "train.epochs": 10}),
    case("cancer_lr_1e-7", "LR of 1e-7 (a unit slip: meant 1e-3)",
         "train(): breast_cancer, mlp, optim.lr=1e-7, 20 epochs",
         _codes("lr_too_low", "no_learning", "plateau"),
         config={"data.dataset": "breast_cancer", "model.name": "mlp", "optim.lr": 1e-7, "train.epochs": 20}),
    case("digits_sigmoid_stack_12",
         "12 hidden sigmoid layers, no normalisation, default init, plain SGD: the gradient vanishes on the way down",
         "train(): digits, mlp widths [64]*12, activation sigmoid, sgd lr 0.05, 15 epochs",
         _codes("vanishing_gradients", "saturated_units", "bad_initialization"),
         config={"data.dataset": "digits", "model.name": "mlp", "model.widths": [64] * 12,
                 "model.activation": "sigmoid", "model.norm": "none", "optim.name": "sgd", "optim.lr": 0.05,
                 "train.epochs": 15}),
    case("mnist1d_randn_init",
         "weights initialised with torch.randn (std 1, not 1/sqrt(fan_in)) in a 6-layer ReLU MLP: activations grow "
         "~11x per layer", "train(): model.factory=randn_mlp on MNIST-1D, 8 epochs",
         _codes("bad_initialization", "exploding_gradients"),
         config={"data.dataset": "mnist1d", "model.factory": factory("randn_mlp"), "train.epochs": 8}),
    # ---- capacity / regularisation
    case("fashion_weight_decay_typo",
         "weight decay 0.5 where 5e-4 was meant (SGD, where it is an L2 term pulling every step)",
         "train(): fashion .npz 3000 rows, mlp, optim.name=sgd optim.lr=0.1 optim.weight_decay=0.5, 12 epochs",
         _codes("over_regularization", "underfitting"), fashion(),
         config={"data.dataset": FILE, "model.name": "mlp", "optim.name": "sgd", "optim.lr": 0.1,
                 "optim.weight_decay": 0.5, "train.epochs": 12}),
    case("digits_dropout_keep_prob",
         "dropout 0.9 on every hidden layer (a TF1 keep_prob=0.9 ported as a drop probability) in a narrow MLP",
         "fit(): own MLP 64-64-64-10 with nn.Dropout(0.9) after each hidden layer, digits, 25 epochs",
         _codes("over_regularization", "train_eval_mismatch", "underfitting"), table("digits"),
         P(M.stack, 64, 10, (64, 64), dropout=0.9, flatten=False), dict(loss=CE, epochs=25)),
    case("rings_forgot_activations",
         "the activations were left out of the model: three stacked Linears (a linear model) on concentric rings",
         "train(): model.factory=linear_stack on a generated 2-ring CSV (+2 noise columns)",
         _codes("underfitting"), rings_csv,
         config={"data.dataset": FILE, "data.target": "ring", "model.factory": factory("linear_stack"),
                 "train.epochs": 15}),
    case("fashion_200_rows_big_mlp",
         "a 1.8M-parameter MLP trained 80 epochs on 200 images with no regularisation and early stopping off",
         "train(): fashion .npz 200 train / 600 val, mlp [1024, 1024], weight_decay 0, early stopping off",
         _codes("overfitting"), fashion(n_train=200),
         config={"data.dataset": FILE, "model.name": "mlp", "model.widths": [1024, 1024], "optim.weight_decay": 0.0,
                 "train.batch_size": 32, "train.early_stopping.enabled": False, "train.epochs": 80}),
    case("cancer_dropout_always_on",
         "dropout written as F.dropout(x, p, training=True): it stays on in eval mode, so evaluation is random",
         "train(): model.factory=always_dropout_mlp on breast_cancer", _codes("train_eval_mismatch"),
         config={"data.dataset": "breast_cancer", "model.factory": factory("always_dropout_mlp"),
                 "train.epochs": 20}),
    # ---- healthy
    case("healthy_wine_mlp", "", "train(): wine, mlp, defaults", (),
         config={"data.dataset": "wine", "model.name": "mlp"}),
    case("healthy_cancer_own_module", "",
         "fit(): own MLP 30-64-32-2 on breast_cancer, scaler fitted on train and applied to every split, 25 epochs",
         (), table("breast_cancer"), P(M.stack, 30, 2, (64, 32), flatten=False), dict(loss=CE, epochs=25)),
    case("healthy_fashion_cnn2d", "", "train(): fashion .npz 3000/600/600, cnn2d, 6 epochs", (), fashion(),
         config={"data.dataset": FILE, "model.name": "cnn2d", "train.epochs": 6}),
    case("healthy_house_prices", "",
         "train(): generated house-price CSV (regression, a categorical column, 3% missing ages imputed), mlp", (),
         house_csv, config={"data.dataset": FILE, "data.target": "price", "data.missing": "median",
                            "model.name": "mlp", "train.epochs": 30}),
    case("healthy_churn_class_weights", "",
         "train(): generated churn CSV with 15% positives, data.balance=class_weights, mlp", (), churn_weighted_csv,
         config={"data.dataset": FILE, "data.target": "churn", "data.balance": "class_weights", "model.name": "mlp",
                 "train.epochs": 20}),
    case("healthy_digits_sgd_onecycle", "",
         "fit(): own MLP on digits, a torch SGD instance (lr 0.05, momentum 0.9, nesterov), schedule=one_cycle", (),
         table("digits"), P(M.stack, 64, 10, (128, 64), flatten=False),
         dict(loss=CE, optimizer=TorchOptim("SGD", lr=0.05, momentum=0.9, nesterov=True), schedule="one_cycle",
              epochs=30)),
]

SET = CaseSet("blind6", 0, CASES, doc=__doc__ or "", any_of=True, torch_seed=lambda seed, init: seed, tensors=None,
              fit_defaults={"threads": 1, "progress": "plain"},
              config_defaults={"train.threads": 1, "train.progress": "plain"}, isolate=True, timeout_s=180)

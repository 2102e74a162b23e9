"""The doctor on the held-out runs of bench/doctor_holdout.py: a few of the quickest runs on every test run, every
run that currently passes under -m slow. Runs the doctor currently gets wrong (see the report printed by
`python bench/doctor_holdout.py`) are deliberately not asserted here.

The first batch of that file is no longer unseen: the doctor's rules were revised against its findings (the
oscillation noise floor, lr_too_low's warmup handling, label_problem without memorization, spread saturation,
overfitting under early stopping, a too-small init, cross-check supersession). Only its second batch (marked FRESH
there) was written before the doctor ever ran on it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from gradwise.data.datasets import FASHION_MNIST_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import doctor_holdout as holdout  # noqa: E402

# quick (< 2 s each on one thread): a fault with one clear expected code each, and healthy runs
QUICK = [
    "breast_cancer_oversampled_before_split",  # data_leakage (pre-flight)
    "digits_cnn_functional_softmax_ce",  # loss_output_mismatch (F.softmax in forward, cross_entropy)
    "functional_wine_sgd_nesterov",  # healthy: F.relu/torch.tanh model, SGD + Nesterov
    "diabetes_huber_resmlp_adagrad",  # healthy: residual MLP regression, Huber, Adagrad
]

# every other run the doctor gets right at the default seed (all expected codes found / a healthy run quiet)
PASSING = [
    "cnn2d_digits_adamw", "cnn2d_bn_fashion_nadam", "transformer_mnist1d_adamw", "lstm_digits_rows_rmsprop",
    "breast_cancer_bce_adamax_dropout", "fashion_cnn_torch_adam_lr_0.03", "transformer_sgd_lr_1e-4",
    "fashion_raw_pixels_mlp", "mnist1d_sigmoid_mse_labels", "lstm_adam_coupled_wd_0.5",
    # passing since the revision against the first batch
    "resmlp_fashion_flat_radam",  # healthy: RAdam's tiny start-up steps under warmup are not lr_too_low
    "iris_resmlp_adam_control",  # healthy: epoch-to-epoch noise near the loss floor is not oscillation
    "fashion_shuffled_labels_resmlp",  # label_problem although early stopping ends the run before memorization
    "deep_tanh_std1_init",  # saturated_units spread over every unit (no unit saturated on >= 90% of rows)
    "deep_tanh_tiny_init",  # bad_initialization for a too-small init (and no over_regularization warning)
    "fashion_100_rows_big_mlp",  # overfitting stays a warning under early stopping when even the best epoch is poor
    # second batch (written before its first run)
    "digits_mlp_bn_sgd_onecycle", "breast_cancer_tanh_mlp_adamw", "mnist1d_deep_relu_tiny_init",
    "lstm_rmsprop_lr_1e-6",
]
# passing since session 3's nearest-neighbour label check (no_learning + neighbours sharing labels at chance level):
PASSING += ["iris_shuffled_labels_resmlp", "digits_cnn_shuffled_labels"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    holdout.SET.use_seed(holdout.SET.default)


def _check(name: str, tmp_path: Path) -> None:
    run = holdout.RUN_BY_NAME[name]
    if "fashion" in run.data and not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"fashion-mnist IDX files not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    res = holdout.execute(run, tmp_path / name)
    assert res.status == "completed", res.status
    if run.healthy:
        assert res.alarms == {}, f"{name}: a healthy run raised {res.alarms}"
    else:
        assert res.missing == [], f"{name}: expected {run.expect}, the doctor found {res.found}"


def test_quick_and_passing_lists_name_real_runs() -> None:
    assert set(QUICK + PASSING) <= set(holdout.RUN_BY_NAME)
    assert not set(QUICK) & set(PASSING)
    quick = [holdout.RUN_BY_NAME[n] for n in QUICK]
    assert any(r.healthy for r in quick) and any(not r.healthy for r in quick)


@pytest.mark.parametrize("name", QUICK)
def test_quick_holdout_run(name: str, tmp_path: Path) -> None:
    _check(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", PASSING)
def test_passing_holdout_run(name: str, tmp_path: Path) -> None:
    _check(name, tmp_path)

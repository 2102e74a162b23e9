"""The doctor on the runs of bench/doctor_blind.py (written blind by another engineer, then used to revise the
doctor; see that file's docstring): the quickest runs on every test run, every other run it gets right under -m slow.
Not asserted: diabetes_raw_target_units_adam (reported as no_learning + exploding_gradients, not underfitting)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from gradwise.data.datasets import FASHION_MNIST_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import doctor_blind as blind  # noqa: E402

# under a second each on one thread; each found by a rule the blind set prompted
QUICK = [
    "blobs_ce_on_relu_output",  # loss_output_mismatch: a ReLU on the logits before cross-entropy (pre-flight)
    "digits_bn_class_sorted_loader",  # train_eval_mismatch: one class per batch through BatchNorm (pre-flight)
    "deep_elu_blobs_sgd_wd_0.02",  # over_regularization + underfitting with no generalization gap
    "moons_tanh_torch_sgd_lr_0.5_m0.95",  # oscillating_loss although the loss also spiked (diverging)
    "deep_gelu_digits_torch_sgd_lr_0.3",  # lr_too_high from a divergence at the peak LR; no lr_too_low after it
    "digits_labels_off_by_one_row",  # label_problem
    "wide_tanh_moons_plain_sgd",  # healthy
    "wine_leaky_sgd_onecycle_smoothing",  # healthy
    "diabetes_scaled_target_mlp_adam",  # healthy
]
NOT_ASSERTED = {"diabetes_raw_target_units_adam"}
SLOW = [r.name for r in blind.RUNS if r.name not in QUICK and r.name not in NOT_ASSERTED]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    blind.use_seed(blind.SEED)


def _check(name: str, tmp_path: Path) -> None:
    run = blind.RUN_BY_NAME[name]
    if "fashion" in run.data and not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"fashion-mnist IDX files not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    res, _ = blind.execute(run, tmp_path / name)
    if run.healthy:
        assert res.status == "completed", res.status
        assert res.alarms == {}, f"{name}: a healthy run raised {res.alarms}"
    else:
        assert res.missing == [], f"{name}: expected {run.expect}, the doctor found {res.found}"


def test_lists_name_real_runs() -> None:
    names = {r.name for r in blind.RUNS}
    assert set(QUICK) <= names and names >= NOT_ASSERTED
    quick = [blind.RUN_BY_NAME[n] for n in QUICK]
    assert any(r.healthy for r in quick) and any(not r.healthy for r in quick)


@pytest.mark.parametrize("name", QUICK)
def test_quick_blind_run(name: str, tmp_path: Path) -> None:
    _check(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_other_blind_run(name: str, tmp_path: Path) -> None:
    _check(name, tmp_path)

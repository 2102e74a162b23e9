"""loss.name: bce_with_logits on real binary data, end to end: a one-logit head, 0/1 float targets of the output's
shape, metrics from the single logit, `gradwise eval` and `gradwise predict`; more than two classes is a clear
error naming loss.name and the fix."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer

import gradwise
from gradwise.errors import ConfigError, GradwiseError
from gradwise.inference import predict

ROOT = Path(__file__).resolve().parents[1]
CUSTOMERS = ROOT / "examples" / "data" / "customers.csv"
QUICK = ["train.progress=none", "model.name=mlp", "model.widths=[32]"]


def gw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradwise.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def breast_cancer_run(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    out = tmp_path_factory.mktemp("bce") / "run"
    return gradwise.train(None, ["data.dataset=breast_cancer", "loss.name=bce_with_logits", "train.epochs=8",
                                 f"out={out}", *QUICK])


def test_one_logit_head_and_float_targets(breast_cancer_run: gradwise.Run) -> None:
    run = breast_cancer_run
    assert run.status == "completed"
    bundle = run.extras["bundle"]
    assert bundle.task == "classification" and bundle.n_classes == 2 and bundle.n_outputs == 1
    assert run.model.head.out_features == 1
    for x, y in (bundle.train, bundle.val, bundle.test):
        assert y.dtype == torch.float32 and y.shape == (len(x), 1)
        assert set(torch.unique(y).tolist()) == {0.0, 1.0}
        assert run.model(x[:4]).shape == y[:4].shape  # the loss compares equal shapes: no broadcasting
    assert run.config.loss.name == "bce_with_logits"
    report = json.loads((run.dir / "data_report.json").read_text())
    assert report["target_encoding"] == {"loss": "bce_with_logits", "outputs": 1, "negative": "malignant",
                                         "positive": "benign"}


def test_accuracy_from_the_single_logit(breast_cancer_run: gradwise.Run) -> None:
    run = breast_cancer_run
    x, y = run.extras["bundle"].test
    with torch.no_grad():
        logit = run.model.eval()(x)
    by_hand = float(((logit > 0).float() == y).float().mean())  # threshold 0 on the logit = 0.5 on the sigmoid
    assert run.summary["test"]["test_accuracy"] == pytest.approx(by_hand, abs=1e-6)
    assert by_hand > 0.9  # breast_cancer is easy: a working binary classifier scores ~95%+
    assert run.summary["test"]["test_loss"] < 0.4  # well below ln 2 (chance for one logit)


def test_doctor_sees_no_mismatch(breast_cancer_run: gradwise.Run) -> None:
    codes = {f.code for f in breast_cancer_run.findings}
    assert not codes & {"loss_output_mismatch", "label_problem"}, codes


def test_eval_and_predict_cli(breast_cancer_run: gradwise.Run, tmp_path: Path) -> None:
    run = breast_cancer_run
    proc = gw("eval", str(run.dir))
    assert proc.returncode == 0, proc.stderr
    printed = dict(line.split() for line in proc.stdout.strip().splitlines())
    assert float(printed["test_accuracy"]) == pytest.approx(run.summary["test"]["test_accuracy"], abs=1e-4)
    assert float(printed["test_loss"]) == pytest.approx(run.summary["test"]["test_loss"], abs=1e-4)

    frame = load_breast_cancer(as_frame=True).frame
    rows = frame.drop(columns=["target"]).iloc[::40]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    proc = gw("predict", str(run.dir), str(tmp_path / "rows.csv"))
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(io.StringIO(proc.stdout))
    # the softmax path's format: the class name, then one probability per class
    assert list(pred.columns) == ["prediction", "prob_malignant", "prob_benign"]
    assert np.allclose(pred["prob_malignant"] + pred["prob_benign"], 1, atol=1e-5)
    assert (pred["prediction"] == np.where(pred["prob_benign"] > 0.5, "benign", "malignant")).all()
    truth = np.where(frame["target"].iloc[::40] == 1, "benign", "malignant")
    assert (pred["prediction"].to_numpy() == truth).mean() > 0.85


def test_binary_csv_target_with_class_weights(tmp_path: Path) -> None:
    # a text target ("yes"/"no") and the loss options bce_with_logits takes: balanced weights, label smoothing
    run = gradwise.train(ROOT / "examples" / "tabular_csv.yaml", [
        f"data.dataset={CUSTOMERS}", "loss.name=bce", "loss.class_weights=balanced", "loss.label_smoothing=0.05",
        "train.epochs=4", f"out={tmp_path / 'run'}", "train.progress=none"])
    assert run.status == "completed" and run.config.loss.name == "bce_with_logits"
    assert run.model.head.out_features == 1
    assert run.summary["test"]["test_accuracy"] > 0.7  # "no" for everyone scores ~68%
    report = json.loads((run.dir / "data_report.json").read_text())
    assert report["target_encoding"]["positive"] == "yes"
    new = pd.read_csv(CUSTOMERS).head(5)
    new.to_csv(tmp_path / "new.csv", index=False)
    pred = predict(run.dir, tmp_path / "new.csv")
    # the columns the model did not use (the id, the target itself) stay beside the predictions
    assert list(pred.columns) == ["customer_id", "churn", "prediction", "prob_no", "prob_yes"]
    assert set(pred["prediction"]) <= {"yes", "no"}


def test_more_than_two_classes_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        gradwise.train(None, ["data.dataset=iris", "loss.name=bce_with_logits", "train.epochs=1",
                              f"out={tmp_path / 'run'}", *QUICK])
    message = str(info.value)
    assert "loss.name" in message and "cross_entropy" in message and "3 classes" in message
    assert "setosa" in message and "data.classes" in message
    assert isinstance(info.value, GradwiseError)


def test_two_of_many_classes_train_with_bce(tmp_path: Path) -> None:
    # the fix the error names: keep two classes
    run = gradwise.train(None, ["data.dataset=iris", "data.classes=[versicolor, virginica]", "loss.name=bce",
                                "train.epochs=3", f"out={tmp_path / 'run'}", *QUICK])
    assert run.status == "completed" and run.model.head.out_features == 1

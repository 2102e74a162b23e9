"""Full classification metrics (precision, recall, F1, balanced accuracy, AUROC) against scikit-learn, on real data
through the public API, and the edge cases of the macro averages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

import gradwise
from gradwise.train.metrics import task_metrics

TOL = 1e-6


@torch.inference_mode()
def _outputs(run: gradwise.Run, split: str) -> tuple[torch.Tensor, np.ndarray]:
    x, y = getattr(run.extras["bundle"], split)
    run.model.eval()
    return run.model(x).float(), y.reshape(-1).long().numpy()


def _expected(out: torch.Tensor, y: np.ndarray) -> dict[str, float]:
    """What scikit-learn says for a model's outputs (labels: argmax, or logit > 0 for one logit)."""
    if out.ndim == 1 or out.shape[-1] == 1:
        logit = out.reshape(-1)
        pred, score = (logit.sigmoid() > 0.5).long().numpy(), logit.double().numpy()
    else:
        pred = out.argmax(-1).numpy()
        score = (out[:, 1] - out[:, 0]).double().numpy() if out.shape[-1] == 2 else None
    expected = {
        "accuracy": accuracy_score(y, pred),
        "precision": precision_score(y, pred, average="macro", zero_division=0),
        "recall": recall_score(y, pred, average="macro", zero_division=0),
        "f1": f1_score(y, pred, average="macro", zero_division=0),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
    }
    if score is not None:
        # the probability of class 1, as sklearn's users compute it, ranks the same as the logit/log-odds
        expected["auroc"] = roc_auc_score(y, score)
    return expected


@pytest.mark.parametrize("loss", ["bce_with_logits", "cross_entropy"])
def test_breast_cancer_metrics_equal_sklearn(tmp_path: Path, loss: str) -> None:
    """Binary (one logit and two softmax outputs): every epoch's val_* row and summary.json's test_* equal sklearn's
    numbers for the same model outputs."""
    out = tmp_path / loss
    run = gradwise.train(None, ["data.dataset=breast_cancer", "model.name=mlp", "train.epochs=2",
                                f"loss.name={loss}", "train.early_stopping.enabled=false", "train.progress=none",
                                "doctor.enabled=false", f"out={out}"])
    val_out, val_y = _outputs(run, "val")
    assert val_out.shape[-1] == (1 if loss == "bce_with_logits" else 2)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    expected = _expected(val_out, val_y)
    assert set(expected) == {"accuracy", "precision", "recall", "f1", "balanced_accuracy", "auroc"}
    for name, value in expected.items():
        assert row[f"val_{name}"] == pytest.approx(value, abs=TOL), name
    test_out, test_y = _outputs(run, "test")
    summary = json.loads((out / "summary.json").read_text())
    for name, value in _expected(test_out, test_y).items():
        assert summary["test"][f"test_{name}"] == pytest.approx(value, abs=TOL), name


def test_imbalanced_digits_metrics_equal_sklearn(tmp_path: Path) -> None:
    """An imbalanced subset of digits (class 0 whole, the others cut to 12-30 rows) trained with data.balance:
    the macro metrics differ from accuracy and equal sklearn's (multi-class: no AUROC)."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    keep = np.concatenate([np.flatnonzero(y == 0)] +
                          [rng.choice(np.flatnonzero(y == c), size=12 + 3 * c, replace=False) for c in range(1, 7)])
    frame = pd.DataFrame(x[keep], columns=[f"p{i}" for i in range(64)])
    frame["digit"] = y[keep]
    csv = tmp_path / "digits_imbalanced.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "run"
    run = gradwise.train(None, [f"data.dataset={csv}", "data.target=digit", "data.balance=oversample",
                                "model.name=mlp", "train.epochs=3", "train.early_stopping.enabled=false",
                                "train.progress=none", "doctor.enabled=false", f"out={out}"])
    val_out, val_y = _outputs(run, "val")
    expected = _expected(val_out, val_y)
    assert "auroc" not in expected and "val_auroc" not in run.history[-1]
    for name, value in expected.items():
        assert run.history[-1][f"val_{name}"] == pytest.approx(value, abs=TOL), name
    test_out, test_y = _outputs(run, "test")
    for name, value in _expected(test_out, test_y).items():
        assert run.summary["test"][f"test_{name}"] == pytest.approx(value, abs=TOL), name


def test_macro_averages_follow_sklearn_on_absent_classes() -> None:
    """Outputs over 5 classes where class 4 never occurs and class 3 is in the targets but never predicted, and
    class 2 is predicted but never true: sklearn's macro averages (over labels in y_true or y_pred) and balanced
    accuracy (over classes in y_true) decide which classes count; per-class values are sklearn's too."""
    rng = np.random.default_rng(1)
    y = rng.choice([0, 1, 3], size=300, p=[0.6, 0.3, 0.1])
    logits = rng.normal(size=(300, 5))
    logits[:, 3] -= 10  # never predicted
    logits[:, 4] -= 10  # neither true nor predicted
    logits[np.arange(300), y] += 1.0
    out = torch.tensor(logits, dtype=torch.float32)
    pred = out.argmax(1).numpy()
    assert 2 in pred and 3 not in pred and 3 in y
    got = task_metrics(out, torch.tensor(y), "classification", per_class=True)
    for name, value in _expected(out, y).items():
        assert got[name] == pytest.approx(value, abs=TOL), name
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(5), zero_division=0)
    assert got["per_class"]["precision"] == pytest.approx(p.tolist(), abs=TOL)
    assert got["per_class"]["recall"] == pytest.approx(r.tolist(), abs=TOL)
    assert got["per_class"]["f1"] == pytest.approx(f.tolist(), abs=TOL)
    assert got["per_class"]["support"] == s.tolist()


def test_auroc_with_ties_and_one_class() -> None:
    """AUROC counts tied scores as sklearn does; with one class in the targets it is left out (undefined)."""
    score = torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, -1.0, 1.0, 0.0]).reshape(-1, 1)
    y = torch.tensor([0, 1, 0, 1, 1, 0, 1, 1])
    assert task_metrics(score, y, "classification")["auroc"] == pytest.approx(
        roc_auc_score(y.numpy(), score.reshape(-1).numpy()), abs=TOL)
    assert "auroc" not in task_metrics(score, torch.ones(8, dtype=torch.long), "classification")


def test_tune_metric_val_f1_is_maximized(tmp_path: Path) -> None:
    """tune.metric=val_f1 (refused before: no run reported it) drives a study, maximized by direction auto; the
    best trial's value is the best epoch's val_f1 of its run."""
    from gradwise.tune.command import tune

    config = tmp_path / "tune.yaml"
    config.write_text("data: {dataset: iris}\nmodel: {name: mlp}\ntrain: {epochs: 2, progress: none}\n"
                      "doctor: {enabled: false}\n"
                      "tune:\n  metric: val_f1\n  trials: 2\n  sampler: random\n"
                      "  space:\n    optim.lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n")
    assert tune(config, out=tmp_path / "study") == 0
    import optuna

    study = optuna.load_study(study_name="run", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study" / "study.journal"))))
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trial = study.best_trial
    rows = [json.loads(line) for line in
            (Path(trial.user_attrs["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert trial.value == pytest.approx(max(r["val_f1"] for r in rows))

def test_summary_has_per_class_test_metrics(tmp_path: Path) -> None:
    """summary.json's test_per_class: sklearn's per-class precision, recall, F1 and support on the test split."""
    out = tmp_path / "iris"
    run = gradwise.train(None, ["data.dataset=iris", "model.name=mlp", "train.epochs=3", "train.progress=none",
                                "doctor.enabled=false", f"out={out}"])
    test_out, test_y = _outputs(run, "test")
    p, r, f, s = precision_recall_fscore_support(test_y, test_out.argmax(1).numpy(), labels=range(3),
                                                 zero_division=0)
    per_class = json.loads((out / "summary.json").read_text())["test_per_class"]
    assert per_class["precision"] == pytest.approx(p.tolist(), abs=TOL)
    assert per_class["recall"] == pytest.approx(r.tolist(), abs=TOL)
    assert per_class["f1"] == pytest.approx(f.tolist(), abs=TOL)
    assert per_class["support"] == s.tolist()
    assert all(isinstance(v, float) for v in run.summary["test"].values())  # crossval/tune read floats there


@pytest.mark.parametrize("monitor", ["val_f1", "val_auroc", "val_balanced_accuracy"])
def test_early_stopping_monitors_the_new_metrics_maximized(tmp_path: Path, monitor: str) -> None:
    """train.early_stopping.monitor=val_f1 / val_auroc / val_balanced_accuracy: accepted, and mode auto keeps the
    highest value as best (best.pt is that epoch)."""
    run = gradwise.train(None, ["data.dataset=breast_cancer", "model.name=mlp", "train.epochs=4",
                                f"train.early_stopping.monitor={monitor}", "train.progress=none",
                                "doctor.enabled=false", f"out={tmp_path / monitor}"])
    best = run.summary["best"]
    values = [row[monitor] for row in run.history]
    assert best["monitor"] == monitor and best["value"] == pytest.approx(max(values))
    assert values.index(max(values)) + 1 == best["epoch"]


def test_val_auroc_on_more_than_two_classes_is_refused_at_epoch_one(tmp_path: Path) -> None:
    from gradwise.errors import ConfigError

    with pytest.raises(ConfigError, match="val_auroc"):
        gradwise.train(None, ["data.dataset=iris", "model.name=mlp", "train.epochs=2", "train.progress=none",
                              "train.early_stopping.monitor=val_auroc", f"out={tmp_path / 'multi'}"])

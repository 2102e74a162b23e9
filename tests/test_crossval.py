"""k-fold cross-validation end to end: one normal run per fold, cv_summary.json, the CLI's mean ± std table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradwise
from gradwise.config import validate_config

IRIS_ROWS = 150


def iris_config(out: Path, folds: int = 5, epochs: int = 3) -> gradwise.RunConfig:
    return validate_config({"name": "iris-cv", "out": str(out), "data": {"dataset": "iris", "folds": folds},
                            "model": {"name": "mlp", "widths": [16]},
                            "train": {"epochs": epochs, "progress": "none"}, "doctor": {"enabled": False}})


def gw(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradwise.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def cv(tmp_path_factory: pytest.TempPathFactory) -> gradwise.CVResult:
    return gradwise.cross_validate(iris_config(tmp_path_factory.mktemp("cv") / "iris"))


def test_one_normal_run_directory_per_fold(cv: gradwise.CVResult) -> None:
    assert cv.status == "completed" and len(cv.runs) == 5
    for k, run in enumerate(cv.runs):
        d = cv.dir / f"fold-{k}"
        assert run.dir == d and run.status == "completed"
        for name in ("config.yaml", "metrics.jsonl", "summary.json", "preprocess.json", "data_report.json",
                     "checkpoints/last.pt"):
            assert (d / name).exists(), name
        assert json.loads((d / "summary.json").read_text())["status"] == "completed"
        assert json.loads((d / "data_report.json").read_text())["split"]["fold"] == k
        assert gradwise.load_config(d / "config.yaml").data.folds == 5


def test_eval_of_a_fold_directory_uses_that_folds_split(cv: gradwise.CVResult) -> None:
    from gradwise.inference import evaluate_run, load_run

    run = cv.runs[2]
    loaded = load_run(run.dir)
    assert np.array_equal(loaded.bundle.split_indices["val"], run.extras["bundle"].split_indices["val"])
    # evaluating the fold's own validation rows with its stored weights gives its recorded final val loss
    val = evaluate_run(run.dir, split="val")
    best = json.loads((run.dir / "summary.json").read_text())["best"]
    assert val["loss"] == pytest.approx(best["value"], rel=1e-5)


def test_validation_folds_are_disjoint_and_cover_the_pool(cv: gradwise.CVResult) -> None:
    bundles = [run.extras["bundle"] for run in cv.runs]
    test = bundles[0].split_indices["test"]
    assert all(np.array_equal(b.split_indices["test"], test) for b in bundles)  # one test split for all folds
    vals = [b.split_indices["val"] for b in bundles]
    pool = set(range(IRIS_ROWS)) - set(test.tolist())
    assert sum(len(v) for v in vals) == len(pool)
    assert set(np.concatenate(vals).tolist()) == pool
    for b, v in zip(bundles, vals, strict=True):
        train = set(b.split_indices["train"].tolist())
        assert train == pool - set(v.tolist())  # each fold trains on the other folds
        assert len(b.val[0]) == len(v)


def test_cv_summary_mean_and_std_are_numpys(cv: gradwise.CVResult) -> None:
    summary = json.loads((cv.dir / "cv_summary.json").read_text())
    assert summary == json.loads(json.dumps(cv.summary))
    assert summary["folds"] == summary["folds_completed"] == 5 and summary["status"] == "completed"
    names = {"loss", "accuracy", "precision", "recall", "f1", "balanced_accuracy"}  # no AUROC: iris has 3 classes
    assert set(summary["metrics"]) == {f"{split}_{n}" for split in ("val", "test") for n in names}
    for name, stats in summary["metrics"].items():
        values = [fold["metrics"][name] for fold in summary["per_fold"]]
        assert stats["values"] == values
        assert stats["mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert stats["std"] == pytest.approx(np.std(values), abs=1e-12)
        assert cv.metrics[name] == (stats["mean"], stats["std"])
    for run, fold in zip(cv.runs, summary["per_fold"], strict=True):
        assert fold["metrics"]["test_accuracy"] == run.summary["test"]["test_accuracy"]
        # val metrics: the epoch whose weights the run ended with (best, restored by early stopping)
        row = next(r for r in run.history if r["epoch"] == run.summary["best"]["epoch"])
        assert fold["val_epoch"] == row["epoch"] and fold["metrics"]["val_loss"] == row["val_loss"]
    assert "±" in cv.table() and "fold-4" in cv.table()


def test_train_with_folds_needs_a_fold_or_cross_validate(tmp_path: Path) -> None:
    with pytest.raises(gradwise.ConfigError, match="cross_validate"):
        gradwise.train(iris_config(tmp_path / "x"))
    with pytest.raises(gradwise.ConfigError, match="data.folds >= 2"):
        gradwise.cross_validate(iris_config(tmp_path / "y", folds=1))


class FailOnFold(gradwise.Callback):
    def __init__(self, fold: int) -> None:
        self.fold = fold

    def on_fit_start(self, trainer: object) -> None:
        if trainer.run_dir.path.name == f"fold-{self.fold}":  # type: ignore[attr-defined]
            raise RuntimeError("boom")


def test_a_failing_fold_is_recorded_and_resume_finishes(tmp_path: Path) -> None:
    cfg = iris_config(tmp_path / "cv", folds=3, epochs=2)
    with pytest.raises(RuntimeError, match="boom"):
        gradwise.cross_validate(cfg, callbacks=[FailOnFold(1)])
    summary = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())
    assert summary["status"] == "failed" and summary["folds_completed"] == 1 and "boom" in summary["error"]
    assert len(summary["metrics"]["test_accuracy"]["values"]) == 1
    done = gradwise.cross_validate(resume=tmp_path / "cv")
    assert done.status == "completed" and [r.status for r in done.runs] == ["completed"] * 3
    assert done.summary["per_fold"][0]["metrics"] == summary["per_fold"][0]["metrics"]


def test_cli_prints_folds_and_mean_std_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "cv"
    args = ("train", "data.dataset=iris", "model.name=mlp", "model.widths=[16]", "train.epochs=2", "data.folds=3",
            "doctor.enabled=false", "--quiet", "--out", str(out))
    proc = gw(*args)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "cv_summary.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["cv_summary.json", "fold-0", "fold-1", "fold-2"]
    assert "fold-0" in proc.stdout and "fold-2" in proc.stdout
    acc = summary["metrics"]["test_accuracy"]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("test_accuracy"))
    assert line.endswith(f"{acc['mean']:.4f} ± {acc['std']:.4f}")
    assert [f"{v:.4f}" for v in acc["values"]] == line.split()[1:4]

    # the same directory again is refused; --resume finishes an interrupted cross-validation
    again = gw(*args)
    assert again.returncode == 2 and "--resume" in again.stderr
    shutil.rmtree(out / "fold-2")
    (out / "cv_summary.json").unlink()
    resumed = gw("train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads((out / "cv_summary.json").read_text())
    assert after["status"] == "completed" and after["folds_completed"] == 3
    assert after["metrics"]["test_accuracy"]["values"] == acc["values"]  # fold-2 retrained identically
    assert "±" in resumed.stdout

    # one fold's directory alone cannot be resumed as a plain run: it names the way that works
    single = gw("train", "--resume", str(out / "fold-0"), "--quiet")
    assert single.returncode == 2 and "fold-0" in single.stderr

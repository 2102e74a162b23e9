"""The command line end to end on real data: train, eval, predict, lr-find, and the MNIST-1D examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def gw(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradwise.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_default_train_then_eval_and_predict(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = gw("train", "train.epochs=2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "test_accuracy" in proc.stdout and str(out) in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test"]["test_accuracy"] > 0.5

    ev = gw("eval", str(out))
    assert ev.returncode == 0, ev.stderr
    acc = float(next(line.split()[-1] for line in ev.stdout.splitlines() if line.startswith("test_accuracy")))
    assert acc == pytest.approx(summary["test"]["test_accuracy"], abs=1e-6)

    # predict on the test rows of MNIST-1D: the same accuracy as evaluation
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    np.save(tmp_path / "x.npy", d["x_test"])
    pr = gw("predict", str(out), str(tmp_path / "x.npy"), "-o", str(tmp_path / "pred.csv"))
    assert pr.returncode == 0, pr.stderr
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == len(d["y_test"])
    assert (pred["prediction"].to_numpy() == d["y_test"]).mean() == pytest.approx(acc, abs=1e-6)


def test_resume_of_a_completed_run_with_more_epochs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert gw("train", "train.epochs=1", "--quiet", "--out", str(out)).returncode == 0
    proc = gw("train", "--resume", str(out), "train.epochs=2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_lr_find_command(tmp_path: Path) -> None:
    proc = gw("lr-find", "data.dataset=digits", "model.name=mlp", "--plot", str(tmp_path / "lr.png"), "--steps", "40")
    assert proc.returncode == 0, proc.stderr
    lr = float(proc.stdout.split("suggested optim.lr=")[1].split()[0])
    assert 1e-6 < lr < 1.0
    assert (tmp_path / "lr.png").stat().st_size > 1000


def test_eval_errors_are_clear(tmp_path: Path) -> None:
    proc = gw("eval", str(tmp_path))
    assert proc.returncode == 2 and "not a gradwise run directory" in proc.stderr
    proc = gw("train", "--resume", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such run directory" in proc.stderr


@pytest.mark.parametrize(("name", "low", "high"), [("logreg", 0.25, 0.42), ("mlp", 0.66, 1.0), ("cnn", 0.94, 1.0)])
def test_mnist1d_examples_reproduce_the_paper(tmp_path: Path, name: str, low: float, high: float) -> None:
    out = tmp_path / name
    proc = gw("train", str(ROOT / "examples" / f"mnist1d_{name}.yaml"), "--quiet", "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    acc = json.loads((out / "summary.json").read_text())["test"]["test_accuracy"]
    assert low <= acc <= high, acc

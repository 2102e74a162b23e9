"""examples/tabular_csv.yaml end to end through the CLI: a messy CSV is cleaned, trained on, reported, and new
rows (a missing value, a category typed differently) are predicted exactly as evaluation scores them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tabular_csv.yaml"
CSV = ROOT / "examples" / "data" / "customers.csv"
FEATURES = ["tenure_months", "age", "monthly_charges", "support_calls", "plan", "contract", "region",
            "paperless_billing"]
TARGET = "churn"


def gw(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    # the example's data path is relative to the repository root, as in the README
    return subprocess.run([sys.executable, "-m", "gradwise.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tabular") / "run"
    proc = gw("train", str(EXAMPLE), "train.epochs=8", "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "test_accuracy" in proc.stdout
    return out


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # training and eval read the CSV by the config's relative path (predict does not)


def test_committed_csv_is_what_the_script_writes(tmp_path: Path) -> None:
    out = tmp_path / "customers.csv"
    proc = subprocess.run([sys.executable, str(CSV.with_name("make_customers.py")), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == CSV.read_bytes()
    frame = pd.read_csv(CSV)
    assert 1900 <= len(frame) <= 2100
    assert frame[["age", "monthly_charges", "contract", "region"]].isna().any().all()
    assert frame.duplicated().sum() > 0
    assert frame["plan"].nunique() > 3  # "Basic", " basic", "BASIC " ... before cleaning


def test_example_beats_the_majority_class(trained: Path, in_root: None) -> None:
    from gradwise.inference import load_run

    summary = json.loads((trained / "summary.json").read_text())
    assert summary["status"] == "completed"
    y_test = load_run(trained).bundle.test[1].numpy()
    majority = np.bincount(y_test).max() / len(y_test)
    assert 0.6 < majority < 0.75
    assert summary["test"]["test_accuracy"] >= majority + 0.07, (summary["test"], majority)


def test_cleaning_report_is_in_the_run_directory(trained: Path) -> None:
    report = json.loads((trained / "data_report.json").read_text())
    frame = pd.read_csv(CSV)[[*FEATURES, TARGET]]
    unique = frame.drop_duplicates()
    assert report["duplicates_dropped"] == len(frame) - len(unique) > 0
    # missing values: found in the de-duplicated rows, imputed (median / most frequent) in every split
    assert report["missing"]["strategy"] == "median"
    expected = {c: int(n) for c, n in unique[FEATURES].isna().sum().items() if n}
    assert set(expected) == {"age", "monthly_charges", "contract", "region"}
    assert report["missing"]["imputed"] == expected
    # outliers: the age-999 and charges-in-cents rows are clipped to fences fitted on the training rows
    out = report["outliers"]
    assert out["method"] == "iqr_clip" and out["threshold"] == 3.0
    clipped = {c: sum(split.get(c, 0) for split in out["clipped"].values()) for c in ("age", "monthly_charges")}
    assert clipped == {"age": int((unique["age"] == 999).sum()),
                       "monthly_charges": int((unique["monthly_charges"] > 1000).sum())}
    assert clipped["age"] > 0 and clipped["monthly_charges"] > 0
    lo, hi = out["bounds"]["age"]
    assert lo < 18 and 85 < hi < 999
    assert report["categories_cleaned"]["plan"] > 0
    assert report["rows"]["train"] + report["rows"]["val"] + report["rows"]["test"] == len(unique)


@torch.inference_mode()
def test_predict_new_rows_equals_evaluation(trained: Path, in_root: None, tmp_path: Path) -> None:
    from gradwise.data.preprocess import Preprocessor
    from gradwise.inference import evaluate_run, load_run

    run = load_run(trained)
    test_rows = run.bundle.split_indices["test"]  # rows of the CSV in the run's test split
    x_test, y_test = run.bundle.test
    expected = run.preprocessor.decode_labels(run.model(x_test).argmax(1))  # what evaluation scores
    acc = evaluate_run(trained, "test")["accuracy"]
    truth = run.preprocessor.decode_labels(y_test)
    assert np.mean(np.array(expected) == np.array(truth)) == pytest.approx(acc, abs=1e-6)

    # the same rows as new data: no target column, one category retyped, one numeric value missing
    csv = pd.read_csv(CSV)
    new = csv.loc[test_rows].drop(columns=[TARGET]).reset_index(drop=True)
    assert list(truth) == csv.loc[test_rows, TARGET].tolist()
    retyped = int(np.flatnonzero(new["plan"].notna() & new["contract"].notna())[0])
    new.loc[retyped, "plan"] = f"  {new.loc[retyped, 'plan'].strip().upper()} "
    new.loc[retyped, "contract"] = new.loc[retyped, "contract"].strip().lower()
    gap = int(np.flatnonzero(new["monthly_charges"].notna() & (new.index != retyped))[0])
    new.loc[gap, "monthly_charges"] = np.nan
    new.to_csv(tmp_path / "new.csv", index=False)

    proc = gw("predict", str(trained), str(tmp_path / "new.csv"), "-o", str(tmp_path / "pred.csv"))
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["customer_id", "prediction", "prob_no", "prob_yes"]  # the id column is kept
    assert len(pred) == len(new)
    assert set(pred["prediction"]) <= {"no", "yes"}  # decoded back to the CSV's class names
    np.testing.assert_allclose(pred["prob_no"] + pred["prob_yes"], 1.0, atol=1e-6)

    others = np.arange(len(new)) != gap
    assert pred["prediction"][others].tolist() == np.array(expected)[others].tolist()
    # the row with the missing value: as if the cell held the training median (what the stored imputer learned)
    pre = Preprocessor.load(trained / "preprocess.json")
    median = float(pre.num_imputer.statistics_[pre.numeric.index("monthly_charges")])
    filled = new.iloc[[gap]].assign(monthly_charges=median)
    want = pre.decode_labels(run.model(pre.transform_frame(filled)).argmax(1))
    assert pred["prediction"][gap] == want[0]
    assert median == pytest.approx(float(csv.loc[run.bundle.split_indices["train"], "monthly_charges"].median()))


@pytest.mark.slow
def test_full_example_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = gw("train", str(EXAMPLE), "--quiet", "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"]["test_accuracy"] >= 0.78, summary["test"]

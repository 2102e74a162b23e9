"""The data_report.json figures and transformed tensors of a few table configs, for tests/test_data_scale.py.

tests/fixtures/data_report_reference.json was written by this script from the code BEFORE the data-preparation
speed-ups of issue 19 (commit gw-data, "fixture: data_report reference"), so the test checks that the faster code
reports and produces exactly what the slower one did. Rewrite it only for an intended change of the figures:

    PYTHONPATH=src python tests/data_report_reference.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "examples" / "data" / "customers.csv"
REFERENCE = ROOT / "tests" / "fixtures" / "data_report_reference.json"
FEATURES = ["tenure_months", "age", "monthly_charges", "support_calls", "plan", "contract", "region",
            "paperless_billing"]

# (name, overrides): the churn example and variants that reach every cleaning branch of the table path
CASES: list[tuple[str, list[str]]] = [
    ("example", []),
    ("drop_mostfrequent", ["data.outliers=iqr_drop", "data.missing=most_frequent", "data.clean_categories=false"]),
    ("zscore_dropmissing", ["data.outliers=zscore_clip", "data.missing=drop", "data.drop_duplicates=false",
                            "data.options.max_categories=3", "data.scale=robust"]),
    ("messy_regression", ["data.target=monthly_charges", "data.missing=mean", "data.scale=minmax",
                          "data.features=[tenure_months,age,support_calls,plan,contract,region,flag]"]),
    ("messy_bools", ["data.one_hot=false", "data.features=[tenure_months,age,flag,calls_text]",
                     "data.missing=median"]),
    ("messy_classes", ["data.target=label", "data.features=[tenure_months,age,plan,flag,calls_text]",
                       "data.missing=median", "data.subsample=0.8", "data.balance=oversample"]),
]


def messy_csv(path: Path) -> Path:
    """The churn CSV plus columns that reach the other branches: a bool column, a numbers-with-a-few-text column,
    a label with stray spaces and a missing cell, seeded so the file is the same on every machine."""
    frame = pd.read_csv(CHURN)
    rng = np.random.default_rng(19)
    n = len(frame)
    frame["flag"] = rng.random(n) < 0.3
    calls = frame["support_calls"].astype(object)
    calls[rng.random(n) < 0.03] = "?"
    frame["calls_text"] = calls
    frame["label"] = np.where(frame["churn"] == "yes", " yes", "no ")
    frame.loc[rng.random(n) < 0.01, "label"] = np.nan
    frame.to_csv(path, index=False)
    return path


def tensor_figures(x: Any) -> dict[str, Any]:
    a = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return {"shape": list(np.asarray(x).shape), "col_sum": a.sum(axis=0).tolist(),
            "col_sumsq": (a * a).sum(axis=0).tolist(), "dtype": str(np.asarray(x).dtype)}


def case_figures(name: str, overrides: list[str], messy: Path) -> dict[str, Any]:
    import warnings

    from gradwise.config import load_config
    from gradwise.data import load_data

    base = ["data.dataset=" + str(messy if name.startswith("messy") else CHURN), "data.target=churn",
            "data.features=[" + ",".join(FEATURES) + "]", "data.val_fraction=0.15", "data.test_fraction=0.2",
            "data.drop_duplicates=true", "data.missing=median", "data.outliers=iqr_clip",
            "data.outlier_threshold=3.0", "data.clean_categories=true", "data.one_hot=true", "data.scale=standard"]
    cfg = load_config(None, [*base, *overrides])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = load_data(cfg.data, cfg.seed, loss=cfg.loss.name)
    report = json.loads(json.dumps(bundle.report))
    report["dataset"] = "<dataset>"  # the file's stem: tmp names differ between runs
    splits = {s: None if getattr(bundle, s) is None else
              {"x": tensor_figures(getattr(bundle, s)[0]), "y": tensor_figures(getattr(bundle, s)[1])}
              for s in ("train", "val", "test")}
    pre = bundle.preprocessor.describe() if hasattr(bundle.preprocessor, "describe") else None
    return {"report": report, "splits": splits, "feature_names": bundle.feature_names,
            "preprocessor": json.loads(json.dumps(pre)),
            "indices": {s: (None if v is None else hashlib.sha256(np.asarray(v, dtype=np.int64).tobytes()).hexdigest())
                        for s, v in bundle.split_indices.items()}}


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        messy = messy_csv(Path(tmp) / "messy.csv")
        out = {name: case_figures(name, overrides, messy) for name, overrides in CASES}
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

"""preprocess.json: the fitted preprocessing is stored as data only and loads back bit-identical.

A loaded preprocessor transforms with numpy equivalents of the fitted sklearn objects; these tests compare them with
the in-memory (sklearn) preprocessor on the example CSV, on digits and on synthetic tables that reach every branch
(each scaler and imputer, infrequent and unseen categories, all-missing columns, booleans, targets, arrays).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gradwise
from gradwise.data.preprocess import LabelCodec, Preprocessor
from gradwise.errors import CheckpointError, DataError
from gradwise.inference import load_run, predict

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "examples" / "data" / "customers.csv"
EXAMPLE = ROOT / "examples" / "tabular_csv.yaml"
FAST = ["train.epochs=1", "train.progress=none", "doctor.enabled=false"]


def bits_equal(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> bool:
    """Same dtype, shape and bytes (so NaN == NaN and -0.0 != 0.0): bit-identical, not just close."""
    x, y = np.ascontiguousarray(np.asarray(a)), np.ascontiguousarray(np.asarray(b))
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def roundtrip(pre: Preprocessor, tmp_path: Path) -> Preprocessor:
    return Preprocessor.load(pre.save(tmp_path / "preprocess.json"))


@pytest.fixture(scope="module")
def customers_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, gradwise.Run]:
    out = tmp_path_factory.mktemp("customers") / "run"
    run = gradwise.train(EXAMPLE, [f"data.dataset={CSV}", *FAST, f"out={out}"])
    return out, run


@torch.inference_mode()
def test_customers_predictions_bit_identical(customers_run: tuple[Path, gradwise.Run], single_thread: None) -> None:
    out, run = customers_run
    assert (out / "preprocess.json").exists()
    assert not list(out.rglob("*.pkl")), "a run directory holds no pickle"
    memory = run.extras["bundle"].preprocessor  # fitted with sklearn in this process
    loaded = load_run(out)
    assert type(loaded.preprocessor.scaler).__name__ == "_FittedScaler"  # really the file's, not a refit

    rows = pd.read_csv(CSV).drop(columns=["churn"])
    # messy new rows: retyped categories, an unseen category, missing numbers and categories
    rows.loc[0, "plan"] = "  BASIC "
    rows.loc[1, "region"] = "atlantis"
    rows.loc[2, ["age", "contract"]] = np.nan
    x = memory.transform_frame(rows)
    assert bits_equal(x, loaded.preprocessor.transform_frame(rows))
    probs = loaded.model(x).softmax(-1).numpy()
    frame = predict(out, rows)
    names = memory.class_names
    assert names is not None
    assert bits_equal(frame[[f"prob_{n}" for n in names]].to_numpy(), probs)
    assert frame["prediction"].tolist() == memory.decode_labels(probs.argmax(1))
    assert loaded.preprocessor.describe() == memory.describe()


def test_digits_predictions_bit_identical(tmp_path: Path, single_thread: None) -> None:
    from sklearn.datasets import load_digits

    out = tmp_path / "run"
    run = gradwise.train(None, ["data.dataset=digits", "model.name=mlp", *FAST, f"out={out}"])
    with torch.inference_mode():
        check_digits(out, run, load_digits().data[::7])


def check_digits(out: Path, run: gradwise.Run, x_new: np.ndarray) -> None:
    memory = run.extras["bundle"].preprocessor
    loaded = load_run(out)
    x = memory.transform_array(x_new)
    assert bits_equal(x, loaded.preprocessor.transform_array(x_new))
    frame = predict(out, x_new)
    probs = loaded.model(x).softmax(-1).numpy()
    assert bits_equal(frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy(), probs)


def synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "a": rng.normal(3, 2, n), "b": rng.exponential(5, n), "empty": np.full(n, np.nan),
        "flag": rng.choice([True, False], n),
        "color": rng.choice(["red", "green", "blue", "teal", "mauve"], n, p=[0.4, 0.3, 0.2, 0.07, 0.03]),
        "size": rng.choice(["S", "M", "L"], n), "nothing": np.full(n, np.nan, dtype=object),
    })
    frame.loc[rng.random(n) < 0.1, "a"] = np.nan
    frame.loc[rng.random(n) < 0.1, "color"] = np.nan
    return frame


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # sklearn's statistics of the all-missing column (NaN)
@pytest.mark.parametrize("scale", ["standard", "minmax", "robust", "none"])
@pytest.mark.parametrize("missing", ["median", "mean", "most_frequent", "none"])
@pytest.mark.parametrize("max_categories", [None, 3])
def test_table_roundtrip_bit_identical(tmp_path: Path, scale: str, missing: str, max_categories: int | None) -> None:
    train, new = synthetic(300, 0), synthetic(200, 1)
    new.loc[:5, "color"] = "ultraviolet"  # unseen: the infrequent column when there is one, else all zeros
    numeric, boolean, categorical = ["a", "b", "empty"], ["flag"], ["color", "size", "nothing"]
    pre = Preprocessor("table", "classification").fit_table(
        train, numeric, categorical, boolean, scale=scale, missing=missing, clean_categories=True,
        clip_bounds={"b": (0.5, 12.0)}, max_categories=max_categories)
    pre.labels = LabelCodec.fit([1, 2.0, 3])
    back = roundtrip(pre, tmp_path)
    for frame in (train, new):
        assert bits_equal(pre.table_matrix(frame), back.table_matrix(frame))  # NaN where missing=none, bit for bit
    assert back.feature_names == pre.feature_names and back.describe() == pre.describe()
    assert back.decode_labels([0, 2]) == ["1", "3"] and back.labels is not None and back.labels.classes == [1, 2, 3]


@pytest.mark.parametrize("scale", ["standard", "minmax", "robust", "none"])
@pytest.mark.parametrize("shape", [(40,), (3, 20), (3, 6, 5)])
def test_array_and_target_roundtrip_bit_identical(tmp_path: Path, scale: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(10, 3, (50, *shape))
    pre = Preprocessor("image" if len(shape) == 3 else "signal", "regression").fit_array(x, scale, 1 / 255)
    pre.fit_target(rng.normal(0, 4, (50, 2)))
    back = roundtrip(pre, tmp_path)
    new = rng.normal(10, 3, (7, *shape))
    assert bits_equal(pre.transform_array(new), back.transform_array(new))
    y = torch.randn(7, 2)
    assert bits_equal(pre.inverse_target(y), back.inverse_target(y))


def test_file_is_plain_json(customers_run: tuple[Path, gradwise.Run]) -> None:
    text = (customers_run[0] / "preprocess.json").read_text()
    blob = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert blob["format"] == "gradwise-preprocessor" and blob["version"] == 2
    assert blob["table"]["scaler"]["method"] == "standard"


def write_json(path: Path, blob: object) -> Path:
    path.write_text(json.dumps(blob))
    return path


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda b: "{not json", "not readable JSON"),
    (lambda b: {"hello": "world"}, "not a gradwise preprocessor file"),
    (lambda b: {**b, "version": 99}, "Upgrade gradwise"),
    (lambda b: {**b, "kind": "python"}, "kind should be"),
    (lambda b: {**b, "table": {**b["table"], "scaler": {"method": "standard", "arrays": {
        "mean_": {"dtype": "float64", "shape": [2], "data": [0, 1]},
        "scale_": {"dtype": "float64", "shape": [2], "data": [1, 1]}}}}}, "to match the columns"),
    (lambda b: {**b, "table": {**b["table"], "encoder": None}}, "one-hot encoder"),
    (lambda b: {**b, "table": {**b["table"], "num_imputer": {"strategy": "median", "statistics": {
        "dtype": "object", "shape": [4], "data": [0, 0, 0, 0]}}}}, "dtype should be"),
    (lambda b: {**b, "labels": {"classes": ["no", "yes"], "names": ["no"]}}, "one per class"),
])
def test_damaged_file_is_a_clear_error(customers_run: tuple[Path, gradwise.Run], tmp_path: Path, damage: object,
                                       expected: str) -> None:
    good = json.loads((customers_run[0] / "preprocess.json").read_text())
    bad = damage(good)  # type: ignore[operator]
    path = tmp_path / "preprocess.json"
    path.write_text(bad) if isinstance(bad, str) else write_json(path, bad)
    with pytest.raises(CheckpointError) as info:
        Preprocessor.load(path)
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message
    assert "Retrain" in message or "retrain" in message or "Upgrade" in message


def test_older_pickle_is_refused_without_unpickling_it(tmp_path: Path) -> None:
    (tmp_path / "preprocess.pkl").write_bytes(pickle.dumps({"state": "an older gradwise's file"}))
    (tmp_path / "renamed.json").write_bytes((tmp_path / "preprocess.pkl").read_bytes())
    for target in (tmp_path, tmp_path / "preprocess.pkl", tmp_path / "renamed.json"):
        with pytest.raises(CheckpointError, match="written by an older gradwise") as info:
            Preprocessor.load(target)
        assert "gradwise train --resume" in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        Preprocessor.load(tmp_path / "elsewhere" / "preprocess.json")

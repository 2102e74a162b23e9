"""`gradwise predict` needs only the run directory, and says clearly what it makes of odd new rows.

* A run trained on a relative CSV path predicts from another working directory and after the CSV moved: the model's
  widths are stored in preprocess.json and the data is never read. `eval` needs the data (it rebuilds the split):
  it finds the file where training read it, or says in one line which file is missing and that predict does not
  need it. A checkpoint from another model is one CheckpointError line.
* Unreadable inputs (empty, header-only, binary, object/text arrays, missing columns) exit 2 with one line naming
  the file. Rows the model can take but training never saw are predicted with one warning line per column, with
  counts (unseen categories, values far outside the training range, missing/infinite values filled as training
  filled them); what cannot be predicted (missing values a run without data.missing cannot fill, values that
  overflow) is refused by file and column. Columns the model did not use (an id, the target) are kept in the output.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gradwise
from gradwise.errors import DataError
from gradwise.inference import predict

FAST = ["train.epochs=2", "train.progress=none", "doctor.enabled=false", "model.name=mlp", "model.widths=[16]"]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`gradwise ARGS` in this process: (exit status, stdout, stderr)."""
    from gradwise.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": [f"c{seed}-{i}" for i in range(n)], "x": rng.normal(size=n).round(4),
                          "z": rng.normal(size=n).round(4), "city": rng.choice(["Paris", "Berlin", "Rome"], n)})
    frame["y"] = np.where(frame["x"] + frame["z"] + (frame["city"] == "Rome") > 0.3, "yes", "no")
    return frame


def train_in(workdir: Path, csv_name: str, *overrides: str) -> Path:
    """Train from `workdir` on the relative path `csv_name` (as a user in that folder would)."""
    old = Path.cwd()
    os.chdir(workdir)
    try:
        run = gradwise.train(None, [f"data.dataset={csv_name}", "data.target=y", "data.features=[x, z, city]",
                                    *FAST, "out=run", *overrides])
    finally:
        os.chdir(old)
    assert run.status == "completed"
    return workdir / "run"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two runs on one CSV: without a missing-value policy (data.missing=none) and with data.missing=median."""
    out = {}
    for missing in ("none", "median"):
        work = tmp_path_factory.mktemp(f"train-{missing}")
        table().to_csv(work / "train.csv", index=False)
        out[missing] = train_in(work, "train.csv", f"data.missing={missing}")
    return out


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# --------------------------------------------------------------------------------------------- item 9: no data


def test_predict_needs_only_the_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "project"
    work.mkdir()
    table().to_csv(work / "data.csv", index=False)
    run = train_in(work, "data.csv")  # data.dataset is the relative path 'data.csv'
    rows = table(20, seed=5)
    rows.drop(columns=["y"]).to_csv(tmp_path / "rows.csv", index=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # another working directory, the training file still in place: eval finds it where training read it
    code, out, err = cli(capsys, "eval", str(run))
    assert code == 0 and "test_accuracy" in out, err
    before = predict(run, tmp_path / "rows.csv")
    shutil.move(work / "data.csv", tmp_path / "moved.csv")
    code, out, err = cli(capsys, "predict", str(run), str(tmp_path / "rows.csv"))
    assert code == 0, err
    pred = pd.read_csv(pd.io.common.StringIO(out))
    assert len(pred) == 20 and set(pred["prediction"]) <= {"yes", "no"}
    assert pred["id"].tolist() == rows["id"].tolist()  # the id column is kept beside the predictions
    assert pred["prediction"].tolist() == before["prediction"].tolist()
    np.testing.assert_allclose(pred["prob_yes"], before["prob_yes"], rtol=1e-6)  # (CSV text: 8 digits)
    # eval cannot work without the data: one line naming the file, and that predict does not need it
    code, out, err = cli(capsys, "eval", str(run))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "data.dataset = 'data.csv'" in err and str(work / "data.csv") in err and "gradwise predict" in err


def test_model_widths_are_stored_with_the_run(runs: dict[str, Path]) -> None:
    import json

    blob = json.loads((runs["none"] / "preprocess.json").read_text())
    # 3 features + one-hot of 3 cities; two classes -> two logits
    assert blob["model"] == {"input_shape": [5], "n_outputs": 2}
    assert blob["source"]["dataset"].endswith("train.csv") and Path(blob["source"]["dataset"]).is_absolute()


def test_foreign_checkpoint_is_one_line(runs: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["none"], run)
    for ckpt in (run / "checkpoints").glob("*.pt"):  # best.pt is the one used when early stopping restored it
        torch.save({"model": {"layer.weight": torch.zeros(3, 3)}}, ckpt)
    rows = write(tmp_path / "rows.csv", "x,z,city\n0.1,0.2,Paris\n")
    code, _, err = cli(capsys, "predict", str(run), str(rows))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is from another model" in err and "checkpoints" in err


# --------------------------------------------------------------------------------------------- item 11: bad input


BAD_INPUTS = {
    "empty.csv": (b"", "is empty"),
    "header.csv": (b"x,z,city\n", "has a header but no rows"),
    "binary.csv": (bytes(range(256)) * 4, "is not text"),
    "latin1.csv": ("x,z,city\n0.1,0.2,Zürich\n".encode("latin-1"), "is not text in the training file's encoding"),
    "nocolumns.csv": (b"a,b\n1,2\n", "lacks the feature column(s) 'x', 'z', 'city'"),
    "text.csv": (b"x,z,city\n0.1,abc,Paris\n", "column 'z' is numeric in training but holds text ('abc' in row 1"),
    "binary.npy": (b"\x93NUMPY garbage", "could not be read"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_unreadable_inputs_are_one_line_naming_the_file(runs: dict[str, Path], tmp_path: Path, name: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    content, says = BAD_INPUTS[name]
    path = write(tmp_path / name, content)
    code, out, err = cli(capsys, "predict", str(runs["none"]), str(path))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert str(path) in err and says in err, err


@pytest.mark.parametrize(("array", "says"), [
    (np.array([{"a": 1}, None], dtype=object), "could not be read"),  # an object array: a pickle, never loaded
    (np.array([["a", "b", "c"]]), "give numbers"),
    (np.zeros((0, 3)), "holds no rows"),
    (np.zeros((2, 7)), "expected a 2-D array with 3 columns"),
])
def test_bad_arrays_are_one_line_naming_the_file(runs: dict[str, Path], tmp_path: Path, array: np.ndarray, says: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rows.npy"
    np.save(path, array, allow_pickle=True)
    code, _, err = cli(capsys, "predict", str(runs["none"]), str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(path) in err and says in err, err


def new_rows() -> pd.DataFrame:
    return pd.DataFrame({"id": [f"n{i}" for i in range(10)], "x": [0.1 * i for i in range(10)],
                         "z": [-0.1 * i for i in range(10)], "city": ["Paris", "Rome"] * 5})


def test_unseen_categories_are_warned_with_counts(runs: dict[str, Path]) -> None:
    rows = new_rows()
    rows.loc[[1, 4, 7], "city"] = ["Oslo", "Oslo", "Lima"]
    notes: list[str] = []
    pred = predict(runs["none"], rows, on_warning=notes.append)
    assert notes == ["the input rows: column 'city': 3 of 10 rows have categories not seen in training (e.g. "
                     "'Oslo'); they are encoded as all-zero"]
    assert len(pred) == 10 and pred["prediction"].notna().all()


def test_far_outside_the_training_range_is_warned(runs: dict[str, Path]) -> None:
    rows = new_rows()
    rows.loc[[2, 3], "x"] = [1e6, -40.0]
    notes: list[str] = []
    predict(runs["none"], rows, on_warning=notes.append)
    assert len(notes) == 1 and "column 'x': 2 of 10 rows are outside the training range [" in notes[0]
    assert "by more than its width (e.g. 1e+06)" in notes[0]
    # a value inside the range, or a little beyond, is no news
    assert predict(runs["none"], new_rows(), on_warning=notes.append) is not None and len(notes) == 1


def test_missing_and_infinite_values_follow_the_training_policy(runs: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    rows = new_rows()
    rows["x"] = rows["x"].astype(object)
    rows.loc[[0, 5], "x"] = [np.inf, np.nan]
    rows.to_csv(tmp_path / "gaps.csv", index=False)
    # data.missing=median in training: filled with the training median, said once for the column
    notes: list[str] = []
    pred = predict(runs["median"], tmp_path / "gaps.csv", on_warning=notes.append)
    assert len(pred) == 10 and len(notes) == 1
    assert f"input file '{tmp_path / 'gaps.csv'}': column 'x': 2 of 10 rows are missing or infinite; filled with" \
           in notes[0] and "(the training median), as in training" in notes[0]
    # data.missing=none in training: the model never learnt to fill them, so they are refused (rows named)
    code, _, err = cli(capsys, "predict", str(runs["none"]), str(tmp_path / "gaps.csv"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "column 'x' has 2 of 10 rows missing or infinite (rows 1, 6)" in err and "data.missing=median" in err


def test_values_that_overflow_are_refused(runs: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rows = new_rows()
    rows.loc[3, "z"] = 1e300
    rows.to_csv(tmp_path / "huge.csv", index=False)
    code, _, err = cli(capsys, "predict", str(runs["median"]), str(tmp_path / "huge.csv"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "column 'z' holds values too large to use (1 of 10 rows, e.g. 1e+300 in row 4)" in err
    assert str(tmp_path / "huge.csv") in err


def test_columns_the_model_did_not_use_are_kept(runs: dict[str, Path]) -> None:
    rows = new_rows().assign(y="yes", prediction="mine")  # the target, and a name the output uses
    pred = predict(runs["none"], rows)
    assert list(pred.columns) == ["id", "y", "input_prediction", "prediction", "prob_no", "prob_yes"]
    assert pred["id"].tolist() == rows["id"].tolist() and (pred["input_prediction"] == "mine").all()
    # an index other than 0..n-1 does not misalign the kept columns
    shuffled = new_rows().iloc[::-1]
    pred = predict(runs["none"], shuffled)
    assert pred["id"].tolist() == shuffled["id"].tolist() and pred["prediction"].notna().all()


def test_api_warns_with_a_data_warning_by_default(runs: dict[str, Path]) -> None:
    from gradwise.data.preprocess import DataWarning

    rows = new_rows()
    rows.loc[0, "city"] = "Oslo"
    with pytest.warns(DataWarning, match="column 'city': 1 of 10 rows have categories not seen"):
        predict(runs["none"], rows)


def test_array_inputs_for_a_table_run(runs: dict[str, Path]) -> None:
    rows = new_rows()
    with pytest.raises(DataError, match="expected a 2-D array with 3 columns"):
        predict(runs["none"], np.zeros((2, 2)))
    pred = predict(runs["none"], rows[["x", "z", "city"]].to_numpy())
    assert list(pred.columns) == ["prediction", "prob_no", "prob_yes"] and len(pred) == 10

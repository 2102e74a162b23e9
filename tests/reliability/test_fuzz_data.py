"""Property-based fuzzing of data files through the CLI: `gradwise train` on random CSVs, `gradwise predict` on random
new rows. Either it works, or it exits 2 with one `error:` line that names the file, the column or the data key;
never a traceback, never exit 1 ("unexpected ... a gradwise bug").

Generated CSVs have random column names (unicode, empty, duplicated, quotes and separators in them), columns of
numbers (NaN, ±inf, 1e300, -0.0, denormals), integers, text, numbers with a few text cells, booleans, empty and
constant columns, 0-40 rows, and are written as UTF-8, Latin-1, UTF-16 or with stray bytes (NUL, invalid UTF-8);
some files are empty, header-only or random bytes. Predict inputs are built around the training columns (so most
reach the model) with the same kinds of values, missing or extra columns, and .npy arrays of any dtype and shape.

CI runs a bounded number of examples (12 trainings, 60 predictions); `GRADWISE_FUZZ_EXAMPLES=1000 pytest
tests/reliability/test_fuzz_data.py` runs the nightly size (that many of each). A failing example is printed by
Hypothesis as the CSV bytes and the arguments, ready to replay.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

NIGHTLY = os.environ.get("GRADWISE_FUZZ_EXAMPLES")
TRAIN_EXAMPLES = int(NIGHTLY or "12")
PREDICT_EXAMPLES = int(NIGHTLY or "60")
FAST = ["train.epochs=1", "train.progress=none", "doctor.enabled=false", "model.name=mlp", "model.widths=[4]",
        "train.batch_size=16"]


def run_cli(*args: str) -> tuple[int, str, str, list[str]]:
    """`gradwise ARGS` in this process: (exit status, stdout, stderr, warning messages)."""
    from gradwise.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
    return int(code or 0), out.getvalue(), err.getvalue(), [str(w.message) for w in caught]


def outcome(command: str, code: int, err: str) -> None:
    """A Hypothesis event per example (`--hypothesis-show-statistics` counts them): completed, or which error."""
    if code != 2:
        event(f"{command}: exit {code}")
        return
    text = re.sub(r"'[^']*'|\([^)]*\)|\[[^]]*\]|[-+]?\d[\d.e+-]*", "_", err.removeprefix("error: "))
    event(f"{command}: exit 2, {' '.join(text.split()[:9])}")


def check_outcome(code: int, err: str, path: Path, columns: list[str], words: tuple[str, ...] = ()) -> None:
    assert "Traceback" not in err and "error: unexpected" not in err, err  # (the CLI's line for a gradwise bug)
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        # the message names what to fix: the file, a column, or the data key that chose it
        named = str(path) in err or path.name in err or "data." in err or any(
            f"'{c}'" in err for c in columns if c) or any(w in err for w in words)
        assert named, err


# --------------------------------------------------------------------------------------------- generated values

SPECIAL = [math.nan, math.inf, -math.inf, 1e300, -1e300, 5e-324, -0.0, 0.0, 1e38, 3.5e38]
numbers = st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from(SPECIAL), st.integers(-10**6, 10**6))
words = st.one_of(st.sampled_from(["a", "b", "Paris", " paris", "PARIS ", "?", "n/a", "NA", "", "true", "False",
                                   "1e5", "0x1F", "inf", "-", "é", "日本", "a,b", 'say "hi"', "line\nbreak", "\t"]),
                  st.text(max_size=8))
column_names = st.one_of(st.sampled_from(["x", "y", "id", "", " ", "x", "Unnamed: 0", "a,b", '"q"', "名前", "é",
                                          "1", "nan", "target", "prediction"]), st.text(max_size=10))
COLUMN_KINDS = ("float", "int", "text", "mostly_numbers", "bool", "empty", "constant", "labels")


@st.composite
def column_values(draw: st.DrawFn, kind: str, n: int) -> list[Any]:
    if kind == "float":
        return draw(st.lists(st.one_of(numbers, st.just(math.nan)), min_size=n, max_size=n))
    if kind == "int":
        return draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))
    if kind == "text":
        return draw(st.lists(words, min_size=n, max_size=n))
    if kind == "mostly_numbers":
        values: list[Any] = draw(st.lists(st.floats(-100, 100, allow_nan=False), min_size=n, max_size=n))
        for i in draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=3)) if n else []:
            values[i] = draw(words)
        return values
    if kind == "bool":
        return draw(st.lists(st.sampled_from([True, False, "yes", "no", ""]), min_size=n, max_size=n))
    if kind == "empty":
        return [""] * n
    if kind == "constant":
        return [draw(st.one_of(numbers, words))] * n
    return draw(st.lists(st.sampled_from(["cat", "dog", "bird", 1, 2, 2.5, ""]), min_size=n, max_size=n))


def cell(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def render(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[cell(v) for v in row] for row in rows])
    return buf.getvalue()


@st.composite
def encoded(draw: st.DrawFn, text: str) -> bytes:
    how = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8", "latin-1", "utf-16", "nul", "bad_utf8",
                                "bom"]))
    if how == "latin-1":
        return text.encode("latin-1", errors="replace")
    if how == "utf-16":
        return text.encode("utf-16")
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    raw = bytearray(text.encode())
    at = draw(st.integers(0, len(raw)))
    raw[at:at] = b"\x00" if how == "nul" else (b"\xff\xfe\xc3" if how == "bad_utf8" else b"")
    return bytes(raw)


@st.composite
def train_files(draw: st.DrawFn) -> tuple[bytes, list[str], str, list[str]]:
    """(file bytes, column names, target column, extra overrides)."""
    n = draw(st.integers(0, 40))
    n_cols = draw(st.integers(1, 5))
    header = [draw(column_names) for _ in range(n_cols)]
    kinds = [draw(st.sampled_from(COLUMN_KINDS)) for _ in range(n_cols)]
    target = draw(st.sampled_from(header + ["y"]))
    if "y" not in header and draw(st.booleans()):  # most files get a usable label column
        header.append("y")
        kinds.append(draw(st.sampled_from(["labels", "float", "int", "text"])))
        target = "y"
    cols = [draw(column_values(k, n)) for k in kinds]
    text = render(header, [list(r) for r in zip(*cols, strict=True)] if n else [])
    shape = draw(st.sampled_from(["csv"] * 8 + ["empty", "header_only", "junk"]))
    if shape == "empty":
        data = b""
    elif shape == "header_only":
        data = render(header, []).encode()
    elif shape == "junk":
        data = draw(st.binary(min_size=1, max_size=200))
    else:
        data = draw(encoded(text))
    extra = draw(st.lists(st.sampled_from(["data.missing=median", "data.missing=drop", "data.missing=most_frequent",
                                           "data.outliers=iqr_clip", "data.outliers=zscore_drop", "data.scale=none",
                                           "data.scale=robust", "data.options.task=classification",
                                           "data.options.task=regression", "data.one_hot=false",
                                           "data.drop_duplicates=true", "data.test_fraction=0",
                                           "data.val_fraction=0"]), max_size=3, unique=True))
    return data, header, target, extra


def yaml_text(value: str) -> str:
    """A column name as an override value that YAML reads back as that string."""
    return "'" + value.replace("'", "''") + "'"


@settings(max_examples=TRAIN_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(spec=train_files())
def test_train_on_any_csv_completes_or_is_one_clear_line(spec: tuple[bytes, list[str], str, list[str]]) -> None:
    data, header, target, extra = spec
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        path.write_bytes(data)
        code, _, err, _ = run_cli("train", f"data.dataset={path}", f"data.target={yaml_text(target)}", *FAST, *extra,
                                  f"out={Path(tmp) / 'run'}")
        outcome("train", code, err)
        check_outcome(code, err, path, [*header, target], ("target", "class", "split", "rows"))
        if code == 0:
            assert (Path(tmp) / "run" / "preprocess.json").exists()


# --------------------------------------------------------------------------------------------- predict


def training_table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=n).round(3), "z": rng.normal(size=n).round(3),
                          "city": rng.choice(["Paris", "Berlin", "Rome"], n)})
    frame["y"] = np.where(frame["x"] - frame["z"] > 0, "up", "down")
    return frame


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import gradwise

    out = {}
    for missing in ("none", "median"):
        work = tmp_path_factory.mktemp(f"fuzz-{missing}")
        training_table().to_csv(work / "train.csv", index=False)
        gradwise.train(None, [f"data.dataset={work / 'train.csv'}", "data.target=y", f"data.missing={missing}",
                              "data.outliers=iqr_clip" if missing == "median" else "data.outliers=none", *FAST,
                              f"out={work / 'run'}"])
        out[missing] = work / "run"
    return out


@st.composite
def predict_files(draw: st.DrawFn) -> tuple[str, bytes | np.ndarray, list[str]]:
    """(suffix, content, column names): CSVs around the training columns x, z, city; or .npy arrays."""
    if draw(st.integers(0, 5)) == 0:
        kind = draw(st.sampled_from(["f8", "i4", "U3", "O", "c8", "b1", "f4"]))
        shape = draw(st.sampled_from([(0, 3), (2, 3), (3,), (2, 2), (1, 3, 1), (), (4, 3)]))
        values = draw(st.lists(st.one_of(numbers, words), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        arr = np.empty(shape, dtype=object)
        if arr.size:
            arr.reshape(-1)[:] = values
        with contextlib.suppress(ValueError, TypeError, OverflowError), np.errstate(all="ignore"):
            return ".npy", arr.astype(kind), []
        return ".npy", arr, []
    n = draw(st.integers(0, 12))
    header = [c for c in ["x", "z", "city"] if draw(st.integers(0, 9)) > 0]  # now and then one is missing
    header += draw(st.lists(column_names, max_size=3))  # ids, duplicates, odd names
    header = draw(st.permutations(header))
    kinds = {"x": "float", "z": "float", "city": "text"}
    # mostly the kind training saw, now and then another (text in a numeric column, an empty or constant column)
    cols = [draw(column_values(draw(st.sampled_from([kinds.get(c, "text")] * 6 + ["mostly_numbers", "float", "text",
                                                                                 "empty", "constant"])), n))
            for c in header]
    text = render(list(header), [list(r) for r in zip(*cols, strict=True)] if cols and n else [])
    shape = draw(st.sampled_from(["csv"] * 10 + ["empty", "junk"]))
    if shape == "empty":
        return ".csv", b"", list(header)
    if shape == "junk":
        return ".csv", draw(st.binary(min_size=1, max_size=200)), list(header)
    return ".csv", (text.encode() if draw(st.integers(0, 2)) else draw(encoded(text))), list(header)


@settings(max_examples=PREDICT_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                                 HealthCheck.function_scoped_fixture])
@given(spec=predict_files(), which=st.sampled_from(["none", "median"]))
def test_predict_any_input_is_predictions_or_one_clear_line(runs: dict[str, Path],
                                                            spec: tuple[str, bytes | np.ndarray, list[str]],
                                                            which: str) -> None:
    suffix, content, header = spec
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"rows{suffix}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            np.save(path, content, allow_pickle=True)
        code, out, err, notes = run_cli("predict", str(runs[which]), str(path))
        outcome("predict", code, err)
        event(f"predict: {len(notes)} warning(s)" if notes else "predict: no warning")
        check_outcome(code, err, path, header)
        if code == 2:
            assert str(path) in err, err  # predict errors always name the input file
        for note in notes:  # warnings: one line each, naming the file and the column
            assert "\n" not in note and str(path) in note and "column '" in note, note
        if code == 0:
            pred = pd.read_csv(io.StringIO(out))
            assert "prediction" in pred.columns and pred["prediction"].notna().all()
            assert {"prob_up", "prob_down"} <= set(pred.columns)

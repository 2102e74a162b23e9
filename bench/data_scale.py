"""Table preparation at scale: gradwise's data loading against a hand-written pandas + scikit-learn pipeline.

A synthetic CSV of 20 numeric and 3 categorical columns plus a 3-class text label (missing cells, categories typed
" Red"/"RED", outliers, ~0.5% duplicate rows) is prepared into float32 tensors by each contender, each in its own
fresh process (one thread everywhere), timed from the first read to the last tensor, after the imports both pay:

* **full**: the hand-written side strips and lower-cases the categories, drops duplicate rows, encodes the labels,
  splits 70/10/20 stratified, clips to IQR fences (3·IQR) fitted on train, imputes medians / most frequent values,
  standardizes and one-hot encodes (ColumnTransformer), and makes tensors; gradwise does the same through
  `gradwise.data.load_data` (what `gradwise train` calls) with data.drop_duplicates=true, missing=median,
  outliers=iqr_clip, outlier_threshold=3, clean_categories=true, which also fills data_report.json.
* **bare**: no category cleaning, duplicates or clipping on either side (imputation stays: the file has gaps).

Peak RSS is the process's high-water mark (imports included, ~the same for both: shown too).

    OMP_NUM_THREADS=1 python bench/data_scale.py [--rows 5000 100000 300000 1000000] [--repeats 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUMERIC = [f"x{i:02d}" for i in range(20)]
CATEGORICAL = ["color", "city", "tier"]
TARGET = "label"
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}


# --------------------------------------------------------------------------------------------- the data


def make_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """A seeded synthetic table; written once per size and reused."""
    import pandas as pd

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    distinct = rows - rows // 200  # ~0.5% of the rows are exact copies of others
    data: dict[str, np.ndarray] = {}
    for i, c in enumerate(NUMERIC):
        col = rng.normal(i, 1 + i % 5, distinct).round(4)
        col[rng.random(distinct) < 0.02] = np.nan
        col[rng.random(distinct) < 0.002] *= 1000  # gross errors for the clipping to catch
        data[c] = col
    choices = {"color": ["Red", "Green", "Blue", "Black", "White", "Yellow"],
               "city": [f"City{i}" for i in range(40)], "tier": ["Basic", "Standard", "Premium"]}
    for c, values in choices.items():
        picked = np.array(values, dtype=object)[rng.integers(len(values), size=distinct)]
        messy = rng.random(distinct)
        picked = np.where(messy < 0.1, np.char.upper(picked.astype(str)).astype(object), picked)
        picked = np.where((messy >= 0.1) & (messy < 0.15), np.char.add(" ", picked.astype(str)).astype(object), picked)
        picked[rng.random(distinct) < 0.02] = None
        data[c] = picked
    score = data["x00"] + 0.5 * np.nan_to_num(data["x03"]) + (data["tier"] == "Premium")
    data[TARGET] = np.where(score > 1.0, "high", np.where(score > -0.5, "mid", "low")).astype(object)
    frame = pd.DataFrame(data)
    frame = pd.concat([frame, frame.iloc[rng.integers(distinct, size=rows - distinct)]], ignore_index=True)
    frame = frame.iloc[rng.permutation(rows)]
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.rename(path)
    return path


# --------------------------------------------------------------------------------------------- contenders


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hand_written(path: Path, full: bool) -> tuple[int, ...]:
    """The pipeline a data scientist writes by hand with pandas + scikit-learn."""
    import pandas as pd
    import torch
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df = pd.read_csv(path)
    df[TARGET] = df[TARGET].str.strip()
    if full:
        for c in CATEGORICAL:
            df[c] = df[c].str.strip().str.lower()
        df = df.drop_duplicates()
    y, classes = pd.factorize(df[TARGET], sort=True)
    x = df[NUMERIC + CATEGORICAL]
    del df
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.125, stratify=y_rest,
                                                      random_state=0)
    del x, x_rest, y_rest
    if full:
        q1, q3 = x_train[NUMERIC].quantile(0.25), x_train[NUMERIC].quantile(0.75)
        lo, hi = q1 - 3 * (q3 - q1), q3 + 3 * (q3 - q1)
        x_train, x_val, x_test = (part.assign(**part[NUMERIC].clip(lo, hi, axis=1))
                                  for part in (x_train, x_val, x_test))
    columns = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)), CATEGORICAL)])
    train = torch.from_numpy(columns.fit_transform(x_train).astype(np.float32)), torch.from_numpy(y_train)
    val = torch.from_numpy(columns.transform(x_val).astype(np.float32)), torch.from_numpy(y_val)
    test = torch.from_numpy(columns.transform(x_test).astype(np.float32)), torch.from_numpy(y_test)
    del x_train, x_val, x_test
    return tuple(train[0].shape) + (len(val[0]), len(test[0]), len(classes))


def gradwise_loading(path: Path, full: bool) -> tuple[int, ...]:
    """What `gradwise train` does before its first step: `gradwise.data.load_data` on the run's data config."""
    from gradwise.config import load_config
    from gradwise.data import load_data

    cleaning = (["data.drop_duplicates=true", "data.outliers=iqr_clip", "data.outlier_threshold=3",
                 "data.clean_categories=true"] if full else
                ["data.drop_duplicates=false", "data.outliers=none", "data.clean_categories=false"])
    cfg = load_config(None, [f"data.dataset={path}", f"data.target={TARGET}", "data.val_fraction=0.1",
                             "data.test_fraction=0.2", "data.missing=median", "data.scale=standard", *cleaning])
    bundle = load_data(cfg.data, cfg.seed, loss=cfg.loss.name)
    assert bundle.val is not None and bundle.test is not None
    return tuple(bundle.train[0].shape) + (len(bundle.val[0]), len(bundle.test[0]), int(bundle.n_classes or 0))


def child(name: str, path: Path) -> None:
    """One contender in this (fresh) process: imports first (not timed), then the preparation; one JSON line."""
    import pandas  # noqa: F401
    import sklearn.compose  # noqa: F401
    import sklearn.impute  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.preprocessing  # noqa: F401
    import torch

    torch.set_num_threads(1)
    try:
        import pyarrow

        pyarrow.set_cpu_count(1)
        pyarrow.set_io_thread_count(1)
    except ImportError:
        pass
    side, variant = name.split("-")
    if side == "gradwise":
        import gradwise.data.prepare  # noqa: F401
    base = _rss_mb()
    t0 = time.perf_counter()
    shape = (hand_written if side == "hand" else gradwise_loading)(path, variant == "full")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "base_mb": base, "shape": shape}))


def measure(name: str, path: Path) -> dict:
    env = {**os.environ, **THREAD_ENV}
    proc = subprocess.run([sys.executable, __file__, "--child", name, str(path)], capture_output=True, text=True,
                          env=env, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{name} on {path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[5000, 100_000, 300_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "gradwise-data-scale",
                    help="where the CSVs are written once and reused")
    ap.add_argument("--variants", nargs="+", default=["full", "bare"], choices=["full", "bare"])
    ap.add_argument("--child", nargs=2, metavar=("NAME", "CSV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return

    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.repeats} repeats, medians",
          flush=True)
    table = []
    for rows in args.rows:
        path = make_csv(args.dir / f"table_{rows}.csv", rows)
        for variant in args.variants:
            got: dict[str, list[dict]] = {"hand": [], "gradwise": []}
            for _ in range(args.repeats):  # interleaved: a load change hits both contenders alike
                for side in got:
                    got[side].append(measure(f"{side}-{variant}", path))
            h, g = ({k: statistics.median(r[k] for r in got[side]) for k in ("seconds", "peak_mb", "base_mb")}
                    for side in ("hand", "gradwise"))
            shapes = {side: got[side][0]["shape"] for side in got}
            table.append((rows, variant, h, g, shapes))
            print(f"{rows:>9,} {variant:<4}  hand {h['seconds']:7.2f} s {h['peak_mb']:7.0f} MB   gradwise "
                  f"{g['seconds']:7.2f} s {g['peak_mb']:7.0f} MB   shapes (train rows, features, val, test, classes) "
                  f"{shapes['hand']} / {shapes['gradwise']}", flush=True)

    print("\n| rows | work | hand-written pandas + scikit-learn | gradwise `load_data` | time ratio "
          "| peak RSS hand / gradwise (after imports: hand / gradwise) | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for rows, variant, h, g, _ in table:
        print(f"| {rows:,} | {variant} | {h['seconds']:.2f} s | {g['seconds']:.2f} s | "
              f"{g['seconds'] / h['seconds']:.2f}x | {h['peak_mb']:,.0f} / {g['peak_mb']:,.0f} MB "
              f"({h['base_mb']:,.0f} / {g['base_mb']:,.0f}) | {g['peak_mb'] / h['peak_mb']:.2f}x |")


if __name__ == "__main__":
    main()

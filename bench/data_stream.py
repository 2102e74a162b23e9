"""Streamed Parquet training (data.stream) at scale: one epoch of a small MLP, rows/s and peak RSS.

The table is bench/data_scale.py's synthetic one (20 numeric + 3 categorical columns with gaps, messy category
spellings and gross outliers, a 3-class label), written as a folder of Parquet files of 500,000 rows in row groups
of 100,000, generated file by file so that writing it never holds the table either. Each contender runs in its own
fresh process (one thread everywhere), after the imports both pay:

* **gradwise-stream**: `gradwise.train` with data.stream=true (median imputation, IQR clipping at 3·IQR, category
  cleaning, standard scaling, one-hot; 1% val + 1% test by hash), one epoch; the time includes the statistics
  passes and the test/val evaluation; rows/s is the training rows over the epoch's training steps' time.
* **hand-stream**: what a careful user writes by hand with pyarrow + numpy + torch: one pass for means/stds and
  category sets (pyarrow.compute; no medians, no clipping: less work), then the epoch read with
  `dataset.to_batches`, shuffled within each record batch, standardized, one-hot encoded and trained on.
* **gradwise-memory** (only up to --memory-max rows): the same run with data.stream=false, to show what streaming
  saves: the in-memory path's peak RSS grows with the rows, the streamed one stays flat.

    OMP_NUM_THREADS=1 python bench/data_stream.py [--rows 1000000 3000000] [--dir DIR] [--memory-max 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUMERIC = [f"x{i:02d}" for i in range(20)]
CATEGORICAL = ["color", "city", "tier"]
TARGET = "label"
FILE_ROWS = 500_000
ROW_GROUP = 100_000
BATCH = 256
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}


def make_parquet_dir(folder: Path, rows: int, seed: int = 0) -> Path:
    """The synthetic table of bench/data_scale.py, FILE_ROWS rows per file, each file generated on its own."""
    import pandas as pd

    done = folder / "_complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    choices = {"color": ["Red", "Green", "Blue", "Black", "White", "Yellow"],
               "city": [f"City{i}" for i in range(40)], "tier": ["Basic", "Standard", "Premium"]}
    for k, start in enumerate(range(0, rows, FILE_ROWS)):
        n = min(FILE_ROWS, rows - start)
        rng = np.random.default_rng([seed, k])
        data: dict[str, np.ndarray] = {}
        for i, c in enumerate(NUMERIC):
            col = rng.normal(i, 1 + i % 5, n).round(4)
            col[rng.random(n) < 0.02] = np.nan
            col[rng.random(n) < 0.002] *= 1000
            data[c] = col
        for c, values in choices.items():
            picked = np.array(values, dtype=object)[rng.integers(len(values), size=n)]
            messy = rng.random(n)
            picked = np.where(messy < 0.1, np.char.upper(picked.astype(str)).astype(object), picked)
            picked = np.where((messy >= 0.1) & (messy < 0.15), np.char.add(" ", picked.astype(str)).astype(object),
                              picked)
            picked[rng.random(n) < 0.02] = None
            data[c] = picked
        score = data["x00"] + 0.5 * np.nan_to_num(data["x03"]) + (data["tier"] == "Premium")
        data[TARGET] = np.where(score > 1.0, "high", np.where(score > -0.5, "mid", "low")).astype(object)
        pd.DataFrame(data).to_parquet(folder / f"part-{k:04d}.parquet", row_group_size=ROW_GROUP, index=False)
    done.write_text("ok")
    return folder


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def gradwise_run(folder: Path, stream: bool) -> dict:
    import gradwise
    from gradwise.train.callbacks import Callback

    class Steps(Callback):
        """The training steps' own time: from the epoch's start to its last step (no evaluation)."""

        def on_epoch_start(self, trainer: object) -> None:
            self.start = self.end = time.perf_counter()

        def on_batch_end(self, trainer: object) -> None:
            self.end = time.perf_counter()

    steps = Steps()
    out = Path(tempfile.mkdtemp(prefix="gw-stream-bench-"))
    run = gradwise.train(None, [
        f"data.dataset={folder}", f"data.target={TARGET}", f"data.stream={str(stream).lower()}",
        "data.val_fraction=0.01", "data.test_fraction=0.01", "data.missing=median", "data.outliers=iqr_clip",
        "data.outlier_threshold=3", "data.clean_categories=true", "data.scale=standard", "model.name=mlp",
        "model.widths=[64]", "train.epochs=1", f"train.batch_size={BATCH}", "train.progress=none",
        "train.threads=1", "doctor.enabled=false", "train.early_stopping.enabled=false", "optim.lr=0.003",
        "schedule.name=constant", f"out={out}"], callbacks=[steps])
    rows = json.loads((out / "data_report.json").read_text())["rows"]
    return {"train_rows": rows["train"], "epoch_seconds": steps.end - steps.start,
            "test_accuracy": run.summary["test"]["test_accuracy"]}


def hand_stream(folder: Path) -> dict:
    """A hand-written streamed epoch: pyarrow.dataset batches, numpy transforms, a torch MLP."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import torch
    from torch import nn

    dataset = ds.dataset(str(folder), format="parquet")
    columns = [*NUMERIC, *CATEGORICAL, TARGET]
    sums, squares, counts = np.zeros(len(NUMERIC)), np.zeros(len(NUMERIC)), np.zeros(len(NUMERIC))
    cats: list[set[str]] = [set() for _ in CATEGORICAL]
    for batch in dataset.to_batches(columns=columns, batch_size=65_536):
        for j, c in enumerate(NUMERIC):
            col = batch.column(c)
            sums[j] += pc.sum(col).as_py() or 0.0
            squares[j] += pc.sum(pc.multiply(col, col)).as_py() or 0.0
            counts[j] += len(col) - col.null_count
        for j, c in enumerate(CATEGORICAL):
            cats[j].update(v for v in pc.unique(pc.utf8_lower(pc.utf8_trim_whitespace(batch.column(c)))).to_pylist()
                           if v is not None)
    mean = sums / counts
    std = np.sqrt(squares / counts - mean ** 2)
    levels = [sorted(s) for s in cats]
    width = len(NUMERIC) + sum(len(v) for v in levels)
    model = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    classes = {"high": 0, "low": 1, "mid": 2}
    rng = np.random.default_rng(0)
    rows = 0
    t0 = time.perf_counter()
    for batch in dataset.to_batches(columns=columns, batch_size=65_536):
        frame = batch.to_pandas()
        x = np.empty((len(frame), width), dtype=np.float32)
        num = frame[NUMERIC].to_numpy(dtype=np.float64, na_value=np.nan)
        num = np.where(np.isnan(num), mean, num)
        x[:, :len(NUMERIC)] = (num - mean) / std
        at = len(NUMERIC)
        x[:, at:] = 0
        for c, lv in zip(CATEGORICAL, levels, strict=True):
            codes = pd_codes(frame[c], lv)
            ok = codes >= 0
            x[np.flatnonzero(ok), at + codes[ok]] = 1.0
            at += len(lv)
        y = frame[TARGET].map(classes).to_numpy(dtype=np.int64)
        perm = rng.permutation(len(x))
        xt, yt = torch.from_numpy(x[perm]), torch.from_numpy(y[perm])
        for i in range(0, len(xt), BATCH):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[i:i + BATCH]), yt[i:i + BATCH])
            loss.backward()
            opt.step()
        rows += len(x)
    return {"train_rows": rows, "epoch_seconds": time.perf_counter() - t0, "test_accuracy": float("nan")}


def pd_codes(values: object, levels: list[str]) -> np.ndarray:
    import pandas as pd

    cleaned = pd.Series(values).str.strip().str.lower()
    return pd.Categorical(cleaned, categories=levels).codes.astype(np.int64)


def child(name: str, folder: Path) -> None:
    import pandas  # noqa: F401
    import pyarrow
    import pyarrow.dataset  # noqa: F401
    import torch
    import torchmetrics  # noqa: F401  (gradwise's first evaluation imports it: not timed on either side)

    import gradwise.api  # noqa: F401
    import gradwise.data.prepare  # noqa: F401

    torch.set_num_threads(1)
    pyarrow.set_cpu_count(1)
    pyarrow.set_io_thread_count(1)
    base = _rss_mb()
    t0 = time.perf_counter()
    got = hand_stream(folder) if name == "hand-stream" else gradwise_run(folder, name == "gradwise-stream")
    got.update(seconds=time.perf_counter() - t0, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               base_mb=base)
    print(json.dumps(got))


def measure(name: str, folder: Path) -> dict:
    env = {**os.environ, **THREAD_ENV}
    proc = subprocess.run([sys.executable, __file__, "--child", name, str(folder)], capture_output=True, text=True,
                          env=env, timeout=7200)
    if proc.returncode != 0:
        raise SystemExit(f"{name} on {folder} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "gradwise-data-stream")
    ap.add_argument("--memory-max", type=int, default=1_000_000, help="largest table also loaded in memory")
    ap.add_argument("--contenders", nargs="+", default=["gradwise-stream", "hand-stream", "gradwise-memory"])
    ap.add_argument("--child", nargs=2, metavar=("NAME", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    table = []
    for rows in args.rows:
        folder = make_parquet_dir(args.dir / f"rows_{rows}", rows)
        for name in args.contenders:
            if name == "gradwise-memory" and rows > args.memory_max:
                continue
            got = measure(name, folder)
            table.append((rows, name, got))
            print(f"{rows:>11,} {name:<16} {got['seconds']:8.1f} s in all, epoch {got['epoch_seconds']:7.1f} s "
                  f"({got['train_rows'] / got['epoch_seconds']:,.0f} rows/s), peak RSS {got['peak_mb']:,.0f} MB "
                  f"(after imports {got['base_mb']:,.0f}), test accuracy {got['test_accuracy']:.3f}", flush=True)
    print("\n| rows | contender | time in all | training epoch | rows/s | peak RSS (after imports) |")
    print("|---|---|---|---|---|---|")
    for rows, name, got in table:
        print(f"| {rows:,} | {name} | {got['seconds']:.1f} s | {got['epoch_seconds']:.1f} s | "
              f"{got['train_rows'] / got['epoch_seconds']:,.0f} | {got['peak_mb']:,.0f} MB ({got['base_mb']:,.0f}) |")


if __name__ == "__main__":
    main()

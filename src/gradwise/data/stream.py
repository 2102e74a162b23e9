"""`data.stream`: train on a Parquet table (a file, or a folder of files) without holding it in memory.

The table is read through `pyarrow.dataset` one row group (a "unit") at a time:

1. **Statistics pass** (two when data.outliers is set: fences first, then the statistics of the clipped values).
   Each unit is cleaned as the in-memory path cleans a frame (labels stripped, rows without a target dropped,
   categories cleaned, data.missing=drop), its rows are assigned to train/val/test by a stable hash (of
   data.split_key, else of the row's position in the dataset; or the whole file, for data.val_file/test_file), and
   the training rows feed exact running statistics: counts, means and variances (Chan's parallel merge), min/max,
   category counts, label counts. Medians, quantiles and numeric most-frequent values come from a bottom-k reservoir
   sample of SAMPLE_ROWS training rows (exact when the training rows fit in it; data_report.json says which).
   The fitted `Preprocessor` is then the one `Preprocessor.fit_table` would fit on the same rows (the same
   numbers within float tolerance), so every chunk is transformed by the very code the in-memory path uses.
2. **Validation/test** rows are kept (as the cleaned frames of the units) and turned into in-memory tensors once
   the preprocessing is fitted: they are fixed by construction and usually small.
3. **Training batches**: each epoch shuffles the order of the row groups (seeded by (seed, epoch)), reads them in
   windows of at least data.shuffle_buffer training rows and permutes the rows of each window (seeded by
   (seed, epoch, window)). The epoch's row order is a function of (seed, epoch) and the table alone, and the row
   count of every unit is known from the statistics pass, so a resumed epoch starts at its batch by reading only
   the window that holds it: the stream position in the checkpoint is (epoch, batch in epoch).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gradwise.config import DataConfig
from gradwise.data import cleaning
from gradwise.data.loaders import batch_part, block, global_batches
from gradwise.data.preprocess import (
    MISSING_CATEGORY,
    LabelCodec,
    Preprocessor,
    _FittedImputer,
    _FittedOneHot,
    _FittedScaler,
    names,
    quote,
)
from gradwise.errors import DataError

SAMPLE_ROWS = 100_000  # reservoir of training rows for medians / quantiles / numeric modes
EVAL_MEMORY_BYTES = 1 << 30  # validation + test features held in memory at most (float32)
PREFETCH = True  # read the next window on a thread while the model trains (see StreamLoader.__iter__)
AUTO_SHARE = 8  # data.stream=auto streams a table whose uncompressed size is over 1/AUTO_SHARE of available memory
PARQUET_SUFFIXES = (".parquet", ".pq")
TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")
EPS = np.finfo(np.float64).eps


# --------------------------------------------------------------------------------------------- when to stream


def _pyarrow_dataset(role: str, path: str) -> Any:
    try:
        import pyarrow.dataset as ds
    except ImportError:
        raise DataError(f"{role} = '{path}' is a Parquet file, which needs pyarrow: pip install "
                        "'gradwise[parquet]' (or pip install pyarrow), or save it as CSV.") from None
    return ds


def parquet_files(path: Path) -> list[Path]:
    """The Parquet files of a path: itself, or the .parquet/.pq files under a folder (sorted); [] if none."""
    if path.is_file():
        return [path] if path.suffix.lower() in PARQUET_SUFFIXES else []
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES)
    return []


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable; the free pages where /proc is absent)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def uncompressed_bytes(files: list[Path]) -> int:
    """The table's size once decoded, from the Parquet footers (no data is read)."""
    import pyarrow.parquet as pq

    total = 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        total += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return total


def stream_reason(cfg: DataConfig) -> str | None:
    """Why this data config streams (a phrase for the run output and data_report.json), or None: in memory."""
    if cfg.stream is False:
        return None
    path = Path(cfg.dataset.strip()).expanduser()
    files = parquet_files(path) if path.exists() else []
    if not files:
        if cfg.stream is True:
            kind = "a folder without .parquet files" if path.is_dir() else (
                f"a {path.suffix or 'built-in'} dataset" if path.exists() else "a built-in dataset")
            raise DataError(f"data.stream=true streams Parquet tables only, but data.dataset = '{cfg.dataset}' is "
                            f"{kind}. Convert a CSV with pandas (pd.read_csv(path).to_parquet('data.parquet')) or "
                            "pyarrow.csv, then point data.dataset at the .parquet file or folder; or set "
                            "data.stream=auto/false.")
        return None
    _pyarrow_dataset("data.dataset", cfg.dataset)
    if cfg.text:
        if cfg.stream is True:
            raise DataError(f"data.stream=true cannot stream the free-text columns data.text = {cfg.text} (their "
                            "tokenizer is trained on the whole column). Set data.stream=false to load the table in "
                            "memory, or leave the text columns out.")
        return None
    if cfg.stream is True:
        return "data.stream=true"
    size, free = uncompressed_bytes(files), available_memory()
    if size * AUTO_SHARE > free:
        return (f"data.stream=auto: the table is {size / 2**20:,.0f} MB uncompressed, over 1/{AUTO_SHARE} of the "
                f"{free / 2**20:,.0f} MB of memory available")
    return None


# --------------------------------------------------------------------------------------------- the table


@dataclass
class Unit:
    """One row group of one file: what the stream reads at a time."""

    fragment: Any  # a pyarrow ParquetFileFragment of that single row group
    file: str
    row_group: int
    rows: int  # rows in the file (before cleaning)
    offset: int  # position of its first row in the dataset (files in path order)
    split: int | None  # the split of every row (a val/test file); None: hashed per row
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])  # rows per split after cleaning


def open_units(path: str, role: str, split: int | None) -> tuple[list[Unit], list[str]]:
    """The row groups of a Parquet file or folder, in path order, and the table's column names."""
    ds = _pyarrow_dataset(role, path)
    files = parquet_files(Path(path).expanduser())
    if not files:
        raise DataError(f"{role} = '{path}' holds no .parquet files; streaming reads Parquet only.")
    try:
        dataset = ds.dataset([str(f) for f in files], format="parquet")
    except Exception as exc:  # pyarrow's errors: ArrowInvalid, OSError, ...
        raise DataError(f"{role} = '{path}' could not be opened as Parquet: {' '.join(str(exc).split())[:300]}. "
                        "Check the files (every file of a folder must have the same columns).") from None
    units: list[Unit] = []
    offset = 0
    for frag in sorted(dataset.get_fragments(), key=lambda f: f.path):
        for i, piece in enumerate(frag.split_by_row_group()):
            n = int(piece.row_groups[0].num_rows)
            units.append(Unit(piece, frag.path, i, n, offset, split))
            offset += n
    if offset == 0:
        raise DataError(f"{role} = '{path}' has no rows. Give Parquet files with at least one row.")
    return units, [str(c) for c in dataset.schema.names]


def read_unit(unit: Unit, columns: list[str]) -> pd.DataFrame:
    try:
        table = unit.fragment.to_table(columns=columns)
    except Exception as exc:
        raise DataError(f"'{unit.file}' (row group {unit.row_group}) could not be read: "
                        f"{' '.join(str(exc).split())[:300]}. Check the file: every file of the dataset must have the "
                        f"columns {names(columns)}.") from None
    frame = table.to_pandas()
    frame.index = pd.RangeIndex(unit.offset, unit.offset + len(frame))  # rows are named by dataset position
    return frame


def hash_buckets(values: np.ndarray) -> np.ndarray:
    """A stable number in [0, 1) per value (pandas' fixed-key SipHash): the same value, the same bucket, always."""
    h = pd.util.hash_array(values, categorize=True)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# --------------------------------------------------------------------------------------------- statistics


class Moments:
    """Per-column count, mean, M2, min, max of float64 blocks, merged chunk by chunk (Chan et al.), NaN ignored."""

    def __init__(self, k: int) -> None:
        self.n = np.zeros(k, dtype=np.float64)
        self.mean = np.zeros(k, dtype=np.float64)
        self.m2 = np.zeros(k, dtype=np.float64)
        self.min = np.full(k, np.inf)
        self.max = np.full(k, -np.inf)

    def add(self, block: np.ndarray) -> None:
        if not len(block):
            return
        ok = ~np.isnan(block)
        n = ok.sum(axis=0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, np.nansum(block, axis=0) / np.maximum(n, 1), 0.0)
            m2 = np.nansum((block - mean) ** 2, axis=0)
        self.merge(n, mean, m2)
        self.min = np.fmin(self.min, np.where(ok, block, np.inf).min(axis=0))
        self.max = np.fmax(self.max, np.where(ok, block, -np.inf).max(axis=0))

    def merge(self, n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> None:
        total = self.n + n
        safe = np.maximum(total, 1)
        delta = mean - self.mean
        self.mean = np.where(total > 0, self.mean + delta * n / safe, 0.0)
        self.m2 = self.m2 + m2 + delta ** 2 * self.n * n / safe
        self.n = total

    @property
    def var(self) -> np.ndarray:
        return self.m2 / np.maximum(self.n, 1)


class Reservoir:
    """A uniform sample of at most `size` training rows (bottom-k of seeded random keys), deterministic per seed."""

    def __init__(self, size: int, k: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.keys = np.zeros(0)
        self.rows = np.zeros((0, k))
        self.seen = 0

    def add(self, block: np.ndarray, unit: int) -> None:
        self.seen += len(block)
        if not len(block):
            return
        keys = np.random.default_rng([self.seed, unit, 7]).random(len(block))
        self.keys = np.concatenate([self.keys, keys])
        self.rows = np.concatenate([self.rows, block])
        if len(self.keys) > self.size:
            keep = np.argpartition(self.keys, self.size)[:self.size]
            self.keys, self.rows = self.keys[keep], self.rows[keep]

    @property
    def exact(self) -> bool:
        return self.seen <= self.size


@dataclass
class Kinds:
    """The table's columns, sorted as the in-memory path sorts them (decided on the first row group)."""

    features: list[str]
    targets: list[str]
    numeric: list[str]
    categorical: list[str]  # one-hot encoded (bool columns too, when data.one_hot=true)
    boolean: list[str]  # bool columns cast to 0/1 (data.one_hot=false)
    coerce: list[str]


class Gathered:
    """What one statistics pass found: row counts, label values, training statistics, the kept val/test rows."""

    def __init__(self, kinds: Kinds, seed: int, keep_eval: bool) -> None:
        k = len(kinds.numeric)
        self.moments = Moments(k)
        self.sample = Reservoir(SAMPLE_ROWS, k, seed)
        self.cat_counts: list[dict[str, int]] = [{} for _ in kinds.categorical]
        self.missing: dict[str, int] = {}  # training cells missing, per column
        self.labels: dict[Any, int] = {}  # raw training label value -> rows
        self.distinct: dict[Any, None] = {}  # label values of every split (the codec is fitted on those)
        self.target_moments = Moments(len(kinds.targets))
        self.dropped = {"target_missing": 0, "missing": 0, "outliers": 0}
        self.cat_changes: dict[str, int] = {}
        self.outside: dict[str, int] = {}  # training values beyond the clip fences, per column
        self.flags = [set() for _ in kinds.numeric]  # distinct chunk min/max values while no chunk has a third
        self.spread = np.zeros(k, dtype=bool)  # a column holds at least three distinct values
        self.keep_eval = keep_eval
        self.kept: dict[int, list[pd.DataFrame]] = {VAL: [], TEST: []}
        self.kept_bytes = 0
        self.target_dtype: Any = None


class StreamTable:
    """A Parquet dataset prepared for streaming: its units, the split rules, the fitted preprocessing."""

    def __init__(self, cfg: DataConfig, seed: int, reason: str) -> None:
        self.cfg, self.seed, self.reason = cfg, seed, reason
        self.name = Path(cfg.dataset.strip()).expanduser().stem or "parquet"
        self.units, self.columns = open_units(cfg.dataset, "data.dataset", None)
        self.given: dict[int, list[str]] = {}  # split -> the columns of its file
        for split, key in ((VAL, "val_file"), (TEST, "test_file")):
            path = getattr(cfg, key)
            if path:
                extra, columns = open_units(path, f"data.{key}", split)
                self.units.extend(extra)
                self.given[split] = columns
        from gradwise.data.datasets import table_targets

        self.targets = table_targets(cfg, self.columns, cfg.dataset)
        self.features = cleaning.check_features(pd.DataFrame(columns=self.columns), cfg.features, self.targets,
                                                 cfg.dataset)
        if cfg.features is None and cfg.split_key is not None:  # a row id: what decides the split, not a feature
            self.features = [c for c in self.features if c != cfg.split_key]
        if not self.features:
            raise DataError(f"'{cfg.dataset}' has no feature columns besides the target {self.targets}; add feature "
                            "columns.")
        for split, columns in self.given.items():
            absent = [c for c in [*self.features, *self.targets] if c not in columns]
            if absent:
                key = "val_file" if split == VAL else "test_file"
                raise DataError(f"data.{key} lacks column(s) {names(absent)} that the training data has; give it "
                                "the same columns.")
        if cfg.split_key is not None and cfg.split_key not in self.columns:
            raise DataError(f"data.split_key = {quote(cfg.split_key)} is not a column of '{cfg.dataset}'. Its columns "
                            f"are: {names(self.columns)}. Set data.split_key to a column whose values identify a row "
                            "(an id), or remove it to split by row position.")
        self.fractions = (0.0 if VAL in self.given else cfg.val_fraction,
                          0.0 if TEST in self.given else cfg.test_fraction)
        self.read_columns = [*self.features, *self.targets]
        if cfg.split_key is not None and cfg.split_key not in self.read_columns:
            self.read_columns.append(cfg.split_key)
        self.kinds: Kinds | None = None
        self.pre: Preprocessor | None = None
        self.bounds: dict[str, tuple[float, float]] = {}
        self.drop_outliers = cfg.outliers.endswith("_drop")
        self.task = "classification"
        self.binary = False
        self.eval_streamed = False  # val/test rows over EVAL_MEMORY_BYTES: streamed for evaluation as well

    def fingerprint(self) -> str:
        """What the stream position of a checkpoint refers to: every row group's file, size and rows per split.
        A resumed run compares it with its data_report.json (`check_resumed_stream`)."""
        import hashlib
        import json

        parts = [[Path(u.file).name, u.row_group, u.rows, u.counts] for u in self.units]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    # ----------------------------------------------------------------------------------------- rows of a unit

    def classify(self, frame: pd.DataFrame, notes: list[str]) -> Kinds:
        """Column kinds from the first row group, by the in-memory path's rules (`cleaning.classify_columns`)."""
        from gradwise.data.prepare import column_kinds

        forced = list(self.cfg.options.get("categorical") or [])
        numeric, categorical, boolean, coerce = column_kinds(self.cfg, frame, self.features, forced, notes)
        return Kinds(self.features, self.targets, numeric, categorical, boolean, list(coerce))

    def rows(self, unit: Unit, frame: pd.DataFrame, got: Gathered | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """A unit's frame cleaned as `prepare.clean_rows` cleans one (stateless steps only), and each row's split."""
        kinds = self.kinds
        assert kinds is not None
        f = cleaning.strip_labels(frame, self.targets)
        no_target = f[self.targets].isna().any(axis=1).to_numpy()
        if no_target.any():
            f = f[~no_target]
        changes: dict[str, int] = {}
        categories = [c for c in kinds.categorical if c not in kinds.boolean]
        if self.cfg.clean_categories and categories:
            f = cleaning.clean_category_columns(f, categories, changes)
        dropped_missing = 0
        if self.cfg.missing == "drop":
            f, dropped_missing = cleaning.drop_missing_rows(f, kinds.features, kinds.numeric)
        if unit.split is not None:
            split = np.full(len(f), unit.split, dtype=np.int8)
        else:
            key = f[self.cfg.split_key].to_numpy() if self.cfg.split_key is not None else f.index.to_numpy()
            u = hash_buckets(key)
            split = np.where(u < self.fractions[1], TEST, np.where(u < self.fractions[1] + self.fractions[0], VAL,
                                                                   TRAIN)).astype(np.int8)
        outliers = 0
        if self.drop_outliers and self.bounds:
            train = split == TRAIN
            _, outside = cleaning.outlier_counts(f[train], self.bounds)
            drop = np.zeros(len(f), dtype=bool)
            drop[np.flatnonzero(train)[outside]] = True
            if drop.any():
                f, split, outliers = f[~drop], split[~drop], int(drop.sum())
        if got is not None:
            got.dropped["target_missing"] += int(no_target.sum())
            got.dropped["missing"] += dropped_missing
            got.dropped["outliers"] += outliers
            for c, n in changes.items():
                got.cat_changes[c] = got.cat_changes.get(c, 0) + n
        return f, split

    def targets_tensor(self, frame: pd.DataFrame, split: str) -> torch.Tensor:
        """The targets of a cleaned frame as training uses them: class codes (a 0/1 float column for one logit), or
        regression values scaled as fitted."""
        from gradwise.data.prepare import _regression_targets

        pre = self.pre
        assert pre is not None
        if self.task == "classification":
            assert pre.labels is not None
            codes = pre.labels.encode(frame[self.targets[0]], where=f"target column {quote(self.targets[0])}")
            if self.binary:
                return torch.from_numpy(codes.astype(np.float32).reshape(-1, 1))
            return torch.from_numpy(codes.astype(np.int64))
        return pre.transform_target(torch.from_numpy(_regression_targets(frame, self.targets, split)))

    # ----------------------------------------------------------------------------------------- statistics pass

    def gather(self, notes: list[str], keep_eval: bool) -> Gathered:
        """One pass over every unit: row counts per split, labels, and the training rows' statistics."""
        fit = Preprocessor("table", "classification")  # its column readers: parsing, coercion and clipping as fit
        cfg = self.cfg
        # medians, quantiles and numeric modes come from the sample; means, stds and min/max are exact without it
        sampled = cfg.missing in ("median", "most_frequent") or cfg.scale == "robust" or cfg.outliers.startswith("iqr")
        got: Gathered | None = None
        for i, unit in enumerate(self.units):
            frame = read_unit(unit, self.read_columns)
            if self.kinds is None:
                self.kinds = self.classify(frame, notes)
            kinds = self.kinds
            if got is None:
                got = Gathered(kinds, self.seed, keep_eval)
                fit.numeric, fit.coerce, fit.clip_bounds = kinds.numeric, kinds.coerce, dict(self.bounds)
                fit.categorical, fit.clean_categories = kinds.categorical, self.cfg.clean_categories
            f, split = self.rows(unit, frame, got)
            del frame
            unit.counts = [int(np.count_nonzero(split == s)) for s in (TRAIN, VAL, TEST)]
            target = f[self.targets[0]]
            if got.target_dtype is None and len(f):
                got.target_dtype = target.dtype
            for v in pd.unique(target.dropna()).tolist():
                got.distinct.setdefault(v, None)
            train = f[split == TRAIN]
            for v, n in train[self.targets[0]].value_counts(dropna=True).items():
                got.labels[v] = got.labels.get(v, 0) + int(n)
            if all(pd.api.types.is_numeric_dtype(train[t].dtype) for t in self.targets):  # a regression target
                tvals = train[self.targets].to_numpy(dtype=np.float64, na_value=np.nan)
                got.target_moments.add(tvals)
            if kinds.numeric:
                counts: dict[str, dict[str, int]] = {"missing": {}, "outside": {}}
                block = np.empty((len(train), len(kinds.numeric)), dtype=np.float64)
                for j, c in enumerate(kinds.numeric):
                    block[:, j] = fit._numeric_column(train, c, counts)
                for c, n in counts["missing"].items():
                    got.missing[c] = got.missing.get(c, 0) + n
                for c, n in counts["outside"].items():
                    got.outside[c] = got.outside.get(c, 0) + n
                got.moments.add(block)
                if sampled:
                    got.sample.add(block, i)
                else:
                    got.sample.seen += len(block)
                if self.cfg.outliers != "none" and not self.bounds:  # the pass that draws the fences
                    self._distinct_spread(got, block)
            for j, c in enumerate(kinds.categorical):
                codes, texts = fit._category_codes(train, c)
                n = np.bincount(codes[codes >= 0], minlength=len(texts))
                table = got.cat_counts[j]
                for t, k in zip(texts, n.tolist(), strict=True):
                    if k:
                        table[t] = table.get(t, 0) + k
                missing = int(np.count_nonzero(codes < 0))
                if missing:
                    table[None] = table.get(None, 0) + missing  # type: ignore[index]
                    got.missing[c] = got.missing.get(c, 0) + missing
            for c in kinds.boolean:
                missing = int(train[c].isna().sum())
                if missing:
                    got.missing[c] = got.missing.get(c, 0) + missing
            if got.keep_eval:
                for s in (VAL, TEST):
                    part = f[split == s]
                    if len(part):
                        got.kept[s].append(part[[*self.features, *self.targets]])
                        got.kept_bytes += len(part) * max(len(self.features), 1) * 4
                if got.kept_bytes > EVAL_MEMORY_BYTES:  # too many to hold: evaluated by streaming them too
                    got.keep_eval, got.kept = False, {VAL: [], TEST: []}
                    self.eval_streamed = True
        assert got is not None
        return got

    @staticmethod
    def _distinct_spread(got: Gathered, block: np.ndarray) -> None:
        """Whether each column has a third distinct value (outlier fences skip flag columns), exactly, in one pass:
        a chunk with a value strictly inside its own [min, max] has three; else its min and max are its values."""
        if not len(block):
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            finite = np.where(np.isfinite(block), block, np.nan)
            lo, hi = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
        for j in np.flatnonzero(~got.spread):
            col = finite[:, j]
            if np.isnan(lo[j]):
                continue
            with np.errstate(invalid="ignore"):
                if ((col > lo[j]) & (col < hi[j])).any():
                    got.spread[j] = True
                    continue
            got.flags[j].update((float(lo[j]), float(hi[j])))
            if len(got.flags[j]) > 2:
                got.spread[j] = True

    # ----------------------------------------------------------------------------------------- fitting

    def fences(self, got: Gathered) -> tuple[dict[str, tuple[float, float]], list[str], float]:
        """data.outliers fences as `cleaning.outlier_bounds` draws them: IQR quartiles from the sample, z-score
        mean and std exact."""
        kinds = self.kinds
        assert kinds is not None
        family = "iqr" if self.cfg.outliers.startswith("iqr") else "zscore"
        t = float(self.cfg.outlier_threshold) if self.cfg.outlier_threshold is not None else \
            cleaning.DEFAULT_THRESHOLD[family]
        bounds: dict[str, tuple[float, float]] = {}
        skipped: list[str] = []
        for j, c in enumerate(kinds.numeric):
            if got.moments.n[j] == 0 or not got.spread[j]:
                skipped.append(c)
                continue
            if family == "iqr":
                vals = got.sample.rows[:, j]
                q1, q3 = np.percentile(vals[np.isfinite(vals)], [25, 75])
                spread = q3 - q1
                lo, hi = q1 - t * spread, q3 + t * spread
            else:
                mean, spread = got.moments.mean[j], float(np.sqrt(got.moments.var[j]))
                lo, hi = mean - t * spread, mean + t * spread
            if not spread > 0:
                skipped.append(c)
                continue
            bounds[c] = (float(lo), float(hi))
        return bounds, skipped, t

    def fit(self, got: Gathered) -> Preprocessor:
        """The Preprocessor `fit_table` would fit on the training rows, from the gathered statistics."""
        kinds = self.kinds
        assert kinds is not None
        cfg = self.cfg
        pre = Preprocessor("table", self.task)
        pre.columns = [*kinds.numeric, *kinds.boolean, *kinds.categorical]
        pre.numeric, pre.categorical, pre.boolean = list(kinds.numeric), list(kinds.categorical), list(kinds.boolean)
        pre.coerce = list(kinds.coerce)
        pre.clean_categories = cfg.clean_categories
        pre.clip_bounds = dict(self.bounds) if not self.drop_outliers else {}
        m = got.moments
        pre.ranges = {c: (float(m.min[j]), float(m.max[j])) for j, c in enumerate(kinds.numeric) if m.n[j] > 0}
        if kinds.numeric:
            fill = None
            sample = got.sample.rows
            if cfg.missing in ("mean", "median", "most_frequent"):
                fill = np.zeros(len(kinds.numeric))
                for j in range(len(kinds.numeric)):
                    vals = sample[:, j][~np.isnan(sample[:, j])]
                    if m.n[j] == 0:
                        continue  # an all-missing column gets 0, as keep_empty_features=True gives it
                    if cfg.missing == "mean":
                        fill[j] = m.mean[j]
                    elif cfg.missing == "median":
                        fill[j] = float(np.median(vals))
                    else:  # the most frequent value; ties go to the smallest, as scipy's mode does
                        values, counts = np.unique(vals, return_counts=True)
                        fill[j] = float(values[np.argmax(counts)])
                pre.num_imputer = _FittedImputer(cfg.missing, fill)
            if cfg.scale != "none":
                pre.scaler = self._scaler(got, fill)
        if kinds.categorical:
            categories: list[np.ndarray] = []
            infrequent: list[np.ndarray | None] = []
            stats: list[Any] = []
            impute = cfg.missing in ("mean", "median", "most_frequent")
            for table in got.cat_counts:
                counts = {k: v for k, v in table.items() if k is not None}
                gaps = table.get(None, 0)  # type: ignore[call-overload]
                if impute:
                    top = max(counts.values()) if counts else 0
                    stat = min(k for k, v in counts.items() if v == top) if counts else np.nan
                    stats.append(stat)
                    if counts and gaps:
                        counts[stat] = counts[stat] + gaps
                elif gaps:
                    counts[MISSING_CATEGORY] = counts.get(MISSING_CATEGORY, 0) + gaps
                cats = np.array(sorted(counts), dtype=object)  # OneHotEncoder's categories_ are sorted
                categories.append(cats)
                infrequent.append(_infrequent(cats, counts, cfg.options.get("max_categories")))
            if impute:
                stat_arr = np.empty(len(stats), dtype=object)
                stat_arr[:] = stats
                pre.cat_imputer = _FittedImputer("most_frequent", stat_arr)
            unknown = "ignore" if cfg.options.get("max_categories") is None else "infrequent_if_exist"
            pre.encoder = _FittedOneHot(categories, infrequent, unknown)
        onehot: list[str] = []
        pre._origin = [*kinds.numeric, *kinds.boolean]
        if pre.encoder is not None:
            for c, cats, rare, (_, width, _) in zip(kinds.categorical, pre.encoder.categories_,
                                                    pre.encoder.infrequent_categories_, pre.encoder._maps,
                                                    strict=True):
                rare_set = set(rare.tolist()) if rare is not None else set()
                onehot.extend(f"{c}_{v}" for v in cats.tolist() if v not in rare_set)
                if rare_set:
                    onehot.append(f"{c}_infrequent_sklearn")
                pre._origin.extend([c] * width)
        pre.feature_names = [*kinds.numeric, *kinds.boolean, *onehot]
        pre.target_columns = list(self.targets)
        return pre

    def _scaler(self, got: Gathered, fill: np.ndarray | None) -> _FittedScaler:
        """The scaler sklearn fits on the imputed training columns: standard/minmax exactly, robust from the sample."""
        m = got.moments
        n, mean, m2, low, high = m.n.copy(), m.mean.copy(), m.m2.copy(), m.min.copy(), m.max.copy()
        total = got.sample.seen
        if fill is not None:  # the imputed cells are n_missing copies of the fill value
            gaps = total - n
            merged = Moments(len(n))
            merged.n, merged.mean, merged.m2 = n, mean, m2
            merged.merge(gaps, fill, np.zeros_like(fill))
            n, mean, m2 = merged.n, merged.mean, merged.m2
            low = np.where(gaps > 0, np.fmin(low, fill), low)
            high = np.where(gaps > 0, np.fmax(high, fill), high)
        method = self.cfg.scale
        if method == "standard":
            var = m2 / np.maximum(n, 1)
            constant = var <= n * EPS * var + (n * mean * EPS) ** 2
            scale = np.sqrt(var)
            scale[constant | (scale == 0)] = 1.0
            return _FittedScaler("standard", {"mean_": mean, "scale_": scale})
        if method == "minmax":
            span = high - low
            span[span < 10 * EPS] = 1.0
            scale = 1.0 / span
            return _FittedScaler("minmax", {"min_": 0.0 - low * scale, "scale_": scale})
        sample = got.sample.rows.copy()
        if fill is not None:
            gaps_at = np.isnan(sample)
            sample[gaps_at] = np.broadcast_to(fill, sample.shape)[gaps_at]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            center = np.nanmedian(sample, axis=0)
            q1, q3 = np.nanpercentile(sample, [25, 75], axis=0)
        spread = q3 - q1
        spread[spread < 10 * EPS] = 1.0
        return _FittedScaler("robust", {"center_": center, "scale_": spread})


def _infrequent(cats: np.ndarray, counts: dict[Any, int], max_categories: int | None) -> np.ndarray | None:
    """OneHotEncoder(max_categories=...)'s infrequent categories from the category counts (sklearn's rule: keep
    the max_categories - 1 most frequent, a stable sort by count decides ties)."""
    if max_categories is None or not max_categories < len(cats) + 1:
        return None
    count = np.array([counts[c] for c in cats.tolist()])
    frequent = max_categories - 1
    mask = np.zeros(len(cats), dtype=bool)
    if frequent == 0:
        mask[:] = True
    else:
        mask[np.argsort(count, kind="mergesort")[:-frequent]] = True
    return cats[mask] if mask.any() else None


# --------------------------------------------------------------------------------------------- loading


def load_stream(cfg: DataConfig, seed: int, fold: int | None, binary: bool, reason: str) -> Any:
    """`load_data` for a streamed Parquet table: a DataBundle whose training split is a `StreamSource`."""
    from gradwise.data.prepare import DataBundle, _check_binary, _check_finite, _codec, infer_task
    from gradwise.data.sampling import class_weight_vector

    refused = [(cfg.drop_duplicates, "data.drop_duplicates=true (finding duplicates needs every row at once)",
                "data.drop_duplicates=false"),
               (cfg.folds > 1, f"data.folds = {cfg.folds} (k-fold needs every row's index)", "data.folds=1"),
               (cfg.subsample is not None, "data.subsample", "data.subsample: null"),
               (cfg.classes is not None, "data.classes", "data.classes: null"),
               (cfg.balance not in ("none", "class_weights"), f"data.balance={cfg.balance} (it resamples rows)",
                "data.balance=none or class_weights")]
    for on, what, fix in refused:
        if on:
            raise DataError(f"data.stream ({reason}) cannot apply {what}. Set {fix}, or data.stream=false to load "
                            "the table in memory.")
    del fold
    if os.environ.get("RANK", "0") == "0":
        print(f"data: streaming '{cfg.dataset}' in row groups ({reason})", file=sys.stderr, flush=True)
    notes: list[str] = []
    table = StreamTable(cfg, seed, reason)
    report: dict[str, Any] = {"dataset": table.name, "kind": "table", "warnings": notes}
    passes = 1
    if cfg.outliers != "none":
        first = table.gather(notes, keep_eval=False)
        if table.kinds is not None and table.kinds.numeric:
            bounds, skipped, t = table.fences(first)
            table.bounds = bounds
            report["outliers"] = {"method": cfg.outliers, "threshold": t, "bounds": bounds, "skipped_columns": skipped}
            passes = 2
    got = table.gather(notes, keep_eval=True)
    kinds = table.kinds
    assert kinds is not None
    rows = [sum(u.counts[s] for u in table.units) for s in (TRAIN, VAL, TEST)]
    report["rows_loaded"] = {"data": sum(u.rows for u in table.units if u.split is None)}
    for s, key in ((VAL, "val"), (TEST, "test")):
        if s in table.given:
            report["rows_loaded"][key] = sum(u.rows for u in table.units if u.split == s)
    report["rows_dropped_target_missing"] = got.dropped["target_missing"]
    report["duplicates_dropped"] = 0
    report["categories_cleaned"] = got.cat_changes
    if rows[TRAIN] == 0:
        raise DataError(f"no training rows of '{cfg.dataset}' are left after cleaning and splitting; check "
                        "data.missing, data.val_fraction / data.test_fraction, or the file.")
    # ---- task and labels (from the distinct label values of every split)
    task_notes: dict[str, Any] = {}
    target = pd.Series(list(got.distinct), dtype=got.target_dtype if got.target_dtype is not None else object)
    task = infer_task(target, cfg.options.get("task"), len(table.targets) > 1, task_notes)
    table.task = task
    report["task"] = task
    report.update(task_notes)
    codec: LabelCodec | None = None
    if task == "classification":
        codec = _codec(list(got.distinct), None)
    pre = table.fit(got)
    pre.labels = codec
    table.pre = pre
    n_classes = class_counts = class_weights = None
    if codec is not None:
        n_classes = len(codec)
        codes = codec.encode(pd.Series(list(got.labels), dtype=object),
                             where=f"target column {quote(table.targets[0])}")
        counts = np.zeros(n_classes, dtype=np.int64)
        np.add.at(counts, codes, np.array(list(got.labels.values()), dtype=np.int64))
        if (counts > 0).sum() < 2:
            raise DataError(f"the training split has a single class ({quote(codec.names[int(np.argmax(counts))])}); a "
                            "classifier needs at least two. Check data.target or give data with more classes.")
        class_counts = [int(c) for c in counts]
        report["class_counts_before_sampling"] = dict(zip(codec.names, class_counts, strict=True))
        report["class_counts_after_sampling"] = dict(zip(codec.names, class_counts, strict=True))
        report["balance"] = cfg.balance
        if cfg.balance == "class_weights":
            class_weights = torch.from_numpy(class_weight_vector(counts))
            report["class_weights"] = {n: float(w) for n, w in zip(codec.names, class_weights, strict=True)}
        n_outputs = n_classes
        if binary:
            _check_binary(n_classes, codec.names, f"the target column {quote(table.targets[0])}")
            n_outputs = 1
            report["target_encoding"] = {"loss": "bce_with_logits", "outputs": 1, "negative": codec.names[0],
                                         "positive": codec.names[1]}
    else:
        if cfg.balance != "none":
            raise DataError(f"data.balance = {cfg.balance} needs class labels but this is a regression task; set "
                            "data.balance=none (or data.options.task=classification if the target is a label).")
        tm = got.target_moments
        if cfg.scale_target in (True, "auto"):
            std = np.sqrt(tm.var)
            pre.target_mean = tm.mean.astype(np.float32)
            pre.target_scale = np.where(std > 0, std, 1.0).astype(np.float32)
            report["target_scaling"] = {"mean": pre.target_mean.tolist(), "scale": pre.target_scale.tolist()}
        n_outputs = len(table.targets)
    table.binary = task == "classification" and n_outputs == 1

    # ---- validation / test: the kept rows, transformed once
    splits: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = {"val": None, "test": None}
    by_split: dict[str, dict[str, int]] = {"train": {c: n for c, n in got.missing.items() if n}}
    clipped: dict[str, dict[str, int]] = {"train": {c: n for c, n in got.outside.items() if n}}
    for s, key in ((VAL, "val"), (TEST, "test")):
        parts = got.kept[s]
        if not parts:
            continue
        frame = pd.concat(parts) if len(parts) > 1 else parts[0]
        got.kept[s] = []
        seen: dict[str, dict[str, int]] = {"missing": {}, "outside": {}}
        with np.errstate(over="ignore", invalid="ignore"):
            x = pre.table_matrix(frame, seen)
        _check_finite(pre, x, key, frame)
        by_split[key] = {c: n for c, n in seen["missing"].items() if n}
        clipped[key] = {c: n for c, n in seen["outside"].items() if n}
        splits[key] = (torch.from_numpy(x), table.targets_tensor(frame, key))
        del frame
    if cfg.outliers.endswith("_clip") and "outliers" in report:
        report["outliers"]["clipped"] = clipped
    elif "outliers" in report:
        report["outliers"]["rows_dropped"] = got.dropped["outliers"]
    totals: dict[str, int] = {}
    for per in by_split.values():
        for c, n in per.items():
            totals[c] = totals.get(c, 0) + n
    report["missing"] = {"strategy": cfg.missing, "rows_dropped": got.dropped["missing"],
                         ("imputed" if cfg.missing in ("mean", "median", "most_frequent") else "found"): totals,
                         "by_split": by_split}
    split_report: dict[str, Any] = {"stratified": False}
    for s, key in ((VAL, "val"), (TEST, "test")):
        if s in table.given:
            split_report[key] = "file"
    split_report["by"] = f"hash of column {cfg.split_key}" if cfg.split_key is not None else \
        "hash of the row's position in the dataset (files in path order)"
    report["split"] = split_report
    report["rows"] = {"train": rows[TRAIN], "val": rows[VAL], "test": rows[TEST]}
    report["preprocessor"] = pre.describe()
    report["input_shape"] = [len(pre.feature_names)]
    sampled = {"median imputation": cfg.missing == "median", "most_frequent imputation": cfg.missing ==
               "most_frequent", "robust scaling": cfg.scale == "robust",
               "iqr outlier fences": cfg.outliers.startswith("iqr")}
    sampled_now = [k for k, on in sampled.items() if on and kinds.numeric]
    report["stream"] = {
        "streamed": True, "why": reason, "files": len({u.file for u in table.units}), "row_groups": len(table.units),
        "statistics_passes": passes, "shuffle_buffer": cfg.shuffle_buffer, "fingerprint": table.fingerprint(),
        "validation_and_test": (f"streamed from the files at each evaluation (more than {EVAL_MEMORY_BYTES >> 20} MB "
                                "of features)") if table.eval_streamed else "held in memory",
        "statistics": {"exact": ["row and label counts", "means", "standard deviations", "min/max",
                                 "category sets and counts", "most frequent categories", "target mean/std"],
                       # with every training row in the sample, its medians and quantiles are exact too
                       "from_sample": sampled_now if not got.sample.exact else [],
                       "sample_rows": int(len(got.sample.rows)), "training_rows": int(got.sample.seen),
                       "sample_is_every_row": bool(got.sample.exact)},
        "split": split_report["by"] if not table.given else "files" if len(table.given) == 2 else
        f"files and {split_report['by']}",
        "not_done": ["duplicate rows are not looked for (data.drop_duplicates needs the whole table)",
                     "splits are not stratified (rows are assigned by hash)"],
    }
    if any(n for n in table.fractions) and cfg.stratify:
        notes.append("data.stream splits rows by a stable hash, so val/test are not stratified by class.")
    # resolved here: the doctor and `gradwise predict` read these from the preprocessor as for in-memory tables
    pre.input_shape, pre.n_outputs = (len(pre.feature_names),), int(n_outputs)
    return DataBundle(name=table.name, task=task, train=None,  # type: ignore[arg-type]
                      val=splits["val"], test=splits["test"], n_classes=n_classes, n_outputs=n_outputs,
                      input_shape=(len(pre.feature_names),), class_names=pre.class_names, class_counts=class_counts,
                      preprocessor=pre, report=report, class_weights=class_weights, kind="table",
                      feature_names=list(pre.feature_names), split_indices={}, stream=table)


# --------------------------------------------------------------------------------------------- batches




class StreamLoader:
    """Batches streamed from a `StreamTable` (see the module docstring): the same interface as `TensorLoader`
    (set_epoch with skip, resize, shard, global_rows, dataset_size), without holding the table.

    ``split`` TRAIN (shuffled) or, for validation/test rows too many to hold in memory, VAL/TEST: read in the
    table's order, one row group at a time."""

    def __init__(self, table: StreamTable, batch_size: int, seed: int, split: int = TRAIN) -> None:
        self.table = table
        self.batch_size = batch_size
        self.seed = seed
        self.split = split
        self.shuffle = split == TRAIN
        self.buffer = table.cfg.shuffle_buffer if self.shuffle else 1
        self.units = [i for i, u in enumerate(table.units) if u.counts[split] > 0]
        self.n = sum(table.units[i].counts[split] for i in self.units)
        self.epoch = 0
        self.skip = 0
        self.rank, self.world = 0, 1
        self.rows_read = 0  # rows read and transformed (a measure for tests and benchmarks)

    @property
    def dataset_size(self) -> int:
        return self.n

    def resize(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def shard(self, rank: int, world: int) -> StreamLoader:
        """Process `rank`'s part of every global batch (as TensorLoader.shard): each process reads the stream in the
        same order and keeps its rows, so the steps are those of one process with the global batch."""
        self.rank, self.world = rank, world
        return self

    def global_rows(self, i: int) -> int:
        big = self.batch_size * self.world
        return min(big, self.n - i * big)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches

    def state_dict(self) -> dict[str, Any]:
        """The stream position: everything else (row-group order, window permutations) follows from (seed, epoch)."""
        return {"epoch": self.epoch, "rows_consumed": self._intervals()[0][0] if self._intervals() else self.n,
                "order": self.order(self.epoch), "batch_size": self.batch_size, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["order"] != self.order(int(state["epoch"])) or int(state["seed"]) != self.seed:
            raise DataError("the streamed table's row groups differ from those of the checkpoint (files added, "
                            "removed or rewritten); resume with the data the run was trained on.")
        self.epoch = int(state["epoch"])
        self.batch_size = int(state["batch_size"])
        self.skip = int(state["rows_consumed"]) // self.batch_size

    def __len__(self) -> int:
        bs = self.batch_size
        if self.world > 1 and not self.shuffle:
            start, end = block(self.n, self.world, self.rank)
            return -(-(end - start) // bs)
        if self.world > 1:
            return global_batches(self.n, bs, self.world)
        return self._batches()

    def _batches(self) -> int:
        """Batches of one process. As in TensorLoader (drop_single), a last training batch of ONE row is left out:
        BatchNorm cannot normalize it; the row is in another batch of the next epoch's order."""
        bs = self.batch_size
        if self.shuffle and self.n > bs and self.n % bs == 1:
            return self.n // bs
        return -(-self.n // bs)

    def order(self, epoch: int) -> list[int]:
        """The row groups of an epoch, in reading order."""
        if not self.shuffle:
            return list(self.units)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch, 1])
        return [self.units[i] for i in rng.permutation(len(self.units))]

    def windows(self, epoch: int) -> list[list[int]]:
        """The epoch's row groups in windows of at least `buffer` training rows (the last may have fewer)."""
        out: list[list[int]] = [[]]
        rows = 0
        for i in self.order(epoch):
            if rows >= self.buffer:
                out.append([])
                rows = 0
            out[-1].append(i)
            rows += self.table.units[i].counts[self.split]
        return out

    def _intervals(self, skip: int | None = None) -> list[tuple[int, int]]:
        """[start, end) of each batch to yield, as positions in the epoch's row order."""
        skip = self.skip if skip is None else skip
        bs = self.batch_size
        if self.world > 1 and not self.shuffle:  # evaluation: this process's contiguous block (TensorLoader.shard)
            start, end = block(self.n, self.world, self.rank)
            return [(a, min(a + bs, end)) for a in range(start, end, bs)][skip:]
        if self.world > 1:
            count = global_batches(self.n, bs, self.world)
            return [batch_part(self.n, bs, self.world, self.rank, i) for i in range(skip, count)]
        return [(i * bs, min((i + 1) * bs, self.n)) for i in range(skip, self._batches())]

    def _window(self, epoch: int, w: int, units: list[int]) -> tuple[np.ndarray, torch.Tensor]:
        """A window's rows of the split, transformed (and permuted, for training)."""
        table = self.table
        pre = table.pre
        assert pre is not None
        xs: list[np.ndarray] = []
        ys: list[torch.Tensor] = []
        for i in units:
            unit = table.units[i]
            f, split = table.rows(unit, read_unit(unit, table.read_columns))
            f = f[split == self.split]
            with np.errstate(over="ignore", invalid="ignore"):
                x = pre.table_matrix(f)
            if pre.nonfinite_columns(x):
                from gradwise.data.prepare import _check_finite

                _check_finite(pre, x, f"{SPLIT_NAMES[self.split]} ('{unit.file}', row group {unit.row_group})", f)
            xs.append(x)
            ys.append(table.targets_tensor(f, "data"))
            self.rows_read += len(f)
        x = np.concatenate(xs) if len(xs) > 1 else xs[0]
        y = torch.cat(ys) if len(ys) > 1 else ys[0]
        if not self.shuffle:
            return x, y
        perm = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch, w, 2]).permutation(len(x))
        return x[perm], y[torch.from_numpy(perm)]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        intervals = self._intervals()
        epoch = self.epoch
        self.skip = 0
        if not intervals:
            return
        windows = self.windows(epoch)
        ends = np.cumsum([sum(self.table.units[i].counts[self.split] for i in w) for w in windows])
        w = int(np.searchsorted(ends, intervals[0][0], side="right"))  # the window holding the first row wanted
        start = int(ends[w - 1]) if w > 0 else 0  # position of the held rows' first row
        held_x: np.ndarray = np.zeros((0, 0), dtype=np.float32)
        held_y: torch.Tensor | None = None
        # the next window is read and transformed on a thread while the model trains on this one (pyarrow, numpy
        # and pandas release the GIL for most of it); a window is a function of (seed, epoch, w) alone, so the
        # batches are the same with or without it
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradwise-stream") if PREFETCH else None

        def fetch(k: int) -> Any:
            if k >= len(windows):
                return None
            if pool is None:
                return self._window(epoch, k, windows[k])
            return pool.submit(self._window, epoch, k, windows[k])

        ahead = fetch(w)
        try:
            for a, b in intervals:
                while start + len(held_x) < b:  # read windows until the batch's rows are held
                    x, y = ahead.result() if pool is not None else ahead
                    w += 1
                    ahead = fetch(w)
                    if held_y is None or not len(held_x):
                        held_x, held_y = x, y
                    else:
                        held_x, held_y = np.concatenate([held_x, x]), torch.cat([held_y, y])
                assert held_y is not None
                lo, hi = a - start, b - start
                yield torch.from_numpy(np.ascontiguousarray(held_x[lo:hi])), held_y[lo:hi]
                held_x, held_y, start = held_x[hi:], held_y[hi:], b  # rows before b are never wanted again
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


def check_resumed_stream(run_dir: Path, report: dict[str, Any]) -> None:
    """A checkpoint's stream position (epoch, batch) means the same rows only on the same row groups: refuse to
    resume a streamed run whose Parquet files changed since its data_report.json was written."""
    import json

    try:
        old = json.loads((run_dir / "data_report.json").read_text()).get("stream") or {}
    except (OSError, ValueError, AttributeError):
        return  # no report to compare with (a run stopped before writing it starts over anyway)
    was, now = old.get("fingerprint"), report.get("stream", {}).get("fingerprint")
    if was is not None and was != now:
        raise DataError(f"the Parquet data of the run in '{run_dir}' changed since it was trained (files, row groups "
                        "or rows differ), so its checkpoint's stream position would name other rows. Resume with the "
                        "files it was trained on, or start a new run on the new data.")


def stream_loaders(bundle: Any, batch_size: int, eval_batch: int, seed: int
                   ) -> tuple[StreamLoader, Any, Any]:
    """(train, val, test) loaders of a streamed bundle: val/test in memory (TensorLoader) unless they were too many
    rows to hold, then streamed too."""
    from gradwise.data.loaders import TensorLoader

    table = bundle.stream
    out: list[Any] = []
    for s, data in ((VAL, bundle.val), (TEST, bundle.test)):
        if data is not None:
            out.append(TensorLoader(*data, eval_batch, shuffle=False))
        elif table.eval_streamed and any(u.counts[s] for u in table.units):
            out.append(StreamLoader(table, eval_batch, seed, split=s))
        else:
            out.append(None)
    return StreamLoader(table, batch_size, seed), out[0], out[1]


__all__ = ["StreamLoader", "StreamTable", "load_stream", "stream_reason"]

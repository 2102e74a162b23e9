"""The fitted preprocessing of a run: feature cleaning/scaling/encoding, label encoding and target scaling.

Everything is fitted on the training split only and then applied unchanged to val, test and new rows at
`gradwise predict` time; `Preprocessor.save`/`load` keep it with the run as ``preprocess.json``: data only (names,
categories, options and numbers), so opening a run directory someone else wrote can never run code. A loaded
preprocessor transforms with small numpy equivalents of the fitted sklearn objects that give bit-identical output.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pandas.api import types as ptypes

from gradwise.errors import CheckpointError, DataError

MISSING_CATEGORY = "<missing>"  # categorical NaN becomes its own category when data.missing is none
FORMAT_VERSION = 2  # 1 was the pickle of gradwise <= this change (never loaded: see legacy_message)
FORMAT_NAME = "gradwise-preprocessor"
PREPROCESS_FILE = "preprocess.json"
LEGACY_PREPROCESS_FILE = "preprocess.pkl"


FAR_OUTSIDE = 1.0  # a new value further than this many training ranges beyond [min, max] is warned about
COLUMN_GROUP = 8  # numeric columns transformed together through one column-major stage (see table_matrix)
HUGE = 1e30  # a feature value this large is almost surely an error (a sentinel, a unit): said so by name


class DataWarning(UserWarning):
    """New rows that can be predicted but differ from what training saw (unseen categories, far outside ranges)."""


def quote(name: Any, limit: int = 60) -> str:
    """A column name or value for a one-line message: quoted, control characters escaped, long text cut."""
    text = str(name)
    text = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return "'" + (text[:limit] + "..." if len(text) > limit else text) + "'"


def names(columns: Iterable[Any], limit: int = 20) -> str:
    cols = list(columns)
    shown = ", ".join(quote(c) for c in cols[:limit])
    return shown + (f" and {len(cols) - limit} more" if len(cols) > limit else "")


def show(value: Any) -> str:
    """A cell value for a message: numbers in %g, text quoted and cut."""
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return quote(value, 40)


def distinct_values(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each cell's code into the column's distinct non-missing values as str (-1: missing), in order of first
    appearance: one hash pass over the cells, so that string work is done once per distinct value, not per cell.

    Cells that are equal but print differently (0.0 and -0.0; 1, 1.0 and True in a mixed object column) would share
    a code, so such columns are turned into str cell by cell first (rare: forced-categorical floats, mixed objects).
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    plain = uniques.tolist()
    if not all(isinstance(u, str) for u in plain) and not (
            ptypes.is_bool_dtype(values.dtype) or ptypes.is_integer_dtype(values.dtype)):
        cells = values.to_numpy(dtype=object)
        text = np.full(len(cells), np.nan, dtype=object)
        keep = ~pd.isna(cells)
        text[keep] = [str(v) for v in cells[keep].tolist()]
        codes, uniques = pd.factorize(text, use_na_sentinel=True)
        plain = uniques.tolist()
    return codes, [str(u) for u in plain]


def _clean_text(text: str, casefold: bool, strip: bool) -> str:
    text = text.strip() if strip else text
    return text.casefold() if casefold else text


def cleaned_categories(values: pd.Series, casefold: bool = True, strip: bool = True) -> tuple[pd.Series, int]:
    """`clean_category_values` as a pandas categorical column, and how many non-missing cells it changed (for
    data_report.json), in one pass. Categorical: duplicate detection and the later passes hash small integer
    codes instead of a million strings."""
    codes, texts = distinct_values(values)
    cleaned = [_clean_text(t, casefold, strip) for t in texts]
    changed = np.array([a != b for a, b in zip(texts, cleaned, strict=True)], dtype=bool)
    n_changed = int(np.bincount(codes[codes >= 0], minlength=len(texts))[changed].sum()) if changed.any() else 0
    merged, categories = pd.factorize(np.array(cleaned, dtype=object))  # " Red" and "red" are one category now
    cells = np.append(merged, -1)[codes]  # code -1 (missing) stays -1
    column = pd.Categorical.from_codes(cells, categories=pd.Index(categories, dtype=object))
    return pd.Series(column, index=values.index, name=values.name), n_changed


def clean_category_values(values: pd.Series, casefold: bool = True, strip: bool = True) -> pd.Series:
    """Every non-missing value as a str, stripped of surrounding whitespace and casefolded; missing stays NaN."""
    return cleaned_categories(values, casefold, strip)[0].astype(object)


def as_category_strings(values: pd.Series) -> pd.Series:
    """Non-missing values as str (OneHotEncoder needs one type); None/NaN/NA all become NaN."""
    return clean_category_values(values, casefold=False, strip=False)


def parse_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """A column as a new float64 array, and which cells are text that is not a number (None for a numeric dtype).

    Text columns are parsed once per distinct value (`pd.to_numeric` on the distinct values, then spread back
    through the codes), not once per cell.
    """
    if ptypes.is_numeric_dtype(values.dtype) and not ptypes.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan, copy=True), None
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    parsed = pd.to_numeric(pd.Series(uniques.tolist(), dtype=object), errors="coerce")
    lookup = np.append(parsed.to_numpy(dtype=np.float64, na_value=np.nan), np.nan)  # code -1 (missing): NaN
    vals = lookup[codes]
    return vals, (codes >= 0) & np.isnan(vals)


def _spread_stats(values: np.ndarray, scale: str) -> tuple[float, float]:
    """(center, spread) of all of ``values``: mean/std, min/range or median/IQR."""
    if scale == "standard":
        return float(values.mean()), float(values.std())
    if scale == "minmax":
        low = float(values.min())
        return low, float(values.max()) - low
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return float(med), float(q3 - q1)


def _uint8_spread_stats(pixels: np.ndarray, factor: float, scale: str) -> tuple[float, float]:
    """_spread_stats of `pixels · factor` (float64) for uint8 pixels, from the count of each of the 256 values: the
    same mean/std (to float64 rounding) or min/range (exactly)."""
    counts = np.zeros(256, dtype=np.int64)
    rows = max(1, (1 << 20) // max(1, pixels[:1].size))  # bincount casts to int64: ~8 MB of it at a time
    for start in range(0, len(pixels), rows):
        counts += np.bincount(np.ravel(pixels[start:start + rows]), minlength=256)
    counts = counts.astype(np.float64)
    values = np.multiply(np.arange(256), factor, dtype=np.float64)
    if scale == "minmax":
        seen = np.flatnonzero(counts)
        low = float(values[seen[0]])
        return low, float(values[seen[-1]]) - low
    n = counts.sum()
    mean = float(counts @ values / n)
    return mean, float(np.sqrt(counts @ (values - mean) ** 2 / n))


def _scaler_steps(scaler: Any) -> list[tuple[Any, np.ndarray]]:
    """A fitted scaler (sklearn's or a loaded one) as the in-place numpy steps of its transform, in its order."""
    if scaler is None:
        return []
    method = getattr(scaler, "method", None) or _SKLEARN_SCALERS[type(scaler).__name__]
    if method == "minmax":
        return [(np.multiply, np.asarray(scaler.scale_, np.float64)), (np.add, np.asarray(scaler.min_, np.float64))]
    center = scaler.mean_ if method == "standard" else scaler.center_
    return [(np.subtract, np.asarray(center, np.float64)), (np.divide, np.asarray(scaler.scale_, np.float64))]


def _to_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


class LabelCodec:
    """Class labels ↔ indices 0..K-1. `classes` are the original values, `names` their display strings."""

    def __init__(self, classes: Sequence[Any], names: Sequence[str] | None = None) -> None:
        self.classes = [_plain(c) for c in classes]
        self.names = [str(n) for n in names] if names is not None else [str(c) for c in self.classes]
        self._index = {c: i for i, c in enumerate(self.classes)}

    @classmethod
    def fit(cls, values: Iterable[Any]) -> LabelCodec:
        """Sorted distinct labels (numbers numerically, text alphabetically)."""
        series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        # distinct values first (one hash pass), then the per-value work on those only
        plain = list(dict.fromkeys(_plain(v) for v in pd.unique(series.dropna()).tolist()))
        try:
            ordered = sorted(plain)
        except TypeError:  # mixed types: order by text so it is still deterministic
            ordered = sorted(plain, key=str)
        return cls(ordered)

    def __len__(self) -> int:
        return len(self.classes)

    def encode(self, values: Any, where: str = "labels") -> np.ndarray:
        series = pd.Series(_to_numpy(values).tolist() if not isinstance(values, pd.Series) else values, dtype=object)
        # pd.factorize: one hash pass over the labels, then _plain and the class lookup once per distinct value
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        lookup = np.array([self._index.get(_plain(u), -1) for u in uniques.tolist()] + [-1], dtype=np.int64)
        out = lookup[codes]
        bad = out < 0
        if bad.any():
            unknown = sorted({str(_plain(v)) for v in series[bad].tolist()})[:5]
            raise DataError(f"{where}: label value(s) {', '.join(map(repr, unknown))} are not among the classes "
                            f"seen in training ({names(self.names)}). Remove those rows or retrain with "
                            "data that contains them.")
        return out

    def decode(self, indices: Any) -> list[str]:
        idx = _to_numpy(indices).astype(np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= len(self.names))]
        if bad.size:
            raise DataError(f"class index {int(bad[0])} is outside 0..{len(self.names) - 1} "
                            f"({len(self.names)} classes).")
        return [self.names[i] for i in idx]


def _plain(v: Any) -> Any:
    """numpy scalars → Python scalars, integral floats → int, so 1, 1.0 and np.int64(1) are one class."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        return v.strip()  # labels always lose surrounding whitespace ("cat " is "cat")
    return v


def _make_scaler(name: str) -> Any:
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    return {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}[name]()


class Preprocessor:
    """Fitted transforms of one run. Two modes:

    * ``kind == "table"``: columns → clip outliers → impute → scale numeric; one-hot categorical.
    * ``kind in ("signal", "image")``: x · input_scale, then (x − center) / scale with per-channel (images,
      (C, L) signals) or global ((L,) signals) statistics.

    Labels (classification) and the optional target scaler (regression) are shared by both modes.
    """

    def __init__(self, kind: str, task: str) -> None:
        self.version = FORMAT_VERSION
        self.kind = kind
        self.task = task
        # table mode
        self.columns: list[str] = []
        self.numeric: list[str] = []
        self.categorical: list[str] = []
        self.boolean: list[str] = []  # bool columns cast to 0/1 when one-hot encoding is off
        # numeric columns that held a few text cells in training ('?', 'n/a'): text is read as a missing value there
        self.coerce: list[str] = []
        # [min, max] of each numeric column's finite training values (after clipping): new rows far outside are warned
        self.ranges: dict[str, tuple[float, float]] = {}
        self.clean_categories = False
        self.clip_bounds: dict[str, tuple[float, float]] = {}
        self.num_imputer: Any = None
        self.cat_imputer: Any = None
        self.scaler: Any = None
        self.encoder: Any = None
        self.feature_names: list[str] = []
        self._origin: list[str] = []  # input column behind each output feature (for error messages)
        # array mode
        self.sample_shape: tuple[int, ...] = ()
        self.input_scale = 1.0
        self.scale_method = "none"
        self.center: np.ndarray | None = None
        self.spread: np.ndarray | None = None
        # targets
        self.labels: LabelCodec | None = None
        self.target_columns: list[str] = []
        self.target_mean: np.ndarray | None = None
        self.target_scale: np.ndarray | None = None
        # what rebuilding the model needs, so predicting never reads the training data (None: an older run's file)
        self.input_shape: tuple[int, ...] | None = None
        self.n_outputs: int | None = None
        # absolute paths of the data files training read (eval re-reads them from another working directory)
        self.source: dict[str, str] = {}
        # kind "text" (data.text): the fitted gradwise.data.text.TextEncoder; its tokenizer.json sits beside this file
        self.text: Any = None

    # ----------------------------------------------------------------------------------------- table fitting

    def fit_table(self, frame: pd.DataFrame, numeric: list[str], categorical: list[str], boolean: list[str], *,
                  scale: str, missing: str, clean_categories: bool, clip_bounds: dict[str, tuple[float, float]],
                  max_categories: int | None = None, coerce: Sequence[str] = ()) -> Preprocessor:
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import OneHotEncoder

        self.columns = [*numeric, *boolean, *categorical]
        self.numeric, self.categorical, self.boolean = list(numeric), list(categorical), list(boolean)
        self.coerce = [c for c in numeric if c in set(coerce)]
        self.clean_categories = clean_categories
        self.clip_bounds = dict(clip_bounds)
        num = self._numeric_block(frame)
        self.ranges = {}
        for j, c in enumerate(self.numeric):
            vals = num[:, j][np.isfinite(num[:, j])]
            if vals.size:
                self.ranges[c] = (float(vals.min()), float(vals.max()))
        if self.numeric:
            if missing == "median":
                # numpy's nanmedian is SimpleImputer(strategy="median")'s statistic (the mean of the same two middle
                # values) by partial sorting, where sklearn's masked-array median sorts every column: 5 s of 8 at
                # 700k training rows. An all-missing column gets 0, as keep_empty_features=True gives it.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": that column gets 0
                    stats = np.nanmedian(num, axis=0) if len(num) else np.full(num.shape[1], np.nan)
                self.num_imputer = _FittedImputer("median", np.where(np.isnan(stats), 0.0, stats))
            elif missing in ("mean", "most_frequent"):
                # keep_empty_features: an all-missing train column stays (as 0) so column positions never shift
                self.num_imputer = SimpleImputer(strategy=missing, keep_empty_features=True, copy=False).fit(num)
            if self.num_imputer is not None:  # its transform, in place: no second float64 block
                for j, value in enumerate(np.asarray(self.num_imputer.statistics_, dtype=np.float64)):
                    column = num[:, j]
                    column[np.isnan(column)] = value
            if scale != "none":
                self.scaler = _make_scaler(scale).fit(num)  # sklearn scalers ignore NaN while fitting
        del num
        if self.categorical:
            cat = self._category_block(frame)
            if missing in ("mean", "median", "most_frequent"):
                self.cat_imputer = SimpleImputer(strategy="most_frequent", missing_values=np.nan,
                                                 keep_empty_features=True).fit(cat)
                cat = self.cat_imputer.transform(cat)
            cat = np.where(pd.isna(cat), MISSING_CATEGORY, cat)
            self.encoder = OneHotEncoder(handle_unknown="ignore" if max_categories is None else "infrequent_if_exist",
                                         sparse_output=False, max_categories=max_categories, dtype=np.float32)
            self.encoder.fit(cat)
        onehot = list(self.encoder.get_feature_names_out(self.categorical)) if self.encoder is not None else []
        self.feature_names = [*self.numeric, *self.boolean, *map(str, onehot)]
        self._origin = [*self.numeric, *self.boolean]
        if self.encoder is not None:
            for col, cats in zip(self.categorical, self.encoder.categories_, strict=True):
                width = len(cats)
                infrequent = getattr(self.encoder, "infrequent_categories_", None)
                if infrequent is not None:
                    i = self.categorical.index(col)
                    if infrequent[i] is not None:
                        width = width - len(infrequent[i]) + 1
                self._origin.extend([col] * width)
        return self

    def _numeric_column(self, frame: pd.DataFrame, c: str, counts: dict[str, dict[str, int]] | None = None
                        ) -> np.ndarray:
        """Column ``c`` as a new float64 array: text cells (of a coerced column) and ±inf read as NaN, then clipped
        to the training fences. ``counts`` (data_report.json) gets the column's missing and out-of-fence cells,
        counted on the values as read, in this same pass."""
        raw = frame[c]
        vals, text = parse_numbers(raw)
        if text is not None and text.any() and c not in self.coerce:  # a coerced column's text is missing values
            raise DataError(f"column {quote(c)} should be numeric but holds {show(raw[text].iloc[0])} (row "
                            f"{raw.index[text][0]}). Fix the value, or leave the cell empty to mark it missing.")
        finite = np.isfinite(vals)
        bounds = self.clip_bounds.get(c)
        if counts is not None:
            counts["missing"][c] = int(len(vals) - np.count_nonzero(finite))
            if bounds is not None:  # as read: ±inf is beyond the fences, NaN is not
                with np.errstate(invalid="ignore"):
                    counts["outside"][c] = int(np.count_nonzero((vals < bounds[0]) | (vals > bounds[1])))
        vals[~finite] = np.nan  # ±inf is treated as a missing value (imputed, or reported)
        if bounds is not None:
            np.clip(vals, bounds[0], bounds[1], out=vals)  # NaN stays NaN
        return vals

    def _numeric_block(self, frame: pd.DataFrame) -> np.ndarray:
        """The numeric columns as one row-major float64 block (what the sklearn statistics are fitted on: row-major,
        as before, so they sum in the same order and come out the same to the last bit)."""
        num = np.empty((len(frame), len(self.numeric)), dtype=np.float64)
        for j0 in range(0, len(self.numeric), COLUMN_GROUP):  # through a column-major stage: see table_matrix
            group = self.numeric[j0:j0 + COLUMN_GROUP]
            stage = np.empty((len(frame), len(group)), dtype=np.float64, order="F")
            for g, c in enumerate(group):
                stage[:, g] = self._numeric_column(frame, c)
            num[:, j0:j0 + len(group)] = stage
        return num

    def _category_codes(self, frame: pd.DataFrame, c: str) -> tuple[np.ndarray, list[Any]]:
        """Column ``c`` as codes (-1: missing) into its distinct values, cleaned as in training."""
        codes, texts = distinct_values(frame[c])
        if self.clean_categories:
            texts = [_clean_text(t, casefold=True, strip=True) for t in texts]
        return codes, texts

    def _category_block(self, frame: pd.DataFrame) -> np.ndarray:
        block = np.empty((len(frame), len(self.categorical)), dtype=object)
        for i, c in enumerate(self.categorical):
            codes, values = self._category_codes(frame, c)
            lookup = np.empty(len(values) + 1, dtype=object)
            lookup[:-1], lookup[-1] = values, np.nan  # code -1 (missing) picks the last entry
            block[:, i] = lookup[codes]
        return block

    def _onehot_maps(self) -> list[tuple[dict[Any, int], int, int | None]]:
        """The fitted encoder as (category -> output column, width, column of unknown values) per input column."""
        if isinstance(self.encoder, _FittedOneHot):
            return self.encoder._maps
        cached = getattr(self, "_onehot_cache", None)
        if cached is None or cached[0] is not self.encoder:
            rare = getattr(self.encoder, "infrequent_categories_", None) or [None] * len(self.encoder.categories_)
            fitted = _FittedOneHot(list(self.encoder.categories_), list(rare), self.encoder.handle_unknown)
            self._onehot_cache = (self.encoder, fitted._maps)
        return self._onehot_cache[1]

    def table_matrix(self, frame: pd.DataFrame, counts: dict[str, dict[str, int]] | None = None) -> np.ndarray:
        """Transform a frame to the float32 feature matrix without the finiteness check.

        One pass, one column at a time, straight into the one float32 matrix: the same float64 operations in the
        same order as the fitted sklearn objects (so the same bits), with at most one float64 column alive
        besides it. Text work is per distinct value. ``counts``: {"missing": {column: cells},
        "outside": {column: cells beyond the clip fences}} of this frame, for data_report.json.
        """
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(f"the input is missing column(s) {names(missing)}; the model was trained on: "
                            f"{names(self.columns)}.")
        out = np.zeros((len(frame), len(self.feature_names)), dtype=np.float32)  # zeroed lazily by the OS
        fill = None if self.num_imputer is None else np.asarray(self.num_imputer.statistics_, dtype=np.float64)
        scaling = _scaler_steps(self.scaler)
        for j0 in range(0, len(self.numeric), COLUMN_GROUP):
            # a few columns at a time through a column-major stage: writing one column of a row-major matrix
            # touches a cache line per cell (1.2 s for 700k x 20 here), the stage's block copy does not
            group = self.numeric[j0:j0 + COLUMN_GROUP]
            stage = np.empty((len(frame), len(group)), dtype=np.float32, order="F")
            for g, c in enumerate(group):
                vals = self._numeric_column(frame, c, counts)
                if fill is not None:
                    vals[np.isnan(vals)] = fill[j0 + g]
                for op, arr in scaling:  # sklearn's in-place steps: x -= mean; x /= scale (or x *= scale; x += min)
                    op(vals, arr[j0 + g], out=vals)
                stage[:, g] = vals
            out[:, j0:j0 + len(group)] = stage
            del stage
        at = len(self.numeric)
        for c in self.boolean:
            codes, uniques = pd.factorize(frame[c], use_na_sentinel=True)
            if counts is not None:
                counts["missing"][c] = int(np.count_nonzero(codes < 0))
            as01 = pd.to_numeric(pd.Series([_bool01(u) for u in uniques.tolist()], dtype=object), errors="coerce")
            out[:, at] = np.append(as01.to_numpy(dtype=np.float64, na_value=np.nan), np.nan)[codes]
            at += 1
        if self.encoder is not None:
            for i, (c, (index, width, unknown)) in enumerate(zip(self.categorical, self._onehot_maps(), strict=True)):
                codes, values = self._category_codes(frame, c)
                if counts is not None:
                    counts["missing"][c] = int(np.count_nonzero(codes < 0))
                gap: Any = MISSING_CATEGORY
                if self.cat_imputer is not None:
                    stat = self.cat_imputer.statistics_[i]
                    gap = MISSING_CATEGORY if pd.isna(stat) else stat
                # output column of each distinct value, the missing cells' value last (code -1)
                where = [index.get(v, unknown) for v in [*values, gap]]
                column = np.array([-1 if w is None else w for w in where], dtype=np.int64)[codes]
                rows = np.flatnonzero(column >= 0)
                out[rows, at + column[rows]] = 1.0
                at += width
        return out

    def nonfinite_columns(self, matrix: np.ndarray) -> dict[str, int]:
        """Input columns whose transformed values contain NaN/Inf, with how many rows are affected."""
        # the column sums in float64 are finite exactly when every value is (float32 values cannot overflow them):
        # one pass and no matrix-sized mask in the usual case
        if matrix.dtype == np.float32 and np.isfinite(np.add.reduce(matrix, axis=0, dtype=np.float64)).all():
            return {}
        bad = ~np.isfinite(matrix)
        out: dict[str, int] = {}
        for j in np.flatnonzero(bad.any(axis=0)):
            name = self._origin[j] if self.kind == "table" and j < len(self._origin) else f"feature {j}"
            out[name] = max(out.get(name, 0), int(bad[:, j].sum()))
        return out

    # ----------------------------------------------------------------------------------------- array fitting

    def fit_array(self, x: np.ndarray, scale: str, input_scale: float = 1.0) -> Preprocessor:
        self.sample_shape = tuple(int(s) for s in x.shape[1:])
        self.input_scale = float(input_scale)
        self.scale_method = scale
        self.feature_names = []
        if scale == "none":
            return self
        # statistics over every axis except channels: per-channel for images/(C, L) signals, global for (L,) signals.
        # One channel at a time in float64: a float64 copy of a whole image set is 8x its uint8 pixels
        channels = [x[:, c] for c in range(x.shape[1])] if x.ndim >= 3 else [x]
        if x.dtype == np.uint8 and scale in ("standard", "minmax"):
            # uint8 pixels: from the 256 counts of each value, without the float64 copy of a channel (8 bytes
            # per pixel, and as much again for the deviations: the peak of loading an image set)
            stats = [_uint8_spread_stats(ch, self.input_scale, scale) for ch in channels]
        else:
            stats = [_spread_stats(np.multiply(ch, self.input_scale, dtype=np.float64), scale) for ch in channels]
        center, spread = (np.array([s[i] for s in stats], dtype=np.float64) for i in (0, 1))
        spread = np.where(spread > 0, spread, 1.0)  # a constant channel is centred, not divided by zero
        # shaped to broadcast against one sample or a batch: (C, 1, ...) per channel, a scalar for (L,) signals
        shape = (-1,) + (1,) * (x.ndim - 2) if x.ndim >= 3 else ()
        self.center = np.asarray(center.reshape(shape), dtype=np.float32)
        self.spread = np.asarray(spread.reshape(shape), dtype=np.float32)
        return self

    def array_matrix(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape[1:] != self.sample_shape and self.kind == "image" and x.ndim == len(self.sample_shape) \
                and self.sample_shape[0] == 1:
            x = x[:, None]  # (N, H, W) grayscale given without its channel axis
        if x.shape[1:] != self.sample_shape:
            shape = ", ".join(map(str, self.sample_shape))
            raise DataError(f"input samples have shape {x.shape[1:]}, but the model was trained on "
                            f"{self.sample_shape}; give an array of shape (N, {shape}).")
        # in place on the one float32 copy (the same operations, so the same bits, without two more copies)
        out = x.astype(np.float32)
        out *= np.float32(self.input_scale)
        if self.center is not None and self.spread is not None:
            out -= self.center
            out /= self.spread
        return out

    # ----------------------------------------------------------------------------------------- public transforms

    def transform_frame(self, frame: pd.DataFrame) -> torch.Tensor:
        """New table rows → float32 feature tensor, exactly as the training rows were transformed."""
        if self.kind != "table":
            raise DataError(f"this model was trained on {self.kind} arrays, not a table; use transform_array.")
        matrix = self.table_matrix(frame)
        self._check_finite(matrix, "the input rows")
        return torch.from_numpy(matrix)

    def transform_array(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """New samples as an array → float32 tensor. For tables, columns are in `columns` order."""
        arr = _to_numpy(x)
        if self.kind != "table" and arr.dtype.kind not in "biuf":  # text, objects, complex, dates: no numbers
            raise DataError(f"input array has dtype {arr.dtype}; give numbers (a float or integer array).")
        if self.kind == "table":
            if arr.ndim != 2 or arr.shape[1] != len(self.columns):
                raise DataError(f"expected a 2-D array with {len(self.columns)} columns ({', '.join(self.columns)}),"
                                f" got shape {arr.shape}.")
            return self.transform_frame(pd.DataFrame(arr, columns=self.columns))
        matrix = self.array_matrix(arr)
        self._check_finite(matrix, "the input samples")
        return torch.from_numpy(matrix)

    def transform_new_rows(self, frame: pd.DataFrame, where: str) -> tuple[torch.Tensor, list[str]]:
        """New table rows at predict time → (features, warnings): what training saw is the rule.

        Refused (DataError naming `where` and the column): missing feature columns, text in a numeric column,
        missing/infinite numbers when training did not fill them (data.missing=none or drop), values too large to
        survive scaling. Warned (one line per column, with counts): categories not seen in training, numbers far
        outside the training range, missing/infinite values filled as training filled them, text read as missing in
        a column training coerced the same way.
        """
        if self.kind != "table":
            raise DataError(f"{where}: this model was trained on {self.kind} arrays, not a table; give an .npy/.npz "
                            f"array of shape (N, {', '.join(map(str, self.sample_shape))}).")
        absent = [c for c in self.columns if c not in frame.columns]
        if absent:
            raise DataError(f"{where} lacks the feature column(s) {names(absent)}; the model was trained on "
                            f"{names(self.columns)}. Give every one of them (other columns are copied to the output).")
        n = len(frame)
        warnings: list[str] = []
        for c in self.numeric:
            raw = frame[c]
            vals = pd.to_numeric(raw, errors="coerce")
            text = vals.isna() & raw.notna()
            if text.any():
                example = show(raw[text].iloc[0])
                if c not in self.coerce:
                    raise DataError(f"{where}: column {quote(c)} is numeric in training but holds text ({example} in "
                                    f"row {int(np.flatnonzero(text.to_numpy())[0]) + 1}; {int(text.sum())} of {n} "
                                    "rows). Fix those cells, or leave them empty to mark them missing.")
                warnings.append(f"column {quote(c)}: {int(text.sum())} of {n} rows hold text (e.g. {example}); read "
                                "as missing values, as in training")
            num = vals.to_numpy(dtype=np.float64, na_value=np.nan)
            finite = np.isfinite(num)
            gaps = int((~finite).sum())
            if gaps:
                rows = np.flatnonzero(~finite)[:5] + 1
                if self.num_imputer is None:
                    raise DataError(f"{where}: column {quote(c)} has {gaps} of {n} rows missing or infinite (row"
                                    f"{'s' if gaps > 1 else ''} "
                                    f"{', '.join(map(str, rows))}{', ...' if gaps > 5 else ''}); this run was trained "
                                    "without filling missing values (data.missing=none or drop), so it cannot predict "
                                    "them. Fill those cells or remove those rows, or retrain with data.missing=median.")
                fill = float(self.num_imputer.statistics_[self.numeric.index(c)])
                warnings.append(f"column {quote(c)}: {gaps} of {n} rows are missing or infinite; filled with "
                                f"{fill:g} (the training {self.num_imputer.strategy}), as in training")
            if c in self.ranges and finite.any():
                lo, hi = self.ranges[c]
                width = hi - lo
                with np.errstate(invalid="ignore", over="ignore"):
                    far = finite & ((num < lo - FAR_OUTSIDE * width) | (num > hi + FAR_OUTSIDE * width))
                if far.any():
                    worst = num[far][np.argmax(np.abs(num[far] - (lo + hi) / 2))]
                    clip = (f"; clipped to [{self.clip_bounds[c][0]:g}, {self.clip_bounds[c][1]:g}] as in training"
                            if c in self.clip_bounds else "; the model extrapolates there")
                    warnings.append(f"column {quote(c)}: {int(far.sum())} of {n} rows are outside the training range "
                                    f"[{lo:g}, {hi:g}] by more than its width (e.g. {worst:g}){clip}")
        if self.encoder is not None:
            block = self._category_block(frame)
            for i, c in enumerate(self.categorical):
                col = block[:, i]
                missing = pd.isna(col)
                if missing.any() and self.cat_imputer is not None:
                    fill = self.cat_imputer.statistics_[i]
                    warnings.append(f"column {quote(c)}: {int(missing.sum())} of {n} rows are missing; filled with "
                                    f"{show(fill)} (the training most frequent value), as in training")
                    col = np.where(missing, fill, col)
                col = np.where(pd.isna(col), MISSING_CATEGORY, col)
                known = set(self.encoder.categories_[i].tolist())
                unseen = np.array([v not in known for v in col.tolist()], dtype=bool)
                if unseen.any():
                    first = int(np.flatnonzero(unseen)[0])
                    original = frame[c].iloc[first]  # as the user wrote it, not cleaned
                    example = show(MISSING_CATEGORY if pd.isna(original) else original)
                    rare = getattr(self.encoder, "infrequent_categories_", None)
                    as_rare = self.encoder.handle_unknown == "infrequent_if_exist" and rare is not None \
                        and rare[i] is not None
                    how = "the infrequent category" if as_rare else "all-zero"
                    warnings.append(f"column {quote(c)}: {int(unseen.sum())} of {n} rows have categories not seen in "
                                    f"training (e.g. {example}); they are encoded as {how}")
        with np.errstate(over="ignore", invalid="ignore"):
            matrix = self.table_matrix(frame)
        bad = self.nonfinite_columns(matrix)
        if bad:
            c, count = next(iter(bad.items()))
            if c in self.numeric:
                j = self._origin.index(c)
                row = int(np.flatnonzero(~np.isfinite(matrix[:, j]))[0])
                value = pd.to_numeric(frame[c], errors="coerce").iloc[row]
                raise DataError(f"{where}: column {quote(c)} holds values too large to use ({count} of {n} rows, e.g. "
                                f"{show(value)} in row {row + 1}): they overflow when scaled as in training. Fix or "
                                "remove those rows"
                                + (f" (the training range was [{self.ranges[c][0]:g}, {self.ranges[c][1]:g}])."
                                   if c in self.ranges else "."))
            raise DataError(f"{where}: column {quote(c)} has {count} of {n} rows that cannot be encoded (missing, or "
                            "not true/false). Fix or remove those rows.")
        return torch.from_numpy(matrix), warnings

    def _check_finite(self, matrix: np.ndarray, where: str) -> None:
        bad = self.nonfinite_columns(matrix.reshape(len(matrix), -1))
        if bad:
            cols = ", ".join(f"'{c}' ({n} rows)" for c, n in bad.items())
            raise DataError(f"{where} contain NaN/Inf after preprocessing in {cols}. Fill those values, or train "
                            "with data.missing=median (or mean/most_frequent) so missing values are imputed.")

    def encode_labels(self, values: Any) -> torch.Tensor:
        if self.labels is None:
            raise DataError("this is a regression model; it has no class labels to encode.")
        return torch.from_numpy(self.labels.encode(values))

    def decode_labels(self, indices: Any) -> list[str]:
        """Class indices (tensor, array or list) → class names."""
        if self.labels is None:
            raise DataError("this is a regression model; it has no class labels to decode.")
        return self.labels.decode(indices)

    @property
    def class_names(self) -> list[str] | None:
        return list(self.labels.names) if self.labels is not None else None

    # ----------------------------------------------------------------------------------------- targets

    def fit_target(self, y: np.ndarray) -> None:
        y2 = y.reshape(len(y), -1).astype(np.float64)
        mean, std = y2.mean(axis=0), y2.std(axis=0)
        self.target_mean = mean.astype(np.float32)
        self.target_scale = np.where(std > 0, std, 1.0).astype(np.float32)

    def transform_target(self, y: torch.Tensor | np.ndarray) -> torch.Tensor:
        t = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y, dtype=np.float32))
        if self.target_mean is None or self.target_scale is None:
            return t
        mean, scale = self._target_stats(t)
        return (t - mean) / scale

    def inverse_target(self, y: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Model outputs / scaled targets back to the original units (identity when the target is unscaled)."""
        t = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y, dtype=np.float32))
        if self.target_mean is None or self.target_scale is None:
            return t
        mean, scale = self._target_stats(t)
        return t * scale + mean

    def _target_stats(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.target_mean is not None and self.target_scale is not None
        mean = torch.as_tensor(self.target_mean, device=t.device, dtype=t.dtype if t.is_floating_point() else None)
        scale = torch.as_tensor(self.target_scale, device=t.device, dtype=mean.dtype)
        if t.ndim <= 1:  # (N,) single target: the stats are length-1
            return mean.reshape(()), scale.reshape(())
        return mean, scale

    # ----------------------------------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> Path:
        """Write the fitted state as data only: one JSON file (names, categories, options, numbers). Atomic.

        Never a pickle: a run directory is shared between people, and unpickling a file can run any code in it.
        Floats are written with Python's shortest round-trip repr, so loading restores them bit for bit.
        """
        from gradwise.files import atomic_write_text

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        # allow_nan=False: strict JSON any reader accepts (non-finite numbers are encoded as strings, see _encode_array)
        if self.text is not None:  # first: a preprocess.json that names a tokenizer always finds it
            self.text.save_tokenizer(p.parent)
        atomic_write_text(p, json.dumps(_state_to_json(self), indent=1, allow_nan=False) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> Preprocessor:
        """Read a file `save` wrote, checking every type and shape; nothing in it is executed or imported.

        `path` may be the run directory itself. The pickle of an older gradwise (a directory holding only its
        `preprocess.pkl`, or a file that starts like a pickle) is refused, never unpickled, with a message saying how
        to rewrite it safely.
        """
        p = Path(path)
        if p.is_dir():
            p = p / PREPROCESS_FILE
        if not p.exists():
            if (p.parent / LEGACY_PREPROCESS_FILE).exists():
                raise CheckpointError(legacy_message(p.parent / LEGACY_PREPROCESS_FILE))
            raise DataError(f"preprocessor file '{p}' does not exist; a run directory keeps its fitted preprocessing "
                            f"in {PREPROCESS_FILE}. Point to the directory of the run that trained the model (or "
                            "retrain it).")
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"preprocessor file '{p}' cannot be read ({exc}); check its permissions.") from None
        if raw[:1] == b"\x80":  # a pickle (protocol 2+) starts with PROTO: refused by its content, whatever its name
            raise CheckpointError(legacy_message(p))
        try:
            blob = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CheckpointError(f"preprocessor file '{p}' is not readable JSON ({exc}); expected the "
                                  f"{PREPROCESS_FILE} gradwise writes. It may be truncated or replaced: retrain the "
                                  "run, or `gradwise train --resume` it to rewrite the file.") from None
        return _state_from_json(blob, p)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary for reports."""
        d: dict[str, Any] = {"kind": self.kind, "task": self.task}
        if self.kind == "table":
            d.update(numeric=self.numeric, categorical=self.categorical, boolean=self.boolean,
                     n_features=len(self.feature_names), scaler=_scaler_name(self.scaler),
                     one_hot=self.encoder is not None, clipped_columns=sorted(self.clip_bounds),
                     text_read_as_missing=list(self.coerce))
        elif self.text is not None:
            d["text"] = self.text.describe()
        else:
            d.update(sample_shape=list(self.sample_shape), input_scale=self.input_scale, scale=self.scale_method)
        d["classes"] = self.class_names
        d["target_scaled"] = self.target_mean is not None
        return d


def _scaler_name(scaler: Any) -> str | None:
    """The sklearn class name of a fitted scaler, also for one loaded from preprocess.json."""
    if scaler is None:
        return None
    method = getattr(scaler, "method", None)
    return _SCALER_NAMES.get(method, type(scaler).__name__) if method else type(scaler).__name__


def _bool01(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, str):
        low = v.strip().casefold()
        if low in ("true", "yes", "1"):
            return 1.0
        if low in ("false", "no", "0"):
            return 0.0
    return v


# --------------------------------------------------------------------------------------------- the saved format
# preprocess.json holds only JSON scalars, lists and objects. Arrays are {"dtype", "shape", "data"} with the data
# flattened; a non-finite float is the string "nan", "inf" or "-inf" (strict JSON has no NaN). The fitted sklearn
# objects are reduced to the numbers their transform uses and rebuilt as the _Fitted* classes below, which apply
# the same float64 operations in the same order, so a loaded preprocessor's output is bit-identical.

_ARRAY_DTYPES = ("float32", "float64")
_SCALER_ARRAYS = {"standard": ("mean_", "scale_"), "minmax": ("min_", "scale_"), "robust": ("center_", "scale_")}
_SKLEARN_SCALERS = {"StandardScaler": "standard", "MinMaxScaler": "minmax", "RobustScaler": "robust"}
_SCALER_NAMES = {v: k for k, v in _SKLEARN_SCALERS.items()}


def legacy_message(file: Path) -> str:
    """Why an older run's preprocess.pkl is refused, and how to go on (one line: the CLI prints it as is)."""
    run_dir = file.parent
    return (f"'{file}' was written by an older gradwise as a Python pickle and is not "
            f"loaded: unpickling a file can run any code in it, and opening a run directory must never do that. "
            f"To use this run, rewrite its preprocessing as {PREPROCESS_FILE} with `gradwise train --resume "
            f"{run_dir}` (it refits it on the same training rows of the unchanged data file; a finished run only "
            "re-measures its test split), or retrain it.")


class _FittedImputer:
    """`SimpleImputer.transform` from its fitted statistics: each missing cell (NaN) gets its column's statistic."""

    def __init__(self, strategy: str, statistics: np.ndarray) -> None:
        self.strategy = strategy
        self.statistics_ = statistics

    def transform(self, x: np.ndarray) -> np.ndarray:
        numeric = self.statistics_.dtype != object
        out = np.array(x, dtype=np.float64 if numeric else object, copy=True)
        # sklearn's missing mask for missing_values=NaN: isnan for floats, "x != x" for object arrays
        mask = np.isnan(out) if numeric else (out != out)
        rows, cols = np.nonzero(mask)
        out[rows, cols] = self.statistics_[cols]
        return out


class _FittedScaler:
    """The transform of a fitted Standard/MinMax/RobustScaler (default options), in sklearn's operation order."""

    def __init__(self, method: str, arrays: dict[str, np.ndarray]) -> None:
        self.method = method
        for name, value in arrays.items():
            setattr(self, name, value)

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = np.array(x, dtype=np.float64, copy=True)
        if self.method == "standard":
            out -= self.mean_
            out /= self.scale_
        elif self.method == "minmax":
            out *= self.scale_
            out += self.min_
        else:
            out -= self.center_
            out /= self.scale_
        return out


class _FittedOneHot:
    """`OneHotEncoder.transform` (dense float32, handle_unknown ignore / infrequent_if_exist, no drop).

    Per input column: one output column per frequent category in `categories_` order, then one for all infrequent
    categories when there are any; an unseen value sets the infrequent column if there is one, else nothing.
    """

    def __init__(self, categories: list[np.ndarray], infrequent: list[np.ndarray | None], handle_unknown: str) -> None:
        self.categories_ = categories
        self.infrequent_categories_ = infrequent
        self.handle_unknown = handle_unknown
        self._maps: list[tuple[dict[Any, int], int, int | None]] = []
        for cats, rare in zip(categories, infrequent, strict=True):
            rare_set = set(rare.tolist()) if rare is not None else set()
            frequent = [c for c in cats.tolist() if c not in rare_set]
            index = {c: j for j, c in enumerate(frequent)}
            other = len(frequent) if rare_set else None
            index.update({c: other for c in rare_set if other is not None})
            width = len(frequent) + (1 if rare_set else 0)
            self._maps.append((index, width, other if handle_unknown == "infrequent_if_exist" else None))

    def transform(self, x: np.ndarray) -> np.ndarray:
        widths = [w for _, w, _ in self._maps]
        out = np.zeros((len(x), sum(widths)), dtype=np.float32)
        start = 0
        for i, (index, width, unknown) in enumerate(self._maps):
            for r, value in enumerate(x[:, i].tolist()):
                j = index.get(value, unknown)
                if j is not None:
                    out[r, start + j] = 1.0
            start += width
        return out


def _scalar(v: Any) -> Any:
    """A category/class value as a JSON scalar (their values are str, or int/float/bool; anything else as str)."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, str | bool | int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return str(v)


def _number(v: float) -> float | str:
    v = float(v)
    return v if math.isfinite(v) else str(v)  # "nan", "inf", "-inf"


def _encode_array(a: Any) -> dict[str, Any] | None:
    if a is None:
        return None
    arr = np.asarray(a)
    if arr.dtype.name not in _ARRAY_DTYPES:
        arr = arr.astype(np.float64)
    return {"dtype": arr.dtype.name, "shape": list(arr.shape), "data": [_number(v) for v in arr.reshape(-1).tolist()]}


def _state_to_json(pre: Preprocessor) -> dict[str, Any]:
    table: dict[str, Any] | None = None
    if pre.kind == "table":
        scaler = None
        if pre.scaler is not None:
            method = getattr(pre.scaler, "method", None) or _SKLEARN_SCALERS[type(pre.scaler).__name__]
            scaler = {"method": method,
                      "arrays": {n: _encode_array(getattr(pre.scaler, n)) for n in _SCALER_ARRAYS[method]}}
        encoder = None
        if pre.encoder is not None:
            rare = getattr(pre.encoder, "infrequent_categories_", None) or [None] * len(pre.encoder.categories_)
            encoder = {"handle_unknown": pre.encoder.handle_unknown,
                       "categories": [[_scalar(c) for c in cats] for cats in pre.encoder.categories_],
                       "infrequent": [None if r is None else [_scalar(c) for c in r] for r in rare]}
        table = {
            "columns": [_scalar(c) for c in pre.columns], "numeric": [_scalar(c) for c in pre.numeric],
            "categorical": [_scalar(c) for c in pre.categorical], "boolean": [_scalar(c) for c in pre.boolean],
            "clean_categories": bool(pre.clean_categories),
            "clip_bounds": [[_scalar(c), _number(lo), _number(hi)] for c, (lo, hi) in pre.clip_bounds.items()],
            "num_imputer": None if pre.num_imputer is None else {
                "strategy": str(pre.num_imputer.strategy), "statistics": _encode_array(pre.num_imputer.statistics_)},
            "cat_imputer": None if pre.cat_imputer is None else {
                "strategy": str(pre.cat_imputer.strategy),
                "statistics": [_scalar(v) for v in pre.cat_imputer.statistics_.tolist()]},
            "scaler": scaler, "encoder": encoder,
            "feature_names": [str(n) for n in pre.feature_names], "origin": [_scalar(c) for c in pre._origin],
            "coerce": [_scalar(c) for c in pre.coerce],
            "ranges": [[_scalar(c), _number(lo), _number(hi)] for c, (lo, hi) in pre.ranges.items()],
        }
    return {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": pre.kind, "task": pre.task, "table": table,
        "array": {"sample_shape": [int(d) for d in pre.sample_shape], "input_scale": _number(pre.input_scale),
                  "scale_method": pre.scale_method, "center": _encode_array(pre.center),
                  "spread": _encode_array(pre.spread)},
        "labels": None if pre.labels is None else {"classes": [_scalar(c) for c in pre.labels.classes],
                                                   "names": list(pre.labels.names)},
        "target": {"columns": [_scalar(c) for c in pre.target_columns], "mean": _encode_array(pre.target_mean),
                   "scale": _encode_array(pre.target_scale)},
        # the model's input and output widths: predict rebuilds the model from these, without the training data
        "model": None if pre.input_shape is None or pre.n_outputs is None else {
            "input_shape": [int(d) for d in pre.input_shape], "n_outputs": int(pre.n_outputs)},
        "source": {str(k): str(v) for k, v in pre.source.items()},
        "text": None if pre.text is None else pre.text.to_json(),
    }


class _Reader:
    """Type- and shape-checked access to a loaded preprocess.json; every failure names the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, expected: str) -> CheckpointError:
        return CheckpointError(f"preprocessor file '{self.path}' is damaged or was not written by gradwise: {where} "
                               f"should be {expected}. Retrain the run, or rewrite the file from the training data "
                               f"with `gradwise train --resume {self.path.parent}`.")

    def get(self, obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, expected: str,
            optional: bool = False) -> Any:
        if key not in obj:
            raise self.fail(f"{where}.{key}", f"present ({expected})")
        value = obj[key]
        if value is None and optional:
            return None
        # bool is an int to isinstance: a true/false where a number belongs is refused
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise self.fail(f"{where}.{key}", expected)
        return value

    def section(self, obj: dict[str, Any], key: str, where: str, optional: bool = False) -> Any:
        return self.get(obj, key, dict, where, "an object", optional)

    def names(self, obj: dict[str, Any], key: str, where: str) -> list[Any]:
        values = self.get(obj, key, list, where, "a list of column names (strings or integers)")
        if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
            raise self.fail(f"{where}.{key}", "a list of column names (strings or integers)")
        return values

    def scalars(self, values: Any, where: str) -> list[Any]:
        if not isinstance(values, list) or not all(v is None or isinstance(v, str | int | float) for v in values):
            raise self.fail(where, "a list of strings or numbers")
        return values

    def number(self, value: Any, where: str) -> float:
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):
            return float(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise self.fail(where, 'a number (or "nan", "inf", "-inf")')

    def array(self, obj: dict[str, Any], key: str, where: str, shape: tuple[int, ...] | None = None,
              optional: bool = True) -> np.ndarray | None:
        spec = self.get(obj, key, dict, where, "an array object {dtype, shape, data}", optional)
        if spec is None:
            return None
        at = f"{where}.{key}"
        dtype = spec.get("dtype")
        dims = spec.get("shape")
        data = spec.get("data")
        if dtype not in _ARRAY_DTYPES:
            raise self.fail(f"{at}.dtype", f"one of {', '.join(_ARRAY_DTYPES)}")
        if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                 for d in dims):
            raise self.fail(f"{at}.shape", "a list of non-negative integers")
        if not isinstance(data, list) or len(data) != math.prod(dims):
            raise self.fail(f"{at}.data", f"a list of {math.prod(dims)} numbers (shape {dims})")
        if shape is not None and tuple(dims) != shape:
            raise self.fail(f"{at}.shape", f"{list(shape)} to match the columns it applies to")
        values = [self.number(v, f"{at}.data") for v in data]
        return np.asarray(values, dtype=np.float64).astype(dtype).reshape(dims)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _state_from_json(blob: Any, path: Path) -> Preprocessor:
    r = _Reader(path)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_NAME:
        raise CheckpointError(f"'{path}' is not a gradwise preprocessor file (expected a JSON object with "
                              f'"format": "{FORMAT_NAME}"). Point to the run directory gradwise wrote, or retrain.')
    version = r.get(blob, "version", int, "file", "an integer")
    if version != FORMAT_VERSION:
        newer = version > FORMAT_VERSION
        raise CheckpointError(f"preprocessor file '{path}' has format version {version}; this gradwise reads "
                              f"version {FORMAT_VERSION}. " + ("Upgrade gradwise to open this run." if newer else
                                                               "Retrain the run with this gradwise."))
    kind = r.get(blob, "kind", str, "file", '"table", "signal", "image" or "text"')
    task = r.get(blob, "task", str, "file", '"classification" or "regression"')
    if kind not in ("table", "signal", "image", "text"):
        raise r.fail("kind", '"table", "signal", "image" or "text"')
    if task not in ("classification", "regression"):
        raise r.fail("task", '"classification" or "regression"')
    pre = Preprocessor(kind, task)
    if kind == "table":
        _read_table(r, pre, r.section(blob, "table", "file"))
    arr = r.section(blob, "array", "file")
    shape = r.get(arr, "sample_shape", list, "array", "a list of positive integers")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise r.fail("array.sample_shape", "a list of positive integers")
    pre.sample_shape = tuple(shape)
    pre.input_scale = r.number(arr.get("input_scale"), "array.input_scale")
    pre.scale_method = r.get(arr, "scale_method", str, "array", '"none", "standard", "minmax" or "robust"')
    if pre.scale_method not in ("none", *_SCALER_ARRAYS):
        raise r.fail("array.scale_method", '"none", "standard", "minmax" or "robust"')
    pre.center, pre.spread = r.array(arr, "center", "array"), r.array(arr, "spread", "array")
    for name, stat in (("center", pre.center), ("spread", pre.spread)):
        if stat is not None:
            try:
                np.broadcast_shapes(stat.shape, pre.sample_shape)
            except ValueError:
                raise r.fail(f"array.{name}.shape",
                             f"broadcastable to the sample shape {list(pre.sample_shape)}") from None
    labels = r.section(blob, "labels", "file", optional=True)
    if labels is not None:
        classes = r.scalars(labels.get("classes"), "labels.classes")
        names = labels.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) != len(classes):
            raise r.fail("labels.names", f"a list of {len(classes)} strings (one per class)")
        pre.labels = LabelCodec(classes, names)
    target = r.section(blob, "target", "file")
    pre.target_columns = r.names(target, "columns", "target")
    pre.target_mean = r.array(target, "mean", "target")
    pre.target_scale = r.array(target, "scale", "target")
    if (pre.target_mean is None) != (pre.target_scale is None) or (
            pre.target_mean is not None and pre.target_scale is not None
            and (pre.target_mean.ndim != 1 or pre.target_mean.shape != pre.target_scale.shape)):
        raise r.fail("target.mean/scale", "both absent, or two 1-D arrays of the same length")
    # optional: absent from files of runs trained before predict stopped reading the training data
    model = r.section(blob, "model", "file", optional=True) if "model" in blob else None
    if model is not None:
        shape = r.get(model, "input_shape", list, "model", "a list of positive integers")
        if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise r.fail("model.input_shape", "a list of positive integers")
        outputs = r.get(model, "n_outputs", int, "model", "a positive integer")
        if outputs < 1:
            raise r.fail("model.n_outputs", "a positive integer")
        pre.input_shape, pre.n_outputs = tuple(shape), outputs
    source = r.section(blob, "source", "file", optional=True) if "source" in blob else None
    if source is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in source.items()):
            raise r.fail("source", "an object of file paths")
        pre.source = dict(source)
    if kind == "text":  # the fitted tokenizer: tokenizer.json in the same directory, read as data
        from gradwise.data.text import TextEncoder

        pre.text = TextEncoder.from_json(blob.get("text"), path)
    return pre


def _read_table(r: _Reader, pre: Preprocessor, t: dict[str, Any]) -> None:
    pre.columns = r.names(t, "columns", "table")
    pre.numeric, pre.categorical = r.names(t, "numeric", "table"), r.names(t, "categorical", "table")
    pre.boolean = r.names(t, "boolean", "table")
    if pre.columns != [*pre.numeric, *pre.boolean, *pre.categorical]:
        raise r.fail("table.columns", "the numeric, boolean then categorical columns, in that order")
    pre.clean_categories = r.get(t, "clean_categories", bool, "table", "true or false")
    bounds = r.get(t, "clip_bounds", list, "table", "a list of [column, low, high]")
    for item in bounds:
        if not isinstance(item, list) or len(item) != 3 or item[0] not in pre.numeric:
            raise r.fail("table.clip_bounds", "a list of [numeric column, low, high]")
        pre.clip_bounds[item[0]] = (r.number(item[1], "table.clip_bounds"), r.number(item[2], "table.clip_bounds"))
    n_num, n_cat = len(pre.numeric), len(pre.categorical)
    imp = r.section(t, "num_imputer", "table", optional=True)
    if imp is not None:
        stats = r.array(imp, "statistics", "table.num_imputer", shape=(n_num,), optional=False)
        assert stats is not None
        pre.num_imputer = _FittedImputer(r.get(imp, "strategy", str, "table.num_imputer", "a string"),
                                         stats.astype(np.float64))
    imp = r.section(t, "cat_imputer", "table", optional=True)
    if imp is not None:
        values = r.scalars(imp.get("statistics"), "table.cat_imputer.statistics")
        if len(values) != n_cat:
            raise r.fail("table.cat_imputer.statistics", f"{n_cat} values (one per categorical column)")
        stats = np.empty(n_cat, dtype=object)
        stats[:] = [np.nan if v is None else v for v in values]
        pre.cat_imputer = _FittedImputer(r.get(imp, "strategy", str, "table.cat_imputer", "a string"), stats)
    scaler = r.section(t, "scaler", "table", optional=True)
    if scaler is not None:
        method = r.get(scaler, "method", str, "table.scaler", '"standard", "minmax" or "robust"')
        if method not in _SCALER_ARRAYS:
            raise r.fail("table.scaler.method", '"standard", "minmax" or "robust"')
        arrays = r.section(scaler, "arrays", "table.scaler")
        pre.scaler = _FittedScaler(method, {n: r.array(arrays, n, "table.scaler.arrays", shape=(n_num,),
                                                       optional=False) for n in _SCALER_ARRAYS[method]})
    enc = r.section(t, "encoder", "table", optional=True)
    width = n_num + len(pre.boolean)
    if enc is not None:
        unknown = r.get(enc, "handle_unknown", str, "table.encoder", '"ignore" or "infrequent_if_exist"')
        if unknown not in ("ignore", "infrequent_if_exist"):
            raise r.fail("table.encoder.handle_unknown", '"ignore" or "infrequent_if_exist"')
        cats = r.get(enc, "categories", list, "table.encoder", "a list of category lists")
        rare = r.get(enc, "infrequent", list, "table.encoder", "a list of category lists or nulls")
        if len(cats) != n_cat or len(rare) != n_cat:
            raise r.fail("table.encoder.categories", f"{n_cat} lists (one per categorical column)")
        categories = [_object_array(r.scalars(c, "table.encoder.categories")) for c in cats]
        infrequent = [None if x is None else _object_array(r.scalars(x, "table.encoder.infrequent")) for x in rare]
        pre.encoder = _FittedOneHot(categories, infrequent, unknown)
        width += sum(w for _, w, _ in pre.encoder._maps)
    elif n_cat:
        raise r.fail("table.encoder", f"the one-hot encoder of the categorical columns {pre.categorical}")
    if "coerce" in t:  # optional (older files): numeric columns whose text cells are missing values
        pre.coerce = r.names(t, "coerce", "table")
        if not set(pre.coerce) <= set(pre.numeric):
            raise r.fail("table.coerce", "a list of numeric columns")
    for item in r.get(t, "ranges", list, "table", "a list of [column, low, high]") if "ranges" in t else []:
        if not isinstance(item, list) or len(item) != 3 or item[0] not in pre.numeric:
            raise r.fail("table.ranges", "a list of [numeric column, low, high]")
        pre.ranges[item[0]] = (r.number(item[1], "table.ranges"), r.number(item[2], "table.ranges"))
    pre.feature_names = r.get(t, "feature_names", list, "table", "a list of strings")
    pre._origin = r.names(t, "origin", "table")
    if len(pre.feature_names) != width or len(pre._origin) != width or not all(
            isinstance(n, str) for n in pre.feature_names):
        raise r.fail("table.feature_names/origin", f"{width} entries, one per output feature")


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out

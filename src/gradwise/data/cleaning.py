"""Table cleaning steps. Each returns what it changed so `load_data` can put the counts in the report.

Stateless steps (category cleaning, duplicates, dropping rows with missing values) may run before the split;
anything with statistics (outlier bounds, imputation) is fitted on the training split only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from gradwise.data.preprocess import cleaned_categories, distinct_values, names, parse_numbers, quote
from gradwise.errors import DataError

DEFAULT_THRESHOLD = {"iqr": 1.5, "zscore": 3.0}
HIGH_CARDINALITY = 50  # a categorical column with more distinct values than this is probably an id or free text


def classify_columns(frame: pd.DataFrame, features: list[str], forced_categorical: list[str]
                     ) -> tuple[list[str], list[str], list[str], list[str]]:
    """Split feature columns into numeric, categorical (strings/category/bool) and unsupported (dates...).

    Bool columns are returned both as categorical candidates; `boolean` lists them so they can be cast to 0/1 when
    one-hot encoding is off.
    """
    numeric, categorical, boolean, unsupported = [], [], [], []
    for c in features:
        dtype = frame[c].dtype
        if c in forced_categorical:
            categorical.append(c)
        elif ptypes.is_bool_dtype(dtype):
            categorical.append(c)
            boolean.append(c)
        elif ptypes.is_numeric_dtype(dtype):
            numeric.append(c)
        elif (ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype)
              or isinstance(dtype, pd.CategoricalDtype)):
            if _all_numeric_text(frame[c]):
                numeric.append(c)  # e.g. a numeric column that pandas kept as text because of one odd cell
            else:
                categorical.append(c)
        else:
            unsupported.append(c)
    return numeric, categorical, boolean, unsupported


def _all_numeric_text(s: pd.Series) -> bool:
    if isinstance(s.dtype, pd.CategoricalDtype):
        return False
    vals, text = parse_numbers(s)  # per distinct value, not per cell
    has_values = not np.isnan(vals).all() or (text is not None and text.any())
    return has_values and (text is None or not text.any())


MOSTLY_NUMERIC = 0.9  # a text column whose non-empty cells are at least this share numbers is a numeric column


def numeric_with_text(frame: pd.DataFrame, columns: list[str]) -> dict[str, tuple[int, list[str]]]:
    """Text columns that are numbers except for a few cells ('?', 'n/a', a typo): {column: (cells, examples)}.

    At least MOSTLY_NUMERIC of the non-empty cells (and at least two) parse as numbers. Such a column is numeric
    with those cells read as missing values, not a one-hot of hundreds of number strings.
    """
    out: dict[str, tuple[int, list[str]]] = {}
    for c in columns:
        s = frame[c]
        if isinstance(s.dtype, pd.CategoricalDtype) or ptypes.is_bool_dtype(s.dtype):
            continue
        codes, uniques = pd.factorize(s, use_na_sentinel=True)  # distinct values in order of first appearance
        if not len(uniques):
            continue
        is_number = pd.to_numeric(pd.Series(uniques.tolist(), dtype=object), errors="coerce").notna().to_numpy()
        cells = np.bincount(codes[codes >= 0], minlength=len(uniques))
        total, numbers = int(cells.sum()), int(cells[is_number].sum())
        if numbers >= 2 and numbers >= MOSTLY_NUMERIC * total and numbers < total:
            text = uniques[~is_number].tolist()
            out[c] = (total - numbers, [str(v) for v in dict.fromkeys(text)][:3])
    return out


def clean_category_columns(frame: pd.DataFrame, columns: list[str], counts: dict[str, int]) -> pd.DataFrame:
    """Strip + casefold the string values of `columns`, adding how many values changed per column to `counts`.

    Per distinct value, in one pass that also counts the changes; only the cleaned columns are new (the frame is
    copied shallowly: copy-on-write shares the other columns)."""
    frame = frame.copy(deep=False)
    for c in columns:
        after, changed = cleaned_categories(frame[c])
        if changed:
            counts[c] = counts.get(c, 0) + changed
        frame[c] = after
    return frame


def strip_labels(frame: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """String labels lose surrounding whitespace ("cat " is "cat"); case is kept because it is the class name."""
    frame = frame.copy(deep=False)
    for t in targets:
        if ptypes.is_object_dtype(frame[t].dtype) or ptypes.is_string_dtype(frame[t].dtype):
            codes, texts = distinct_values(frame[t])  # one strip per distinct label, not per row
            lookup = np.empty(len(texts) + 1, dtype=object)
            lookup[:-1], lookup[-1] = [v.strip() for v in texts], np.nan
            frame[t] = pd.Series(lookup[codes], index=frame.index, dtype=object)
    return frame


def drop_duplicate_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    out = frame.drop_duplicates()
    return out, len(frame) - len(out)


def missing_counts(frame: pd.DataFrame, columns: list[str], numeric: list[str]) -> dict[str, int]:
    """Missing values per column (NaN/None, and ±inf in numeric columns, which are treated as missing)."""
    out = {}
    for c in columns:
        n = int(frame[c].isna().sum())
        if c in numeric:
            vals = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            n = int((~np.isfinite(vals)).sum())
        if n:
            out[c] = n
    return out


def drop_missing_rows(frame: pd.DataFrame, columns: list[str], numeric: list[str]) -> tuple[pd.DataFrame, int]:
    bad = frame[columns].isna().any(axis=1).to_numpy().copy()  # pandas may hand out read-only views
    for c in numeric:
        vals = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad |= ~np.isfinite(vals)
    return frame[~bad], int(bad.sum())


def outlier_bounds(train: pd.DataFrame, numeric: list[str], method: str, threshold: float | None
                   ) -> tuple[dict[str, tuple[float, float]], list[str], float]:
    """Per-column [low, high] from the TRAINING rows: IQR fences or mean ± z·std (NaN ignored).

    Columns with ≤ 2 distinct values (flags) or zero spread are skipped: every minority value would otherwise be
    an "outlier".
    """
    family = "iqr" if method.startswith("iqr") else "zscore"
    t = float(threshold) if threshold is not None else DEFAULT_THRESHOLD[family]
    bounds: dict[str, tuple[float, float]] = {}
    skipped: list[str] = []
    for c in numeric:
        vals = pd.to_numeric(train[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        vals = vals[np.isfinite(vals)]
        # at most two distinct values (a flag): every value is the min or the max; no sort needed to tell
        if not vals.size or not ((vals != vals.min()) & (vals != vals.max())).any():
            skipped.append(c)
            continue
        if family == "iqr":
            q1, q3 = np.percentile(vals, [25, 75])
            spread = q3 - q1
            lo, hi = q1 - t * spread, q3 + t * spread
        else:
            mean, spread = vals.mean(), vals.std()
            lo, hi = mean - t * spread, mean + t * spread
        if not spread > 0:
            skipped.append(c)
            continue
        bounds[c] = (float(lo), float(hi))
    return bounds, skipped, t


def outlier_counts(frame: pd.DataFrame, bounds: dict[str, tuple[float, float]]) -> tuple[dict[str, int], np.ndarray]:
    """Values outside the bounds per column, and a row mask of rows with any such value."""
    rows = np.zeros(len(frame), dtype=bool)
    counts: dict[str, int] = {}
    for c, (lo, hi) in bounds.items():
        vals = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            out = (vals < lo) | (vals > hi)
        if out.any():
            counts[c] = int(out.sum())
            rows |= out
    return counts, rows


def check_features(frame: pd.DataFrame, features: list[str] | None, targets: list[str], where: str) -> list[str]:
    """The feature columns to use: data.features, or every column except the target(s)."""
    columns = list(frame.columns)
    if features is None:
        return [c for c in columns if c not in targets]
    missing = [f for f in features if f not in columns]
    if missing:
        raise DataError(f"data.features names column(s) {', '.join(map(repr, missing))} that are not in '{where}'. "
                        f"Its columns are: {names(columns)}.")
    clash = [f for f in features if f in targets]
    if clash:
        raise DataError(f"column {quote(clash[0])} is both the target and a feature; remove it from data.features.")
    return list(features)


def plain(d: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars → Python numbers so the report is JSON-serialisable."""
    return {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}

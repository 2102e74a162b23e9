"""Splitting and resampling by row indices, so tables and arrays share one implementation (all seeded)."""

from __future__ import annotations

import numpy as np

from gradwise.config import DataConfig
from gradwise.errors import DataError


def take(indices: np.ndarray, k: int, strata: np.ndarray | None, seed: int, notes: list[str], what: str
         ) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` into (rest, taken) with `k` taken rows, stratified on `strata` (per index) when possible."""
    from sklearn.model_selection import train_test_split

    if k <= 0:
        return np.sort(indices), indices[:0]
    if k >= len(indices):
        return indices[:0], np.sort(indices)
    if strata is not None:
        try:
            rest, taken = train_test_split(indices, test_size=k, stratify=strata, random_state=seed)
            return np.sort(rest), np.sort(taken)
        except ValueError as exc:
            # a class with one row, or fewer rows taken than classes: stratification is impossible, not fatal
            notes.append(f"{what} split could not be stratified ({exc}); used a random split instead.")
    rest, taken = train_test_split(indices, test_size=k, random_state=seed)
    return np.sort(rest), np.sort(taken)


def kfold(indices: np.ndarray, folds: int, fold: int, strata: np.ndarray | None, seed: int, notes: list[str]
          ) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) where val is fold `fold` of a (stratified) K-fold partition of `indices`."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds > len(indices):
        raise DataError(f"data.folds = {folds} is more than the {len(indices)} rows available for training and "
                        "validation; lower data.folds.")
    splitter = None
    if strata is not None:
        _, counts = np.unique(strata, return_counts=True)
        if counts.min() >= folds:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(indices, strata)
        else:
            notes.append(f"k-fold could not be stratified: the rarest class has {counts.min()} rows, fewer than "
                         f"data.folds = {folds}; used plain KFold.")
    if splitter is None:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed).split(indices)
    for i, (tr, va) in enumerate(splitter):
        if i == fold:
            return np.sort(indices[tr]), np.sort(indices[va])
    raise AssertionError("unreachable: fold index checked by the caller")


def subsample_count(value: float | int, n: int) -> int:
    """data.subsample as a row count: a fraction in (0, 1] or a whole number of rows."""
    if isinstance(value, bool) or value <= 0:
        raise DataError(f"data.subsample = {value!r} must be a fraction in (0, 1] (e.g. 0.5) or a number of rows "
                        "(e.g. 1000).")
    if isinstance(value, float) and value <= 1.0:
        return max(1, int(round(value * n)))
    if isinstance(value, float) and not value.is_integer():
        raise DataError(f"data.subsample = {value} is neither a fraction in (0, 1] nor a whole number of rows.")
    return min(int(value), n)


def balance_indices(y: np.ndarray, n_classes: int, method: str, seed: int) -> np.ndarray:
    """Row indices of the rebalanced training set (oversample: minority rows duplicated at random up to the
    majority count; undersample: every class cut to the minority count), in shuffled order."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(y, minlength=n_classes)
    present = counts[counts > 0]
    parts = []
    for c in range(n_classes):
        rows = np.flatnonzero(y == c)
        if len(rows) == 0:
            continue
        if method == "oversample":
            extra = rng.choice(rows, size=int(present.max()) - len(rows), replace=True)
            parts.append(np.concatenate([rows, extra]))
        else:
            parts.append(rng.choice(rows, size=int(present.min()), replace=False))
    out = np.concatenate(parts)
    return out[rng.permutation(len(out))]


def class_weight_vector(counts: np.ndarray) -> np.ndarray:
    """n / (C · count_c): the 'balanced' weights; a class with no training rows gets weight 0."""
    n, c = counts.sum(), len(counts)
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, n / (c * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


def split_plan(n: int, strata: np.ndarray | None, cfg: DataConfig, seed: int, fold: int | None,
               fixed_val: int | None, fixed_test: int | None, notes: list[str], split_report: dict
               ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Indices (into the n pool rows) of train, val, test. `fixed_val`/`fixed_test` are the sizes of splits that
    come from a file or the dataset's own split (then nothing is carved for them). Fractions are of the whole:
    pool plus any fixed splits, so 0.1/0.2 means 70/10/20."""
    folds = cfg.folds
    if folds > 1 and fixed_val is not None:
        raise DataError("data.folds > 1 and data.val_file both choose the validation rows; use one of them.")
    if fold is not None and folds == 1:
        raise DataError(f"fold = {fold} was requested but data.folds = 1; set data.folds to the number of folds "
                        "(e.g. 5) to use k-fold cross-validation.")
    if folds > 1:
        if fold is None:
            fold = 0
            notes.append(f"data.folds = {folds} but no fold was chosen; using fold 0.")
        if not 0 <= fold < folds:
            raise DataError(f"fold = {fold} is out of range for data.folds = {folds}; use 0..{folds - 1}.")
    if fixed_test is None and fixed_val is None and cfg.val_fraction + cfg.test_fraction >= 1:
        raise DataError(f"data.val_fraction ({cfg.val_fraction}) + data.test_fraction ({cfg.test_fraction}) leave "
                        "no rows to train on; keep their sum below 1 (e.g. 0.1 and 0.2).")
    whole = n + (fixed_val or 0) + (fixed_test or 0)
    pool = np.arange(n)
    strata_of = (lambda idx: strata[idx]) if strata is not None else (lambda idx: None)
    test_idx = None
    if fixed_test is None and cfg.test_fraction > 0:
        k = int(round(cfg.test_fraction * whole))
        if k == 0:
            raise DataError(f"data.test_fraction = {cfg.test_fraction} of {whole} rows gives an empty test split; "
                            f"raise it to at least {1 / whole:.3g}, or set it to 0 to run without a test split.")
        pool, test_idx = take(pool, k, strata_of(pool), seed, notes, "test")
    elif fixed_test is None:
        split_report["test"] = "none"
    val_idx = None
    if folds > 1:
        assert fold is not None
        pool, val_idx = kfold(pool, folds, fold, strata_of(pool), seed, notes)
        split_report.update(val="kfold", folds=folds, fold=fold)
    elif fixed_val is None and cfg.val_fraction > 0:
        k = int(round(cfg.val_fraction * whole))
        if k == 0:
            raise DataError(f"data.val_fraction = {cfg.val_fraction} of {whole} rows gives an empty validation "
                            f"split; raise it to at least {1 / whole:.3g}, set it to 0 to train without validation, "
                            "or give data.val_file.")
        if k >= len(pool):
            raise DataError(f"data.val_fraction = {cfg.val_fraction} leaves no training rows out of {whole}; lower "
                            "data.val_fraction or data.test_fraction.")
        pool, val_idx = take(pool, k, strata_of(pool), seed + 1, notes, "validation")
    elif fixed_val is None:
        split_report["val"] = "none"
    if len(pool) == 0:
        raise DataError(f"the training split is empty ({whole} rows in all); lower data.val_fraction / "
                        "data.test_fraction or give more data.")
    return pool, val_idx, test_idx

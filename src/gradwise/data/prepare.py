"""`load_data`: dataset → cleaned, split, fitted, transformed, resampled in-memory tensors (a `DataBundle`).

Order of work, and why:

1. read the source (`gradwise.data.datasets`);
2. stateless table cleaning on every source frame: label whitespace, category cleaning, rows without a target,
   exact duplicates (on the columns used), rows with missing values (data.missing=drop) — no statistics, so no
   leakage, and duplicates cannot straddle train and test;
3. split (seeded, stratified for classification): fractions of the whole, files, the dataset's own test split,
   or k-fold over the non-test rows;
4. subsample the training rows (stratified);
5. fit everything with statistics on the TRAINING rows only — outlier fences, imputers, scalers, one-hot
   categories, target scaler — then apply them unchanged to val/test;
6. validate (finite features, non-empty splits, more than one class) and rebalance the training tensors.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pandas.api import types as ptypes

from gradwise.config import DataConfig
from gradwise.data import cleaning
from gradwise.data.datasets import BUILTIN_DATASETS, ArraySource, TableSource, open_source
from gradwise.data.preprocess import HUGE, DataWarning, LabelCodec, Preprocessor, names, quote, show
from gradwise.data.sampling import balance_indices, class_weight_vector, split_plan, subsample_count, take
from gradwise.errors import ConfigError, DataError

Split = tuple[torch.Tensor, torch.Tensor]
MAX_INT_CLASSES = 50  # an integer target with more distinct values than this is treated as regression
MAX_FLOAT_CLASSES = 10  # a declared classification target with more distinct non-integer numbers is refused
SPLITS = ("train", "val", "test")


@dataclass
class DataBundle:
    """Everything a run needs from the data, as in-memory tensors.

    ``train``/``val``/``test`` are ``(X float32, y)`` with y int64 class indices (classification), float32 ``(N, 1)``
    0/1 targets (classification for a one-logit bce_with_logits model: 1 is the second class,
    ``class_names[1]``), or float32 ``(N,)``/``(N, k)`` targets (regression; already scaled unless
    data.scale_target=false — see ``preprocessor.inverse_target``). ``val``/``test`` are None when there is no
    such split. ``n_outputs`` is the width of the model's last layer: classes, 1 for one-logit binary, targets.
    """

    name: str
    task: Literal["classification", "regression"]
    train: Split
    val: Split | None
    test: Split | None
    n_classes: int | None
    n_outputs: int
    input_shape: tuple[int, ...]
    class_names: list[str] | None
    class_counts: list[int] | None  # training split, after subsampling and balancing
    preprocessor: Preprocessor
    report: dict[str, Any]
    class_weights: torch.Tensor | None = None  # (C,) n/(C·count), when data.balance=class_weights
    sample_weights: torch.Tensor | None = None  # (N_train,), when data.balance=weighted_sampler
    kind: str = "table"  # table | signal | image (pass to build_augment)
    feature_names: list[str] | None = None  # table columns after one-hot encoding
    split_indices: dict[str, np.ndarray | None] = field(default_factory=dict)  # source rows of each split
    fold: int | None = None
    stream: Any = None  # data.stream: the training split as a gradwise.data.stream.StreamTable (train is None)
    # image splits kept as uint8 pixels (a quarter of float32's memory): the loaders convert each batch with this
    # (gradwise.data.loaders.PixelNormalize; `normalize(bundle.train[0])` is the model's input). None: float splits
    normalize: Any = None

    def summary(self) -> str:
        sizes = ", ".join(f"{s} {len(getattr(self, s)[0])}" for s in SPLITS if getattr(self, s) is not None)
        what = f"{self.n_classes} classes" if self.task == "classification" else f"{self.n_outputs} target(s)"
        return f"{self.name}: {self.task}, {what}, input {self.input_shape}, {sizes}"


def load_data(cfg: DataConfig, seed: int, fold: int | None = None, *, loss: str | None = None) -> DataBundle:
    """Load, clean, split, preprocess and resample the dataset of ``cfg`` (see the module docstring).

    ``fold`` picks the validation fold when ``cfg.folds > 1`` (default 0). ``loss`` is the loss the targets are
    for (the run's loss.name; None: integer class labels): bce_with_logits on two classes gets one 0/1 float column
    and a one-logit model. Raises DataError with a fix on bad data.
    """
    cache = _PREPARED.get()
    key = _prepared_key(cfg, seed, fold, loss) if cache is not None else None
    if cache is not None and key == cache.key and cache.bundle is not None:
        cache.reused += 1
        return cache.view()
    binary = one_logit_loss(loss)
    from gradwise.data.stream import load_stream, stream_reason  # data.stream: Parquet tables bigger than memory

    reason = stream_reason(cfg)
    if reason is not None:
        bundle = load_stream(cfg, seed, fold, binary, reason)
        bundle.preprocessor.source = _source_files(cfg)
        if cache is not None:
            cache.key, cache.bundle = key, bundle
            cache.prepared += 1
            return cache.view()
        return bundle
    source = open_source(cfg)
    if cfg.text and not isinstance(source, TableSource):
        raise DataError(f"data.text = {cfg.text} names text columns, but '{cfg.dataset}' is not a table; give a "
                        ".csv/.tsv/.parquet file with those columns, or remove data.text.")
    if isinstance(source, TableSource) and cfg.text:
        from gradwise.data.text import load_text_table  # free-text columns: tokenized instead (data/text.py)

        bundle = load_text_table(cfg, source, seed, fold, binary)
    elif isinstance(source, TableSource):
        bundle = _load_table(cfg, source, seed, fold, binary)
    else:
        bundle = _load_arrays(cfg, source, seed, fold, binary)
    del source
    bundle.preprocessor.source = _source_files(cfg)
    if cache is not None:
        cache.key, cache.bundle = key, bundle
        cache.prepared += 1
        return cache.view()
    return bundle


class PreparedData:
    """The last `load_data` result of a process, for runs that repeat it on the same data (a study's trials).

    Only one preparation is kept: a search over data.* keys holds the memory of one, not of every variant.
    """

    def __init__(self) -> None:
        self.key: str | None = None
        self.bundle: DataBundle | None = None
        self.prepared = 0  # preparations done
        self.reused = 0  # calls answered from the kept one

    def view(self) -> DataBundle:
        """The kept bundle for one more run: the same tensors and fitted preprocessing (nothing modifies them in
        place), its own copy of the report (small, and a run may add to it)."""
        assert self.bundle is not None
        return dataclasses.replace(self.bundle, report=copy.deepcopy(self.bundle.report))


_PREPARED: contextvars.ContextVar[PreparedData | None] = contextvars.ContextVar("gradwise_prepared", default=None)


@contextlib.contextmanager
def reuse_prepared(cache: PreparedData) -> Iterator[PreparedData]:
    """Within the block, `load_data` on the same data config, seed, fold and loss returns ``cache``'s preparation
    instead of reading, cleaning, splitting and fitting again (gradwise tune: once per worker process)."""
    token = _PREPARED.set(cache)
    try:
        yield cache
    finally:
        _PREPARED.reset(token)


def _prepared_key(cfg: DataConfig, seed: int, fold: int | None, loss: str | None) -> str:
    """What a preparation depends on: the data config, seed, fold, loss, and the size and time of each file read
    (a file rewritten during a study is read again)."""
    files = {}
    for name, path in _source_files(cfg).items():
        with contextlib.suppress(OSError):
            st = Path(path).stat()
            files[name] = [path, st.st_size, st.st_mtime_ns]
    return json.dumps({"data": cfg.model_dump(mode="json"), "seed": seed, "fold": fold, "loss": loss,
                       "files": files}, sort_keys=True, default=str)


def _source_files(cfg: DataConfig) -> dict[str, str]:
    """The absolute paths of the files read, so that `gradwise eval` finds them from another working directory."""
    out = {}
    for key in ("dataset", "val_file", "test_file"):
        value = getattr(cfg, key)
        if value and value.strip().lower().replace("-", "_") not in BUILTIN_DATASETS:
            out[key] = str(Path(value).expanduser().resolve())
    return out


def one_logit_loss(loss: str | None) -> bool:
    """Whether the loss named ``loss`` trains one logit per row on 0/1 targets (bce_with_logits and its aliases).

    An unknown name is not one: the loss builder rejects it later with its own message.
    """
    from gradwise.recipes.losses import canonical_loss_name

    try:
        return loss is not None and canonical_loss_name(loss) == "bce_with_logits"
    except ConfigError:
        return False


# --------------------------------------------------------------------------------------------- task / labels


def infer_task(y: pd.Series, declared: str | None, multi: bool, notes: dict[str, Any]) -> str:
    """classification for text/bool/category labels and integers with ≤ 50 values; regression otherwise."""
    if declared is not None:
        if declared not in ("classification", "regression"):
            raise DataError(f"data.options.task = {declared!r} must be 'classification' or 'regression'.")
        if declared == "classification" and multi:
            raise DataError("several target columns are only supported for regression; give one data.target for "
                            "classification.")
        if declared == "classification":
            _refuse_continuous_labels(y)
        notes["task_inferred"] = False
        return declared
    notes["task_inferred"] = True
    if multi:
        return "regression"
    dtype, values = y.dtype, y.dropna()
    if ptypes.is_bool_dtype(dtype) or not ptypes.is_numeric_dtype(dtype):
        return "classification"
    n_unique = values.nunique()
    if ptypes.is_integer_dtype(dtype):
        return "classification" if n_unique <= MAX_INT_CLASSES else "regression"
    # a float column that holds only a few whole numbers is an integer label column that had a missing cell
    integral = bool(np.all(np.mod(values.to_numpy(dtype=np.float64), 1) == 0))
    return "classification" if integral and n_unique <= 10 else "regression"


def _refuse_continuous_labels(y: pd.Series) -> None:
    """task=classification on a measured quantity would train one class per distinct value: say so instead."""
    if ptypes.is_bool_dtype(y.dtype) or not ptypes.is_numeric_dtype(y.dtype):
        return
    values = y.dropna().to_numpy(dtype=np.float64)
    fractional = values[np.isfinite(values) & (np.mod(values, 1) != 0)]
    distinct = int(pd.Series(values).nunique())
    if fractional.size and distinct > MAX_FLOAT_CLASSES:
        raise DataError(f"data.options.task=classification, but the target {quote(y.name)} holds {distinct} distinct "
                        f"numbers, not whole class labels (e.g. {show(fractional[0])}): a classifier would learn "
                        f"{distinct} classes, one per value. Set data.options.task=regression (loss.name=mse or auto) "
                        "to predict the value, or bin the target into a few labels first.")


def _codec(values: list[Any], class_names: list[str] | None) -> LabelCodec:
    if class_names is not None:  # scikit-learn / known sets: labels are 0..K-1 with names
        return LabelCodec(list(range(len(class_names))), class_names)
    return LabelCodec.fit(values)


def select_classes(wanted: list[Any], codec: LabelCodec, ys: dict[str, np.ndarray], dataset: str,
                   report: dict[str, Any]) -> tuple[LabelCodec, dict[str, np.ndarray]]:
    """data.classes: the row mask of each split that keeps only the wanted classes, and their new codec.

    An entry is a label value (5, "cat") or a class name ("Sandal"); the kept classes become 0..k-1 in the order
    given, with their original names. ``ys`` (codes of the full codec) are re-coded in place.
    """
    lookup: dict[str, int] = {}
    for i, (value, name) in enumerate(zip(codec.classes, codec.names, strict=True)):
        lookup.setdefault(str(value), i)
        lookup.setdefault(name, i)
    picked: list[int] = []
    for entry in wanted:
        code = lookup.get(str(entry).strip())
        if code is None:
            valid = [str(c) if str(c) == n else f"{c} ({n})" for c, n in zip(codec.classes, codec.names, strict=True)]
            raise DataError(f"data.classes: {entry!r} is not a class of '{dataset}'. Valid values: "
                            f"{', '.join(valid[:50])}. Fix data.classes to list some of them (at least two).")
        if code in picked:
            raise DataError(f"data.classes: {entry!r} names the class '{codec.names[code]}' a second time; list "
                            "each class once.")
        picked.append(code)
    remap = np.full(len(codec), -1, dtype=np.int64)
    remap[picked] = np.arange(len(picked))
    masks = {}
    for split, codes in ys.items():
        masks[split] = remap[codes] >= 0
        ys[split] = remap[codes][masks[split]]
    report["classes"] = {"kept": [codec.names[i] for i in picked],
                         "rows_kept": {s: int(m.sum()) for s, m in masks.items()}}
    for split, mask in masks.items():
        if not mask.any():
            what = "training data" if split == "data" else f"{split} data"
            raise DataError(f"data.classes = {wanted} leaves no rows in the {what} of '{dataset}'; choose classes "
                            f"that it contains.")
    return LabelCodec([codec.classes[i] for i in picked], [codec.names[i] for i in picked]), masks


def _keep_classes(cfg: DataConfig, codec: LabelCodec | None, ys: dict[str, np.ndarray], dataset: str,
                  report: dict[str, Any]) -> tuple[LabelCodec, dict[str, np.ndarray]]:
    if codec is None:
        raise DataError(f"data.classes = {cfg.classes} selects classes, but '{dataset}' is a regression task here. "
                        "Remove data.classes, or set data.options.task=classification if the target is a label.")
    return select_classes(list(cfg.classes or []), codec, ys, dataset, report)


def _counts_by_name(codes: np.ndarray, codec: LabelCodec) -> dict[str, int]:
    counts = np.bincount(codes, minlength=len(codec))
    return {name: int(c) for name, c in zip(codec.names, counts, strict=True)}


# --------------------------------------------------------------------------------------------- tables


def _load_table(cfg: DataConfig, src: TableSource, seed: int, fold: int | None, binary: bool) -> DataBundle:
    notes: list[str] = []
    report: dict[str, Any] = {"dataset": src.name, "kind": "table", "warnings": notes}
    targets = src.targets
    features = cleaning.check_features(src.frame, cfg.features, targets, src.name)
    if not features:
        raise DataError(f"'{src.name}' has no feature columns besides the target {targets}; add feature columns.")
    frames: dict[str, pd.DataFrame] = {"data": src.frame}
    for split in ("val", "test"):
        extra = getattr(src, split)
        if extra is not None:
            extra.columns = [str(c) for c in extra.columns]
            absent = [c for c in [*features, *targets] if c not in extra.columns]
            if absent:
                raise DataError(f"the {split} data (data.{split}_file or x_{split}) lacks column(s) "
                                f"{names(absent)} that the training data has; give it the same columns.")
            frames[split] = extra
    # the columns used (copy-on-write: no data is copied here); from now on only `frames` holds the rows, so each
    # frame can be released as soon as what replaces it exists
    frames = {k: f[[*features, *targets]] for k, f in frames.items()}
    src.frame, src.val, src.test = src.frame.iloc[:0], None, None
    report["rows_loaded"] = {k: len(f) for k, f in frames.items()}

    numeric, categorical, boolean, coerce = column_kinds(cfg, frames["data"], features, list(src.categorical), notes)
    for c in categorical:
        n_cat = frames["data"][c].nunique()
        if n_cat > cleaning.HIGH_CARDINALITY:
            notes.append(f"categorical column {quote(c)} has {n_cat} distinct values (an id or free text?); one-hot "
                         "encoding makes that many features. Drop it via data.features or set "
                         "data.options.max_categories.")
            from gradwise.data.text import looks_like_text

            if looks_like_text(frames["data"][c]):
                notes.append(f"column {quote(c)} looks like free text (several words per cell): set data.text: "
                             f"[{c}] to tokenize it for a text model (embedding_bag, gru, transformer).")

    # ---- stateless cleaning on every source frame
    cat_changes: dict[str, int] = {}
    dropped = clean_rows(cfg, frames, targets, report, categories=[c for c in categorical if c not in boolean],
                         cat_changes=cat_changes,
                         drop_missing=lambda f: cleaning.drop_missing_rows(f, features, numeric))
    report["categories_cleaned"] = cat_changes

    # ---- task and targets
    task, codec, ys = task_and_targets(cfg, src, frames, report)

    # ---- split
    parts, split_report = split_rows(cfg, src, frames, ys, task, seed, fold, notes, report)
    del frames  # the split's frames hold the rows now

    # ---- subsample the training rows
    before = subsample_train(cfg, parts, codec, seed, notes, report)
    train_df, y_train = parts["train"]  # type: ignore[misc]

    # ---- outliers (fences from the training rows)
    clip_bounds: dict[str, tuple[float, float]] = {}
    clipping = cfg.outliers.endswith("_clip") and bool(numeric)
    if cfg.outliers != "none" and numeric:
        bounds, skipped, t = cleaning.outlier_bounds(train_df, numeric, cfg.outliers, cfg.outlier_threshold)
        out_rep: dict[str, Any] = {"method": cfg.outliers, "threshold": t, "bounds": bounds,
                                   "skipped_columns": skipped}
        if cfg.outliers.endswith("_drop"):
            # only training rows are dropped: val/test must stay the data the model will really meet
            counts, rows = cleaning.outlier_counts(train_df, bounds)
            out_rep.update(values_outside=counts, rows_dropped=int(rows.sum()))
            train_df, y_train = train_df[~rows], y_train[~rows]
            if train_df.empty:
                raise DataError("data.outliers dropped every training row; use a larger data.outlier_threshold or "
                                f"an _clip method instead of {cfg.outliers}.")
            parts["train"] = (train_df, y_train)
        else:
            clip_bounds = bounds  # the values clipped are counted while transforming, below
        report["outliers"] = out_rep

    # ---- fit on train; then one pass per split builds its matrix and counts what data_report.json says about it
    # (missing values, values clipped); each split's frame is released as soon as its matrix exists
    pre = Preprocessor("table", task)
    pre.labels = codec
    pre.target_columns = list(targets)
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: named by _check_finite below, not numpy
        pre.fit_table(train_df, numeric, categorical, boolean, scale=cfg.scale, missing=cfg.missing,
                      clean_categories=cfg.clean_categories, clip_bounds=clip_bounds,
                      max_categories=cfg.options.get("max_categories"), coerce=coerce)
    del train_df
    xs: dict[str, np.ndarray | None] = {}
    yd: dict[str, np.ndarray | None] = {}
    indices: dict[str, np.ndarray | None] = {}
    seen: dict[str, dict[str, dict[str, int]]] = {}
    for s in SPLITS:
        part = parts.pop(s)
        xs[s] = yd[s] = indices[s] = None
        if part is None:
            continue
        frame, yd[s] = part
        del part
        seen[s] = {"missing": {}, "outside": {}}
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by _check_finite, by column
            xs[s] = pre.table_matrix(frame, seen[s])
        _check_finite(pre, xs[s], s, frame)
        indices[s] = frame.index.to_numpy()
        del frame
    if clipping:
        report["outliers"]["clipped"] = {s: {c: n for c, n in got["outside"].items() if n} for s, got in seen.items()}

    # ---- missing values (reported per column; imputed by the preprocessor, fitted on train)
    found = {s: {c: got["missing"][c] for c in features if got["missing"].get(c)} for s, got in seen.items()}
    totals: dict[str, int] = {}
    for per in found.values():
        for c, n in per.items():
            totals[c] = totals.get(c, 0) + n
    report["missing"] = {"strategy": cfg.missing, "rows_dropped": dropped["missing"],
                         ("imputed" if cfg.missing in ("mean", "median", "most_frequent") else "found"): totals,
                         "by_split": found}
    return _assemble(cfg, seed, src.name, "table", task, pre, xs, yd, indices, report, before,
                     (len(pre.feature_names),), list(pre.feature_names), fold, split_report, binary,
                     f"the target column {quote(targets[0])} of '{src.name}'")


# --------------------------------------------------------------------------------------------- table steps
# shared by _load_table and the text tables of data/text.py (load_text_table): a fix to how targets are cleaned,
# coded, split or subsampled reaches both


def clean_rows(cfg: DataConfig, frames: dict[str, pd.DataFrame], targets: list[str], report: dict[str, Any], *,
               categories: list[str] | None = None, cat_changes: dict[str, int] | None = None,
               drop_missing: Callable[[pd.DataFrame], tuple[pd.DataFrame, int]] | None = None) -> dict[str, int]:
    """Stateless cleaning of every source frame (``frames`` is updated in place); returns the rows dropped by reason.

    Label whitespace, rows without a target, then category cleaning of ``categories`` (data.clean_categories,
    counted in ``cat_changes``) BEFORE exact duplicates (data.drop_duplicates), because cleaned values can make rows
    equal; last, with data.missing=drop, the rows ``drop_missing`` finds. No statistics, so no leakage, and
    duplicates cannot straddle train and test. A frame left without rows is a DataError.
    """
    dropped = {"target_missing": 0, "duplicates": 0, "missing": 0}
    for key, f in frames.items():
        f = cleaning.strip_labels(f, targets)
        no_target = f[targets].isna().any(axis=1)
        if no_target.any():
            dropped["target_missing"] += int(no_target.sum())
            f = f[~no_target]
        if cfg.clean_categories and categories:
            f = cleaning.clean_category_columns(f, categories, cat_changes if cat_changes is not None else {})
        if cfg.drop_duplicates:
            f, n = cleaning.drop_duplicate_rows(f)
            dropped["duplicates"] += n
        if cfg.missing == "drop" and drop_missing is not None:
            f, n = drop_missing(f)
            dropped["missing"] += n
        frames[key] = f
    report["rows_dropped_target_missing"] = dropped["target_missing"]
    report["duplicates_dropped"] = dropped["duplicates"]
    for key, f in frames.items():
        if f.empty:
            raise DataError(f"no rows of the {'training data' if key == 'data' else key + ' data'} are left after "
                            f"cleaning (dropped: {dropped}). Check data.missing / data.drop_duplicates, or the file.")
    return dropped


def task_and_targets(cfg: DataConfig, src: TableSource, frames: dict[str, pd.DataFrame],
                     report: dict[str, Any]) -> tuple[str, LabelCodec | None, dict[str, np.ndarray]]:
    """(task, codec, ys): the task (declared, or inferred from the training target), the label codec
    (classification) and the targets of each frame — class codes, or float32 values (regression, checked: numeric,
    finite, not huge). With data.classes only the rows of the classes wanted stay (``frames`` is updated in place).
    """
    targets = src.targets
    task_notes: dict[str, Any] = {}
    task = infer_task(frames["data"][targets[0]], src.task, len(targets) > 1, task_notes)
    report["task"] = task
    report.update(task_notes)
    codec: LabelCodec | None = None
    if task == "classification":
        # the distinct labels of every frame (not every row): the codec is fitted on those
        distinct = [v for f in frames.values() for v in pd.unique(f[targets[0]].dropna()).tolist()]
        codec = _codec(distinct, src.class_names)
        ys = {k: codec.encode(f[targets[0]], where=f"target column {quote(targets[0])}") for k, f in frames.items()}
    else:
        ys = {k: _regression_targets(f, targets, k) for k, f in frames.items()}
    if cfg.classes is not None:
        codec, keep = _keep_classes(cfg, codec, ys, src.name, report)
        for k, f in frames.items():
            frames[k] = f[keep[k]]
    return task, codec, ys


def _regression_targets(f: pd.DataFrame, targets: list[str], split: str) -> np.ndarray:
    """The regression targets of one frame as float32, (N,) or (N, k); a non-numeric, infinite or huge value is a
    DataError that names it."""
    vals = f[targets].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(vals).all(axis=1)
    if bad.any():
        raise DataError(f"the regression target {targets} has {int(bad.sum())} non-numeric or infinite "
                        f"value(s) (e.g. {f[targets].iloc[int(np.flatnonzero(bad)[0])].tolist()}). Fix or "
                        "remove them, or set data.options.task=classification if the target is a label.")
    huge = np.abs(vals) >= HUGE
    if huge.any():  # standardizing them overflows: the loss would be NaN with no word on why
        at = f.index[int(np.flatnonzero(huge.any(axis=1))[0])]
        row = int(at) if isinstance(at, int | np.integer) else 0  # the file's data row (0-based)
        raise DataError(f"the regression target {names(targets)} holds huge values ({int(huge.sum())}, e.g. "
                        f"{vals[huge][0]:g} in row {row + 1} of the {'training data' if split == 'data' else split}): "
                        "probably a sentinel (such as 1e300 for 'unknown') or a wrong unit. Fix or remove "
                        "those rows.")
    return (vals[:, 0] if len(targets) == 1 else vals).astype(np.float32)


TablePart = tuple[pd.DataFrame, np.ndarray]  # a split's rows and their targets


def split_rows(cfg: DataConfig, src: TableSource, frames: dict[str, pd.DataFrame], ys: dict[str, np.ndarray],
               task: str, seed: int, fold: int | None, notes: list[str],
               report: dict[str, Any]) -> tuple[dict[str, TablePart | None], dict[str, Any]]:
    """(parts, split_report): the rows and targets of train/val/test (None: no such split) and how they were split.

    Seeded, stratified for classification (data.stratify): fractions of the training data, k-fold over its non-test
    rows, or the val/test frames given ready-made (their files, or the dataset's own split).
    """
    main = frames["data"]
    split_report: dict[str, Any] = {"stratified": bool(task == "classification" and cfg.stratify)}
    if src.split_origin != "fraction":
        for split in ("val", "test"):
            if split in frames:
                split_report[split] = src.split_origin
    if "test" in frames and cfg.test_fraction > 0:
        split_report["test_fraction_ignored"] = True  # the test rows come ready-made
    strata = ys["data"] if split_report["stratified"] else None
    tr, va, te = split_plan(len(main), strata, cfg, seed, fold, fixed_val=len(frames["val"]) if "val" in frames
                            else None, fixed_test=len(frames["test"]) if "test" in frames else None, notes=notes,
                            split_report=split_report)
    parts: dict[str, TablePart | None] = {"train": (main.iloc[tr], ys["data"][tr])}
    for split, idx in (("val", va), ("test", te)):
        parts[split] = (main.iloc[idx], ys["data"][idx]) if idx is not None else (
            (frames[split], ys[split]) if split in frames else None)
    report["split"] = split_report
    return parts, split_report


def subsample_train(cfg: DataConfig, parts: dict[str, TablePart | None], codec: LabelCodec | None, seed: int,
                    notes: list[str], report: dict[str, Any]) -> dict[str, int] | None:
    """data.subsample: keep that share (or number) of the training rows, stratified for classification with
    data.stratify (``parts["train"]`` is replaced). Returns the training class counts before it (None: regression).
    """
    train_df, y_train = parts["train"]  # type: ignore[misc]
    before = _counts_by_name(y_train, codec) if codec is not None else None
    if cfg.subsample is not None:
        k = subsample_count(cfg.subsample, len(train_df))
        keep = np.arange(len(train_df))
        if k < len(train_df):
            _, keep = take(keep, k, y_train if codec is not None and cfg.stratify else None, seed + 2, notes,
                           "subsample")
        report["subsample"] = {"rows_before": len(train_df), "rows_after": int(len(keep))}
        parts["train"] = (train_df.iloc[keep], y_train[keep])
    return before


# --------------------------------------------------------------------------------------------- arrays


def _load_arrays(cfg: DataConfig, src: ArraySource, seed: int, fold: int | None, binary: bool) -> DataBundle:
    notes: list[str] = []
    report: dict[str, Any] = {"dataset": src.name, "kind": src.kind, "warnings": notes}
    ignored = [k for k, on in (("drop_duplicates", cfg.drop_duplicates), ("missing", cfg.missing != "none"),
                               ("outliers", cfg.outliers != "none"), ("one_hot", False)) if on]
    if ignored:
        notes.append(f"data.{', data.'.join(ignored)} apply to tables and were ignored for {src.kind} data.")
    given = {"data": (src.x, src.y)}
    for split in ("val", "test"):
        if getattr(src, split) is not None:
            given[split] = getattr(src, split)
    report["rows_loaded"] = {k: len(v[0]) for k, v in given.items()}
    y_all = pd.Series(np.concatenate([np.asarray(v[1]).reshape(len(v[1]), -1)[:, 0] for v in given.values()]))
    multi = np.asarray(src.y).ndim > 1 and np.asarray(src.y).shape[1] > 1
    task_notes: dict[str, Any] = {}
    task = infer_task(pd.Series(np.asarray(src.y).reshape(len(src.y), -1)[:, 0]), src.task, multi, task_notes)
    report["task"] = task
    report.update(task_notes)
    codec: LabelCodec | None = None
    if task == "classification":
        codec = _codec(y_all.tolist(), src.class_names)
        ys = {k: codec.encode(np.asarray(v[1]).reshape(-1), where=f"labels of '{src.name}'")
              for k, v in given.items()}
    else:
        ys = {}
        for k, v in given.items():
            yv = np.asarray(v[1], dtype=np.float32)
            if not np.isfinite(yv).all():
                raise DataError(f"the regression targets of '{src.name}' ({k}) contain NaN/Inf; remove those rows.")
            ys[k] = yv
    if cfg.classes is not None:
        codec, keep = _keep_classes(cfg, codec, ys, src.name, report)
        given = {k: (np.asarray(v[0])[keep[k]], np.asarray(v[1])[keep[k]]) for k, v in given.items()}

    split_report: dict[str, Any] = {"stratified": bool(task == "classification" and cfg.stratify)}
    for split in ("val", "test"):
        if split in given:
            split_report[split] = src.split_origin
    if "test" in given and cfg.test_fraction > 0:
        split_report["test_fraction_ignored"] = True  # the dataset's own test split is used
    tr, va, te = split_plan(len(given["data"][0]), ys["data"] if split_report["stratified"] else None, cfg, seed, fold,
                            fixed_val=len(given["val"][0]) if "val" in given else None,
                            fixed_test=len(given["test"][0]) if "test" in given else None, notes=notes,
                            split_report=split_report)
    report["split"] = split_report
    x_main, y_main = np.asarray(given["data"][0]), ys["data"]
    before = _counts_by_name(y_main[tr], codec) if codec is not None else None
    if cfg.subsample is not None:
        k = subsample_count(cfg.subsample, len(tr))
        if k < len(tr):
            pos = np.arange(len(tr))
            _, pos = take(pos, k, y_main[tr] if codec is not None and cfg.stratify else None, seed + 2, notes,
                          "subsample")
            report["subsample"] = {"rows_before": len(tr), "rows_after": int(len(pos))}
            tr = tr[pos]
        else:
            report["subsample"] = {"rows_before": len(tr), "rows_after": len(tr)}
    raw = {"train": (x_main[tr], y_main[tr], tr),
           "val": (x_main[va], y_main[va], va) if va is not None else (
               (given["val"][0], ys["val"], None) if "val" in given else None),
           "test": (x_main[te], y_main[te], te) if te is not None else (
               (given["test"][0], ys["test"], None) if "test" in given else None)}
    pre = Preprocessor(src.kind, task)
    pre.labels = codec
    pre.fit_array(raw["train"][0], cfg.scale, src.input_scale)  # type: ignore[index]
    # uint8 images stay uint8 (always finite); the loaders normalize each batch exactly as array_matrix would
    pixels = src.kind == "image" and all(p is None or np.asarray(p[0]).dtype == np.uint8 for p in raw.values()) \
        and all(p is None or np.asarray(p[0]).shape[1:] == pre.sample_shape for p in raw.values())
    xs: dict[str, np.ndarray | None] = {}
    for s, p in raw.items():
        if pixels:
            xs[s] = None if p is None else np.ascontiguousarray(p[0])
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            xs[s] = None if p is None else pre.array_matrix(p[0])
        if xs[s] is not None:
            _check_finite(pre, xs[s], s, p[0])
    yd = {s: (None if p is None else p[1]) for s, p in raw.items()}
    indices = {s: (None if p is None else p[2]) for s, p in raw.items()}
    bundle = _assemble(cfg, seed, src.name, src.kind, task, pre, xs, yd, indices, report, before,
                       tuple(pre.sample_shape), None, fold, split_report, binary, f"the labels of '{src.name}'")
    if pixels:
        from gradwise.data.loaders import PixelNormalize

        bundle.normalize = PixelNormalize(pre.input_scale, pre.center, pre.spread)
    return bundle


# --------------------------------------------------------------------------------------------- shared tail


def column_kinds(cfg: Any, frame: pd.DataFrame, features: list[str], forced: list[str], notes: list[str]
                 ) -> tuple[list[str], list[str], list[str], list[str]]:
    """(numeric, categorical, boolean, coerced) feature columns of the training frame, numeric ones in the file's
    column order; the same rules for a table in memory and a streamed one (data.stream's first row group).
    Columns that are neither numbers nor categories, and categories left unencoded by data.one_hot=false, are
    refused in one line."""
    numeric, categorical, boolean, unsupported = cleaning.classify_columns(frame, features, forced)
    if unsupported:
        kinds = ", ".join(f"{quote(c)} ({frame[c].dtype})" for c in unsupported)
        raise DataError(f"column(s) {kinds} are neither numbers nor categories. Convert them to numbers (e.g. a "
                        "date to days since an epoch) or leave them out with data.features.")
    coerce = _numeric_text_columns(cfg, frame, categorical, boolean, forced, notes)
    numeric = [c for c in features if c in numeric or c in coerce]  # in the file's column order
    categorical = [c for c in categorical if c not in coerce]
    text = [c for c in categorical if c not in boolean]
    if not cfg.one_hot:
        if text:
            raise DataError(f"non-numeric column(s) {', '.join(map(repr, text))} would be left unencoded because "
                            "data.one_hot=false. Set data.one_hot=true to one-hot encode them, or drop them with "
                            "data.features.")
        categorical = []  # bool columns become 0/1 numbers
    else:
        boolean = []  # bool columns are one-hot encoded like any category
    return numeric, categorical, boolean, list(coerce)


def _numeric_text_columns(cfg: DataConfig, frame: pd.DataFrame, categorical: list[str], boolean: list[str],
                          forced: list[str], notes: list[str]) -> list[str]:
    """Text columns that are numbers but for a few cells: numeric, those cells missing (a warning names them).

    With data.missing=none nothing would fill those cells, so that is a clear error instead of a failure later.
    """
    found = cleaning.numeric_with_text(frame, [c for c in categorical if c not in boolean and c not in forced])
    for c, (count, examples) in found.items():
        total = int(frame[c].notna().sum())
        shown = ", ".join(show(e) for e in examples)
        if cfg.missing == "none":
            raise DataError(f"column {quote(c)} holds numbers except {count} of {total} cells with text (e.g. {shown})."
                            " Set data.missing=median (or mean, most_frequent, drop) to read those cells as missing "
                            "values and fill (or drop) them, fix the cells, or list the column in "
                            "data.options.categorical to treat its values as categories.")
        message = (f"column {quote(c)} holds numbers except {count} of {total} cells with text (e.g. {shown}); "
                   f"those cells are read as missing values (data.missing={cfg.missing}). To treat the column as "
                   "categories instead, list it in data.options.categorical.")
        notes.append(message)
        warnings.warn(message, DataWarning, stacklevel=4)
    return list(found)


def _check_finite(pre: Preprocessor, matrix: np.ndarray, split: str, raw: Any = None) -> None:
    bad = pre.nonfinite_columns(matrix.reshape(len(matrix), -1))
    if not bad:
        return
    advice = ("probably a sentinel (such as 1e300 for 'unknown') or a wrong unit, not a measurement. Fix the "
              "{what}, or ")
    if pre.kind == "table":
        for c in bad:
            if c in pre.numeric and raw is not None:
                vals = pd.to_numeric(raw[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                huge = np.isfinite(vals) & (np.abs(vals) >= HUGE)
                if huge.any():
                    raise DataError(
                        f"column {quote(c)} holds huge values ({int(huge.sum())} in the {split} rows, e.g. "
                        f"{vals[huge][0]:g}) that overflow when scaled: " + advice.format(what="column")
                        + "clip them with data.outliers=iqr_clip (fences fitted on the training rows), or leave the "
                        "column out with data.features.")
        cols = ", ".join(f"{quote(c)} ({n} rows)" for c, n in bad.items())
        raise DataError(f"the {split} features contain NaN/Inf after preprocessing in column(s) {cols}. Set "
                        "data.missing=median (or mean, most_frequent, drop) to impute or drop missing values.")
    values = np.asarray(raw, dtype=np.float64) if raw is not None else np.zeros(0)
    huge = np.isfinite(values) & (np.abs(values) >= HUGE)
    if huge.any():
        raise DataError(f"the {split} samples hold huge values ({int(huge.sum())} positions, e.g. "
                        f"{values[huge][0]:g}) that overflow in float32: " + advice.format(what="array")
                        + "remove those samples.")
    raise DataError(f"the {split} samples contain NaN/Inf values ({sum(bad.values())} affected positions). Clean "
                    "the array before training (e.g. numpy.nan_to_num) or remove those samples.")


def _check_binary(n_classes: int, names: list[str], target_desc: str) -> None:
    """bce_with_logits trains one logit, which can tell two classes apart and no more."""
    if n_classes == 2:
        return
    shown = ", ".join(repr(n) for n in names[:10]) + (", ..." if n_classes > 10 else "")
    raise ConfigError(f"loss.name = 'bce_with_logits' trains one output for two classes, but {target_desc} has "
                      f"{n_classes} classes ({shown}). Set loss.name=cross_entropy (or auto) to train one output per "
                      "class, or keep two of them with data.classes=[...].")


def _assemble(cfg: DataConfig, seed: int, name: str, kind: str, task: str, pre: Preprocessor,
              xs: dict[str, np.ndarray | None], ys: dict[str, np.ndarray | None],
              indices: dict[str, np.ndarray | None], report: dict[str, Any], before: dict[str, int] | None,
              input_shape: tuple[int, ...], feature_names: list[str] | None, fold: int | None,
              split_report: dict[str, Any], binary: bool = False, target_desc: str = "the target") -> DataBundle:
    notes: list[str] = report["warnings"]
    for s in SPLITS:
        if xs[s] is not None and len(xs[s]) == 0:  # type: ignore[arg-type]
            raise DataError(f"the {s} split is empty; change data.val_fraction / data.test_fraction (or the "
                            f"{s} file) so it gets rows, or set the fraction to 0 to skip it.")
    x_tr, y_tr = xs["train"], ys["train"]
    assert x_tr is not None and y_tr is not None
    codec = pre.labels
    class_weights = sample_weights = None
    class_counts: list[int] | None = None
    n_classes: int | None = None
    if task == "classification":
        assert codec is not None
        n_classes = len(codec)
        counts = np.bincount(y_tr, minlength=n_classes)
        if (counts > 0).sum() < 2:
            only = codec.names[int(np.argmax(counts))]
            raise DataError(f"the training split has a single class ({quote(only)}, {int(counts.max())} rows); a "
                            "classifier needs at least two. Check data.target, use data.stratify=true, or give "
                            "data with more classes.")
        absent = [codec.names[i] for i in np.flatnonzero(counts == 0)]
        if absent:
            notes.append(f"class(es) {absent} have no training rows and cannot be learned.")
        if cfg.balance in ("oversample", "undersample"):
            idx = balance_indices(y_tr, n_classes, cfg.balance, seed + 3)
            x_tr, y_tr = x_tr[idx], y_tr[idx]
        elif cfg.balance == "class_weights":
            class_weights = torch.from_numpy(class_weight_vector(counts))
        elif cfg.balance == "weighted_sampler":
            sample_weights = torch.from_numpy(class_weight_vector(counts)[y_tr])
        after = np.bincount(y_tr, minlength=n_classes)
        class_counts = [int(c) for c in after]
        report["class_counts_before_sampling"] = before
        report["class_counts_after_sampling"] = {n: int(c) for n, c in zip(codec.names, after, strict=True)}
        report["balance"] = cfg.balance
        if class_weights is not None:
            report["class_weights"] = {n: float(w) for n, w in zip(codec.names, class_weights, strict=True)}
        n_outputs = n_classes
        if binary:
            _check_binary(n_classes, codec.names, target_desc)
            n_outputs = 1  # one logit: its sigmoid is the probability of the second class
            report["target_encoding"] = {"loss": "bce_with_logits", "outputs": 1, "negative": codec.names[0],
                                         "positive": codec.names[1]}
    else:
        if cfg.balance != "none":
            raise DataError(f"data.balance = {cfg.balance} needs class labels but this is a regression task; set "
                            "data.balance=none (or data.options.task=classification if the target is a label).")
        if cfg.scale_target in (True, "auto"):
            pre.fit_target(y_tr)
            report["target_scaling"] = {"mean": pre.target_mean.tolist(),  # type: ignore[union-attr]
                                        "scale": pre.target_scale.tolist()}  # type: ignore[union-attr]
        n_outputs = 1 if y_tr.ndim == 1 else int(y_tr.shape[1])
    if task == "classification" and cfg.scale_target != "auto":  # only a value the user set deserves a note
        notes.append(f"data.scale_target={str(cfg.scale_target).lower()} applies to regression targets only and was "
                     "ignored for this classification task.")

    def to_split(x: np.ndarray | None, y: np.ndarray | None) -> Split | None:
        if x is None or y is None:
            return None
        # uint8 image pixels stay uint8 (converted per batch: DataBundle.normalize); everything else float32
        arr = np.ascontiguousarray(x, dtype=np.uint8 if x.dtype == np.uint8 else np.float32)
        if not arr.flags.writeable:  # a dataset's cached, read-only array (its own test split): torch wants its own
            arr = arr.copy()
        xt = torch.from_numpy(arr)
        if task == "classification" and n_outputs == 1:
            # one logit: bce_with_logits compares it with a 0/1 float column of the same (N, 1) shape
            return xt, torch.from_numpy(np.array(y, dtype=np.float32).reshape(-1, 1))
        if task == "classification":
            # np.array copies: labels may be views of read-only cached arrays
            return xt, torch.from_numpy(np.array(y, dtype=np.int64))
        return xt, pre.transform_target(torch.from_numpy(np.array(y, dtype=np.float32)))

    train = to_split(x_tr, y_tr)
    assert train is not None
    val, test = to_split(xs["val"], ys["val"]), to_split(xs["test"], ys["test"])
    report["rows"] = {"train": len(train[0]), "val": len(val[0]) if val else 0, "test": len(test[0]) if test else 0}
    report["preprocessor"] = pre.describe()
    report["input_shape"] = list(input_shape)
    # stored with the run (preprocess.json): predict rebuilds the model from these without reading the data
    pre.input_shape, pre.n_outputs = tuple(int(s) for s in input_shape), int(n_outputs)
    return DataBundle(name=name, task=task, train=train, val=val, test=test,  # type: ignore[arg-type]
                      n_classes=n_classes, n_outputs=n_outputs, input_shape=tuple(int(s) for s in input_shape),
                      class_names=pre.class_names, class_counts=class_counts, preprocessor=pre, report=report,
                      class_weights=class_weights, sample_weights=sample_weights, kind=kind,
                      feature_names=feature_names, split_indices=indices,
                      fold=split_report.get("fold", fold))

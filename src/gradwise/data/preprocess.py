"""The fitted preprocessing of a run: feature cleaning/scaling/encoding, label encoding and target scaling.

Everything is fitted on the training split only and then applied unchanged to val, test and new rows at
`gradwise predict` time; `Preprocessor.save`/`load` keep it with the run.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gradwise.errors import DataError

MISSING_CATEGORY = "<missing>"  # categorical NaN becomes its own category when data.missing is none
FORMAT_VERSION = 1


def clean_category_values(values: pd.Series, casefold: bool = True, strip: bool = True) -> pd.Series:
    """Every non-missing value as a str, stripped of surrounding whitespace and casefolded; missing stays NaN."""
    obj = values.astype(object)
    mask = obj.notna().to_numpy()
    out = pd.Series(np.full(len(obj), np.nan, dtype=object), index=obj.index, name=obj.name)
    cleaned = obj[mask].map(str)
    if strip:
        cleaned = cleaned.map(str.strip)
    if casefold:
        cleaned = cleaned.map(str.casefold)
    out[mask] = cleaned.to_numpy(dtype=object)
    return out


def as_category_strings(values: pd.Series) -> pd.Series:
    """Non-missing values as str (OneHotEncoder needs one type); None/NaN/NA all become NaN."""
    return clean_category_values(values, casefold=False, strip=False)


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
        plain = list(dict.fromkeys(_plain(v) for v in pd.Series(list(values), dtype=object).dropna()))
        try:
            ordered = sorted(plain)
        except TypeError:  # mixed types: order by text so it is still deterministic
            ordered = sorted(plain, key=str)
        return cls(ordered)

    def __len__(self) -> int:
        return len(self.classes)

    def encode(self, values: Any, where: str = "labels") -> np.ndarray:
        series = pd.Series(_to_numpy(values).tolist() if not isinstance(values, pd.Series) else values, dtype=object)
        series = series.map(_plain)
        codes = series.map(self._index)
        bad = codes.isna()
        if bad.any():
            unknown = sorted({str(v) for v in series[bad]})[:5]
            raise DataError(f"{where}: label value(s) {', '.join(map(repr, unknown))} are not among the classes "
                            f"seen in training ({', '.join(self.names[:20])}). Remove those rows or retrain with "
                            "data that contains them.")
        return codes.to_numpy(dtype=np.int64)

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

    # ----------------------------------------------------------------------------------------- table fitting

    def fit_table(self, frame: pd.DataFrame, numeric: list[str], categorical: list[str], boolean: list[str], *,
                  scale: str, missing: str, clean_categories: bool, clip_bounds: dict[str, tuple[float, float]],
                  max_categories: int | None = None) -> Preprocessor:
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import OneHotEncoder

        self.columns = [*numeric, *boolean, *categorical]
        self.numeric, self.categorical, self.boolean = list(numeric), list(categorical), list(boolean)
        self.clean_categories = clean_categories
        self.clip_bounds = dict(clip_bounds)
        num = self._numeric_block(frame)
        if self.numeric:
            if missing in ("mean", "median", "most_frequent"):
                # keep_empty_features: an all-missing train column stays (as 0) so column positions never shift
                self.num_imputer = SimpleImputer(strategy=missing, keep_empty_features=True).fit(num)
                num = self.num_imputer.transform(num)
            if scale != "none":
                self.scaler = _make_scaler(scale).fit(num)  # sklearn scalers ignore NaN while fitting
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

    def _numeric_block(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.numeric:
            return np.zeros((len(frame), 0))
        cols = []
        for c in self.numeric:
            raw = frame[c]
            vals = pd.to_numeric(raw, errors="coerce")
            bad = vals.isna() & raw.notna()
            if bad.any():
                raise DataError(f"column '{c}' should be numeric but holds {raw[bad].iloc[0]!r} (row "
                                f"{raw.index[bad][0]}). Fix the value, or leave the cell empty to mark it missing.")
            cols.append(vals.to_numpy(dtype=np.float64, na_value=np.nan))
        num = np.stack(cols, axis=1)
        num[~np.isfinite(num)] = np.nan  # ±inf is treated as a missing value (imputed, or reported)
        for j, c in enumerate(self.numeric):
            if c in self.clip_bounds:
                lo, hi = self.clip_bounds[c]
                num[:, j] = np.clip(num[:, j], lo, hi)  # NaN stays NaN
        return num

    def _category_block(self, frame: pd.DataFrame) -> np.ndarray:
        cols = []
        for c in self.categorical:
            s = clean_category_values(frame[c]) if self.clean_categories else as_category_strings(frame[c])
            cols.append(s.to_numpy(dtype=object))
        return np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0), dtype=object)

    def table_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Transform a frame to the float32 feature matrix without the finiteness check."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(f"the input is missing column(s) {', '.join(missing)}; the model was trained on: "
                            f"{', '.join(self.columns)}.")
        blocks = []
        num = self._numeric_block(frame)
        if self.num_imputer is not None:
            num = self.num_imputer.transform(num)
        if self.scaler is not None:
            num = self.scaler.transform(num)
        blocks.append(num)
        if self.boolean:
            blocks.append(np.stack([pd.to_numeric(frame[c].astype(object).map(_bool01), errors="coerce")
                                    .to_numpy(dtype=np.float64, na_value=np.nan) for c in self.boolean], axis=1))
        if self.encoder is not None:
            cat = self._category_block(frame)
            if self.cat_imputer is not None:
                cat = self.cat_imputer.transform(cat)
            cat = np.where(pd.isna(cat), MISSING_CATEGORY, cat)
            blocks.append(self.encoder.transform(cat))
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def nonfinite_columns(self, matrix: np.ndarray) -> dict[str, int]:
        """Input columns whose transformed values contain NaN/Inf, with how many rows are affected."""
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
        xs = x.astype(np.float64) * self.input_scale
        # statistics over every axis except channels: per-channel for images/(C, L) signals, global for (L,)
        axes = (0,) + tuple(range(2, xs.ndim)) if xs.ndim >= 3 else tuple(range(xs.ndim))
        keep = xs.ndim >= 3
        if scale == "standard":
            center, spread = xs.mean(axis=axes, keepdims=keep), xs.std(axis=axes, keepdims=keep)
        elif scale == "minmax":
            center = xs.min(axis=axes, keepdims=keep)
            spread = xs.max(axis=axes, keepdims=keep) - center
        else:  # robust
            q1, med, q3 = np.percentile(xs, [25, 50, 75], axis=axes, keepdims=keep)
            center, spread = med, q3 - q1
        spread = np.where(spread > 0, spread, 1.0)  # a constant channel is centred, not divided by zero
        # drop the batch axis so the stats broadcast against one sample or a batch
        self.center = np.asarray(center[0] if keep else center, dtype=np.float32)
        self.spread = np.asarray(spread[0] if keep else spread, dtype=np.float32)
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
        out = x.astype(np.float32) * np.float32(self.input_scale)
        if self.center is not None and self.spread is not None:
            out = (out - self.center) / self.spread
        return out.astype(np.float32, copy=False)

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
        if self.kind == "table":
            if arr.ndim != 2 or arr.shape[1] != len(self.columns):
                raise DataError(f"expected a 2-D array with {len(self.columns)} columns ({', '.join(self.columns)}),"
                                f" got shape {arr.shape}.")
            return self.transform_frame(pd.DataFrame(arr, columns=self.columns))
        matrix = self.array_matrix(arr)
        self._check_finite(matrix, "the input samples")
        return torch.from_numpy(matrix)

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
        """Pickle (our own file: fitted sklearn objects plus plain metadata). Written atomically."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump({"format": "gradwise-preprocessor", "version": FORMAT_VERSION, "state": self.__dict__}, fh,
                        protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> Preprocessor:
        p = Path(path)
        if not p.exists():
            raise DataError(f"preprocessor file '{p}' does not exist; it is saved in the run directory as "
                            "preprocessor.pkl. Point to the run that trained the model.")
        try:
            with open(p, "rb") as fh:
                blob = pickle.load(fh)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise DataError(f"preprocessor file '{p}' could not be read ({exc}); it may be corrupt or from an "
                            "incompatible version. Retrain the run to recreate it.") from None
        if not isinstance(blob, dict) or blob.get("format") != "gradwise-preprocessor":
            raise DataError(f"'{p}' is not a gradwise preprocessor file.")
        obj = cls.__new__(cls)
        obj.__dict__.update(blob["state"])
        return obj

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary for reports."""
        d: dict[str, Any] = {"kind": self.kind, "task": self.task}
        if self.kind == "table":
            d.update(numeric=self.numeric, categorical=self.categorical, boolean=self.boolean,
                     n_features=len(self.feature_names), scaler=type(self.scaler).__name__ if self.scaler else None,
                     one_hot=self.encoder is not None, clipped_columns=sorted(self.clip_bounds))
        else:
            d.update(sample_shape=list(self.sample_shape), input_scale=self.input_scale, scale=self.scale_method)
        d["classes"] = self.class_names
        d["target_scaled"] = self.target_mean is not None
        return d


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

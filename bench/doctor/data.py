"""The data every held-out and blind set of the doctor draws from, offline only: scikit-learn's bundled tables and
generators, MNIST-1D, Fashion-MNIST subsets, and the small files (CSV, .npz) a `gradwise train` case reads.

Every builder takes the seed it draws from as an argument (no global state) and returns numpy arrays; a set's cases
name a builder and its arguments (`functools.partial`), the harness calls it with the set's seed. Splits are
(x_train, y_train, x_val, y_val); standardization always uses the training split's statistics.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@functools.cache
def sklearn_data(name: str, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """One of scikit-learn's bundled datasets as `dtype` features and its targets."""
    from sklearn import datasets

    loader = {"digits": datasets.load_digits, "wine": datasets.load_wine, "iris": datasets.load_iris,
              "breast_cancer": datasets.load_breast_cancer, "diabetes": datasets.load_diabetes}[name]
    x, y = loader(return_X_y=True)
    return x.astype(dtype), y


@functools.cache
def mnist1d_data() -> tuple[np.ndarray, ...]:
    """MNIST-1D's predefined split (4000 train / 1000 test signals of length 40), generated locally."""
    from gradwise.data.datasets import load_mnist1d

    src = load_mnist1d({})
    return (np.asarray(src.x, np.float32), np.asarray(src.y, np.int64),
            np.asarray(src.test[0], np.float32), np.asarray(src.test[1], np.int64))


@functools.cache
def fashion_data() -> tuple[np.ndarray, ...]:
    """Fashion-MNIST (uint8 pixels 0-255, shape (N, 1, 28, 28)) from /usr/share/datasets/fashion-mnist."""
    from gradwise.data.datasets import load_fashion_mnist

    src = load_fashion_mnist({})
    return src.x, src.y, src.test[0], src.test[1]


def standardize(xt: np.ndarray, *others: np.ndarray, eps: float | None = None) -> list[np.ndarray]:
    """Per-feature standardization with the training split's statistics (what a careful user does): float32, a
    ~constant feature divided by 1; with `eps`, sd + eps and the input's dtype kept (blind6's scaler)."""
    mu, sd = xt.mean(0), xt.std(0)
    if eps is not None:
        return [(a - mu) / (sd + eps) for a in (xt, *others)]
    sd = np.where(sd < 1e-6, 1.0, sd)
    return [((a - mu) / sd).astype(np.float32) for a in (xt, *others)]


def unguarded_standardize(d: Split) -> Split:
    """Per-column standardization written by hand, with no guard: a zero std divides by 0 and a -inf cell makes
    its column's mean -inf and std NaN (the faults some cases commit); float32 out."""
    xt, yt, xv, yv = d
    with np.errstate(invalid="ignore", divide="ignore"):
        mu, sd = xt.mean(0), xt.std(0)
        xt, xv = (xt - mu) / sd, (xv - mu) / sd
    return xt.astype(np.float32), yt, xv.astype(np.float32), yv


def pooled(xt: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Images: one mean/std over all training pixels (per-pixel statistics would blow up the ~constant border)."""
    mu, sd = xt.mean(), xt.std()
    return [(a - mu) / sd for a in (xt, *others)]


def tensor(a: np.ndarray, long: bool = False) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.long if long else torch.float32)


def class_sorted_loader(x: np.ndarray, y: np.ndarray, batch_size: int = 64) -> torch.utils.data.DataLoader:
    """The rows sorted by class (stable) in a DataLoader that does not shuffle: every batch but those at a class
    border holds one class (rows read folder by folder, one folder a class)."""
    order = np.argsort(y, kind="stable")
    ds = torch.utils.data.TensorDataset(tensor(x[order]), tensor(y[order], True))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)


def split(x: np.ndarray, y: np.ndarray, val_share: float, seed: int, scale: bool = False,
          floor: bool = False) -> Split:
    """(x_train, y_train, x_val, y_val): a random split drawn from `seed`; `scale` standardizes the features with
    the training split's statistics; `floor` rounds the validation count down instead of to the nearest row."""
    order = np.random.RandomState(seed).permutation(len(x))
    x, y = x[order], y[order]
    n = int(len(x) * val_share) if floor else int(round(len(x) * val_share))
    xt, yt, xv, yv = x[n:], y[n:], x[:n], y[:n]
    if scale:
        xt, xv = standardize(xt.astype(np.float32), xv.astype(np.float32))
    return xt, yt, xv, yv


def split_indices(n: int, rng: np.random.Generator, val: float = 0.1, test: float = 0.2) -> tuple[np.ndarray, ...]:
    """Row indices of a train/val/test split drawn from a numpy Generator."""
    idx = rng.permutation(n)
    n_test, n_val = int(round(n * test)), int(round(n * val))
    return idx[n_test + n_val:], idx[n_test:n_test + n_val], idx[:n_test]


def sk_table(name: str, seed: int, *, val_share: float = 0.25, scale: bool = True, pooled_pixels: bool = True,
             floor: bool = False) -> Split:
    """An sklearn table split by `seed`, standardized with the training statistics (numpy arrays). Digits' pixels
    get one mean/std over all of them with `pooled_pixels` (some pixels are ~constant in train), else per feature."""
    x, y = sklearn_data(name)
    xt, yt, xv, yv = split(x, y, val_share, seed, floor=floor)
    if scale and name == "digits" and pooled_pixels:
        xt, xv = pooled(xt, xv)
    elif scale:
        xt, xv = standardize(xt, xv)
    return xt, yt, xv, yv


def sk_table3(name: str, seed: int, scale: bool = True, dtype: type = np.float64) -> tuple[np.ndarray, ...]:
    """An sklearn table as a 70/10/20 train/val/test split drawn from a Generator (blind6's split)."""
    x, y = sklearn_data(name, dtype)
    tr, va, te = split_indices(len(x), np.random.default_rng(seed))
    xs = standardize(x[tr], x[va], x[te], eps=1e-8) if scale else [x[tr], x[va], x[te]]
    return xs[0], y[tr], xs[1], y[va], xs[2], y[te]


def digits_images(seed: int, n_val: int = 400) -> Split:
    """sklearn digits as (N, 1, 8, 8) images, the first `n_val` rows of a seed-drawn order for validation, pixels
    scaled by the training mean/std of all pixels."""
    x, y = sklearn_data("digits")
    order = np.random.RandomState(seed).permutation(len(x))
    x, y = x[order].reshape(-1, 1, 8, 8), y[order]
    xt, xv = pooled(x[n_val:], x[:n_val])
    return xt, y[n_val:], xv, y[:n_val]


def mnist1d_split(n_train: int | None = None, n_val: int = 1000, scale: bool = True) -> Split:
    """MNIST-1D's own train/test split (first `n_train` / `n_val` rows), standardized per time step with the
    training statistics unless `scale` is off (numpy arrays)."""
    x, y, xv, yv = mnist1d_data()
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    xv, yv = xv[:n_val], yv[:n_val]
    if scale:
        x, xv = standardize(x, xv)
    return x, y, xv, yv


def fashion(n_train: int, n_val: int, seed: int, *, raw: bool = False, flat: bool = False) -> Split:
    """A Fashion-MNIST subset drawn by `seed`: training rows from its train split, validation rows from its test
    split; /255, then the training mean/std over all pixels (unless `raw`: pixels 0-255 as they are)."""
    x, y, xt_, yt_ = fashion_data()
    rs = np.random.RandomState(seed)
    i, j = rs.choice(len(x), n_train, replace=False), rs.choice(len(xt_), n_val, replace=False)
    xt, yt, xv, yv = x[i].astype(np.float32), y[i], xt_[j].astype(np.float32), yt_[j]
    if not raw:
        xt, xv = pooled(xt / 255.0, xv / 255.0)
    if flat:
        xt, xv = xt.reshape(len(xt), -1), xv.reshape(len(xv), -1)
    return xt, yt, xv, yv


def fashion_head(n_train: int, n_val: int = 1000) -> Split:
    """The first n_train / n_val Fashion-MNIST images as (N, 1, 28, 28) floats, standardized with one mean/std."""
    x, y, xv, yv = fashion_data()
    x, y, xv, yv = np.asarray(x[:n_train], np.float32), np.asarray(y[:n_train]), \
        np.asarray(xv[:n_val], np.float32), np.asarray(yv[:n_val])
    x, xv = pooled(x, xv)
    return x, y.astype(np.int64), xv, yv.astype(np.int64)


def fashion3(n_train: int, n_val: int, n_test: int, seed: int) -> tuple[np.ndarray, ...]:
    """A Fashion-MNIST subset as float32 (N, 28, 28) images in [0, 1]: train and val from the training file, test
    from t10k, drawn from a Generator."""
    x, y, xt, yt = fashion_data()
    x, xt = x.reshape(-1, 28, 28), xt.reshape(-1, 28, 28)
    y, yt = y.astype(np.int64), yt.astype(np.int64)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(x))[:n_train + n_val]
    tpick = rng.permutation(len(xt))[:n_test]
    f = np.float32
    return (x[pick[:n_train]].astype(f) / 255, y[pick[:n_train]], x[pick[n_train:]].astype(f) / 255,
            y[pick[n_train:]], xt[tpick].astype(f) / 255, yt[tpick])


def noisy_labels(y: np.ndarray, fraction: float, rng: np.random.Generator, classes: int = 10) -> np.ndarray:
    """`fraction` of the labels replaced by a class drawn uniformly (the same class included)."""
    y = y.copy()
    flip = rng.random(len(y)) < fraction
    y[flip] = rng.integers(0, classes, int(flip.sum()))
    return y


def fashion_npz(work: Path, seed: int, n_train: int = 3000, noise: float = 0.0, n_val: int = 600) -> Path:
    """A Fashion-MNIST subset written as the .npz `gradwise train` reads (x, y, x_val, y_val, x_test, y_test)."""
    x, y, xv, yv, xt, yt = fashion3(n_train, n_val, 600, seed)
    if noise:
        rng = np.random.default_rng(seed + 1)
        y, yv, yt = (noisy_labels(a, noise, rng) for a in (y, yv, yt))
    path = work / "fashion.npz"
    np.savez(path, x=x, y=y, x_val=xv, y_val=yv, x_test=xt, y_test=yt)
    return path


def write_csv(frame: Any, work: Path, name: str) -> Path:
    path = work / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def synthetic(kind: str, *args: Any, seed: int, val_share: float = 0.25, scale: bool = False, offset: int = 0,
              float_target: bool = False, scale_target: bool = False, **params: Any) -> Split:
    """One of scikit-learn's generators (`make_<kind>`, drawn from `seed`) with float32 features, split by
    seed + offset, [standardized]; a regression target [cast to float32 before the split] [standardized]."""
    from sklearn import datasets

    x, y = getattr(datasets, f"make_{kind}")(*args, random_state=seed, **params)
    xt, yt, xv, yv = split(x.astype(np.float32), y.astype(np.float32) if float_target else y, val_share, seed + offset)
    if scale:
        xt, xv = standardize(xt, xv)
    return standardized_target((xt, yt, xv, yv)) if scale_target else (xt, yt, xv, yv)


def standardized_target(d: Split) -> Split:
    """A regression split with its target standardized by the training statistics (float32)."""
    xt, yt, xv, yv = d
    mu, sd = yt.mean(), yt.std()
    return xt, ((yt - mu) / sd).astype(np.float32), xv, ((yv - mu) / sd).astype(np.float32)


def twisted_regression(n: int, n_features: int, n_informative: int, noise: float, product: float, square: float, *,
                       seed: int, target_scale: float | None = None) -> Split:
    """make_regression plus an interaction (`product` x0·x1) and a square (`square` x2²) term, split 75/25 by
    `seed`; X standardized; y standardized with the training statistics, or (target_scale) multiplied by it and
    left in its own units."""
    from sklearn.datasets import make_regression

    x, y = make_regression(n, n_features=n_features, n_informative=n_informative, noise=noise, random_state=seed)
    y = y + product * x[:, 0] * x[:, 1] + square * x[:, 2] ** 2
    xt, yt, xv, yv = split(x.astype(np.float32), y.astype(np.float32), 0.25, seed)
    xt, xv = standardize(xt, xv)
    if target_scale is not None:
        return xt, (yt * target_scale).astype(np.float32), xv, (yv * target_scale).astype(np.float32)
    return standardized_target((xt, yt, xv, yv))

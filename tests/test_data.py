"""gradwise.data: loading, cleaning, splitting, preprocessing, sampling, augmentation and validation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from gradwise.config import DataConfig
from gradwise.data import datasets
from gradwise.data.augment import build_augment
from gradwise.data.datasets import FASHION_MNIST_DIR
from gradwise.data.prepare import DataBundle, load_data
from gradwise.data.preprocess import Preprocessor
from gradwise.errors import DataError


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # keep generated datasets out of the real ~/.cache during tests
    path = tmp_path_factory.mktemp("gradwise-cache")
    old = os.environ.get("GRADWISE_CACHE_DIR")
    os.environ["GRADWISE_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GRADWISE_CACHE_DIR", None)
    else:
        os.environ["GRADWISE_CACHE_DIR"] = old


def cfg(**kw: Any) -> DataConfig:
    return DataConfig(**kw)


# --------------------------------------------------------------------------------------------- fixtures: files

CITIES = [" Paris", "paris", "PARIS ", "London", "london", "Berlin"]
OUTLIER_ROWS = [3, 40, 77, 120, 150, 190]


def dirty_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Numeric columns with NaN and extreme values, a messy string column, a bool column, string labels."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 80, n).round(3)
    age[OUTLIER_ROWS] = 999.0
    age[[5, 6, 7]] = np.nan
    income = rng.uniform(1000, 5000, n).round(2)
    income[[10, 11]] = np.nan
    frame = pd.DataFrame({
        "age": age,
        "income": income,
        "city": [CITIES[i % len(CITIES)] for i in range(n)],
        "member": rng.integers(0, 2, n).astype(bool),
        "label": [["yes", "no ", "maybe"][i % 3] for i in range(n)],
    })
    return frame


DUPLICATES = 5


@pytest.fixture
def dirty_csv(tmp_path: Path) -> Path:
    frame = dirty_frame()
    # exact copies of 5 complete rows (no NaN, not outliers)
    frame = pd.concat([frame, frame.iloc[[20, 21, 22, 23, 24]]], ignore_index=True)
    path = tmp_path / "dirty.csv"
    frame.to_csv(path, index=False)
    return path


def numeric_csv(path: Path, n: int = 150, seed: int = 0, counts: tuple[int, ...] | None = None) -> Path:
    rng = np.random.default_rng(seed)
    if counts is not None:
        labels = np.concatenate([[name] * c for name, c in zip("abcdef", counts, strict=False)])
        n = len(labels)
    else:
        labels = np.array(["a", "b", "c"])[np.arange(n) % 3]
    frame = pd.DataFrame({"x1": rng.normal(5, 2, n), "x2": rng.normal(-3, 0.5, n), "x3": rng.uniform(0, 10, n),
                          "y": labels})
    frame.to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------------------------- built-in datasets


@pytest.mark.parametrize("name,shape,n_classes,task", [
    ("mnist1d", (40,), 10, "classification"),
    ("digits", (64,), 10, "classification"),
    ("iris", (4,), 3, "classification"),
    ("wine", (13,), 3, "classification"),
    ("breast_cancer", (30,), 2, "classification"),
    ("diabetes", (10,), None, "regression"),
])
def test_builtin_datasets_load(name: str, shape: tuple[int, ...], n_classes: int | None, task: str) -> None:
    b = load_data(cfg(dataset=name), seed=0)
    assert isinstance(b, DataBundle)
    assert b.task == task and b.n_classes == n_classes and b.input_shape == shape and b.name == name
    for split in (b.train, b.val, b.test):
        assert split is not None
        x, y = split
        assert x.dtype == torch.float32 and x.shape[1:] == shape and len(x) == len(y)
        assert torch.isfinite(x).all()
        if task == "classification":
            assert y.dtype == torch.int64 and y.min() >= 0 and y.max() < n_classes
        else:
            assert y.dtype == torch.float32 and y.ndim == 1
    if task == "classification":
        assert b.class_names is not None and len(b.class_names) == n_classes
        assert b.class_counts is not None and sum(b.class_counts) == len(b.train[0])
        assert b.n_outputs == n_classes
    else:
        assert b.class_names is None and b.n_outputs == 1


def test_mnist1d_official_test_split_and_sizes() -> None:
    b = load_data(cfg(dataset="mnist1d"), seed=0)
    assert len(b.test[0]) == 1000  # mnist1d's own test split, test_fraction ignored
    assert len(b.val[0]) == 500 and len(b.train[0]) == 3500  # val = 10% of all 5000 rows, carved from train
    assert b.kind == "signal" and b.class_names == [str(i) for i in range(10)]


def test_mnist1d_generated_once_cached_and_global_rng_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.setenv("GRADWISE_CACHE_DIR", str(tmp_path))
    datasets._mnist1d_arrays.cache_clear()
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    first = load_data(cfg(dataset="mnist1d"), seed=0)
    assert np.array_equal(np.random.get_state()[1], state), "mnist1d generation must not reseed numpy"
    files = list(tmp_path.glob("mnist1d-*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp*"))
    datasets._mnist1d_arrays.cache_clear()

    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("mnist1d was regenerated although it is cached")

    import mnist1d.data

    monkeypatch.setattr(mnist1d.data, "make_dataset", boom)
    second = load_data(cfg(dataset="mnist1d"), seed=0)
    assert torch.equal(first.train[0], second.train[0]) and torch.equal(first.test[1], second.test[1])
    datasets._mnist1d_arrays.cache_clear()


def test_fashion_mnist() -> None:
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"fashion-mnist IDX files not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    b = load_data(cfg(dataset="fashion_mnist", subsample=2000), seed=0)
    assert b.input_shape == (1, 28, 28) and b.kind == "image" and b.n_classes == 10
    assert len(b.test[0]) == 10000 and len(b.val[0]) == 7000 and len(b.train[0]) == 2000
    assert b.class_names[0] == "T-shirt/top" and b.class_names[9] == "Ankle boot"
    assert b.train[0].dtype == torch.uint8  # pixels stay uint8; the loaders convert each batch (b.normalize)
    x = b.normalize(b.train[0])
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05  # standardized with train stats
    unscaled = load_data(cfg(dataset="fashion_mnist", scale="none", subsample=500), seed=0)
    raw = unscaled.normalize(unscaled.train[0])
    assert float(raw.min()) >= 0 and float(raw.max()) <= 1  # pixels scaled to [0, 1]


def test_fashion_mnist_missing_files_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_data(cfg(dataset="fashion_mnist", options={"root": str(tmp_path)}), seed=0)


def test_unknown_dataset_suggests_builtin() -> None:
    with pytest.raises(DataError, match="Did you mean the built-in 'mnist1d'"):
        load_data(cfg(dataset="mnist1"), seed=0)


# --------------------------------------------------------------------------------------------- splits


def test_split_fractions_and_stratification() -> None:
    b = load_data(cfg(dataset="iris", val_fraction=0.2, test_fraction=0.2), seed=0)
    assert (len(b.train[0]), len(b.val[0]), len(b.test[0])) == (90, 30, 30)
    for _, y in (b.train, b.val, b.test):  # iris is 50/50/50: stratified splits keep it exactly balanced
        counts = torch.bincount(y, minlength=3)
        assert counts.min() == counts.max()
    idx = b.split_indices
    all_rows = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert len(np.unique(all_rows)) == 150  # disjoint and complete


def test_splits_are_seeded() -> None:
    a = load_data(cfg(dataset="wine"), seed=1).split_indices["test"]
    b = load_data(cfg(dataset="wine"), seed=1).split_indices["test"]
    c = load_data(cfg(dataset="wine"), seed=2).split_indices["test"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_no_val_split_when_fraction_zero() -> None:
    b = load_data(cfg(dataset="iris", val_fraction=0.0, test_fraction=0.0), seed=0)
    assert b.val is None and b.test is None and len(b.train[0]) == 150


def test_kfold_val_folds_are_disjoint_and_cover_non_test_rows() -> None:
    folds = [load_data(cfg(dataset="iris", folds=5), seed=0, fold=i) for i in range(5)]
    test = folds[0].split_indices["test"]
    vals = [f.split_indices["val"] for f in folds]
    assert all(np.array_equal(f.split_indices["test"], test) for f in folds)
    joined = np.concatenate(vals)
    assert len(joined) == len(np.unique(joined))  # disjoint
    assert set(joined) == set(range(150)) - set(test)  # cover the non-test rows
    for f in folds:
        assert not set(f.split_indices["train"]) & set(f.split_indices["val"])
        assert f.fold in range(5)
    with pytest.raises(DataError, match="out of range"):
        load_data(cfg(dataset="iris", folds=5), seed=0, fold=5)


def test_val_and_test_files(tmp_path: Path) -> None:
    train = numeric_csv(tmp_path / "train.csv", n=90, seed=0)
    val = numeric_csv(tmp_path / "val.csv", n=30, seed=1)
    test = numeric_csv(tmp_path / "test.csv", n=24, seed=2)
    b = load_data(cfg(dataset=str(train), target="y", val_file=str(val), test_file=str(test)), seed=0)
    assert (len(b.train[0]), len(b.val[0]), len(b.test[0])) == (90, 30, 24)
    assert b.report["split"]["val"] == "file" and b.report["split"]["test"] == "file"


def test_subsample_fraction_and_count() -> None:
    b = load_data(cfg(dataset="digits", subsample=0.5), seed=0)
    assert b.report["subsample"] == {"rows_before": 1258, "rows_after": 629}
    assert len(b.train[0]) == 629 and len(b.val[0]) == 180
    counts = np.array(b.class_counts)
    assert counts.max() - counts.min() <= 5  # stratified
    assert len(load_data(cfg(dataset="digits", subsample=100), seed=0).train[0]) == 100


# --------------------------------------------------------------------------------------------- cleaning


def test_duplicates_are_dropped_and_counted(dirty_csv: Path) -> None:
    base = dict(dataset=str(dirty_csv), target="label", missing="median")
    assert load_data(cfg(**base), seed=0).report["duplicates_dropped"] == 0
    b = load_data(cfg(**base, drop_duplicates=True), seed=0)
    assert b.report["duplicates_dropped"] == DUPLICATES
    assert sum(b.report["rows"].values()) == 200


def test_missing_values_imputed_with_counts(dirty_csv: Path) -> None:
    for strategy in ("mean", "median", "most_frequent"):
        b = load_data(cfg(dataset=str(dirty_csv), target="label", missing=strategy), seed=0)
        assert b.report["missing"]["imputed"] == {"age": 3, "income": 2}
        assert all(torch.isfinite(s[0]).all() for s in (b.train, b.val, b.test))
    pre = b.preprocessor
    assert pre.num_imputer.strategy == "most_frequent"


def test_missing_rows_dropped(dirty_csv: Path) -> None:
    b = load_data(cfg(dataset=str(dirty_csv), target="label", missing="drop"), seed=0)
    assert b.report["missing"]["rows_dropped"] == 5
    assert sum(b.report["rows"].values()) == 205 - 5


def test_missing_none_with_nan_is_a_helpful_error(dirty_csv: Path) -> None:
    with pytest.raises(DataError, match=r"'age'.*data\.missing=median"):
        load_data(cfg(dataset=str(dirty_csv), target="label", missing="none"), seed=0)


@pytest.mark.parametrize("method", ["iqr_clip", "zscore_clip"])
def test_outliers_clipped_with_train_bounds(dirty_csv: Path, method: str) -> None:
    b = load_data(cfg(dataset=str(dirty_csv), target="label", missing="median", outliers=method, scale="none"),
                  seed=0)
    rep = b.report["outliers"]
    assert rep["threshold"] == (1.5 if method.startswith("iqr") else 3.0)
    assert sum(per.get("age", 0) for per in rep["clipped"].values()) == len(OUTLIER_ROWS)
    assert "income" not in rep["clipped"]["train"]
    hi = rep["bounds"]["age"][1]
    age = b.feature_names.index("age")
    for split in (b.train, b.val, b.test):
        assert float(split[0][:, age].max()) <= hi + 1e-3
    assert hi < 999


@pytest.mark.parametrize("method", ["iqr_drop", "zscore_drop"])
def test_outlier_rows_dropped_from_train_only(dirty_csv: Path, method: str) -> None:
    b = load_data(cfg(dataset=str(dirty_csv), target="label", missing="median", outliers=method), seed=0)
    idx = b.split_indices
    in_eval = [r for r in OUTLIER_ROWS if r in set(idx["val"]) | set(idx["test"])]
    assert b.report["outliers"]["rows_dropped"] == len(OUTLIER_ROWS) - len(in_eval)
    assert not set(OUTLIER_ROWS) & set(idx["train"])


def test_custom_outlier_threshold(dirty_csv: Path) -> None:
    b = load_data(cfg(dataset=str(dirty_csv), target="label", missing="median", outliers="iqr_clip",
                      outlier_threshold=0.1), seed=0)
    assert b.report["outliers"]["threshold"] == 0.1
    assert sum(sum(per.values()) for per in b.report["outliers"]["clipped"].values()) > len(OUTLIER_ROWS)


def test_clean_categories_and_one_hot(dirty_csv: Path) -> None:
    b = load_data(cfg(dataset=str(dirty_csv), target="label", missing="median"), seed=0)
    assert b.report["categories_cleaned"]["city"] > 0
    city = [f for f in b.feature_names if f.startswith("city_")]
    assert sorted(city) == ["city_berlin", "city_london", "city_paris"]
    assert {"member_false", "member_true"} <= set(b.feature_names)
    assert b.input_shape == (len(b.feature_names),) == (2 + 3 + 2,)
    onehot = b.train[0][:, [b.feature_names.index(c) for c in city]]
    assert torch.equal(onehot.sum(1), torch.ones(len(onehot)))  # exactly one city per row
    raw = load_data(cfg(dataset=str(dirty_csv), target="label", missing="median", clean_categories=False), seed=0)
    assert len([f for f in raw.feature_names if f.startswith("city_")]) == 6
    assert "categories_cleaned" in raw.report and raw.report["categories_cleaned"] == {}


def test_string_labels_keep_names(dirty_csv: Path) -> None:
    b = load_data(cfg(dataset=str(dirty_csv), target="label", missing="median"), seed=0)
    assert b.class_names == ["maybe", "no", "yes"]  # "no " stripped, sorted, case kept
    assert b.preprocessor.decode_labels(torch.tensor([2, 0, 1])) == ["yes", "maybe", "no"]
    frame = pd.read_csv(dirty_csv)
    rows = b.split_indices["test"]
    expected = [s.strip() for s in frame.loc[rows, "label"]]
    assert b.preprocessor.decode_labels(b.test[1]) == expected


def test_bool_columns_as_numbers_without_one_hot(dirty_csv: Path) -> None:
    b = load_data(cfg(dataset=str(dirty_csv), target="label", missing="median", one_hot=False, scale="none",
                      features=["age", "income", "member"]), seed=0)
    assert b.feature_names == ["age", "income", "member"]
    assert set(b.train[0][:, 2].unique().tolist()) == {0.0, 1.0}


# --------------------------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("scale", ["standard", "minmax", "robust", "none"])
def test_scale_options(tmp_path: Path, scale: str) -> None:
    path = numeric_csv(tmp_path / "t.csv")
    b = load_data(cfg(dataset=str(path), target="y", scale=scale), seed=0)
    x = b.train[0].double()
    raw = pd.read_csv(path).loc[b.split_indices["train"], ["x1", "x2", "x3"]].to_numpy()
    if scale == "standard":
        assert torch.allclose(x.mean(0), torch.zeros(3, dtype=x.dtype), atol=1e-5)
        assert torch.allclose(x.std(0, unbiased=False), torch.ones(3, dtype=x.dtype), atol=1e-4)
    elif scale == "minmax":
        assert torch.allclose(x.min(0).values, torch.zeros(3, dtype=x.dtype), atol=1e-6)
        assert torch.allclose(x.max(0).values, torch.ones(3, dtype=x.dtype), atol=1e-6)
    elif scale == "robust":
        assert torch.allclose(x.median(0).values, torch.zeros(3, dtype=x.dtype), atol=2e-2)
        q = torch.quantile(x, torch.tensor([0.25, 0.75], dtype=x.dtype), dim=0)
        assert torch.allclose(q[1] - q[0], torch.ones(3, dtype=x.dtype), atol=2e-2)
    else:
        assert np.allclose(x.numpy(), raw, atol=1e-4)


def test_image_scaling_is_per_channel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 3, 8, 8), dtype=np.uint8)
    x[:, 1] //= 4  # channel 1 is darker
    np.savez(tmp_path / "img.npz", x=x, y=np.arange(60) % 2)
    b = load_data(cfg(dataset=str(tmp_path / "img.npz")), seed=0)
    assert b.kind == "image" and b.input_shape == (3, 8, 8)
    per_channel = b.normalize(b.train[0]).transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-4)
    assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(3), atol=1e-3)


def test_target_scaling_round_trip() -> None:
    plain = load_data(cfg(dataset="diabetes", scale_target=False), seed=0)
    scaled = load_data(cfg(dataset="diabetes", scale_target=True), seed=0)
    y = scaled.train[1]
    assert abs(float(y.mean())) < 1e-4 and abs(float(y.std(unbiased=False)) - 1) < 1e-3
    for a, b in ((plain.train, scaled.train), (plain.test, scaled.test)):
        assert torch.allclose(scaled.preprocessor.inverse_target(b[1]), a[1], atol=1e-3)
    # identity when the target is not scaled
    assert torch.equal(plain.preprocessor.inverse_target(plain.val[1]), plain.val[1])


def test_multi_target_regression_from_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 5))
    y = np.stack([x[:, 0] * 10 + 100, x[:, 1] - 5], 1)
    np.savez(tmp_path / "reg.npz", x=x, y=y)
    b = load_data(cfg(dataset=str(tmp_path / "reg.npz"), scale_target=True), seed=0)
    assert b.task == "regression" and b.n_outputs == 2 and b.train[1].shape[1] == 2
    back = b.preprocessor.inverse_target(b.test[1]).numpy()
    assert np.allclose(back, y[b.split_indices["test"]], atol=1e-3)


def test_statistics_fitted_on_train_only(tmp_path: Path, dirty_csv: Path) -> None:
    options = dict(target="label", missing="median", outliers="iqr_clip")
    first = load_data(cfg(dataset=str(dirty_csv), **options), seed=0)
    frame = pd.read_csv(dirty_csv)
    held_out = np.concatenate([first.split_indices["val"], first.split_indices["test"]])
    frame.loc[held_out, ["age", "income"]] *= 1000  # wildly different val/test rows...
    frame.loc[held_out, "city"] = "Mars"  # ...and a category never seen in training
    changed = tmp_path / "changed.csv"
    frame.to_csv(changed, index=False)
    second = load_data(cfg(dataset=str(changed), **options), seed=0)
    for key in ("train", "val", "test"):
        assert np.array_equal(first.split_indices[key], second.split_indices[key])
    p1, p2 = first.preprocessor, second.preprocessor
    assert np.array_equal(p1.scaler.mean_, p2.scaler.mean_) and np.array_equal(p1.scaler.scale_, p2.scaler.scale_)
    assert np.array_equal(p1.num_imputer.statistics_, p2.num_imputer.statistics_)
    assert p1.clip_bounds == p2.clip_bounds
    assert [list(c) for c in p1.encoder.categories_] == [list(c) for c in p2.encoder.categories_]
    assert torch.equal(first.train[0], second.train[0])
    assert not torch.equal(first.val[0], second.val[0])
    city = [i for i, f in enumerate(second.feature_names) if f.startswith("city_")]
    assert float(second.val[0][:, city].abs().sum()) == 0  # unseen category → all-zero one-hot


def test_statistics_fitted_on_train_only_with_files(tmp_path: Path) -> None:
    train = numeric_csv(tmp_path / "train.csv", n=60, seed=0)
    numeric_csv(tmp_path / "val.csv", n=30, seed=1)
    numeric_csv(tmp_path / "test.csv", n=30, seed=2)
    first = load_data(cfg(dataset=str(train), target="y", val_file=str(tmp_path / "val.csv"),
                          test_file=str(tmp_path / "test.csv")), seed=0)
    for name in ("val.csv", "test.csv"):
        f = pd.read_csv(tmp_path / name)
        f[["x1", "x2", "x3"]] = f[["x1", "x2", "x3"]] * 50 + 7
        f.to_csv(tmp_path / name, index=False)
    second = load_data(cfg(dataset=str(train), target="y", val_file=str(tmp_path / "val.csv"),
                           test_file=str(tmp_path / "test.csv")), seed=0)
    assert np.array_equal(first.preprocessor.scaler.mean_, second.preprocessor.scaler.mean_)
    assert np.array_equal(first.preprocessor.scaler.scale_, second.preprocessor.scaler.scale_)
    assert torch.equal(first.train[0], second.train[0])


def test_preprocessor_save_load_round_trip(tmp_path: Path, dirty_csv: Path) -> None:
    b = load_data(cfg(dataset=str(dirty_csv), target="label", missing="median", outliers="iqr_clip"), seed=0)
    path = b.preprocessor.save(tmp_path / "run" / "preprocessor.pkl")
    loaded = Preprocessor.load(path)
    frame = pd.read_csv(dirty_csv)
    rows = frame.loc[b.split_indices["test"]].drop(columns=["label"])
    out = loaded.transform_frame(rows)
    assert torch.equal(out, b.preprocessor.transform_frame(rows))
    assert torch.allclose(out, b.test[0])  # new rows are transformed exactly like the test split was
    assert loaded.decode_labels([0, 1, 2]) == ["maybe", "no", "yes"]
    arr = loaded.transform_array(rows[loaded.columns].to_numpy(dtype=object))
    assert torch.allclose(arr, out)
    with pytest.raises(DataError, match="missing column"):
        loaded.transform_frame(rows.drop(columns=["income"]))
    with pytest.raises(DataError, match="does not exist"):
        Preprocessor.load(tmp_path / "nope.pkl")


def test_array_preprocessor_round_trip(tmp_path: Path) -> None:
    b = load_data(cfg(dataset="mnist1d"), seed=0)
    loaded = Preprocessor.load(b.preprocessor.save(tmp_path / "p.pkl"))
    source = datasets.load_mnist1d({})
    x, xt = source.x, source.test[0]
    assert torch.allclose(loaded.transform_array(xt), b.test[0])
    with pytest.raises(DataError, match="shape"):
        loaded.transform_array(np.zeros((2, 39)))
    with pytest.raises(DataError, match="not a table"):
        loaded.transform_frame(pd.DataFrame(x[:2]))


# --------------------------------------------------------------------------------------------- sampling


@pytest.fixture
def imbalanced_csv(tmp_path: Path) -> Path:
    return numeric_csv(tmp_path / "imb.csv", counts=(120, 40, 20))


def test_oversample_undersample(imbalanced_csv: Path) -> None:
    base = dict(dataset=str(imbalanced_csv), target="y", val_fraction=0.0, test_fraction=0.0)
    over = load_data(cfg(**base, balance="oversample"), seed=0)
    assert over.class_counts == [120, 120, 120] and len(over.train[0]) == 360
    assert over.report["class_counts_before_sampling"] == {"a": 120, "b": 40, "c": 20}
    assert over.report["class_counts_after_sampling"] == {"a": 120, "b": 120, "c": 120}
    under = load_data(cfg(**base, balance="undersample"), seed=0)
    assert under.class_counts == [20, 20, 20] and len(under.train[0]) == 60
    # duplicated rows are real training rows
    rows = {tuple(r) for r in load_data(cfg(**base), seed=0).train[0].tolist()}
    assert {tuple(r) for r in over.train[0].tolist()} == rows


def test_class_weights_and_weighted_sampler(imbalanced_csv: Path) -> None:
    base = dict(dataset=str(imbalanced_csv), target="y", val_fraction=0.0, test_fraction=0.0)
    cw = load_data(cfg(**base, balance="class_weights"), seed=0)
    assert cw.class_counts == [120, 40, 20] and cw.sample_weights is None
    assert torch.allclose(cw.class_weights, torch.tensor([180 / 360, 180 / 120, 180 / 60]))
    ws = load_data(cfg(**base, balance="weighted_sampler"), seed=0)
    assert ws.class_weights is None and ws.sample_weights.shape == (180,)
    per_class = torch.zeros(3).index_add_(0, ws.train[1], ws.sample_weights.float())
    assert torch.allclose(per_class, per_class[0].expand(3))  # every class gets the same total weight
    none = load_data(cfg(**base), seed=0)
    assert none.class_weights is None and none.sample_weights is None


def test_balance_needs_classification() -> None:
    with pytest.raises(DataError, match="regression"):
        load_data(cfg(dataset="diabetes", balance="oversample"), seed=0)


# --------------------------------------------------------------------------------------------- augmentation

AUG_CASES = [("flip", (8, 1, 16, 16)), ("rotate", (8, 3, 16, 16)), ("translate", (8, 1, 16, 16)),
             ("noise", (8, 1, 16, 16)), ("shift", (8, 40)), ("shift", (8, 2, 40)), ("scale", (8, 40)),
             ("scale", (8, 2, 40)), ("noise", (8, 40))]


@pytest.mark.parametrize("name,shape", AUG_CASES)
def test_augmentations_change_keep_shape_and_are_reproducible(name: str, shape: tuple[int, ...]) -> None:
    aug = build_augment(cfg(augment=[name]), shape[1:])
    assert aug is not None
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    torch.manual_seed(7)
    a = aug(x)
    torch.manual_seed(7)
    b = aug(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
    assert torch.equal(x, before)  # never in place
    torch.manual_seed(8)
    assert not torch.equal(aug(x), a)


def test_augment_chain_and_strength() -> None:
    assert build_augment(cfg(), (40,)) is None
    assert build_augment(cfg(augment=["noise"], augment_strength=0.0), (40,)) is None
    chain = build_augment(cfg(augment=["flip", "rotate", "translate", "noise"], augment_strength=0.5), (1, 28, 28))
    x = torch.randn(4, 1, 28, 28)
    assert chain(x).shape == x.shape
    table = build_augment(cfg(augment=["noise"]), (7,), kind="table")
    assert table(torch.zeros(3, 7)).abs().sum() > 0


@pytest.mark.parametrize("names,shape,kind,match", [
    (["jitter"], (40,), None, "unknown augmentation 'jitter'.*shift, scale, noise"),
    (["flip"], (40,), None, "'flip' does not apply to signals.*shift, scale, noise"),
    (["shift"], (1, 28, 28), None, "'shift' does not apply to images.*flip, rotate, translate, noise"),
    (["shift"], (7,), "table", "does not apply to tables.*noise"),
])
def test_invalid_augmentations(names: list[str], shape: tuple[int, ...], kind: str | None, match: str) -> None:
    with pytest.raises(DataError, match=match):
        build_augment(cfg(augment=names), shape, kind=kind)


# --------------------------------------------------------------------------------------------- other formats


def test_npz_table_with_its_own_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(80, 6)), np.arange(80) % 4
    np.savez(tmp_path / "d.npz", X=x, y=y, x_test=rng.normal(size=(20, 6)), y_test=np.arange(20) % 4)
    b = load_data(cfg(dataset=str(tmp_path / "d.npz")), seed=0)
    assert b.kind == "table" and b.input_shape == (6,) and b.n_classes == 4
    assert len(b.test[0]) == 20 and len(b.val[0]) == 10 and len(b.train[0]) == 70


def test_npz_signals_and_grayscale_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "sig.npz", x=rng.normal(size=(50, 2, 30)), y=np.arange(50) % 2)
    sig = load_data(cfg(dataset=str(tmp_path / "sig.npz")), seed=0)
    assert sig.kind == "signal" and sig.input_shape == (2, 30)
    np.savez(tmp_path / "img.npz", x=rng.integers(0, 255, (50, 12, 12), dtype=np.uint8), y=np.arange(50) % 2)
    img = load_data(cfg(dataset=str(tmp_path / "img.npz")), seed=0)
    assert img.kind == "image" and img.input_shape == (1, 12, 12)


def test_npy_target_in_last_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = np.column_stack([rng.normal(size=(60, 3)), np.arange(60) % 3])
    np.save(tmp_path / "d.npy", data)
    b = load_data(cfg(dataset=str(tmp_path / "d.npy")), seed=0)
    assert b.input_shape == (3,) and b.n_classes == 3 and b.task == "classification"
    np.save(tmp_path / "bad.npy", np.zeros((4, 2, 2)))
    with pytest.raises(DataError, match="last column"):
        load_data(cfg(dataset=str(tmp_path / "bad.npy")), seed=0)


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(10):
            arr = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    rgb = load_data(cfg(dataset=str(tmp_path / "imgs"), val_fraction=0.2, test_fraction=0.2), seed=0)
    assert rgb.input_shape == (3, 12, 10) and rgb.class_names == ["cat", "dog"] and rgb.kind == "image"
    gray = load_data(cfg(dataset=str(tmp_path / "imgs"), val_fraction=0.2, test_fraction=0.2,
                         options={"image_size": 8, "grayscale": True}), seed=0)
    assert gray.input_shape == (1, 8, 8) and len(gray.train[0]) == 12


def test_parquet_needs_pyarrow_or_loads(tmp_path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        path = tmp_path / "t.parquet"
        path.write_bytes(b"PAR1")
        with pytest.raises(DataError, match="pyarrow"):
            load_data(cfg(dataset=str(path), target="y"), seed=0)
        return
    path = tmp_path / "t.parquet"
    pd.read_csv(numeric_csv(tmp_path / "t.csv")).to_parquet(path)
    assert load_data(cfg(dataset=str(path), target="y"), seed=0).input_shape == (3,)


# --------------------------------------------------------------------------------------------- validation errors


def test_target_column_errors(tmp_path: Path) -> None:
    path = numeric_csv(tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"target column 'label' not found.*'x1', 'x2', 'x3', 'y'"):
        load_data(cfg(dataset=str(path), target="label"), seed=0)
    with pytest.raises(DataError, match=r"data.target must name.*'x1', 'x2', 'x3', 'y'"):
        load_data(cfg(dataset=str(path)), seed=0)
    with pytest.raises(DataError, match="not in"):
        load_data(cfg(dataset=str(path), target="y", features=["x1", "nope"]), seed=0)


def test_single_class_in_train(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    pd.DataFrame({"x": np.arange(20.0), "y": ["only"] * 20}).to_csv(path, index=False)
    with pytest.raises(DataError, match="single class"):
        load_data(cfg(dataset=str(path), target="y"), seed=0)


def test_empty_split(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "b", "a", "b"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"val_fraction = 0.1 of 4 rows gives an empty validation split"):
        load_data(cfg(dataset=str(path), target="y", val_fraction=0.1, test_fraction=0.0), seed=0)
    with pytest.raises(DataError, match="no rows to train on"):
        load_data(cfg(dataset=str(path), target="y", val_fraction=0.5, test_fraction=0.5), seed=0)


def test_unencoded_text_columns(dirty_csv: Path) -> None:
    with pytest.raises(DataError, match=r"'city'.*data\.one_hot=true"):
        load_data(cfg(dataset=str(dirty_csv), target="label", missing="median", one_hot=False), seed=0)


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'.*\.csv"):
        load_data(cfg(dataset=str(path)), seed=0)


def test_non_finite_image_values(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 1, 8, 8))
    x[3, 0, 2, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(40) % 2)
    with pytest.raises(DataError, match="NaN/Inf"):
        load_data(cfg(dataset=str(tmp_path / "nan.npz"), scale="none", val_fraction=0, test_fraction=0), seed=0)


def test_report_is_json_serialisable(dirty_csv: Path) -> None:
    import json

    b = load_data(cfg(dataset=str(dirty_csv), target="label", missing="median", outliers="iqr_clip",
                      drop_duplicates=True, balance="oversample", subsample=0.9), seed=0)
    text = json.dumps(b.report)
    assert "duplicates_dropped" in text and "class_counts_after_sampling" in text


# --------------------------------------------------------------------------------------------- notes and defaults

CUSTOMERS = Path(__file__).resolve().parents[1] / "examples" / "data" / "customers.csv"
TABULAR_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tabular_csv.yaml"


def _report_after_training(tmp_path: Path, *overrides: str) -> dict[str, Any]:
    import json

    import gradwise

    run = gradwise.train(TABULAR_EXAMPLE, [f"data.dataset={CUSTOMERS}", "train.epochs=1", "train.progress=none",
                                           "doctor.enabled=false", f"out={tmp_path / 'run'}", *overrides])
    return json.loads((run.dir / "data_report.json").read_text())


def test_classification_report_has_no_scale_target_note_by_default(tmp_path: Path) -> None:
    # a default the user never set is not something "ignored": no note on every classification CSV
    report = _report_after_training(tmp_path)
    assert report["task"] == "classification"
    assert not [w for w in report["warnings"] if "scale_target" in w], report["warnings"]
    assert "target_scaling" not in report


@pytest.mark.parametrize("value", ["true", "false"])
def test_scale_target_set_on_classification_is_noted(tmp_path: Path, value: str) -> None:
    report = _report_after_training(tmp_path, f"data.scale_target={value}")
    notes = [w for w in report["warnings"] if "scale_target" in w]
    assert notes == [f"data.scale_target={value} applies to regression targets only and was ignored for this "
                     "classification task."]


def test_scale_target_auto_scales_regression_only() -> None:
    assert DataConfig().scale_target == "auto"
    auto = load_data(cfg(dataset="diabetes"), seed=0)
    forced = load_data(cfg(dataset="diabetes", scale_target=True), seed=0)
    assert torch.equal(auto.train[1], forced.train[1]) and "target_scaling" in auto.report
    assert not [w for w in auto.report["warnings"] if "scale_target" in w]
    off = load_data(cfg(dataset="diabetes", scale_target=False), seed=0)
    assert "target_scaling" not in off.report and off.preprocessor.target_mean is None


def test_batch_size_auto_on_cpu_is_what_the_docs_say(tmp_path: Path) -> None:
    """train.batch_size: auto on CPU is min(128, training rows // 16) (an epoch keeps >= 16 steps), as documented."""
    import yaml

    import gradwise
    from gradwise.config import TrainConfig

    doc = TrainConfig.model_fields["batch_size"].description or ""
    assert "on CPU min(128, training rows // 16)" in doc and "GPU only" not in doc
    sizes = []
    for dataset in ("iris", "mnist1d"):  # 105 training rows: 6; 2800: the 128 cap
        run = gradwise.train(None, [f"data.dataset={dataset}", "model.name=logreg", "train.epochs=1",
                                    "train.batch_size=auto", "train.device=cpu", "train.progress=none",
                                    "doctor.enabled=false", f"out={tmp_path / dataset}"])
        rows = len(run.extras["bundle"].train[0])
        used = yaml.safe_load((run.dir / "config.yaml").read_text())["train"]["batch_size"]
        assert used == min(128, rows // 16), (dataset, rows, used)
        sizes.append(used)
    assert sizes[0] < 128 == sizes[1]  # both sides of the min


def test_scale_target_auto_reports_regression_in_original_units(tmp_path: Path) -> None:
    # the default ("auto") scales the target and every consumer undoes it: training metrics, eval and predict
    import gradwise
    from gradwise.inference import evaluate_run, predict

    run = gradwise.train(None, ["data.dataset=diabetes", "model.name=mlp", "train.epochs=3", "train.progress=none",
                                "doctor.enabled=false", f"out={tmp_path / 'run'}"])
    assert run.config.data.scale_target == "auto" and "target_scaling" in run.extras["bundle"].report
    mae = run.summary["test"]["test_mae"]
    assert mae > 20  # diabetes targets run 25..346: in standard units the MAE would be ~1
    assert evaluate_run(run.dir)["mae"] == pytest.approx(mae, rel=1e-4)
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    pred = predict(run.dir, frame.drop(columns=["target"]).head(20))
    assert 25 < pred["prediction"].mean() < 346


def test_balance_class_weights_reach_the_loss(tmp_path: Path) -> None:
    """data.balance=class_weights weighs the training loss by n / (C * count), as data_report.json says."""
    import json

    import gradwise

    common = ["data.dataset=wine", "model.name=mlp", "train.epochs=1", "train.progress=none", "doctor.enabled=false"]
    run = gradwise.train(None, [*common, "data.balance=class_weights", f"out={tmp_path / 'cw'}"])
    reported = json.loads((tmp_path / "cw" / "data_report.json").read_text())["class_weights"]
    weight = run.extras["trainer"].loss_fn.weight
    assert weight is not None and weight.tolist() == pytest.approx(list(reported.values()))
    plain = gradwise.train(None, [*common, f"out={tmp_path / 'plain'}"])
    assert getattr(plain.extras["trainer"].loss_fn, "weight", None) is None


# --------------------------------------------------------------------------------------------- data messages


def _numeric_table(tmp_path: Path, n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.1, n)})


@pytest.mark.parametrize("missing", ["none", "median"])
@pytest.mark.parametrize("scale", ["standard", "none"])
def test_huge_feature_values_are_named_not_missing(tmp_path: Path, missing: str, scale: str) -> None:
    # 1e300 is no missing value: the old message told to "set data.missing=median" even when it was set
    frame = _numeric_table(tmp_path)
    frame.loc[[4, 9], "b"] = 1e300
    frame.to_csv(tmp_path / "huge.csv", index=False)
    with pytest.raises(DataError) as info:
        load_data(cfg(dataset=str(tmp_path / "huge.csv"), target="y", missing=missing, scale=scale), seed=0)
    message = str(info.value)
    assert "'b'" in message and "huge values" in message and "1e+300" in message
    assert "data.outliers=iqr_clip" in message and "data.missing" not in message


def test_huge_feature_values_clipped_by_the_advised_fix(tmp_path: Path) -> None:
    frame = _numeric_table(tmp_path)
    frame.loc[[4, 9], "b"] = 1e300
    frame.to_csv(tmp_path / "huge.csv", index=False)
    bundle = load_data(cfg(dataset=str(tmp_path / "huge.csv"), target="y", outliers="iqr_clip"), seed=0)
    assert torch.isfinite(bundle.train[0]).all() and bundle.task == "regression"


def test_continuous_target_declared_classification_is_refused(tmp_path: Path) -> None:
    frame = _numeric_table(tmp_path, n=300)
    frame.to_csv(tmp_path / "reg.csv", index=False)
    with pytest.raises(DataError) as info:
        load_data(cfg(dataset=str(tmp_path / "reg.csv"), target="y", options={"task": "classification"}), seed=0)
    message = str(info.value)
    assert "'y'" in message and "300 distinct" in message
    assert "data.options.task=regression" in message and "loss.name=mse" in message
    # whole-number labels stored as floats (a missing cell made the column float) are still classes
    frame["y"] = (frame["y"] > 0).astype(float)
    frame.loc[3, "y"] = np.nan
    frame.to_csv(tmp_path / "cls.csv", index=False)
    bundle = load_data(cfg(dataset=str(tmp_path / "cls.csv"), target="y", options={"task": "classification"}), 0)
    assert bundle.n_classes == 2


def _mixed_csv(tmp_path: Path, n: int = 240) -> Path:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=n).round(4).astype(object), "z": rng.normal(size=n)})
    frame["y"] = np.where(frame["x"].astype(float) + frame["z"] > 0, "up", "down")
    frame.loc[[5, 50, 100], "x"] = ["?", "unknown", "?"]  # (pandas itself reads "n/a", "NA" as missing)
    frame.to_csv(tmp_path / "mixed.csv", index=False)
    return tmp_path / "mixed.csv"


def test_mixed_type_column_is_numeric_with_a_warning(tmp_path: Path) -> None:
    # numbers with three text cells: one numeric feature whose text cells are missing, not a 238-level one-hot
    path = _mixed_csv(tmp_path)
    with pytest.warns(UserWarning, match=r"column 'x' holds numbers except 3 of 240 cells with text \(e.g. '\?', "
                                         r"'unknown'\)"):
        bundle = load_data(cfg(dataset=str(path), target="y", missing="median"), seed=0)
    assert bundle.feature_names == ["x", "z"] and bundle.input_shape == (2,)
    assert bundle.preprocessor.coerce == ["x"]
    assert any("'x' holds numbers except 3" in w for w in bundle.report["warnings"])
    assert bundle.report["missing"]["imputed"]["x"] == 3
    # the same rule when predicting: the text cell is a missing value filled with the training median
    new = pd.DataFrame({"x": ["?", "0.5"], "z": [0.1, 0.2]})
    x, notes = bundle.preprocessor.transform_new_rows(new, "new rows")
    assert torch.isfinite(x).all() and any("1 of 2 rows hold text" in n for n in notes)


def test_mixed_type_column_without_a_missing_policy_is_a_clear_error(tmp_path: Path) -> None:
    path = _mixed_csv(tmp_path)
    with pytest.raises(DataError) as info:
        load_data(cfg(dataset=str(path), target="y"), seed=0)
    message = str(info.value)
    assert "'x'" in message and "3 of 240 cells" in message and "data.missing=median" in message
    assert "data.options.categorical" in message
    # the user may say it is a category column after all
    bundle = load_data(cfg(dataset=str(path), target="y", options={"categorical": ["x"]}), seed=0)
    assert len(bundle.feature_names) > 100  # one per distinct training value


def test_huge_regression_target_is_named(tmp_path: Path) -> None:
    # 1e300 in the target made the standardized loss NaN, and the message advised a lower learning rate
    frame = _numeric_table(tmp_path)
    frame.loc[10, "y"] = 1e300
    frame.to_csv(tmp_path / "huge_y.csv", index=False)
    with pytest.raises(DataError) as info:
        load_data(cfg(dataset=str(tmp_path / "huge_y.csv"), target="y"), seed=0)
    assert "regression target 'y' holds huge values (1, e.g. 1e+300 in row 11 of the training data)" in str(info.value)


def test_unreadable_csv_message_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n1,2,3,4\n")
    with pytest.raises(DataError) as info:
        load_data(cfg(dataset=str(tmp_path / "ragged.csv"), target="b"), seed=0)
    assert "could not be read as a table" in str(info.value) and "\n" not in str(info.value)


def test_odd_column_names_stay_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "names.csv").write_text('"a\nb",y\n1,2\n')
    with pytest.raises(DataError) as info:
        load_data(cfg(dataset=str(tmp_path / "names.csv"), target="c"), seed=0)
    assert "Its columns are: 'a\\nb', 'y'" in str(info.value) and "\n" not in str(info.value)

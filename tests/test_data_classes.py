"""data.classes: keep a subset of the classes, relabelled 0..k-1 in the order given, names kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradwise.config import DataConfig, load_config
from gradwise.data.datasets import FASHION_MNIST_DIR
from gradwise.data.prepare import load_data
from gradwise.errors import ConfigError, DataError


def test_table_classes_by_name_and_value() -> None:
    b = load_data(DataConfig(dataset="iris", classes=["virginica", 0]), seed=0)
    assert b.n_classes == b.n_outputs == 2 and b.class_names == ["virginica", "setosa"]
    assert b.report["classes"]["kept"] == ["virginica", "setosa"]
    sizes = [len(s[1]) for s in (b.train, b.val, b.test)]
    assert sum(sizes) == 100 and b.class_counts == [35, 35]  # 50 + 50 rows, split 70/10/20 and stratified
    assert all(set(s[1].tolist()) == {0, 1} for s in (b.train, b.val, b.test))


def test_array_classes_keep_the_right_rows_in_every_split(tmp_path: Path) -> None:
    # each image is filled with its label, so the kept rows can be checked against their new labels
    rng = np.random.default_rng(0)
    y, y_test = rng.integers(0, 4, 400), rng.integers(0, 4, 100)
    x = np.broadcast_to(y[:, None, None], (400, 8, 8)).astype(np.float32)
    x_test = np.broadcast_to(y_test[:, None, None], (100, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    b = load_data(DataConfig(dataset=str(tmp_path / "d.npz"), classes=[3, 1], scale="none", subsample=100), seed=0)
    assert b.class_names == ["3", "1"] and b.input_shape == (1, 8, 8)
    original = np.array([3, 1])
    for xs, ys in (b.train, b.val, b.test):
        assert np.array_equal(xs[:, 0, 0, 0].numpy(), original[ys.numpy()])
    assert len(b.test[1]) == int(np.isin(y_test, [1, 3]).sum()) and len(b.train[1]) == 100
    assert sum(b.class_counts) == 100 and min(b.class_counts) > 30  # stratified: the classes' proportions


def test_fashion_mnist_classes() -> None:
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST IDX files not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    b = load_data(DataConfig(dataset="fashion_mnist", classes=[5, 6, 7, 8, 9], subsample=250), seed=0)
    assert b.class_names == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"] and b.class_counts == [50] * 5
    assert len(b.test[1]) == 5000 and np.bincount(b.test[1].numpy()).tolist() == [1000] * 5


def test_data_errors_name_the_field_and_the_valid_values() -> None:
    with pytest.raises(DataError, match=r"data.classes: 7 is not a class of 'iris'.*0 \(setosa\), 1 \(versicolor\)"):
        load_data(DataConfig(dataset="iris", classes=[7, 1]), seed=0)
    with pytest.raises(DataError, match="data.classes.*'versicolor' a second time"):
        load_data(DataConfig(dataset="iris", classes=[1, "versicolor"]), seed=0)
    with pytest.raises(DataError, match="data.classes.*regression"):
        load_data(DataConfig(dataset="diabetes", classes=[1, 2]), seed=0)


@pytest.mark.parametrize(("value", "message"), [
    ([5], "at least two classes"), ([5, 5], "listed more than once"), (5, "valid list")])
def test_config_errors(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=f"data.classes = .* is invalid: .*{message}"):
        load_config(None, {"data.classes": value})

"""Image splits stay uint8 pixels in memory and are converted per batch, to the values the old whole-set float32
conversion gave (issue 19 item 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import gradwise
from gradwise.config import load_config
from gradwise.data import load_data, make_loaders_from_bundle
from gradwise.data.datasets import load_image_folder
from gradwise.data.loaders import epoch_generator


def image_folder(root: Path, per_class: int = 20) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog", "fox")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            # each class a little brighter in one channel, so a model has something to learn
            pixels = rng.integers(0, 200, (10, 12, 3), dtype=np.uint8)
            pixels[..., c] += 55
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("scale", ["standard", "minmax", "none"])
def test_image_batches_equal_the_whole_set_float_conversion(tmp_path: Path, scale: str) -> None:
    folder = image_folder(tmp_path / "imgs")
    cfg = load_config(None, [f"data.dataset={folder}", f"data.scale={scale}", "train.batch_size=8",
                             "data.val_fraction=0.2", "data.test_fraction=0.2"])
    bundle = load_data(cfg.data, cfg.seed)
    for split in (bundle.train, bundle.val, bundle.test):
        assert split[0].dtype == torch.uint8  # a quarter of float32's memory for the whole set
    train, val, _ = make_loaders_from_bundle(bundle, cfg)
    # the old path: the decoded source rows of each split converted to float32 at once (Preprocessor.array_matrix,
    # which gradwise predict still uses on new images)
    source = load_image_folder(folder, {})
    pre = bundle.preprocessor
    # the per-channel statistics (taken from the pixel counts) are those of the float64 pixels of the train rows
    pixels = np.multiply(source.x[bundle.split_indices["train"]], 1 / 255, dtype=np.float64).transpose(1, 0, 2, 3)
    pixels = pixels.reshape(3, -1)
    if scale == "standard":
        np.testing.assert_allclose(pre.center.ravel(), pixels.mean(1), rtol=1e-6)
        np.testing.assert_allclose(pre.spread.ravel(), pixels.std(1), rtol=1e-6)
    elif scale == "minmax":
        np.testing.assert_allclose(pre.center.ravel(), pixels.min(1), rtol=1e-6)
        np.testing.assert_allclose(pre.spread.ravel(), pixels.max(1) - pixels.min(1), rtol=1e-6)
    first_rows = {"train": torch.randperm(len(bundle.train[0]), generator=epoch_generator(cfg.seed, 0))[:8].numpy(),
                  "val": np.arange(8)}
    for loader, split in ((train, "train"), (val, "val")):
        x, y = next(iter(loader))
        rows = bundle.split_indices[split][first_rows[split]]
        expected = torch.from_numpy(pre.array_matrix(source.x[rows]))
        assert x.dtype == torch.float32 and x.shape == expected.shape
        torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)
        assert y.tolist() == pre.labels.encode(np.asarray(source.y)[rows]).tolist()


def test_an_image_run_trains_evaluates_and_reports_from_uint8_pixels(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "imgs")
    run = gradwise.train(None, [f"data.dataset={folder}", "model.name=cnn2d", "train.epochs=2", "train.batch_size=8",
                                "data.val_fraction=0.2", "data.test_fraction=0.2", f"out={tmp_path / 'run'}",
                                "train.progress=none"])
    assert run.status == "completed"
    assert set(run.summary["test"]) >= {"test_loss", "test_accuracy"}
    # gradwise eval re-reads the images and converts them the same way: the same test metrics
    from gradwise.inference import evaluate_run

    again = evaluate_run(run.dir, "test")
    for key, value in run.summary["test"].items():
        if key.removeprefix("test_") in again:
            assert again[key.removeprefix("test_")] == pytest.approx(value, rel=1e-5), key

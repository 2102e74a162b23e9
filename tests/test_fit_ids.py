"""gradwise.fit on integer ids: a model that starts with an embedding gets its (X, y) inputs as int64 ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import gradwise


def digit_tokens() -> tuple[np.ndarray, np.ndarray]:
    """Each 8x8 digit as 64 tokens: (pixel position, intensity 0-16) -> one id of a 64 * 17 vocabulary."""
    x, y = load_digits(return_X_y=True)
    ids = np.arange(64) * 17 + x.astype(np.int64)
    return ids, y


def test_fit_keeps_integer_ids_for_an_embedding_model(tmp_path: Path) -> None:
    ids, y = digit_tokens()
    torch.manual_seed(0)
    model = nn.Sequential(nn.EmbeddingBag(64 * 17, 32, mode="mean"), nn.Linear(32, 10))
    run = gradwise.fit(model, (ids[:1400], y[:1400]), val=(ids[1400:], y[1400:]), epochs=8, lr=0.02,
                       out=tmp_path / "ids", progress="none")
    assert run.status == "completed"
    assert run.history[-1]["val_accuracy"] > 0.6  # chance is 0.1: the ids were looked up, not cast to floats
    batch = next(iter(run.extras["trainer"].train_loader))[0]
    assert batch.dtype == torch.int64


def test_integer_features_of_a_dense_model_are_still_floats(tmp_path: Path) -> None:
    x, y = load_digits(return_X_y=True)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    run = gradwise.fit(model, (x.astype(np.int64), y), epochs=1, out=tmp_path / "dense", progress="none")
    assert run.status == "completed"
    assert next(iter(run.extras["trainer"].train_loader))[0].dtype == torch.float32

"""The pre-flight's data-check cache (tuning trials on the same prepared data) and the shared pixel transform:
what one run does must not change what the next one sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_wine

import gradwise
from gradwise.data.loaders import PixelNormalize
from gradwise.doctor import checks
from gradwise.doctor.preflight import DataChecks, reuse_data_checks


def _wine() -> tuple[torch.Tensor, ...]:
    x, y = load_wine(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    order = np.random.RandomState(0).permutation(len(x))
    x, y = torch.from_numpy(x[order]), torch.from_numpy(y[order])
    return x[:130], y[:130], x[130:], y[130:]


def test_a_data_check_that_failed_is_run_again_not_replayed_as_clean(tmp_path, monkeypatch):
    xt, yt, xv, yv = _wine()
    cls = checks.REGISTRY["leakage"]
    original = cls.check
    calls = []

    def flaky(self, facts, t):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")  # e.g. out of memory beside a large model
        return original(self, facts, t)

    monkeypatch.setattr(cls, "check", flaky)
    cache = DataChecks()
    with reuse_data_checks(cache), pytest.warns(RuntimeWarning, match="leakage"):
        for i in range(3):
            model = torch.nn.Sequential(torch.nn.Linear(13, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
            gradwise.fit(model, (xt, yt), val=(xv, yv), epochs=1, progress="none", out=tmp_path / f"r{i}")
    # run 1 failed (no verdict kept), run 2 checked the data, run 3 replayed run 2's verdict
    assert len(calls) == 2 and cache.replayed >= 1


def test_moving_the_pixel_transform_leaves_the_shared_one_where_it_is():
    shared = PixelNormalize(1 / 255, np.array([0.5], np.float32).reshape(1, 1, 1), np.array([0.25], np.float32)
                            .reshape(1, 1, 1))
    moved = shared.to(torch.device("meta"))
    assert moved.center.device.type == "meta" and moved.scale.device.type == "meta"
    assert shared.center.device.type == "cpu" and shared.scale.device.type == "cpu"
    x = torch.full((2, 1, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(shared(x), torch.full((2, 1, 2, 2), 2.0))  # (1 - 0.5) / 0.25

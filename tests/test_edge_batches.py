"""Edge cases found by blind set 7 that reached users as raw tracebacks: a last training batch of one row through
BatchNorm, and NaN inputs in a binary task with the doctor off (AUROC of NaN scores)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer

import gradwise
from gradwise.cli import main
from gradwise.data.loaders import TensorLoader
from gradwise.errors import TrainingError


def test_last_batch_of_one_row_is_left_out_so_batchnorm_trains(tmp_path):
    # iris: 105 training rows, batch 2 -> a last batch of 1 row, which BatchNorm cannot normalize in training mode
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "data.dataset=iris", "model.name=mlp", "model.norm=batch", "train.batch_size=2",
              "train.epochs=2", "--out", str(tmp_path / "run"), "-q"])
    assert exit_info.value.code == 0
    assert (tmp_path / "run" / "summary.json").exists()


def test_drop_single_keeps_every_other_row():
    x, y = torch.arange(7.0).reshape(7, 1), torch.arange(7)
    loader = TensorLoader(x, y, 3, shuffle=True, seed=0, drop_single=True)
    assert len(loader) == 2  # 3 + 3, the 7th row waits for another epoch's shuffle
    seen = torch.cat([b[1] for b in loader])
    assert len(seen) == 6 and len(set(seen.tolist())) == 6
    assert len(TensorLoader(x[:6], y[:6], 4, shuffle=True, drop_single=True)) == 2  # a last batch of 2 stays
    assert len(TensorLoader(x, y, 3, shuffle=True)) == 3  # off by default (evaluation, user loaders)


def test_nan_inputs_in_a_binary_task_with_the_doctor_off_give_a_training_error(tmp_path):
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    x[::7, 3] = np.nan
    t = torch.tensor(x, dtype=torch.float32)
    model = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    with pytest.raises(TrainingError, match="inputs hold NaN or infinite values"):
        gradwise.fit(model, (t[:400], torch.tensor(y[:400])), val=(t[400:], torch.tensor(y[400:])), epochs=2,
                     doctor=False, progress="none", out=tmp_path / "run")

"""train.batch_size: auto — the search for the largest batch that fits, the LR rule, and the CPU behaviour."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import gradwise
from gradwise.errors import ConfigError
from gradwise.train.batch_size import REFERENCE_BATCH, SAFETY, _gpu_trial, choose_batch_size, scale_lr, search


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)


@pytest.mark.parametrize("limit", [1, 7, 100, 1000, 5000])
def test_search_finds_the_largest_size_that_fits(limit: int) -> None:
    calls: list[int] = []

    def fits(size: int) -> bool:
        calls.append(size)
        return size <= limit

    best, tried = search(fits, start=32, cap=100_000)
    assert best is not None and best <= limit and best >= limit * 15 / 16  # within the ~6% bisection tolerance
    assert [s for s, _ in tried] == calls and len(calls) <= 25


def test_search_stops_at_the_cap_and_reports_when_nothing_fits() -> None:
    best, _ = search(lambda s: True, start=32, cap=300)
    assert best == 300
    assert search(lambda s: False, start=32, cap=300)[0] is None


def test_lr_rule_is_linear_for_sgd_and_square_root_for_adaptive() -> None:
    assert scale_lr(0.1, "sgd", 4 * REFERENCE_BATCH) == (pytest.approx(0.4), "linear")
    assert scale_lr(1e-3, "adamw", 4 * REFERENCE_BATCH) == (pytest.approx(2e-3), "square-root")


class OutOfMemoryAbove(nn.Module):
    """A model whose forward fails like CUDA does when a batch is larger than `limit` rows."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.net = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(x)


def test_trial_steps_catch_out_of_memory_and_leave_the_model_untouched() -> None:
    x, y = digits()
    model = OutOfMemoryAbove(limit=700)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fits = _gpu_trial(model, nn.CrossEntropyLoss(), x[:100], y[:100], torch.device("cpu"),
                      lambda: torch.autocast("cpu", enabled=False), None)
    best, tried = search(fits, start=32, cap=1_000_000)
    assert best is not None and 700 * 15 / 16 <= best <= 700
    assert any(not ok for _, ok in tried)  # it did run into the (simulated) out-of-memory error
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics restored
    assert all(p.grad is None for p in model.parameters())


def test_choice_keeps_a_margin_and_scales_the_lr() -> None:
    x, y = digits()
    choice = choose_batch_size(nn.Linear(64, 10), nn.CrossEntropyLoss(), x, y, n_train=1_000_000,
                               device=torch.device("cpu"), optimizer="adamw", lr=1e-3,
                               autocast=lambda: torch.autocast("cpu", enabled=False), fits=lambda s: s <= 4000)
    assert choice.largest_fit is not None and choice.largest_fit <= 4000
    assert choice.batch_size == int(choice.largest_fit * SAFETY) // 8 * 8
    assert choice.lr == pytest.approx(1e-3 * math.sqrt(choice.batch_size / REFERENCE_BATCH))
    # a small dataset caps the batch so that an epoch keeps 16 steps, whatever memory allows
    small = choose_batch_size(nn.Linear(64, 10), nn.CrossEntropyLoss(), x, y, n_train=1600,
                              device=torch.device("cpu"), optimizer="sgd", lr=0.1,
                              autocast=lambda: torch.autocast("cpu", enabled=False), fits=lambda s: True)
    assert small.batch_size == 96 and small.lr == pytest.approx(0.1 * 96 / REFERENCE_BATCH)


def test_auto_on_cpu_trains_with_the_default_and_records_it(tmp_path: Path) -> None:
    x, y = digits()
    run = gradwise.fit(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), (x[:1400], y[:1400]),
                       val=(x[1400:], y[1400:]), loss="cross_entropy", lr=1e-3, batch_size="auto", epochs=1,
                       out=tmp_path / "r", progress="none", doctor=False)
    cfg = gradwise.load_config(tmp_path / "r" / "config.yaml")
    # 1400 rows / 16 steps per epoch caps the default 128 at 87
    assert cfg.train.batch_size == 87 and cfg.optim.lr == 1e-3  # on CPU no search, so no LR change
    assert run.history[0]["step"] == math.ceil(1400 / 87)


def test_auto_with_a_users_dataloader_is_a_clear_error(tmp_path: Path) -> None:
    x, y = digits()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    with pytest.raises(ConfigError, match="batch_size = 'auto' needs a loader gradwise builds"):
        gradwise.fit(nn.Linear(64, 10), loader, loss="cross_entropy", batch_size="auto", epochs=1,
                     out=tmp_path / "r", progress="none")

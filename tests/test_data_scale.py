"""Data preparation at scale (issue 19): the speed-ups change no figure, evaluation batches never outgrow training's,
and a tuning study prepares its data once per worker process."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.data_report_reference import CASES, REFERENCE, case_figures, messy_csv
from torch.utils.data import TensorDataset

import gradwise
from gradwise import Callback


def _same(a: Any, b: Any, where: str) -> None:
    """Equal, floats to 1e-9 relative (tensor sums are added in float64; every count and name exactly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        messy = messy_csv(Path(tmp) / "messy.csv")
        return {name: case_figures(name, overrides, messy) for name, overrides in CASES}


@pytest.mark.parametrize("case", [name for name, _ in CASES])
def test_report_figures_and_tensors_unchanged_by_the_speed_ups(figures: dict[str, Any], case: str) -> None:
    """data_report.json, the split rows and the transformed tensors of the churn CSV (and messier variants of it)
    are what the code before the data-preparation speed-ups produced (tests/fixtures/data_report_reference.json)."""
    reference = json.loads(REFERENCE.read_text())[case]
    _same(figures[case], reference, case)


class _EvalBatches(Callback):
    """Records the batch sizes the model sees in evaluation mode (validation and test passes)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_fit_start(self, trainer: Any) -> None:
        def record(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            if not module.training:
                self.sizes.append(len(args[0]))

        trainer.model.register_forward_pre_hook(record)


def test_evaluation_batches_are_never_larger_than_training_batches(tmp_path: Path) -> None:
    """A config run (digits, batch 16: 180 validation / 359 test rows) and gradwise.fit with (X, y) arrays and with
    a Dataset evaluate in batches of at most the training batch, so evaluation never needs more memory than
    training (it used to take 2x the batch, or as many rows as 8 MiB of input)."""
    seen = _EvalBatches()
    gradwise.train(None, ["data.dataset=digits", "model.name=mlp", "train.epochs=1", "train.batch_size=16",
                          "train.progress=none", "doctor.enabled=false", f"out={tmp_path / 'cfg'}"], callbacks=[seen])
    assert seen.sizes and max(seen.sizes) == 16

    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y)
    for name, val in (("pairs", (x[:300], y[:300])), ("dataset", TensorDataset(x[:300], y[:300]))):
        seen = _EvalBatches()
        gradwise.fit(torch.nn.Sequential(torch.nn.Linear(64, 10)), (x[300:], y[300:]), val=val, epochs=1,
                     batch_size=24, loss="cross_entropy", progress="none", doctor=False, callbacks=[seen],
                     out=tmp_path / name)
        assert seen.sizes and max(seen.sizes) == 24, name

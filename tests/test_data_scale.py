"""Data preparation at scale (issue 19): the speed-ups change no figure, evaluation batches never outgrow training's,
and a tuning study prepares its data once per worker process."""

from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from tests.data_report_reference import CASES, REFERENCE, ROOT, case_figures, messy_csv
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


def test_a_study_prepares_its_data_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three trials of `gradwise tune` in one process read the CSV once, and every trial's run still gets the full
    data report and the same split as a run of its own."""
    import pandas as pd
    import yaml

    from gradwise.tune.command import tune

    csv = tmp_path / "churn.csv"
    csv.write_text((ROOT / "examples" / "data" / "customers.csv").read_text())
    reads: list[str] = []
    real = pd.read_csv

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path) == str(csv):
            reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", counting)
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump({
        "name": "churn-tune", "data": {"dataset": str(csv), "target": "churn", "missing": "median",
                                        "features": ["tenure_months", "age", "plan", "contract"]},
        "model": {"name": "mlp", "widths": [16]}, "train": {"epochs": 1}, "doctor": {"enabled": False},
        "tune": {"metric": "val_accuracy", "trials": 3, "sampler": "random", "pruner": "none",
                 "space": {"optim.lr": {"low": 1.0e-3, "high": 0.1, "log": True}}}}))
    code = tune(config, None, None, None, None, False, tmp_path / "study", [],
                console=Console(file=io.StringIO(), width=160))
    assert code == 0
    assert len(reads) == 1, f"the CSV was read {len(reads)} times for 3 trials"
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / "study").glob("trial-*/data_report.json"))]
    assert len(reports) == 3 and reports[0] == reports[1] == reports[2]
    alone = gradwise.train(config, [f"out={tmp_path / 'alone'}", "train.progress=none"])
    assert json.loads((alone.dir / "data_report.json").read_text())["split"] == reports[0]["split"]
    assert reports[0]["missing"]["imputed"]

"""Data preparation at scale (issue 19): the speed-ups change no figure, evaluation batches never outgrow training's,
and a tuning study prepares its data once per worker process."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.data_report_reference import CASES, REFERENCE, case_figures, messy_csv


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

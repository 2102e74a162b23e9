"""examples/fashion_mnist_cnn.yaml through the command line: >= 90% test accuracy (slow), and a 1-epoch smoke run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gradwise.data.datasets import FASHION_MNIST_DIR

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fashion_mnist_cnn.yaml"

pytestmark = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST IDX files not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")


def train_example(out: Path, *overrides: str, timeout: int) -> dict:
    proc = subprocess.run([sys.executable, "-m", "gradwise.cli", "train", str(EXAMPLE), *overrides, "--quiet",
                           "--out", str(out)], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    return summary


@pytest.mark.slow
def test_fashion_mnist_example_reaches_90_percent(tmp_path: Path) -> None:
    # ~1 minute on 2 quiet CPU cores (3 epochs); the timeout leaves room for a busy machine
    summary = train_example(tmp_path / "run", timeout=1800)
    assert summary["test"]["test_accuracy"] >= 0.90, summary["test"]


def test_fashion_mnist_example_one_epoch_on_a_subsample(tmp_path: Path) -> None:
    # 3,000 training images, 1 epoch (~8 s): ~0.8 test accuracy; chance is 0.1
    summary = train_example(tmp_path / "run", "train.epochs=1", "data.subsample=3000", timeout=600)
    assert summary["test"]["test_accuracy"] >= 0.6, summary["test"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]

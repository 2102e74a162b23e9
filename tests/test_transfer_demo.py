"""Transfer learning on Fashion-MNIST: pretrain on classes 0-4, fine-tune on 50 images per class of classes 5-9,
against training from scratch on the same images (examples/transfer_*.yaml, bench/transfer_demo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gradwise
from gradwise.data.datasets import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUIET = ["train.progress=none"]

pytestmark = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST IDX files not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")


class AtStart(gradwise.Callback):
    def on_fit_start(self, trainer) -> None:  # noqa: ANN001
        self.state = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_transfer_examples_wire_up(tmp_path: Path) -> None:
    # tiny and fast: the configs are valid, the backbone is loaded and frozen, the head starts fresh
    pre = gradwise.train(EXAMPLES / "transfer_pretrain.yaml",
                         [*QUIET, "train.epochs=1", "data.subsample=500", f"out={tmp_path / 'pre'}"])
    assert pre.extras["bundle"].class_names == FASHION_MNIST_CLASSES[:5]
    weights = pre.dir / "checkpoints" / "best.pt"
    start = AtStart()
    tuned = gradwise.train(EXAMPLES / "transfer_finetune.yaml",
                           [*QUIET, "train.epochs=1", "data.subsample=50", f"model.pretrained={weights}",
                            f"out={tmp_path / 'ft'}"], callbacks=[start])
    bundle = tuned.extras["bundle"]
    assert bundle.class_names == FASHION_MNIST_CLASSES[5:] and bundle.class_counts == [10] * 5
    assert len(bundle.test[0]) == 5000 and set(bundle.test[1].tolist()) == set(range(5))
    before, after = pre.model.state_dict(), tuned.model.state_dict()
    # unfreeze_after 3 > 1 epoch: the conv blocks are still the pretrained ones, batch-norm statistics included
    for name in ("block1.0.weight", "block2.0.weight", "block1.1.running_mean", "block2.1.running_var"):
        assert torch.equal(before[name], after[name]), name
    # the head has the same shape, but model.pretrained_exclude: [head] started it fresh
    assert before["head.1.weight"].shape == start.state["head.1.weight"].shape
    assert not torch.equal(before["head.1.weight"], start.state["head.1.weight"])
    assert torch.equal(before["block1.0.weight"], start.state["block1.0.weight"])


@pytest.mark.slow
def test_fine_tuning_beats_training_from_scratch(tmp_path: Path) -> None:
    # ~45 s on 2 quiet CPU cores: pretrain 3 epochs on classes 0-4, then per seed 15 epochs on 250 images twice.
    # Measured gains (bench/transfer_demo.py, seeds 0-4): +1.4, +2.2, +1.0, +2.2, +2.4 points.
    pre = gradwise.train(EXAMPLES / "transfer_pretrain.yaml", [*QUIET, f"out={tmp_path / 'pre'}"])
    assert pre.summary["test"]["test_accuracy"] > 0.9
    weights = pre.dir / "checkpoints" / "best.pt"
    gains = []
    for seed in (0, 1):
        common = [*QUIET, f"seed={seed}"]
        scratch = gradwise.train(EXAMPLES / "transfer_scratch.yaml", [*common, f"out={tmp_path / f's{seed}'}"])
        tuned = gradwise.train(EXAMPLES / "transfer_finetune.yaml",
                               [*common, f"model.pretrained={weights}", f"out={tmp_path / f'f{seed}'}"])
        gains.append(tuned.summary["test"]["test_accuracy"] - scratch.summary["test"]["test_accuracy"])
    # held-out test split of classes 5-9 (5,000 images); each seed a gain, on average at least one point
    assert min(gains) > 0.005 and sum(gains) / len(gains) >= 0.01, gains

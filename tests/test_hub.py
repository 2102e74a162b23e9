"""model.name: torchvision:<arch> / timm:<arch>: the library's network with the head fitted to the task, trained with
freeze / unfreeze_after / lr_decay_groups, its published weights from the library's cache (model.pretrained:
weights), and a one-line error naming the extra when the library is missing. The library tests skip where
torchvision or timm cannot be imported (the CPU torch of the main test environment has no matching torchvision)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gradwise
from gradwise.errors import ModelError
from gradwise.inference import load_run
from gradwise.train.events import Callback


def _importable(module: str) -> str | None:
    try:
        __import__(module)
    except Exception as exc:  # a torchvision built for another torch fails with a RuntimeError, not ImportError
        return f"{module} cannot be imported here ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
    return None


NO_TORCHVISION = _importable("torchvision.models")
NO_TIMM = NO_TORCHVISION or _importable("timm")
BASE = ["train.epochs=2", "train.batch_size=16", "train.progress=none", "doctor.enabled=false", "train.threads=1",
        "data.test_fraction=0.25", "data.val_fraction=0.15"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder: 2 classes x 24 RGB images of 32x32, reddish or bluish noise."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for cls, channel in (("red", 0), ("blue", 2)):
        (root / cls).mkdir()
        for i in range(24):
            pixels = rng.integers(0, 120, size=(32, 32, 3))
            pixels[..., channel] += 120
            Image.fromarray(pixels.astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


class Snapshots(Callback):
    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []
        self.lrs: list[float] = []

    def on_fit_start(self, trainer: Any) -> None:
        self.states.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        self.lrs = sorted({g["lr"] for g in trainer.optimizer.param_groups})  # (decay and no-decay groups share one)

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        self.states.append({k: v.clone() for k, v in trainer.model.state_dict().items()})


def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision now raises ImportError
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ModelError, match=r'pip install "gradwise\[vision\]"'):
        gradwise.train(None, ["data.dataset=digits", "model.name=torchvision:resnet18", *BASE])


@pytest.mark.skipif(NO_TORCHVISION is not None, reason=str(NO_TORCHVISION))
def test_torchvision_resnet18_fine_tunes_with_freeze_unfreeze_after_and_lr_decay_groups(images: Path,
                                                                                         tmp_path: Path) -> None:
    snaps = Snapshots()
    run = gradwise.train(None, [f"data.dataset={images}", "model.name=torchvision:resnet18",
                                "model.freeze=[conv1,bn1,layer1,layer2,layer3,layer4]", "model.unfreeze_after=1",
                                "model.lr_decay_groups=0.5", *BASE, f"out={tmp_path / 'run'}"],
                         callbacks=[snaps])
    assert run.status == "completed"
    # the head fits the task: 2 classes
    assert run.model.fc.out_features == 2
    assert run.model(torch.zeros(3, 3, 32, 32)).shape == (3, 2)
    start, epoch1, epoch2 = snaps.states
    # epoch 1: the frozen backbone did not move (BatchNorm statistics included), the head did
    assert torch.equal(start["layer2.0.conv1.weight"], epoch1["layer2.0.conv1.weight"])
    assert torch.equal(start["bn1.running_mean"], epoch1["bn1.running_mean"])
    assert not torch.equal(start["fc.weight"], epoch1["fc.weight"])
    # unfrozen after epoch 1: everything trains in epoch 2
    assert not torch.equal(epoch1["layer2.0.conv1.weight"], epoch2["layer2.0.conv1.weight"])
    # one LR group per top-level child with parameters (conv1, bn1, layer1..4, fc), halving towards the input
    assert len(snaps.lrs) == 7
    assert snaps.lrs[-1] == pytest.approx(2 ** 6 * snaps.lrs[0])
    # a run directory rebuilds it for eval / predict
    loaded = load_run(tmp_path / "run")
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, run.model.state_dict()[k])


@pytest.mark.skipif(NO_TORCHVISION is not None, reason=str(NO_TORCHVISION))
def test_pretrained_weights_come_from_the_librarys_cache_all_but_the_head(images: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    # this machine has no internet: the file the library would download is put in its cache (TORCH_HOME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / os.path.basename(weights.url)
    cached.parent.mkdir(parents=True)
    torch.manual_seed(123)
    published = torchvision.models.resnet18().state_dict()
    torch.save(published, cached)
    snaps = Snapshots()
    gradwise.train(None, [f"data.dataset={images}", "model.name=torchvision:resnet18", "model.pretrained=weights",
                          "model.freeze=[conv1,bn1,layer1,layer2,layer3,layer4]", *BASE, "train.epochs=1",
                          f"out={tmp_path / 'run'}"], callbacks=[snaps])
    start = snaps.states[0]
    for key in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_var"):
        assert torch.equal(start[key], published[key]), key
    assert start["fc.weight"].shape == (2, 512)  # the 1000-class head was not loaded


@pytest.mark.skipif(NO_TIMM is not None, reason=str(NO_TIMM))
def test_timm_convnext_atto_trains_with_its_head_fitted(images: Path, tmp_path: Path) -> None:
    snaps = Snapshots()
    run = gradwise.train(None, [f"data.dataset={images}", "model.name=timm:convnext_atto", "model.freeze=[stem]",
                                *BASE, "train.epochs=1", f"out={tmp_path / 'run'}"], callbacks=[snaps])
    assert run.status == "completed"
    assert run.model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    start, end = snaps.states
    assert torch.equal(start["stem.0.weight"], end["stem.0.weight"])
    assert not torch.equal(start["head.fc.weight"], end["head.fc.weight"])

"""Transfer learning through gradwise.train: pretrained weights, frozen blocks, gradual unfreezing, per-block LRs."""

from __future__ import annotations

from pathlib import Path

import torch

import gradwise

BASE = ["data.dataset=digits", "model.name=mlp", "model.widths=[64,64]", "train.progress=none"]


class Snapshots(gradwise.Callback):
    def __init__(self) -> None:
        self.first: list[torch.Tensor] = []

    def on_epoch_start(self, trainer) -> None:  # noqa: ANN001
        self.first.append(next(trainer.model.parameters()).detach().clone())


def test_pretrain_freeze_then_unfreeze(tmp_path: Path) -> None:
    pre = gradwise.train(None, [*BASE, "train.epochs=2", f"out={tmp_path / 'pre'}"])
    ckpt = tmp_path / "pre" / "checkpoints" / "last.pt"
    snap = Snapshots()
    run = gradwise.train(None, [*BASE, "train.epochs=4", f"model.pretrained={ckpt}", "model.freeze=[block1]",
                                "model.unfreeze_after=2", f"out={tmp_path / 'ft'}"], callbacks=[snap])
    name = next(iter(run.model.state_dict()))
    assert name.startswith("block1")
    pretrained = pre.model.state_dict()[name]
    # epochs 1 and 2 frozen: bit-identical to the pretrained weights; then training changes them
    assert torch.equal(snap.first[0], pretrained) and torch.equal(snap.first[2], pretrained)
    assert not torch.equal(run.model.state_dict()[name], pretrained)


def test_discriminative_lrs(tmp_path: Path) -> None:
    run = gradwise.train(None, [*BASE, "train.epochs=1", "model.lr_decay_groups=0.5", "schedule=constant",
                                f"out={tmp_path / 'd'}"])
    opt = run.extras["trainer"].optimizer
    lrs = sorted({round(g["lr"], 10) for g in opt.param_groups})
    peak = run.config.optim.lr
    assert max(lrs) == peak and min(lrs) < peak and all(lr / peak in (1.0, 0.5, 0.25, 0.125) for lr in lrs)


class BufferSnapshots(gradwise.Callback):
    def __init__(self) -> None:
        self.at_start: list[dict[str, torch.Tensor]] = []

    def on_epoch_start(self, trainer) -> None:  # noqa: ANN001
        self.at_start.append({k: v.clone() for k, v in trainer.model.state_dict().items() if "running" in k})


def test_frozen_batch_norm_keeps_its_running_statistics(tmp_path: Path) -> None:
    norm = [*BASE, "model.norm=batch"]
    pre = gradwise.train(None, [*norm, "train.epochs=1", f"out={tmp_path / 'pre'}"])
    ckpt = tmp_path / "pre" / "checkpoints" / "last.pt"
    stats = {k: v for k, v in pre.model.state_dict().items() if "running" in k and k.startswith("block1")}
    assert stats  # the mlp has a BatchNorm in block1
    snap = BufferSnapshots()
    run = gradwise.train(None, [*norm, "train.epochs=3", f"model.pretrained={ckpt}", "model.freeze=[block1]",
                                "model.unfreeze_after=2", f"out={tmp_path / 'ft'}"], callbacks=[snap])
    # frozen for epochs 1-2: the running mean/var stay the pretrained ones, bit for bit; unfrozen, they move
    for k, v in stats.items():
        assert torch.equal(snap.at_start[2][k], v), k
        assert not torch.equal(run.model.state_dict()[k], v), k
    # the later, trainable blocks' statistics did update while block1 was frozen
    later = [k for k in snap.at_start[0] if not k.startswith("block1")]
    assert later and any(not torch.equal(snap.at_start[0][k], snap.at_start[2][k]) for k in later)
    # the switch: off, the frozen block's statistics drift with the new data from the first epoch
    drift = gradwise.train(None, [*norm, "train.epochs=1", f"model.pretrained={ckpt}", "model.freeze=[block1]",
                                  "model.freeze_norm_stats=false", f"out={tmp_path / 'drift'}"])
    assert any(not torch.equal(drift.model.state_dict()[k], v) for k, v in stats.items())


class StateAtStart(gradwise.Callback):
    def on_fit_start(self, trainer) -> None:  # noqa: ANN001
        self.state = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_pretrained_exclude_starts_modules_fresh_and_rejects_typos(tmp_path: Path) -> None:
    import pytest

    from gradwise.errors import ModelError

    pre = gradwise.train(None, [*BASE, "train.epochs=1", f"out={tmp_path / 'pre'}"])
    ckpt = tmp_path / "pre" / "checkpoints" / "last.pt"
    start = StateAtStart()
    gradwise.train(None, [*BASE, "train.epochs=1", f"model.pretrained={ckpt}", "model.pretrained_exclude=[head]",
                          f"out={tmp_path / 'ft'}"], callbacks=[start])
    old = pre.model.state_dict()
    heads = [k for k in old if k.startswith("head")]
    assert heads and all(not torch.equal(start.state[k], old[k]) for k in heads if k.endswith("weight"))
    assert all(torch.equal(start.state[k], old[k]) for k in old if k.startswith("block1"))
    with pytest.raises(ModelError, match="pretrained_exclude pattern 'haed'"):
        gradwise.train(None, [*BASE, "train.epochs=1", f"model.pretrained={ckpt}", "model.pretrained_exclude=[haed]",
                              f"out={tmp_path / 'typo'}"])

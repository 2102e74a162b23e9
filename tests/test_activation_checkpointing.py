"""train.activation_checkpointing: the built-in models' blocks are recomputed in the backward pass, with the same
outputs, gradients and BatchNorm statistics as without it (the memory it saves: bench/activation_checkpointing.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import gradwise
from gradwise.config import ModelConfig
from gradwise.errors import ConfigError
from gradwise.models import build_model
from gradwise.models.checkpointing import enable_activation_checkpointing, is_checkpointed
from gradwise.train.checkpoint import load_checkpoint

IRIS = ["data.dataset=iris", "model.name=mlp", "model.widths=[32,32]", "model.dropout=0.2", "model.norm=batch",
        "train.epochs=2", "train.batch_size=16", "train.progress=none", "doctor.enabled=false", "train.threads=1"]


@pytest.mark.parametrize(("name", "shape", "fields"), [
    ("mlp", (40,), {"widths": [32, 32, 32], "norm": "batch", "dropout": 0.2}),
    ("cnn1d", (40,), {"channels": [8, 16], "dropout": 0.2}),
    ("resnet", (1, 12, 12), {"channels": [8, 16]}),
    ("transformer", (36,), {"hidden_size": 16, "heads": 2, "num_layers": 2, "dropout": 0.1}),
    ("gru", (20,), {"hidden_size": 16}),
])
def test_same_outputs_gradients_and_norm_statistics_with_blocks_recomputed(name: str, shape: tuple[int, ...],
                                                                          fields: dict[str, Any]) -> None:
    torch.manual_seed(0)
    plain = build_model(ModelConfig(name=name, **fields), shape, 5, "classification")
    checkpointed = copy.deepcopy(plain)
    blocks = enable_activation_checkpointing(checkpointed)
    assert blocks and all(is_checkpointed(getattr(checkpointed, b)) or all(map(is_checkpointed, getattr(
        checkpointed, b))) for b in blocks)  # (a ResNet stage: each of its residual blocks)
    assert repr(checkpointed) == repr(plain)  # prints, names its parameters and saves as the plain model
    assert checkpointed.state_dict().keys() == plain.state_dict().keys()
    # each block really runs twice (forward, then again in the backward pass)
    calls = []
    first = next(m for m in getattr(checkpointed, blocks[0]).modules() if list(m.parameters(recurse=False)))
    first.register_forward_pre_hook(lambda *_: calls.append(1))
    x = torch.randn(8, *shape)
    grads = []
    for model in (plain, checkpointed):
        model.train()
        torch.manual_seed(1)  # the same dropout masks
        out = model(x)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        grads.append((out.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (out_a, grad_a), (out_b, grad_b) = grads
    assert len(calls) == 2
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=0)
    for n in grad_a:
        torch.testing.assert_close(grad_b[n], grad_a[n], rtol=1e-6, atol=1e-7)
    # BatchNorm counts the batch once: the recomputation leaves the running statistics alone
    for (n, a), b in zip(plain.state_dict().items(), checkpointed.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    # evaluation (no gradients) does not checkpoint
    calls.clear()
    with torch.no_grad():
        checkpointed.eval()(x)
    assert len(calls) == 1


def test_a_run_with_activation_checkpointing_trains_the_same_weights(tmp_path: Path) -> None:
    plain = gradwise.train(None, [*IRIS, f"out={tmp_path / 'plain'}"])
    ckpt = gradwise.train(None, [*IRIS, "train.activation_checkpointing=true", f"out={tmp_path / 'ckpt'}"])
    assert is_checkpointed(ckpt.model.block1) and not is_checkpointed(plain.model.block1)  # type: ignore[arg-type]
    a = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "ckpt" / "checkpoints" / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    assert ckpt.summary["test"]["test_loss"] == pytest.approx(plain.summary["test"]["test_loss"], rel=1e-4)


def test_a_model_without_blocks_is_a_config_error(tmp_path: Path) -> None:
    x, y = load_digits(return_X_y=True)
    data = (torch.tensor(x[:200], dtype=torch.float32), torch.tensor(y[:200]))
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with pytest.raises(ConfigError, match="block1, block2"):
        gradwise.fit(model, data, epochs=1, activation_checkpointing=True, progress="none", doctor=False,
                     out=tmp_path / "run")

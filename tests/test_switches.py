"""model.init=constant (and the doctor's finding on it) and train.deterministic."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from sklearn.datasets import load_iris
from torch import nn

import gradwise
from gradwise.errors import ConfigError, TrainingError
from gradwise.train.events import Callback

QUIET = ["train.progress=none"]


def test_constant_init_fills_every_weight_and_zeroes_biases(tmp_path: Path) -> None:
    run = gradwise.train(overrides=["data.dataset=digits", "model.name=mlp", "model.init=constant",
                                    "model.init_value=0.05", "train.epochs=1", f"out={tmp_path / 'r'}", *QUIET])
    # the doctor sees the init before step 1: every hidden unit of a layer computes the same function
    bad = [f for f in run.findings if f.code == "bad_initialization"]
    assert bad, [f.code for f in run.findings]
    layers = bad[0].evidence["layers"]
    same = [entry for entry in layers if "constant across units" in entry["issue"]]
    assert same and same[0]["layer"].endswith(".weight") and same[0]["distinct_rows"] == 1 and same[0]["units"] > 1
    assert "model.init=he_normal (ReLU)" in bad[0].fixes
    # the units stay identical while training: each layer's rows are still all equal after an epoch
    linears = [m for m in run.model.modules() if isinstance(m, nn.Linear)]
    hidden = linears[:-1]
    assert hidden and all(torch.equal(m.weight, m.weight[:1].expand_as(m.weight)) for m in hidden)


def test_constant_init_is_applied_at_build(tmp_path: Path) -> None:
    from gradwise.config import ModelConfig
    from gradwise.models import build_model

    model = build_model(ModelConfig(name="mlp", init="constant", init_value=0.25), (8,), 3, "classification")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(bool((m.weight == 0.25).all()) for m in linears)
    assert all(m.bias is None or bool((m.bias == 0).all()) for m in linears)
    he = build_model(ModelConfig(name="mlp", init="he_normal"), (8,), 3, "classification")
    first = next(m for m in he.modules() if isinstance(m, nn.Linear)).weight.detach()
    assert len(torch.unique(first)) > 1


def test_init_value_without_constant_init_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.init_value=0.5 .*model.init=constant"):
        gradwise.train(overrides=["data.dataset=iris", "model.name=mlp", "model.init=he_normal",
                                  "model.init_value=0.5", "train.epochs=1", f"out={tmp_path / 'r'}", *QUIET])


class _Seen(Callback):
    """What torch's determinism settings were while the run trained."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def on_batch_start(self, trainer: Any) -> None:
        self.seen = {"algorithms": torch.are_deterministic_algorithms_enabled(),
                     "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
                     "cudnn": torch.backends.cudnn.deterministic, "benchmark": torch.backends.cudnn.benchmark,
                     "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def _deterministic_run(out: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    seen = _Seen()
    run = gradwise.train(overrides=["data.dataset=iris", "model.name=mlp", "model.norm=batch", "model.dropout=0.3",
                                    "train.epochs=2", "train.batch_size=16", "train.deterministic=true",
                                    f"out={out}", *QUIET], callbacks=[seen])
    assert any(isinstance(m, nn.Dropout) for m in run.model.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in run.model.modules())
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}, seen.seen


def test_deterministic_runs_repeat_bit_for_bit_and_settings_are_restored(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.backends.cudnn.benchmark
    a, seen = _deterministic_run(tmp_path / "a")
    b, _ = _deterministic_run(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    # the running statistics moved: the batch-norm layers trained (a run that did nothing would repeat trivially)
    assert any("running_mean" in k and bool(a[k].abs().sum() > 0) for k in a)
    assert seen == {"algorithms": True, "warn_only": False, "cudnn": True, "benchmark": False, "cublas": ":4096:8"}
    # after the run the process is as it was: another run or the caller's own code is not slowed or stopped
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_a_users_cublas_setting_is_kept(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    _, seen = _deterministic_run(tmp_path / "a")
    assert seen["cublas"] == ":16:8" and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


class _Unpool(nn.Module):
    """max_unpool1d has no deterministic implementation on the CPU (torch raises under deterministic mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x).unsqueeze(1)
        pooled, idx = nn.functional.max_pool1d(h, 2, return_indices=True)
        return self.head(nn.functional.max_unpool1d(pooled, idx, 2).squeeze(1))


def test_an_op_without_a_deterministic_implementation_is_a_training_error(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    torch.manual_seed(0)
    with pytest.raises(TrainingError, match=r"max_unpool\S* .*train.deterministic=false"):
        gradwise.fit(_Unpool(), (xt, yt), loss="cross_entropy", epochs=1, out=tmp_path / "r", progress="none",
                     doctor=False, config={"train": {"deterministic": True}})
    assert not torch.are_deterministic_algorithms_enabled()
    # the same model trains without the switch
    run = gradwise.fit(_Unpool(), (xt, yt), loss="cross_entropy", epochs=1, out=tmp_path / "s", progress="none",
                       doctor=False)
    assert run.history

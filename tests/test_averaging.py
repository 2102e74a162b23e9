"""Weight averaging (train.ema, train.swa): the average is torch's formula over the raw weights the optimizer
trained, it is what is validated, checkpointed, tested, exported and predicted with, the raw weights stay in last.pt,
and a run killed and resumed ends bit for bit as the uninterrupted one."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.optim.swa_utils import update_bn

import gradwise
from gradwise.errors import ConfigError
from gradwise.inference import evaluate_run, load_run
from gradwise.train.checkpoint import load_checkpoint
from gradwise.train.events import Callback

QUIET = {"progress": "none", "doctor": False}
IRIS = ["data.dataset=iris", "model.name=mlp", "model.widths=[16]", "train.batch_size=16", "train.progress=none",
        "doctor.enabled=false", "train.threads=1"]
KILLPOINT = Path(__file__).resolve().parent / "reliability" / "killpoint.py"


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    x = torch.from_numpy(StandardScaler().fit_transform(x[:600]).astype("float32"))
    y = torch.from_numpy(y[:600]).long()
    return x[:480], y[:480], x[480:], y[480:]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class Recorder(Callback):
    """The raw weights (what the optimizer trains) after every step and at every epoch's end."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.epochs: list[dict[str, torch.Tensor]] = []
        self.lrs: list[float] = []

    def on_batch_end(self, trainer: Any) -> None:
        self.steps.append(copy.deepcopy(trainer.model.state_dict()))

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        self.epochs.append(copy.deepcopy(trainer.model.state_dict()))
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])


@pytest.mark.filterwarnings("ignore:train.ema.decay")  # a short run: its EMA is meant to differ from the weights
def test_ema_is_torchs_formula_over_the_raw_weights_and_is_what_is_validated_and_saved(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    rec = Recorder()
    decay = 0.9
    run = gradwise.fit(mlp(), (x, y), val=(xv, yv), loss="cross_entropy", epochs=3, batch_size=64,
                       ema={"decay": decay}, restore_best=False, callbacks=[rec], out=tmp_path / "run", **QUIET)
    # the reference: ema = w_1 after the first step, then ema <- decay * ema + (1 - decay) * w_t (in float64)
    ema = {k: v.double() for k, v in rec.steps[0].items()}
    for w in rec.steps[1:]:
        ema = {k: decay * ema[k] + (1 - decay) * w[k].double() for k in ema}
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    for k, v in ema.items():
        torch.testing.assert_close(last["model"][k].double(), v, rtol=0, atol=1e-6)
        # the raw weights are there too, exactly, and differ from the average
        assert torch.equal(last["callbacks"]["averaging"]["raw"][k], rec.steps[-1][k])
        assert not torch.allclose(last["model"][k], rec.steps[-1][k], atol=1e-4)
    assert last["callbacks"]["averaging"]["n_averaged"] == len(rec.steps)
    # the run ends holding the average, and its validation loss is the average's
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, last["model"][k])
    with torch.no_grad():
        val_loss = nn.functional.cross_entropy(run.model(xv), yv).item()
    assert run.history[-1]["val_loss"] == pytest.approx(val_loss, rel=1e-5)
    raw = mlp()
    raw.load_state_dict(rec.steps[-1])
    with torch.no_grad():
        assert nn.functional.cross_entropy(raw(xv), yv).item() != pytest.approx(val_loss, rel=1e-5)


def test_swa_averages_the_epoch_ends_from_start_at_swalr_and_ends_with_the_average(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    rec = Recorder()
    run = gradwise.fit(mlp(), (x, y), val=(xv, yv), loss="cross_entropy", epochs=6, batch_size=64, lr=3e-3,
                       swa={"start": 0.5, "lr": 1e-3, "anneal_epochs": 0}, restore_best=False, callbacks=[rec],
                       out=tmp_path / "run", **QUIET)
    # floor(0.5 * 6) = 3: epochs 4, 5 and 6 are averaged with equal weight, trained at the SWA LR
    mean = {k: sum(e[k].double() for e in rec.epochs[3:]) / 3 for k in rec.epochs[0]}
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    for k, v in mean.items():
        torch.testing.assert_close(last["model"][k].double(), v, rtol=0, atol=1e-6)
        assert torch.equal(run.model.state_dict()[k], last["model"][k])
    assert [r["lr"] for r in run.history[3:]] == [1e-3] * 3
    assert run.history[2]["lr"] != 1e-3
    assert last["callbacks"]["averaging"]["first_epoch"] == 4


def test_swa_recomputes_batchnorm_statistics_and_export_predict_and_eval_use_the_average(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = gradwise.train(None, [*IRIS, "model.norm=batch", "train.epochs=4", "train.swa.start=0.5",
                                "train.early_stopping.restore_best=false", f"out={out}"])
    kept = load_checkpoint(out / "checkpoints" / "last.pt")
    raw = kept["callbacks"]["averaging"]["raw"]
    # the kept weights are the average, with BatchNorm statistics recomputed for them over the training data
    reference = copy.deepcopy(run.model)
    reference.load_state_dict(kept["model"])
    loader = run.extras["trainer"].train_loader
    loader.set_epoch(3, skip_batches=0)  # the last epoch's batches (a mean of batch statistics depends on them)
    update_bn(([xb] for xb, _ in loader), reference)
    stats = [k for k in kept["model"] if k.endswith(("running_mean", "running_var"))]
    assert stats
    for k in stats:
        torch.testing.assert_close(kept["model"][k], reference.state_dict()[k], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(kept["model"][k], raw[k])
    weights = [k for k in kept["model"] if k.endswith("weight")]
    assert any(not torch.equal(kept["model"][k], raw[k]) for k in weights)
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, kept["model"][k])
    # gradwise eval / predict load the average; the test metrics are the average's
    loaded = load_run(out)
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, kept["model"][k])
    assert evaluate_run(out)["accuracy"] == pytest.approx(run.summary["test"]["test_accuracy"])
    # so does an export
    from safetensors.torch import load_file

    exported = load_file(run.export("safetensors"))
    matched = [k for k in exported if k in kept["model"]]
    assert matched and all(torch.equal(exported[k], kept["model"][k]) for k in matched)


def _gw(*args: str, kill_at: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(KILLPOINT), "kill", f"step:{kill_at}", *args] if kill_at else \
        [sys.executable, "-m", "gradwise.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _final(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return state, rows, json.loads((out / "summary.json").read_text())["test"]


@pytest.mark.slow
@pytest.mark.parametrize(("average", "kill_at"), [
    (["train.ema.decay=0.9"], 11),  # mid epoch 2 (7 steps an epoch), last checkpoint at step 9
    # mid epoch 4, after the first averaged epoch (3) and a step checkpoint at 24 that holds the SWA LR's state
    (["train.swa.start=0.5", "train.swa.lr=0.01", "model.norm=batch"], 26),
])
def test_a_killed_averaging_run_resumes_bit_identical(tmp_path: Path, average: list[str], kill_at: int) -> None:
    run = [*IRIS, "model.dropout=0.2", "train.epochs=5", "train.checkpoint_every=3", *average]
    full = _gw("train", *run, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    killed = _gw("train", *run, "--out", str(tmp_path / "cut"), kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["callbacks"]["averaging"]["n_averaged"] > 0
    resumed = _gw("train", "--resume", str(tmp_path / "cut"))
    assert resumed.returncode == 0, resumed.stderr
    (a, rows_a, test_a), (b, rows_b, test_b) = _final(tmp_path / "full"), _final(tmp_path / "cut")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["callbacks"]["averaging"]["raw"][key], b["callbacks"]["averaging"]["raw"][key]), key
    assert rows_a == rows_b and test_a == test_b


def test_ema_and_swa_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="train.ema and train.swa"):
        gradwise.train(None, [*IRIS, "train.ema.decay=0.9", "train.swa.start=0.5"])


def test_an_ema_longer_than_a_third_of_the_run_is_warned_about(tmp_path: Path) -> None:
    # iris: 105 rows, batch 16: 7 steps an epoch, 14 in all; decay 0.9 remembers ~10 steps
    with pytest.warns(UserWarning, match=r"train.ema.decay = 0.9 averages over ~10 steps.*train.ema.decay=0.5"):
        gradwise.train(None, [*IRIS, "train.epochs=2", "train.ema.decay=0.9", f"out={tmp_path / 'short'}"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        gradwise.train(None, [*IRIS, "train.epochs=2", "train.ema.decay=0.5", f"out={tmp_path / 'fits'}"])

"""The loop's public way to change course, through `gradwise.fit` with callbacks of one's own: `trainer.request`
(restore a snapshot or checkpoint, scale the LR, set clipping), `trainer.snapshot`, `trainer.fail` and the
on_checkpoint veto; and the doctor's repair going through nothing else (it writes no trainer attribute)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from sklearn.datasets import load_diabetes, load_iris
from torch import nn

import gradwise
from gradwise.errors import TrainingError
from gradwise.train.events import Request
from gradwise.train.loop import Trainer

QUIET: dict[str, Any] = {"progress": "none", "doctor": False, "early_stopping": False, "schedule": "constant"}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _iris() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def _mlp(inputs: int = 4, outputs: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(inputs, 16), nn.ReLU(), nn.Linear(16, outputs))


def _fit(out: Path, callback: gradwise.Callback, epochs: int = 4, **kw: Any) -> gradwise.Run:
    x, y = _iris()
    return gradwise.fit(_mlp(), (x[::2], y[::2]), val=(x[1::2], y[1::2]), loss="cross_entropy", optimizer="sgd",
                        lr=0.1, epochs=epochs, batch_size=25, out=out, callbacks=[callback], **{**QUIET, **kw})


class RestoreOnce(gradwise.Callback):
    """Snapshots the state at the start of epoch 2, and at the end of epoch 3 asks to go back there at half the LR."""

    def __init__(self, restore: tuple[str, ...] = ("mine",)) -> None:
        self.restore = restore
        self.done: list[dict[str, Any]] = []
        self.asked = False

    def on_epoch_start(self, trainer: Trainer) -> None:
        if trainer.epoch == 1 and not self.asked:
            trainer.snapshot("mine")

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if logs["epoch"] == 3 and not self.asked:
            self.asked = True
            trainer.request(Request("test: back to epoch 2", restore=self.restore, lr_factor=0.5,
                                    note={"by": "test"}))

    def on_request_done(self, trainer: Trainer, action: dict[str, Any]) -> None:
        self.done.append(action)


def test_a_callback_restores_its_snapshot_and_goes_on_at_half_the_lr(tmp_path: Path) -> None:
    cb = RestoreOnce()
    run = _fit(tmp_path / "run", cb)
    assert run.status == "completed"
    # epoch 3's first run was undone with the state at the start of epoch 2: every epoch is in the history once
    assert [h["epoch"] for h in run.history] == [1, 2, 3, 4]
    assert [h["lr"] for h in run.history] == pytest.approx([0.1, 0.05, 0.05, 0.05])
    [action] = run.summary["actions"]
    assert action["action"] == "rollback" and action["restored"] == "mine" and action["reason"].startswith("test")
    assert action["changes"]["lr_factor"] == 0.5 and action["changes"]["by"] == "test"
    assert action["changes"]["lr"] == pytest.approx(0.05)
    assert cb.done == [action]  # the event carries the record
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # the undone row is gone from the file too
    assert run.summary["steps"] == 4 * 3  # the step count went back with the state


def test_a_restore_falls_back_to_the_next_name_and_names_what_is_missing(tmp_path: Path) -> None:
    run = _fit(tmp_path / "fallback", RestoreOnce(restore=("nothing", "last")))
    # last.pt is the end of epoch 2: the restored run trains epochs 3 and 4 again, at half the LR
    assert [h["epoch"] for h in run.history] == [1, 2, 3, 4] and run.summary["actions"][0]["restored"] == "last"
    assert [h["lr"] for h in run.history] == pytest.approx([0.1, 0.1, 0.05, 0.05])
    with pytest.raises(TrainingError, match=r"restore one of \['nothing', 'nowhere'\].*no such snapshot"):
        _fit(tmp_path / "missing", RestoreOnce(restore=("nothing", "nowhere")))


def test_a_request_that_only_changes_settings_at_an_epoch_end_lets_the_epoch_stand(tmp_path: Path) -> None:
    class Adjust(gradwise.Callback):
        def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
            if logs["epoch"] == 1:
                trainer.request(Request("calmer", lr_factor=0.5, clip_grad=0.25))

    run = _fit(tmp_path / "run", Adjust(), epochs=3)
    assert [h["epoch"] for h in run.history] == [1, 2, 3]  # no epoch trained twice
    assert [h["lr"] for h in run.history] == pytest.approx([0.1, 0.05, 0.05])
    [action] = run.summary["actions"]
    assert action["action"] == "adjust" and action["restored"] is None and action["epoch"] == 1
    assert action["changes"] == {"lr_factor": 0.5, "lr": pytest.approx(0.05), "clip_grad": 0.25}
    assert run.extras["trainer"].clip_grad == 0.25
    # the epoch's checkpoint holds the changed schedule: a resume goes on at the new LR
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert json.loads(state["actions_json"]) == run.summary["actions"]


def test_an_on_checkpoint_veto_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    class Veto(gradwise.Callback):
        def __init__(self) -> None:
            self.asked: list[tuple[int, list[str]]] = []

        def on_checkpoint(self, trainer: Trainer, names: list[str]) -> bool:
            self.asked.append((trainer.step, list(names)))
            return trainer.step < 6  # the state after step 6 is "broken": never written

    veto = Veto()
    run = _fit(tmp_path / "run", veto, epochs=4, checkpoint_every=2)
    assert run.status == "completed"
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4  # step 6 (end of epoch 2) and every later save were vetoed
    # every save asks: every 2nd step (checkpoint_every) and each epoch end (3 steps an epoch; steps 6 and 12 both)
    assert [s for s, _ in veto.asked] == [2, 3, 4, 6, 6, 8, 9, 10, 12, 12]
    assert all(names[0] == "last" for _, names in veto.asked)


def test_a_non_finite_epoch_loss_nobody_takes_in_hand_stops_the_run(tmp_path: Path) -> None:
    class Blow(gradwise.Callback):
        def on_batch_start(self, trainer: Trainer) -> None:
            if trainer.step == 4:
                with torch.no_grad():
                    next(trainer.model.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingError, match="training loss became nan in epoch 2"):
        _fit(tmp_path / "plain", Blow())

    class BlowAndVeto(Blow):
        def on_checkpoint(self, trainer: Trainer, names: list[str]) -> bool:
            return trainer.step < 4  # took the broken state in hand: the loop goes on (and writes no checkpoint)

    run = _fit(tmp_path / "vetoed", BlowAndVeto(), epochs=3)
    assert run.status == "completed" and [math.isnan(h["train_loss"]) for h in run.history] == [False, True, True]
    assert torch.load(tmp_path / "vetoed" / "checkpoints" / "last.pt", weights_only=True)["step"] == 3


def test_fail_stops_the_run_as_failed_with_the_reason(tmp_path: Path) -> None:
    class Fail(gradwise.Callback):
        def on_batch_end(self, trainer: Trainer) -> None:
            if trainer.step == 5:
                trainer.fail("the test callback gave up")

    run = _fit(tmp_path / "run", Fail())
    assert run.status == "failed" and run.summary["stop_reason"] == "the test callback gave up"
    assert run.summary["steps"] == 5 and run.extras["trainer"].failure == "the test callback gave up"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def _diabetes() -> tuple[torch.Tensor, ...]:
    x, y = load_diabetes(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    xt, yt = torch.tensor(x[:350], dtype=torch.float32), torch.tensor(y[:350, None], dtype=torch.float32)
    return xt, yt, torch.tensor(x[350:], dtype=torch.float32), torch.tensor(y[350:, None], dtype=torch.float32)


def test_the_doctor_changes_the_run_only_through_the_loops_public_methods(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN run with repair (rollbacks, an LR cut, clipping on) and one without (the NaN guard fails the run): no
    line of the doctor's code sets an attribute of the trainer, and the loop's record of actions stays the loop's
    (the doctor's outcomes go into the summary)."""
    writes: list[tuple[str, str]] = []

    def spy(self: Trainer, name: str, value: Any) -> None:
        code = sys._getframe(1).f_code
        if "gradwise/doctor/" in code.co_filename.replace("\\", "/"):
            writes.append((name, code.co_name))
        object.__setattr__(self, name, value)

    monkeypatch.setattr(Trainer, "__setattr__", spy, raising=False)
    xt, yt, xv, yv = _diabetes()
    runs = {}
    for repair in (True, False):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
        runs[repair] = gradwise.fit(model, (xt, yt), val=(xv, yv), loss="mse", optimizer="sgd", lr=5.0,
                                    momentum=0.0, clip_grad=None, schedule="constant", batch_size=32, epochs=6,
                                    out=tmp_path / f"r{int(repair)}", repair=repair, progress="none")
    assert runs[False].status == "failed" and "NaN guard" in runs[False].summary["stop_reason"]
    repaired = runs[True]
    assert repaired.status == "completed" and repaired.summary["actions"][0]["restored"] in ("last", "start")
    assert repaired.summary["actions"][0]["changes"]["clip_grad"] == 1.0
    assert writes == []
    assert "outcome" in repaired.summary["actions"][0]
    assert all("outcome" not in a for a in repaired.extras["trainer"].actions)

"""The training spine through the public API: reference loop equality, accumulation, resume, stopping, errors."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits
from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score
from sklearn.preprocessing import StandardScaler
from torch import nn

import gradwise
from gradwise.data.loaders import epoch_generator
from gradwise.errors import ConfigError, TrainingError
from gradwise.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from gradwise.train.metrics import task_metrics

QUIET = {"progress": "none"}


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    x = StandardScaler().fit_transform(x[:1500]).astype("float32")
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y[:1500]).long()
    return xt[:1200], yt[:1200], xt[1200:], yt[1200:]


def mlp(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 10))


def test_fit_trains_digits_and_writes_run_dir(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    run = gradwise.fit(mlp(), (x, y), val=(xv[:150], yv[:150]), test=(xv[150:], yv[150:]), loss="cross_entropy",
                       epochs=8, batch_size=64, out=tmp_path / "run", **QUIET)
    assert run.status == "completed"
    assert run.summary["test"]["test_accuracy"] > 0.9
    assert len(run.history) == 8 and run.history[-1]["train_loss"] < run.history[0]["train_loss"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    assert {"epoch", "step", "lr", "train_loss", "val_loss", "val_accuracy", "seconds"} <= set(rows[0])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test"]["test_accuracy"] == run.summary["test"]["test_accuracy"]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert "optim:" in (tmp_path / "run" / "config.yaml").read_text()
    # the default recipe: warmup then cosine decay of the LR
    lrs = [r["lr"] for r in run.history]
    assert max(lrs) == pytest.approx(3e-3, rel=0.05) and lrs[-1] < lrs[1]


def hand_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, bs: int, lr: float,
              seed: int) -> nn.Module:
    """What a careful user writes by hand: the same order of samples as gradwise's loader, SGD, no extras."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    torch.manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=epoch_generator(seed, epoch))
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return model


def test_optimizer_instance_means_exactly_this(tmp_path: Path) -> None:
    x, y, _, _ = digits()
    ref = hand_loop(mlp(1), x, y, epochs=3, bs=50, lr=0.05, seed=7)
    model = mlp(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    run = gradwise.fit(model, (x, y), loss=nn.CrossEntropyLoss(), optimizer=opt, epochs=3, batch_size=50, seed=7,
                       out=tmp_path / "r", doctor=False, **QUIET)
    assert run.config.schedule.name == "constant" and run.config.train.clip_grad is None
    for a, b in zip(ref.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_accumulation_equals_one_big_batch_with_uneven_micro_batches(tmp_path: Path) -> None:
    # 40 rows: batch 48 is one step over all 40; batch 16 × 3 accumulated is micro-batches of 16, 16 and 8.
    # Averaging per-micro-batch means would weight the 8-row batch like the 16-row ones and differ.
    x, y, _, _ = digits()
    x, y = x[:40], y[:40]
    models = []
    for bs, acc in ((48, 1), (16, 3)):
        model = mlp(2)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        gradwise.fit(model, (x, y), loss="cross_entropy", optimizer=opt, epochs=4, batch_size=bs, accumulate=acc,
                     out=tmp_path / f"r{bs}", doctor=False, **QUIET)
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    from torch import nn
    import gradwise
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / (x.std(0) + 1e-6), dtype=torch.float32)[:600]
    y = torch.tensor(y, dtype=torch.long)[:600]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Dropout(0.3), nn.Linear(48, 10))
    out, mode, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Killer(gradwise.Callback):
        def on_batch_end(self, trainer):
            if trainer.step == kill_at:
                if mode == "kill":
                    # checkpoints are written on a background thread: let the step-20 one land, so the test knows
                    # which checkpoint the resume starts from (a kill during a write leaves the previous one)
                    trainer.checkpoints.flush()
                os.kill(os.getpid(), signal.SIGKILL if mode == "kill" else signal.SIGTERM)

    run = gradwise.fit(model, (x[:500], y[:500]), val=(x[500:], y[500:]), loss="cross_entropy", epochs=4,
                       batch_size=32, checkpoint_every=5, progress="none", out=out, seed=3, threads=2,
                       resume=out if mode == "resume" else None,
                       callbacks=[Killer()] if mode in ("kill", "term") else [])
    print("STATUS", run.status)
    torch.save(model.state_dict(), out + "/final_weights.pt")
""")


def _run_script(tmp_path: Path, out: Path, mode: str, kill_at: int = -1) -> subprocess.CompletedProcess:
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), str(out), mode, str(kill_at)], capture_output=True,
                          text=True, timeout=300)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "final_weights.pt", weights_only=True)


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path: Path) -> None:
    full = _run_script(tmp_path, tmp_path / "full", "plain")
    assert "STATUS completed" in full.stdout, full.stderr
    # 500 rows / 32 = 16 steps per epoch; killed at step 23 (mid epoch 2), last checkpoint at step 20
    killed = _run_script(tmp_path, tmp_path / "cut", "kill", kill_at=23)
    assert killed.returncode == -signal.SIGKILL
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert state["step"] == 20 and state["batch_in_epoch"] == 4
    resumed = _run_script(tmp_path, tmp_path / "cut", "resume")
    assert "STATUS completed" in resumed.stdout, resumed.stderr
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    full_rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in full_rows]
    # the killed epoch's train loss too: its first 4 step losses came back from the mid-epoch checkpoint
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in full_rows]


def test_sigterm_saves_checkpoint_and_stops_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "term"
    proc = _run_script(tmp_path, out, "term", kill_at=19)
    assert proc.returncode == 0, proc.stderr
    assert "STATUS stopped" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "stopped" and "SIGTERM" in summary["stop_reason"]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 19
    resumed = _run_script(tmp_path, out, "resume")
    assert "STATUS completed" in resumed.stdout
    full = _run_script(tmp_path, tmp_path / "full", "plain")
    assert "STATUS completed" in full.stdout
    a, b = _weights(tmp_path / "full"), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_stops_and_restores_best(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    # min_delta larger than any possible gain: only epoch 1 counts as an improvement
    run = gradwise.fit(mlp(), (x, y), val=(xv, yv), loss="cross_entropy", epochs=20, patience=2, min_delta=100.0,
                       out=tmp_path / "es", **QUIET)
    # patience 2: stops after 2 epochs without improvement (as Keras and Lightning do): epoch 1, then 2 and 3
    assert run.summary["epochs_completed"] == 3
    assert "has not improved for 2 epochs" in run.summary["stop_reason"]
    best = load_checkpoint(tmp_path / "es" / "checkpoints" / "best.pt")
    assert best["epoch"] == 1
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, best["model"][k])


def test_best_pt_is_the_best_epoch_and_old_checkpoints_resume(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    kw = {"loss": "cross_entropy", "batch_size": 64, **QUIET}
    run = gradwise.fit(mlp(), (x, y), val=(xv, yv), epochs=3, out=tmp_path / "a", **kw)
    ckpts = tmp_path / "a" / "checkpoints"
    best, last = load_checkpoint(ckpts / "best.pt"), load_checkpoint(ckpts / "last.pt")
    # val loss fell every epoch: best.pt was written together with last.pt (one write, two names)
    assert best["epoch"] == last["epoch"] == 3
    assert (ckpts / "best.pt").stat().st_size == (ckpts / "last.pt").stat().st_size
    # atomic writes go through a private temp file; what lands follows the umask like any other file
    umask = os.umask(0)
    os.umask(umask)
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "summary.json"):
        assert (tmp_path / "a" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    # the history is encoded row by row and cached between checkpoints: it must still be the whole history
    assert json.loads(last["history_json"]) == run.history and last["history_json"] == json.dumps(run.history)
    # a checkpoint written before history/actions were stored as JSON (plain lists) still resumes
    last["history"] = json.loads(last.pop("history_json"))
    last["actions"] = json.loads(last.pop("actions_json"))
    save_checkpoint(ckpts / "last.pt", last)
    resumed = gradwise.fit(mlp(), (x, y), val=(xv, yv), epochs=5, resume=tmp_path / "a", **kw)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5]
    assert resumed.history[:3] == run.history
    # best.pt is whichever epoch early stopping calls best; last.pt moved on without touching it
    assert load_checkpoint(ckpts / "best.pt")["epoch"] == resumed.summary["best"]["epoch"]
    assert load_checkpoint(ckpts / "last.pt")["epoch"] == 5


def test_rng_state_follows_draws_between_checkpoints() -> None:
    # the Python RNG's converted state is reused while it is unchanged: a draw in between must still show
    random.seed(1)
    before = rng_state()
    drawn = [random.random(), float(np.random.rand()), float(torch.rand(()))]
    after = rng_state()
    assert not torch.equal(before["python"][1], after["python"][1])
    set_rng_state(before)
    assert [random.random(), float(np.random.rand()), float(torch.rand(()))] == drawn
    set_rng_state(after)
    assert rng_state()["python"][1].tolist() == after["python"][1].tolist()


def test_nonfinite_loss_is_caught(tmp_path: Path) -> None:
    x, y = load_diabetes(return_X_y=True)
    x = torch.tensor(x * 100, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.float32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    run = gradwise.fit(model, (x, y), loss="mse", optimizer="sgd", lr=10.0, clip_grad=None, epochs=5,
                       out=tmp_path / "nan", **QUIET)
    assert run.status == "failed"
    assert [f.code for f in run.findings][:1] == ["nonfinite_values"]
    assert json.loads((tmp_path / "nan" / "findings.jsonl").read_text().splitlines()[0])["code"] == "nonfinite_values"
    # without the doctor the loop still refuses to go on silently
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    with pytest.raises(TrainingError, match="optim.lr"):
        gradwise.fit(model, (x, y), loss="mse", optimizer="sgd", lr=10.0, clip_grad=None, epochs=5, doctor=False,
                     out=tmp_path / "nan2", **QUIET)


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def broken_save(obj: object, f: str) -> None:
        Path(f).write_bytes(b"partial")  # a write cut short: the temp file holds garbage
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_unknown_fit_keyword_and_bad_optimizer(tmp_path: Path) -> None:
    x, y, _, _ = digits()
    with pytest.raises(ConfigError, match="Did you mean 'clip_grad'"):
        gradwise.fit(mlp(), (x, y), clip_grads=1.0)
    with pytest.raises(ConfigError, match="adam"):
        gradwise.fit(mlp(), (x, y), optimizer="adamm", epochs=1, out=tmp_path / "x", **QUIET)


def test_dataset_and_dataloader_inputs(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    ds = torch.utils.data.TensorDataset(x, y)
    run = gradwise.fit(mlp(), ds, val=torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv),
                                                                  batch_size=100),
                       loss="cross_entropy", epochs=3, out=tmp_path / "ds", **QUIET)
    assert run.history[-1]["val_accuracy"] > 0.8


def test_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(200, 5)), dtype=torch.float32)
    target = torch.tensor(rng.integers(0, 5, 200))
    assert task_metrics(logits, target, "classification")["accuracy"] == pytest.approx(
        accuracy_score(target.numpy(), logits.argmax(1).numpy()))
    pred = torch.tensor(rng.normal(size=(200, 1)), dtype=torch.float32)
    true = torch.tensor(rng.normal(size=200), dtype=torch.float32)
    m = task_metrics(pred, true, "regression")
    assert m["mae"] == pytest.approx(mean_absolute_error(true, pred[:, 0]), rel=1e-5)
    assert m["r2"] == pytest.approx(r2_score(true, pred[:, 0]), rel=1e-4)


@pytest.mark.skipif(os.cpu_count() is None, reason="needs a CPU count")
def test_bf16_autocast_on_cpu(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    run = gradwise.fit(mlp(), (x, y), val=(xv, yv), loss="cross_entropy", epochs=3, precision="bf16",
                       out=tmp_path / "bf", **QUIET)
    assert run.summary["precision"] == "bf16" and run.history[-1]["val_accuracy"] > 0.8


def test_background_checkpoint_writes_keep_the_state_of_the_moment_and_report_failures(tmp_path: Path) -> None:
    from gradwise.errors import CheckpointError
    from gradwise.train.checkpoint import CheckpointWriter

    writer = CheckpointWriter()
    weights = torch.ones(1000)
    writer.save(tmp_path / "a.pt", {"w": weights, "history": [{"epoch": 1}]})
    weights.add_(1.0)  # training goes on while the write is in flight: the checkpoint must hold the old values
    writer.flush()
    assert torch.equal(load_checkpoint(tmp_path / "a.pt")["w"], torch.ones(1000))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    writer.save(blocker / "b.pt", {"w": weights})  # the parent is a file: the write fails in the background
    with pytest.raises(CheckpointError, match="b.pt"):
        writer.flush()
    writer.close()


@pytest.mark.parametrize("fold", [3, 1024])
def test_epoch_train_loss_is_the_sample_weighted_mean_of_the_step_losses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fold: int) -> None:
    from gradwise.train import loop

    monkeypatch.setattr(loop, "_FOLD", fold)  # 3: sums are folded mid-epoch too; 1024: only at the epoch end
    x, y, xv, yv = digits()
    steps: list[list[tuple[float, int]]] = [[]]

    class Record(gradwise.Callback):
        def on_batch_end(self, trainer: loop.Trainer) -> None:
            steps[-1].append((float(trainer.last_loss), len(trainer.last_batch[1])))

        def on_epoch_end(self, trainer: loop.Trainer, logs: dict) -> None:
            steps.append([])

    # 1000 rows in batches of 96: ten full batches and a short one of 40 rows, which must weigh 40/1000
    run = gradwise.fit(mlp(), (x[:1000], y[:1000]), val=(xv, yv), loss="cross_entropy", epochs=2, batch_size=96,
                       out=tmp_path / "r", callbacks=[Record()], doctor=False, **QUIET)
    assert len(run.history) == 2
    for logs, epoch in zip(run.history, steps, strict=False):
        assert [n for _, n in epoch] == [96] * 10 + [40]
        expected = sum(v * n for v, n in epoch) / 1000
        assert logs["train_loss"] == pytest.approx(expected, rel=1e-12)


def test_early_stopping_patience_counts_epochs_without_improvement_across_a_resume(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    kw = {"loss": "cross_entropy", "batch_size": 64, "min_delta": 100.0, **QUIET}  # only epoch 1 improves
    run = gradwise.fit(mlp(), (x, y), val=(xv, yv), epochs=20, patience=0, out=tmp_path / "p0", **kw)
    assert run.summary["epochs_completed"] == 2  # patience 0: the first epoch without improvement stops
    # interrupted after epoch 2 (one epoch without improvement), resumed: stops where the whole run stops
    gradwise.fit(mlp(), (x, y), val=(xv, yv), epochs=2, patience=2, out=tmp_path / "cut", **kw)
    resumed = gradwise.fit(mlp(), (x, y), val=(xv, yv), epochs=20, patience=2, resume=tmp_path / "cut", **kw)
    assert resumed.summary["epochs_completed"] == 3 and "for 2 epochs" in resumed.summary["stop_reason"]
    # a run that early stopping ended is over: resuming it trains no further epoch
    again = gradwise.fit(mlp(), (x, y), val=(xv, yv), epochs=20, patience=2, resume=tmp_path / "cut", **kw)
    assert again.summary["epochs_completed"] == 3 and "early stopping" in again.summary["stop_reason"]
    assert again.summary["kept"]["epoch"] == 1 and again.summary["restored_epoch"] == 1


def test_summary_kept_is_the_row_of_the_weights_the_run_ends_with(tmp_path: Path) -> None:
    from gradwise.inference import evaluate_run, load_run
    from gradwise.train.metrics import evaluate

    out = tmp_path / "run"
    # min_delta beyond any gain: epoch 1 is the best, epochs 2-3 do not improve, best.pt (epoch 1) is restored
    run = gradwise.train(None, ["data.dataset=digits", "model.name=mlp", "train.epochs=20", "train.batch_size=64",
                                "train.early_stopping.patience=2", "train.early_stopping.min_delta=100",
                                "train.progress=none", f"out={out}"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["epoch"] == 3 and summary["final"] == run.history[-1]
    assert summary["kept"] == run.history[0] and summary["restored_epoch"] == 1
    assert summary["kept"]["val_loss"] != summary["final"]["val_loss"]
    # what `gradwise eval --split val` reports for the run is the kept row, not the last epoch's
    assert evaluate_run(out, "val")["loss"] == pytest.approx(summary["kept"]["val_loss"], abs=1e-6)
    # and so is the returned model
    loaded = load_run(out)
    val = loaded.bundle.val
    from gradwise.data.loaders import TensorLoader
    direct = evaluate(run.model, TensorLoader(*val, 256, shuffle=False), run.extras["trainer"].loss_fn,
                      torch.device("cpu"), "classification", lambda: torch.autocast("cpu", enabled=False))
    assert direct["loss"] == pytest.approx(summary["kept"]["val_loss"], abs=1e-6)
    assert direct["accuracy"] == pytest.approx(summary["kept"]["val_accuracy"], abs=1e-6)
    # without early stopping restoring anything, the kept row is the last one
    x, y, xv, yv = digits()
    plain = gradwise.fit(mlp(), (x, y), val=(xv, yv), loss="cross_entropy", epochs=2, early_stopping=False,
                         out=tmp_path / "plain", **QUIET)
    assert plain.summary["kept"] == plain.history[-1] and plain.summary["restored_epoch"] is None

    # stopped mid-epoch with nothing restored: the weights are no finished epoch's, and no row claims them
    class StopMidEpoch(gradwise.Callback):
        def on_batch_end(self, trainer: gradwise.train.loop.Trainer) -> None:
            if trainer.epoch == 1 and trainer.batch_in_epoch == 3:
                trainer.should_stop = True

    cut = gradwise.fit(mlp(), (x, y), val=(xv, yv), loss="cross_entropy", epochs=3, early_stopping=False,
                       callbacks=[StopMidEpoch()], out=tmp_path / "cut", **QUIET)
    assert cut.summary["final"]["epoch"] == 1 and cut.summary["kept"] == {}


def test_fit_returns_the_model_in_eval_mode(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    run = gradwise.fit(mlp(dropout=0.5), (x, y), val=(xv, yv), loss="cross_entropy", epochs=1,
                       out=tmp_path / "r", **QUIET)
    assert not any(m.training for m in run.model.modules())
    # dropout is off: two forward passes agree
    with torch.no_grad():
        assert torch.equal(run.model(xv), run.model(xv))


def test_trainer_epoch_is_0_based_and_epochs_done_matches_logs(tmp_path: Path) -> None:
    x, y, xv, yv = digits()
    seen: list[tuple[str, int, int, int | None]] = []

    class Watch(gradwise.Callback):
        def on_epoch_start(self, trainer: gradwise.train.loop.Trainer) -> None:
            seen.append(("start", trainer.epoch, trainer.epochs_done, None))

        def on_validation_end(self, trainer: gradwise.train.loop.Trainer, logs: dict) -> None:
            seen.append(("val", trainer.epoch, trainer.epochs_done, logs["epoch"]))

        def on_epoch_end(self, trainer: gradwise.train.loop.Trainer, logs: dict) -> None:
            seen.append(("end", trainer.epoch, trainer.epochs_done, logs["epoch"]))

    run = gradwise.fit(mlp(), (x, y), val=(xv, yv), loss="cross_entropy", epochs=2, out=tmp_path / "r",
                       callbacks=[Watch()], **QUIET)
    assert seen == [("start", 0, 0, None), ("val", 0, 1, 1), ("end", 0, 1, 1),
                    ("start", 1, 1, None), ("val", 1, 2, 2), ("end", 1, 2, 2)]
    trainer = run.extras["trainer"]
    assert trainer.epoch == trainer.epochs_done == 2 == len(run.history)


def test_epoch_seconds_include_the_evaluation(tmp_path: Path) -> None:
    import time

    class SlowEval(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training:
                time.sleep(0.1)  # evaluation takes >= 0.1 s per batch, training steps are fast
            return self.net(x)

    x, y, xv, yv = digits()
    gradwise.fit(SlowEval(), (x, y), val=(xv, yv), loss="cross_entropy", epochs=2, batch_size=128, doctor=False,
                 out=tmp_path / "r", **QUIET)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["seconds"] >= 0.1 for r in rows), rows

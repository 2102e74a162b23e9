"""Data-parallel training (train.strategy: ddp) on Gloo with 2 CPU processes, one thread each.

The processes are real: `gradwise train --nproc 2` (torch's launcher in the gradwise process), `torchrun` itself
for two simulated machines, and tests/ddp_fault.py under torchrun for a fault at an exact step on one process.
Each launch costs seconds (three Python processes import torch), so one 2-process run is shared by the checks
that only read it, and the longer scenarios are marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gradwise
from gradwise.cli import main as cli_main
from gradwise.data.loaders import DatasetLoader, TensorLoader, batch_part, block, global_batches
from gradwise.errors import CheckpointError, ConfigError
from gradwise.train.distributed import check_resume_world, resolve_strategy
from gradwise.train.launch import _status

HERE = Path(__file__).parent
TINY = ["data.dataset=iris", "model.name=mlp", "train.progress=none"]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # the processes import the gradwise these tests import (they run in a temporary working directory)
    src = str(Path(gradwise.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def gw(*args: str, cwd: Path, timeout: int = 240, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gradwise", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=_env(), **kw)  # type: ignore[call-overload]


def fault(what: str, rank: int, step: int, *args: str, cwd: Path) -> subprocess.Popen[str]:
    """tests/ddp_fault.py under torchrun (2 processes), in a process group of its own (for a SIGKILL of all)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(HERE / "ddp_fault.py"), what, str(rank), str(step), "--", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


# ------------------------------------------------------------------------------- sharding (no processes)


@pytest.mark.parametrize("n, batch, world", [(105, 16, 2), (105, 8, 3), (64, 16, 2), (33, 16, 2), (10, 4, 4)])
def test_global_batches_are_one_process_batches_split_disjointly(n: int, batch: int, world: int) -> None:
    """Global batch i of `world` processes holds the rows of batch i of one process with batch x world rows; the
    parts are disjoint and nearly equal, and a last batch too small to give every process a row is left out."""
    big = batch * world
    steps = global_batches(n, batch, world)
    for i in range(steps):
        parts = [batch_part(n, batch, world, r, i) for r in range(world)]
        assert parts[0][0] == i * big and parts[-1][1] == min((i + 1) * big, n)
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))  # contiguous, disjoint
        sizes = [end - start for start, end in parts]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    left = n - steps * big
    assert left < world or left == 0 or steps * big >= n
    for r in range(world):  # evaluation blocks: every row exactly once, in order
        assert block(n, world, r)[1] == (block(n, world, r + 1)[0] if r + 1 < world else n)


def test_sharded_loaders_give_each_process_its_part_of_the_same_order() -> None:
    x, y = torch.arange(105.0).reshape(-1, 1), torch.arange(105)
    one = TensorLoader(x, y, 32, shuffle=True, seed=3)
    one.set_epoch(2)
    parts = [TensorLoader(x, y, 16, shuffle=True, seed=3).shard(r, 2) for r in range(2)]
    for p in parts:
        p.set_epoch(2)
    assert len(parts[0]) == len(parts[1]) == len(one) == 4
    for whole, a, b in zip(one, *parts, strict=True):
        assert torch.equal(whole[1], torch.cat([a[1], b[1]]))  # the same rows, split between the processes
    # evaluation: contiguous blocks, every row once
    val = [TensorLoader(x, y, 7, shuffle=False).shard(r, 2) for r in range(2)]
    assert torch.equal(torch.cat([b[1] for v in val for b in v]), y)
    # a Dataset: the same parts through torch's DataLoader
    ds = torch.utils.data.TensorDataset(x, y)
    dparts = [DatasetLoader(ds, 16, shuffle=True, seed=3).shard(r, 2) for r in range(2)]
    for p in dparts:
        p.set_epoch(2)
    for whole, a, b in zip(one, *dparts, strict=True):
        assert torch.equal(whole[1], torch.cat([a[1], b[1]]))


def test_strategy_needs_torchrun_and_single_refuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_strategy("auto") == "single"
    with pytest.raises(ConfigError, match="--nproc 2"):
        resolve_strategy("ddp")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_strategy("auto") == "ddp"
    with pytest.raises(ConfigError, match="WORLD_SIZE=2"):
        resolve_strategy("single")


def test_strategy_ddp_without_torchrun_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["train", *TINY, "train.strategy=ddp", "--out", str(tmp_path / "r")])
    assert exit_.value.code == 2
    assert "train.strategy = 'ddp' needs processes started by torchrun" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_mid_epoch_checkpoint_resumes_on_its_own_process_count_only() -> None:
    state = {"epoch": 1, "batch_in_epoch": 3, "world_size": 2}
    check_resume_world(state, 2, "last.pt")
    check_resume_world({**state, "batch_in_epoch": 0}, 1, "last.pt")  # at an epoch boundary: any count
    with pytest.raises(ConfigError, match=r"middle of epoch 2 by 2 process\(es\).*--nproc 2"):
        check_resume_world(state, 1, "last.pt")
    from gradwise.train.checkpoint import rng_state

    check_resume_world({**state, "rng_ranks": [rng_state(), rng_state()]}, 2, "last.pt")
    for damaged in ([rng_state()], [rng_state(), {"torch": "x"}], "x"):
        with pytest.raises(CheckpointError, match=r"'rng_ranks'\) are damaged"):
            check_resume_world({**state, "rng_ranks": damaged}, 2, "last.pt")


def test_launcher_exit_status() -> None:
    assert _status({0: 143, 1: 143}) == 143  # both stopped by SIGTERM at the same step
    assert _status({1: 2, 0: 1}) == 2  # rank 1's bad input; rank 0 stopped because of it
    assert _status({0: 1}) == 1
    assert _status({0: 130, 1: 1}) == 130  # Ctrl-C during start-up: rank 0 stopped, rank 1 lost its peer


# ------------------------------------------------------------------------------- 2 processes


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 processes x batch 8 x 2 accumulated = a global batch of 32 (105 training rows: the last step has 9)."""
    cwd = tmp_path_factory.mktemp("ddp")
    r = gw("train", *TINY, "train.epochs=3", "train.batch_size=8", "train.accumulate=2", "--out", "run", "--nproc",
           "2", cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    return cwd / "run"


def test_ddp_matches_one_process_with_the_same_global_batch(ddp_run: Path, tmp_path: Path) -> None:
    """Final loss and accuracy (and the weights) of 2 processes equal one process's with batch 32 within 1e-5:
    the same rows in every step, only the order of float sums differs."""
    one = gradwise.train(None, [*TINY, "train.epochs=3", "train.batch_size=32", "train.threads=1",
                                f"out={tmp_path / 'one'}"])
    two = summary(ddp_run)
    assert two["status"] == "completed" and two["processes"] == 2 and one.summary["processes"] == 1
    for a, b in zip(rows(ddp_run), one.history, strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy", "val_f1", "step"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    for key, value in one.summary["test"].items():
        assert two["test"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    ours, theirs = weights(ddp_run), weights(tmp_path / "one")
    assert ours.keys() == theirs.keys()  # no "module." prefixes
    assert max((ours[k] - theirs[k]).abs().max().item() for k in ours) < 1e-5


def test_one_run_directory_written_by_rank_0(ddp_run: Path) -> None:
    names = {p.name for p in ddp_run.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "summary.json", "report.html", "checkpoints"} <= names
    assert len(rows(ddp_run)) == 3  # one row per epoch, not one per process
    state = torch.load(ddp_run / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert not state["rng_ranks"][0]["torch"].equal(state["rng_ranks"][1]["torch"])  # own dropout streams


def test_ddp_checkpoint_evaluates_and_resumes_in_one_process(ddp_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    cli_main_exit = None
    try:
        cli_main(["eval", str(ddp_run), "--split", "test"])
    except SystemExit as exc:
        cli_main_exit = exc.code
    assert cli_main_exit in (None, 0)
    out = capsys.readouterr().out
    assert f"{summary(ddp_run)['test']['test_accuracy']:.4f}" in out
    # resumed on one process at an epoch boundary: it trains on with one process's steps (batch 8 x 2 accumulated)
    run = tmp_path / "copy"
    shutil.copytree(ddp_run, run)
    resumed = gradwise.train(resume=run, overrides=["train.epochs=4", "train.threads=1"])
    assert resumed.status == "completed" and resumed.summary["processes"] == 1
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[3]["step"] - resumed.history[2]["step"] == 7  # ceil(105 / 8 / 2) steps of one process


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path: Path) -> None:
    """Killed (the whole group, SIGKILL) after step 7 of 3 epochs x 4 steps, with dropout and a step checkpoint
    every 2 steps (the last one at step 6, mid-epoch 2); `--resume DIR --nproc 2` ends with the weights of an
    uninterrupted run, bit for bit."""
    args = [*TINY, "model.dropout=0.3", "train.epochs=3", "train.batch_size=16", "train.checkpoint_every=2"]
    ref = gw("train", *args, "--out", "ref", "--nproc", "2", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    killed = fault("kill", 0, 7, *args, "--out", str(tmp_path / "run"), cwd=tmp_path)
    killed.communicate(timeout=240)
    assert killed.returncode != 0
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["batch_in_epoch"] == 2 and state["step"] == 6  # mid-epoch 2
    # a mid-epoch checkpoint of 2 processes is refused on 1, leaving the directory as it was
    one = gw("train", "--resume", "run", cwd=tmp_path)
    assert one.returncode == 2 and "in the middle of epoch 2 by 2 process(es)" in one.stderr
    resumed = gw("train", "--resume", "run", "--nproc", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "ref"), weights(tmp_path / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows(tmp_path / "run")] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in rows(tmp_path / "ref")]


@pytest.mark.slow
def test_sigterm_to_the_launcher_stops_both_processes_with_a_checkpoint(tmp_path: Path) -> None:
    """SIGTERM to `gradwise train --nproc 2` (as a scheduler sends it): torchrun passes it on, both processes stop
    at the same step, rank 0 saves one checkpoint and records `stopped`; exit status 143."""
    # early stopping off: on a quiet machine iris converges and stops on its own before the signal is sent
    proc = subprocess.Popen([sys.executable, "-m", "gradwise", "train", *TINY, "train.epochs=500",
                             "train.early_stopping.enabled=false", "train.batch_size=8", "--out", "run", "--nproc",
                             "2"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    s = summary(tmp_path / "run")
    assert s["status"] == "stopped" and s["stop_reason"].startswith("received SIGTERM")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == s["steps"] and state["world_size"] == 2


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path: Path) -> None:
    """SIGTERM to rank 1 only (paused after step 3): rank 0 stops at step 3 too, saves the checkpoint there."""
    proc = fault("pause", 1, 3, *TINY, "train.epochs=20", "train.batch_size=16", "--out", str(tmp_path / "run"),
                 cwd=tmp_path)
    marker = tmp_path / "run" / ".paused-rank-1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not marker.exists():
        time.sleep(0.05)
    os.kill(int(marker.read_text()), signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    s = summary(tmp_path / "run")
    assert s["status"] == "stopped" and s["steps"] == 3, out
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["step"] == 3


@pytest.mark.slow
def test_doctor_flags_a_nan_on_one_process_only(tmp_path: Path) -> None:
    """Rank 1's batch of step 4 is NaN, rank 0's is fine: the global loss is NaN on both, the doctor's NaN guard
    stops both at that step and rank 0 records the finding; the last checkpoint is the good one before it."""
    proc = fault("nan", 1, 3, *TINY, "train.epochs=5", "train.batch_size=16", "--out", str(tmp_path / "run"),
                 cwd=tmp_path)
    out, _ = proc.communicate(timeout=240)
    s = summary(tmp_path / "run")
    assert s["status"] == "failed" and s["steps"] == 4, out
    findings = [json.loads(line) for line in (tmp_path / "run" / "findings.jsonl").read_text().splitlines()]
    assert any(f["code"] == "nonfinite_values" and f["step"] == 4 for f in findings)


@pytest.mark.slow
def test_should_stop_on_one_process_stops_both(tmp_path: Path) -> None:
    """A callback on rank 1 alone stops the run after step 5: rank 0 stops at that step too, with rank 1's reason."""
    proc = fault("stop", 1, 5, *TINY, "train.epochs=20", "train.batch_size=16", "--out", str(tmp_path / "run"),
                 cwd=tmp_path)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    s = summary(tmp_path / "run")
    assert s["status"] == "completed" and s["steps"] == 5 and s["stop_reason"] == "rank 1 asked to stop"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_localhost_write_one_run_directory(tmp_path: Path) -> None:
    """Two `torchrun --nnodes 2` commands (one process each) rendezvous on localhost and train one run."""
    endpoint = f"127.0.0.1:{_free_port()}"
    procs = []
    for node in range(2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--node-rank", str(node), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "gw",
               "-m", "gradwise", "train", *TINY, "train.epochs=2", "train.batch_size=16", "--out", "run"]
        # each "machine" has its own working directory; only rank 0's holds the run
        (tmp_path / f"node{node}").mkdir()
        procs.append(subprocess.Popen(cmd, cwd=tmp_path / f"node{node}", env=_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = [d for d in (tmp_path / "node0", tmp_path / "node1") if (d / "run" / "summary.json").exists()]
    assert len(runs) == 1
    s = summary(runs[0] / "run")
    assert s["status"] == "completed" and s["processes"] == 2 and len(rows(runs[0] / "run")) == 2


USER_SCRIPT = '''
import sys
import torch.distributed as dist
from sklearn.datasets import load_iris
from torch import nn

import gradwise

dist.init_process_group("gloo")  # the user's own set-up: gradwise joins this group and leaves it open
X, y = load_iris(return_X_y=True)
model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
run = gradwise.fit(model, (X[:120], y[:120]), val=(X[120:], y[120:]), loss="cross_entropy", epochs=3,
                   batch_size=16, out=sys.argv[1], progress="none", threads=1)
assert dist.is_initialized()
print("rank", dist.get_rank(), "status", run.status, "processes", run.summary["processes"],
      "val_loss", run.history[-1]["val_loss"])
dist.destroy_process_group()
'''


@pytest.mark.slow
def test_fit_inside_a_users_torchrun_script(tmp_path: Path) -> None:
    """`gradwise.fit` on each process of the user's own torchrun script: one data-parallel run, one directory,
    the same validation loss on both processes."""
    script = tmp_path / "train.py"
    script.write_text(USER_SCRIPT)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(), timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("rank"))
    assert [line.split()[:6] for line in lines] == [["rank", "0", "status", "completed", "processes", "2"],
                                                      ["rank", "1", "status", "completed", "processes", "2"]]
    assert lines[0].split()[-1] == lines[1].split()[-1]  # the same global metrics on both processes
    assert summary(tmp_path / "run")["processes"] == 2 and len(rows(tmp_path / "run")) == 3


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL)")
def test_nccl_on_two_gpus_matches_one_gpu(tmp_path: Path) -> None:
    """The NCCL path: one process per GPU (LOCAL_RANK), fp32 so that the comparison is tight; TF32 matmuls and
    atomics make GPU sums vary, hence 1e-3."""
    gpu = [*TINY, "train.device=cuda", "train.precision=fp32", "train.epochs=3"]
    two = gw("train", *gpu, "train.batch_size=16", "--out", "two", "--nproc", "2", cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    one = gw("train", *gpu, "train.batch_size=32", "--out", "one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert summary(tmp_path / "two")["processes"] == 2 and summary(tmp_path / "two")["device"] == "cuda:0"
    for a, b in zip(rows(tmp_path / "two"), rows(tmp_path / "one"), strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)


@pytest.mark.slow
def test_one_process_run_resumes_on_two(tmp_path: Path) -> None:
    """A one-process checkpoint (no `module.` prefixes, one random state) goes on data-parallel at an epoch end."""
    one = gradwise.train(None, [*TINY, "train.epochs=2", "train.batch_size=16", "train.threads=1",
                                f"out={tmp_path / 'run'}"])
    assert one.status == "completed" and one.summary["processes"] == 1
    done = gw("train", "--resume", "run", "train.epochs=3", "--nproc", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    s = summary(tmp_path / "run")
    assert s["status"] == "completed" and s["processes"] == 2 and s["resumed"]
    steps = [r["step"] for r in rows(tmp_path / "run")]
    assert steps == [7, 14, 18]  # 7 steps of 16 rows per epoch, then 4 of 2 x 16


DOCTOR_SCRIPT = '''
import json
import sys

from sklearn.datasets import load_iris
import torch
from torch import nn

import gradwise
from gradwise.doctor.doctor import Doctor
from gradwise.doctor.preflight import Preflight

calls = []
real_run = Preflight.run


def run(self):
    calls.append(1)
    real_run(self)


seen = {}
real_end = Doctor.on_fit_end


def on_fit_end(self, trainer, summary):
    real_end(self, trainer, summary)
    seen.update(pre=[(f.code, f.severity, f.message) for f in self.findings if f.epoch == 0],
                facts=self.facts.to_dict(), acts=self.activations, repairs=self.repairs,
                eval_loss=[r.get("train_loss_eval_mode") for r in trainer.history],
                rank=trainer.dist.rank if trainer.dist is not None else None)


Preflight.run, Doctor.on_fit_end = run, on_fit_end
X, y = load_iris(return_X_y=True)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 3))
# 20 of the 50 validation rows are training rows (a leak the pre-flight reports), unscaled inputs
gradwise.fit(model, (X[:120], y[:120]), val=(X[100:], y[100:]), loss="cross_entropy", epochs=3,
             batch_size=int(sys.argv[2]), out=sys.argv[1], progress="none", threads=1, seed=0)
print("DOCTOR", json.dumps({**seen, "preflight_runs": len(calls)}))
'''


def _doctor_seen(out: str) -> list[dict]:
    return sorted((json.loads(line[len("DOCTOR "):]) for line in out.splitlines() if line.startswith("DOCTOR ")),
                  key=lambda d: d["rank"] if d["rank"] is not None else -1)


@pytest.mark.slow
def test_ddp_preflight_runs_once_and_equals_one_process(tmp_path: Path) -> None:
    """Under DDP the pre-flight runs on rank 0 alone; every process gets its findings and facts, which equal a
    one-process run's on the same data; the epoch-end activation statistics (each process measures its share of
    the probe rows) and eval-mode loss equal the one-process ones over the whole probe batch."""
    script = tmp_path / "train.py"
    script.write_text(DOCTOR_SCRIPT)
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "32"], capture_output=True, text=True,
                         cwd=tmp_path, env=_env(), timeout=240)
    assert one.returncode == 0, one.stdout + one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script), str(tmp_path / "two"), "16"], capture_output=True, text=True, cwd=tmp_path,
                         env=_env(), timeout=240)
    assert two.returncode == 0, two.stdout + two.stderr
    [single] = _doctor_seen(one.stdout)
    ranks = _doctor_seen(two.stdout)
    assert [d["rank"] for d in ranks] == [0, 1]
    assert single["preflight_runs"] == 1 and [d["preflight_runs"] for d in ranks] == [1, 0]
    assert any(code == "data_leakage" for code, _, _ in single["pre"]), single["pre"]
    for d in ranks:
        assert d["pre"] == single["pre"]
        assert d["facts"] == single["facts"]
        assert len(d["acts"]) == len(single["acts"]) == 3
        for mine, theirs in zip(d["acts"], single["acts"], strict=True):
            assert mine.keys() == theirs.keys()
            for layer in mine:
                for key, value in theirs[layer].items():
                    want = pytest.approx(value, rel=1e-4, abs=1e-5) if isinstance(value, float) else value
                    assert mine[layer][key] == want, (layer, key)
        assert d["eval_loss"] == pytest.approx(single["eval_loss"], rel=1e-4)
    # one run directory: the pre-flight findings are recorded once
    found = [json.loads(line) for line in (tmp_path / "two" / "findings.jsonl").read_text().splitlines()]
    pre = [(f["code"], f["severity"], f["message"]) for f in found if f["epoch"] == 0]
    assert sorted(pre) == sorted(map(tuple, single["pre"]))


@pytest.mark.slow
def test_doctor_repair_on_two_processes(tmp_path: Path) -> None:
    """A diverging run with doctor.repair=true on 2 processes: rank 0 decides each repair, both processes carry it
    out (rank 1, which has no run directory, keeps no bookkeeping and writes nothing), and the run completes."""
    r = gw("train", *TINY, "optim.name=sgd", "optim.lr=30", "train.clip_grad=null", "doctor.repair=true",
           "train.epochs=4", "--out", "run", "--nproc", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    s = summary(tmp_path / "run")
    assert s["status"] == "completed" and s["doctor"]["repairs"] >= 1
    assert len(s["actions"]) == s["doctor"]["repairs"]  # each repair once, not once per process
    events = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    assert len([e for e in events if "event" in e]) == s["doctor"]["repairs"]

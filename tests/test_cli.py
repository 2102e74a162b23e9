"""The command line end to end on real data: train, eval, predict, lr-find, and the MNIST-1D examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def gw(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradwise.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_default_train_then_eval_and_predict(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = gw("train", "train.epochs=2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "test_accuracy" in proc.stdout and str(out) in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test"]["test_accuracy"] > 0.5

    ev = gw("eval", str(out))
    assert ev.returncode == 0, ev.stderr
    acc = float(next(line.split()[-1] for line in ev.stdout.splitlines() if line.startswith("test_accuracy")))
    assert acc == pytest.approx(summary["test"]["test_accuracy"], abs=1e-6)

    # predict on the test rows of MNIST-1D: the same accuracy as evaluation
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    np.save(tmp_path / "x.npy", d["x_test"])
    pr = gw("predict", str(out), str(tmp_path / "x.npy"), "-o", str(tmp_path / "pred.csv"))
    assert pr.returncode == 0, pr.stderr
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == len(d["y_test"])
    assert (pred["prediction"].to_numpy() == d["y_test"]).mean() == pytest.approx(acc, abs=1e-6)


def test_resume_of_a_completed_run_with_more_epochs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert gw("train", "train.epochs=1", "--quiet", "--out", str(out)).returncode == 0
    proc = gw("train", "--resume", str(out), "train.epochs=2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_lr_find_command(tmp_path: Path) -> None:
    proc = gw("lr-find", "data.dataset=digits", "model.name=mlp", "--plot", str(tmp_path / "lr.png"), "--steps", "40")
    assert proc.returncode == 0, proc.stderr
    lr = float(proc.stdout.split("suggested optim.lr=")[1].split()[0])
    assert 1e-6 < lr < 1.0
    assert (tmp_path / "lr.png").stat().st_size > 1000


def test_eval_errors_are_clear(tmp_path: Path) -> None:
    proc = gw("eval", str(tmp_path))
    assert proc.returncode == 2 and "not a gradwise run directory" in proc.stderr
    proc = gw("train", "--resume", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such run directory" in proc.stderr


@pytest.mark.parametrize(("name", "low", "high"), [("logreg", 0.25, 0.42), ("mlp", 0.66, 1.0), ("cnn", 0.94, 1.0)])
def test_mnist1d_examples_reproduce_the_paper(tmp_path: Path, name: str, low: float, high: float) -> None:
    out = tmp_path / name
    proc = gw("train", str(ROOT / "examples" / f"mnist1d_{name}.yaml"), "--quiet", "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    acc = json.loads((out / "summary.json").read_text())["test"]["test_accuracy"]
    assert low <= acc <= high, acc


# ------------------------------------------------------------------------ command-line mistakes and exit status


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `gradwise ARGS` in this process: (exit status, stdout, stderr)."""
    from gradwise.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.mark.parametrize(("args", "says"), [
    (["train", "--epochs", "5"], "train.epochs="),
    (["eval"], "Missing argument 'RUN_DIR'"),
    (["foo"], "No such command 'foo'; commands: train, eval, predict"),
    (["train", "--resume"], "'--resume' requires an argument; see `gradwise train --help`"),
    (["train", "--quiet", "true"], "Flags such as --quiet take no value"),
    (["eval", "--split", "everything", "somewhere"], "'everything' is not one of"),
    (["tune"], "gradwise tune needs a CONFIG"),
    (["train", "optim.lrr=0.1"], "optim.lr"),
    (["train", "--resume", "runs/a", "--overwrite"], "--overwrite replaces a run and --resume continues one"),
    (["train", "--resume", "runs/a", "--out", "runs/b"], "--resume runs/a writes to its own directory"),
])
def test_command_line_mistakes_exit_2_with_one_clear_line(capsys: pytest.CaptureFixture[str], args: list[str],
                                                          says: str) -> None:
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and says in err, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"gradwise {version('gradwise')}"


def test_the_installed_entry_point_answers() -> None:
    proc = subprocess.run([sys.executable, "-m", "gradwise.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("gradwise "), proc.stderr


def test_help_reads_like_a_cli(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "train", "--help")
    assert code == 0
    assert "-q, --quiet" in out and "<bool>" not in out and "{" not in out
    # where to go next: every key, the built-in datasets and models, examples
    assert "gradwise config" in out and "digits" in out and "transformer" in out and "Examples:" in out
    code, out, _ = cli(capsys, "eval", "--help")
    assert code == 0 and "Usage: gradwise eval [OPTIONS] RUN_DIR" in out
    code, out, _ = cli(capsys)  # a bare `gradwise` is help, not an error
    assert code == 0 and "Commands:" in out


def test_text_in_brackets_is_printed_literally(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "train", "tune.space.model.activation=5")
    assert code == 2 and "[relu, gelu, tanh]" in err, err


def test_a_bug_is_one_line_and_a_saved_traceback(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import gradwise.config

    def broken(*args: object, **kwargs: object) -> None:
        raise AttributeError("'DataConfig' object has no attribute 'path'")

    monkeypatch.setattr(gradwise.config, "load_config", broken)
    monkeypatch.delenv("GRADWISE_TRACEBACK", raising=False)
    code, _, err = cli(capsys, "config")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    saved = Path(err.split("saved in ")[1].split(" (")[0])
    assert "AttributeError" in saved.read_text()
    saved.unlink()


def test_start_up_line_names_what_is_trained(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "train", "data.dataset=iris", "model.name=logreg", "train.epochs=1",
                       "train.progress=none", "--out", str(tmp_path / "run"))
    assert code == 0
    assert "training logreg on iris" in out and "cnn1d" not in out
    code, out, _ = cli(capsys, "train", "data.dataset=iris", "train.epochs=1", "--quiet", "--out", str(tmp_path / "q"))
    assert code == 0 and "No config given" not in out  # --quiet: only the final summary


def test_a_failed_run_and_doctor_errors_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "nan"
    code, stdout, _ = cli(capsys, "train", "data.dataset=digits", "model.name=mlp", "optim.name=sgd",
                          "optim.lr=1000", "train.clip_grad=null", "train.epochs=3", "--quiet", "--out", str(out))
    assert code == 1 and "status failed" in stdout
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"
    code, stdout, _ = cli(capsys, "doctor", str(out))
    assert code == 1 and "ERROR" in stdout


def test_a_run_stopped_by_sigterm_exits_143(tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "gradwise.cli", "train", "train.epochs=200", "--quiet", "--out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "status stopped" in stdout


def test_a_cross_validation_stopped_by_sigterm_exits_143(tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "cv"
    proc = subprocess.Popen([sys.executable, "-m", "gradwise.cli", "train", "data.dataset=digits", "model.name=mlp",
                             "data.folds=2", "train.epochs=500", "train.early_stopping.enabled=false", "--quiet",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "fold-0" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr


def test_unwritable_outputs_and_damaged_checkpoints_are_one_line(capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli(capsys, "train", "data.dataset=iris", "model.name=logreg", "train.epochs=1", "--quiet", "--out",
               str(run))[0] == 0
    from sklearn.datasets import load_iris

    np.save(tmp_path / "rows.npy", load_iris().data[:5].astype(np.float32))
    code, _, err = cli(capsys, "predict", str(run), str(tmp_path / "rows.npy"), "-o", str(tmp_path))  # a folder
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot write the predictions" in err, err
    for ckpt in (run / "checkpoints").glob("*.pt"):
        ckpt.write_bytes(b"garbage")
    code, _, err = cli(capsys, "eval", str(run))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "damaged" in err and "weights_only" not in err, err
    code, _, err = cli(capsys, "train", "train.threads=4000000000")
    assert code == 2 and "train.threads" in err, err

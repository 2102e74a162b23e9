"""`gradwise tune`'s trial mode (gradwise.train.trial): what a trial run leaves out (per-epoch checkpoints,
report.html, the test pass), what it keeps (config, metrics, findings: the study's report and resume read them),
and the doctor's pre-flight data checks run once per study and worker instead of once per trial.

Tiny trials (iris / a small CSV, an MLP, 2-3 epochs), in this process through `gradwise.tune.command.tune`, plus
one subprocess study stopped with SIGINT (the stop's checkpoint is what an interrupted trial resumes from).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from rich.console import Console
from sklearn.datasets import load_iris

from gradwise.cli import main as cli_main
from gradwise.doctor import checks
from gradwise.tune.command import tune


def write_config(path: Path, data: dict, trials: int = 3, **tune_keys: object) -> Path:
    cfg = {"name": "trial-mode", "data": data, "model": {"name": "mlp", "widths": [16]},
           "train": {"epochs": 3, "progress": "none"},
           "tune": {"metric": "val_accuracy", "trials": trials, "sampler": "random", "pruner": "none",
                    "space": {"optim.lr": {"low": 1.0e-3, "high": 0.1, "log": True},
                              "model.activation": ["relu", "tanh"]}, **tune_keys}}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_tune(config: Path, out: Path, *overrides: str, trials: int | None = None) -> str:
    buf = io.StringIO()
    code = tune(config, trials, None, None, None, False, out, list(overrides),
                console=Console(file=buf, width=160, highlight=False))
    assert code == 0, buf.getvalue()
    return buf.getvalue()


def load(out: Path) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name="trial-mode", storage=storage).get_trials(deepcopy=False)


def test_trials_keep_their_record_but_no_epoch_checkpoints_report_or_test_pass(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path / "tune.yaml", {"dataset": "iris"})
    out = tmp_path / "study"
    run_tune(config, out)
    dirs = sorted(out.glob("trial-*"))
    assert [d.name for d in dirs] == ["trial-0000", "trial-0001", "trial-0002"]
    for d in dirs:
        # what the study's report, --show and resume read is all there
        for name in ("config.yaml", "metrics.jsonl", "findings.jsonl", "summary.json", "data_report.json"):
            assert (d / name).exists(), f"{d.name}/{name}"
        assert len((d / "metrics.jsonl").read_text().splitlines()) == 3
        # short trials write no checkpoint (a killed one is re-run from its start), no page, no test pass
        assert not list((d / "checkpoints").glob("*.pt")) if (d / "checkpoints").exists() else True
        assert not (d / "report.html").exists()
        summary = json.loads((d / "summary.json").read_text())
        assert summary["status"] == "completed" and not summary.get("test")
    assert all("test_accuracy" not in t.user_attrs for t in load(out))

    # the study's page links each trial's run directory; `gradwise report DIR` renders a trial's page on demand
    page = (out / "report.html").read_text()
    assert "href='trial-0000'" in page and "gradwise report" in page
    with pytest.raises(SystemExit) as done:
        cli_main(["report", str(dirs[0])])
    assert done.value.code in (0, None)
    trial_page = (dirs[0] / "report.html").read_text()
    assert "val_accuracy" in trial_page
    # no weights to evaluate: one line that says why and what to do
    capsys.readouterr()
    with pytest.raises(SystemExit) as failed:
        cli_main(["eval", str(dirs[1])])
    err = capsys.readouterr().err
    assert failed.value.code == 2 and "tuning trial without a checkpoint" in err and "Traceback" not in err

    # the study resumes: one more trial, and its page now links the trial page that exists
    run_tune(config, out, trials=4)
    assert len([t for t in load(out) if t.state.is_finished()]) == 4
    assert (out / "trial-0003" / "summary.json").exists()
    assert "href='trial-0000/report.html'" in (out / "report.html").read_text()


def test_tune_test_true_evaluates_the_test_split_of_each_trial(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tune.yaml", {"dataset": "iris"}, trials=1, test=True)
    out = tmp_path / "study"
    run_tune(config, out)
    (trial,) = load(out)
    assert 0.0 <= trial.user_attrs["test_accuracy"] <= 1.0
    summary = json.loads((out / "trial-0000" / "summary.json").read_text())
    assert summary["test"]["test_accuracy"] == pytest.approx(trial.user_attrs["test_accuracy"])
    assert (out / "trial-0000" / "checkpoints" / "best.pt").exists()  # the best epoch, restored for the test


def leaky_csv(path: Path) -> Path:
    """Iris with every row twice: a random split puts copies of training rows into validation and test."""
    data = load_iris(as_frame=True).frame
    frame = pd.concat([data, data], ignore_index=True).sample(frac=1.0, random_state=0)
    frame.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    frame.to_csv(path, index=False)
    return path


def test_preflight_data_checks_run_once_per_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"leakage": 0, "initialization": 0}
    for name in calls:
        cls = checks.REGISTRY[name]
        original = cls.check

        def counted(self: object, *args: object, _name: str = name, _original: object = original) -> object:
            calls[_name] += 1
            return _original(self, *args)  # type: ignore[operator]

        monkeypatch.setattr(cls, "check", counted)
    # the duplicated rows also make data.drop_duplicates drop them: keep them, so the splits share rows
    config = write_config(tmp_path / "tune.yaml", {"dataset": str(leaky_csv(tmp_path / "leaky.csv")),
                                                   "target": "target", "drop_duplicates": False})
    out = tmp_path / "study"
    run_tune(config, out)
    assert calls == {"leakage": 1, "initialization": 3}  # the data checked once; each trial's new model checked
    found = []
    for d in sorted(out.glob("trial-*")):
        rows = [json.loads(line) for line in (d / "findings.jsonl").read_text().splitlines()]
        found.append([(r["code"], r["message"]) for r in rows if r["code"] == "data_leakage"])
    # every trial still reports what the data checks found, word for word
    assert found[0] and found[0] == found[1] == found[2]


@pytest.mark.slow
def test_an_interrupted_trial_resumes_from_the_checkpoint_its_stop_wrote(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tune.yaml", {"dataset": "iris"}, trials=2)
    out = tmp_path / "study"
    args = [sys.executable, "-m", "gradwise.tune", str(config), "--out", str(out), "train.epochs=150",
            "train.early_stopping.enabled=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    metrics = out / "trial-0000" / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, (tmp_path / "first.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    # no checkpoint per epoch, but the stop saved one where it stopped: the retry continues from it
    assert (out / "trial-0000" / "checkpoints" / "last.pt").exists()
    done_before = len(metrics.read_text().splitlines())
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    (retry,) = [t for t in load(out) if t.user_attrs.get("retry_of") == 0]
    assert retry.user_attrs["resumed_from"] == str(out / "trial-0000")
    rows = [json.loads(line) for line in (out / f"trial-{retry.number:04d}" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in rows] == list(range(1, 151)) and done_before >= 3
    assert np.isfinite(retry.value)

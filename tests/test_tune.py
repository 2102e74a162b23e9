"""`gradwise tune`: every sampler, pruning, best.yaml, parallel workers, resume after a kill, PostgreSQL, errors.

Trials are tiny (sklearn digits, an MLP with one hidden layer of 32, 2 epochs: well under a second each), so the
file runs in about a minute on 2 cores. Subprocess tests use `python -m gradwise.tune`, the same arguments as
`gradwise tune`.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState
from rich.console import Console

import gradwise
from gradwise.errors import ConfigError
from gradwise.tune.command import tune

BASE = {
    "name": "digits-tune",
    "data": {"dataset": "digits"},
    "model": {"name": "mlp", "widths": [32]},
    "train": {"epochs": 2},
    "tune": {
        "metric": "val_accuracy",
        "trials": 6,
        "space": {
            "optim.lr": {"low": 1.0e-3, "high": 0.3, "log": True},
            "model.activation": ["relu", "gelu", "tanh"],
        },
    },
}


def write_config(path: Path, **tune: object) -> Path:
    cfg = json.loads(json.dumps(BASE))
    cfg["tune"].update(tune)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_tune(config: Path, out: Path, *overrides: str, trials: int | None = None, workers: int | None = None,
             storage: str | None = None, study: str | None = None, show: bool = False) -> tuple[int, str]:
    buf = io.StringIO()
    code = tune(config, trials, storage, study, workers, show, out, list(overrides),
                console=Console(file=buf, width=160, highlight=False))
    return code, buf.getvalue()


def gw_tune(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradwise.tune", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def popen_tune(*args: str, log: Path, threads: int | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    if threads is not None:  # several "machines" on these 2 cores: oversubscribed torch threads crawl
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, "-m", "gradwise.tune", *args], stdout=fh, stderr=subprocess.STDOUT,
                                env=env)


def load(out: Path, name: str = "digits-tune", storage: str | None = None) -> list[optuna.trial.FrozenTrial]:
    if storage is None:
        st = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    else:  # name the driver: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3
        st = optuna.storages.RDBStorage(storage.replace("postgresql://", "postgresql+psycopg2://", 1))
    return optuna.load_study(study_name=name, storage=st).get_trials(deepcopy=False)


def retried(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    return {int(n) for t in trials for n in t.system_attrs.get("retry_history", [])}


def trial_dirs(*outs: Path) -> list[Path]:
    return sorted(p for out in outs for p in out.glob("trial-*") if p.is_dir())


# ------------------------------------------------------------------------------------------ every sampler


SAMPLERS = [
    ("grid", {"space": {"optim.lr": [0.01, 0.1], "model.activation": ["relu", "tanh"]}}),
    ("random", {}),
    ("tpe", {}),
    ("gp", {}),
    ("cmaes", {}),
    ("nsga2", {"metrics": ["val_accuracy", "parameters"], "space": {
        "optim.lr": {"low": 1.0e-3, "high": 0.3, "log": True}, "model.widths": [[16], [32], [32, 32]]}}),
]


@pytest.mark.parametrize(("sampler", "extra"), SAMPLERS, ids=[s for s, _ in SAMPLERS])
def test_each_sampler_completes_and_writes_results(tmp_path: Path, sampler: str, extra: dict) -> None:
    if sampler == "cmaes":
        pytest.importorskip("cmaes", reason="tune.sampler=cmaes needs the cmaes package")
    config = write_config(tmp_path / "tune.yaml", sampler=sampler, trials=5, **extra)
    out = tmp_path / "study"
    code, text = run_tune(config, out)
    assert code == 0, text

    trials = load(out)
    expected = 4 if sampler == "grid" else 5  # the grid has 2 x 2 points: the budget stops there
    assert len(trials) == expected and sorted(t.number for t in trials) == list(range(expected))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len(trial_dirs(out)) == expected

    frame = pd.read_csv(out / "trials.csv")
    assert len(frame) == expected and "params_optim.lr" in frame.columns and "user_attrs_run_dir" in frame.columns
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["tune"] is None and best["out"] is None and best["data"]["dataset"] == "digits"
    assert (out / "plots" / "history.png").stat().st_size > 1000
    if sampler == "grid":  # every grid point exactly once
        points = {(t.params["optim.lr"], t.params["model.activation"]) for t in trials}
        assert points == {(lr, a) for lr in (0.01, 0.1) for a in ("relu", "tanh")}
    if sampler == "nsga2":
        pareto = pd.read_csv(out / "pareto.csv")
        assert {"val_accuracy", "parameters"} <= set(pareto.columns) and len(pareto) >= 1
        assert all(isinstance(t.values, list) and len(t.values) == 2 for t in trials if t.values)
        assert isinstance(best["model"]["widths"], list)  # a list-valued choice comes back as a list


def test_best_yaml_trains_and_matches_its_trial(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tune.yaml", sampler="random", pruner="none", trials=3,
                          space={"optim.lr": {"low": 0.01, "high": 0.2, "log": True},
                                 "model.widths": [[16], [32, 32]]})
    out = tmp_path / "study"
    assert run_tune(config, out)[0] == 0
    best = max((t for t in load(out) if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    run = gradwise.train(out / "best.yaml", ["train.progress=none", f"out={tmp_path / 'again'}"])
    assert run.status == "completed"
    assert run.config.optim.lr == pytest.approx(best.params["optim.lr"])
    assert run.config.model.widths == json.loads(best.params["model.widths"])
    # same config, same seed: the same best validation accuracy as the trial
    assert max(r["val_accuracy"] for r in run.history) == pytest.approx(best.value, abs=1e-6)


# ---------------------------------------------------------------------------------------------- pruning


def test_median_pruner_and_hopeless_runs_stop_early(tmp_path: Path) -> None:
    epochs = 4
    # sgd without clipping: lr 300 overflows (the doctor's NaN guard -> pruned at once), 1e-5 barely learns
    # (the median pruner stops it against the good ones)
    config = write_config(tmp_path / "tune.yaml", sampler="grid", pruner="median", trials=6,
                          space={"optim.lr": [0.1, 0.05, 1.0e-5, 300.0, 2.0e-5, 3.0e-5]})
    out = tmp_path / "study"
    code, text = run_tune(config, out, f"train.epochs={epochs}", "optim.name=sgd", "train.clip_grad=null",
                          "schedule.name=constant")
    assert code == 0, text
    trials = {t.params["optim.lr"]: t for t in load(out)}
    pruned = [t for t in trials.values() if t.state == TrialState.PRUNED]
    assert len(pruned) >= 2, text
    assert trials[300.0].state == TrialState.PRUNED
    assert "nonfinite" in trials[300.0].user_attrs["pruned"] or "nan" in trials[300.0].user_attrs["pruned"].lower()
    by_pruner = [t for t in pruned if "median pruner" in t.user_attrs.get("pruned", "")]
    assert by_pruner, text
    for t in pruned:  # the run directory shows it: fewer epochs than configured
        metrics = Path(t.user_attrs["run_dir"]) / "metrics.jsonl"  # absent: stopped inside its first epoch
        rows = metrics.read_text().splitlines() if metrics.exists() else []
        assert len(rows) < epochs and len(rows) == t.user_attrs["epochs"]
    assert any(t.state == TrialState.COMPLETE for lr, t in trials.items() if lr in (0.1, 0.05))
    assert "pruned" in text


def _setup(tmp_path: Path, *overrides: str, **tune_keys: object):  # noqa: ANN202 (a TuneSetup)
    from gradwise.config import load_config
    from gradwise.tune.setup import resolve_setup

    config = write_config(tmp_path / "tune.yaml", **tune_keys)
    return resolve_setup(load_config(config, list(overrides)), config, list(overrides), out=tmp_path / "study")


FIVE_KEYS = {"optim.lr": {"low": 1.0e-3, "high": 0.3, "log": True}, "model.activation": ["relu", "tanh"],
             "model.dropout": {"low": 0.0, "high": 0.5}, "optim.weight_decay": {"low": 1.0e-5, "high": 0.1},
             "model.widths": [[16], [32, 32]]}


@pytest.mark.parametrize(("sampler", "tune_keys", "expected"), [
    ("tpe", {"trials": 8}, 4),  # 2 keys: at least 5 random, but at most half of 8 (was 2)
    ("gp", {"trials": 8}, 4),
    ("tpe", {"trials": 20}, 5),
    ("tpe", {"trials": 30, "space": FIVE_KEYS}, 6),  # 2 x 5 keys, at most a fifth of 30
    ("gp", {"trials": 100, "space": FIVE_KEYS}, 10),  # 2 x 5 keys
    ("tpe", {"trials": None, "timeout": 60.0, "space": FIVE_KEYS}, 10),  # no trial count: 2 per key
    ("tpe", {"trials": 2}, 1),
    ("cmaes", {"trials": 30}, 1),  # CMA-ES learns nothing from random trials
    ("tpe", {"trials": 8, "startup_trials": 6}, 6),  # tune.startup_trials decides
    ("cmaes", {"trials": 8, "startup_trials": 3}, 3),
])
def test_random_startup_trials_before_the_model(tmp_path: Path, sampler: str, tune_keys: dict,
                                                expected: int) -> None:
    from gradwise.tune.setup import make_sampler

    if sampler == "cmaes":
        pytest.importorskip("cmaes", reason="tune.sampler=cmaes needs the cmaes package")
    setup = _setup(tmp_path, sampler=sampler, **tune_keys)
    assert make_sampler(setup, 0)._n_startup_trials == expected  # what optuna is given


@pytest.mark.parametrize(("trials", "expected"), [(4, 3), (8, 3), (20, 4), (30, 5), (None, 5)])
def test_median_pruner_waits_for_three_finished_trials(tmp_path: Path, trials: int | None, expected: int) -> None:
    from gradwise.tune.setup import make_pruner

    setup = _setup(tmp_path, trials=trials, **({"timeout": 60.0} if trials is None else {}))
    pruner = make_pruner(setup)
    assert isinstance(pruner, optuna.pruners.MedianPruner) and pruner._n_startup_trials == expected


def test_header_shows_the_random_startup(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tune.yaml", sampler="tpe", trials=1)
    code, text = run_tune(config, tmp_path / "study", "tune.startup_trials=1")
    assert code == 0 and "tpe (first 1 trial random)" in text


# --------------------------------------------------------------------------------------------- output

# values a user may search that look like rich markup: a style tag, a closing tag, a list of names
MARKUP_LIKE = ["[bold]x", "[dim]tmp", "[relu, tanh]"]
LEADERBOARD_SPACE = {**FIVE_KEYS, "model.options.tag": MARKUP_LIKE}


def _finished_trials(setup) -> list[optuna.trial.FrozenTrial]:  # noqa: ANN001
    dists = {p.key: p.distribution() for p in setup.space}
    trials = []
    for i in range(4):
        params = {"optim.lr": 0.0123 * (i + 1), "model.activation": ["relu", "tanh"][i % 2], "model.dropout": 0.25,
                  "optim.weight_decay": 1.0e-4, "model.widths": json.dumps([[16], [32, 32]][i % 2]),
                  "model.options.tag": MARKUP_LIKE[i % 3]}
        # two objectives: better accuracy for more parameters, so all four are on the Pareto front
        values = [0.5 + i / 10] if not setup.multi else [0.5 + i / 10, 1000.0 * (i + 1)]
        trials.append(optuna.trial.create_trial(params=params, distributions=dists, values=values,
                                                user_attrs={"epochs": 2}))
    for i, t in enumerate(trials):
        t.number = i
    return trials


@pytest.mark.parametrize("metrics", [["val_accuracy"], ["val_accuracy", "parameters"]])
def test_leaderboard_is_whole_at_80_columns_and_in_a_pipe(tmp_path: Path, metrics: list[str]) -> None:
    from gradwise.tune.results import leaderboard

    setup = _setup(tmp_path, metrics=metrics, space=LEADERBOARD_SPACE)
    trials = _finished_trials(setup)
    for soft_wrap in (True, False):  # the CLI's console soft-wraps; a table must still fit the width
        buf = io.StringIO()  # not a terminal: what a pipe or a log file gets
        leaderboard(setup, trials, Console(file=buf, width=80, soft_wrap=soft_wrap, highlight=False))
        text = buf.getvalue()
        assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80, text
        for name in [*metrics, "epochs", "params"]:
            assert name in text, text
        # the params column, its wrapped lines joined: a row's parameters wrap between words, never cut one
        params = " ".join(line.rsplit("│", 1)[1].strip() for line in text.splitlines() if "│" in line)
        for word in ["lr=0.0492", "activation=tanh", "dropout=0.25", "weight_decay=0.0001", "widths=[32,32]",
                     "tag=[bold]x", "tag=[dim]tmp", "tag=[relu, tanh]"]:
            assert word in params, text
    wide = io.StringIO()  # room for a column per searched key
    leaderboard(setup, trials, Console(file=wide, width=200, highlight=False))
    header = next(line for line in wide.getvalue().splitlines() if "epochs" in line)
    for name in [*metrics, "lr", "activation", "dropout", "weight_decay", "widths", "tag"]:
        assert name in header.replace("┃", " ").split(), header
    for value in ["[32,32]", *MARKUP_LIKE]:
        assert value in wide.getvalue()
    narrow = io.StringIO()  # too narrow for any table: one line per trial, still every name whole
    leaderboard(setup, trials, Console(file=narrow, width=40, highlight=False))
    assert "…" not in narrow.getvalue() and all(m in narrow.getvalue() for m in metrics)
    assert "[relu, tanh]" in " ".join(narrow.getvalue().split())


def test_show_uses_the_study_objectives_not_the_configs(tmp_path: Path) -> None:
    # a study started with `tune.metrics=[val_accuracy, parameters]` on the command line, shown without it
    setup = _setup(tmp_path, metrics=["val_accuracy", "parameters"], space=LEADERBOARD_SPACE)
    out = tmp_path / "study"
    out.mkdir()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    study = optuna.create_study(storage=storage, study_name="digits-tune", directions=["maximize", "minimize"])
    study.set_user_attr("gradwise:metrics", ["val_accuracy", "parameters"])
    study.add_trials(_finished_trials(setup))
    config = write_config(tmp_path / "single.yaml", space=LEADERBOARD_SPACE)
    code, text = run_tune(config, out, show=True)
    assert code == 0 and "optimizes val_accuracy, parameters" in text and "Pareto front" in text, text
    header = next(line for line in text.splitlines() if "epochs" in line).replace("┃", " ").split()
    assert header[:5] == ["#", "trial", "val_accuracy", "parameters", "epochs"], text
    assert "1000" in text and "4000" in text  # parameter counts in full, in their own column


def test_user_text_is_printed_literally(tmp_path: Path) -> None:
    from gradwise.tune.progress import TrialProgress

    out = tmp_path / "[/x] [bold]study"  # a directory name rich would read as markup (a closing tag: an error)
    config = write_config(tmp_path / "tune.yaml", sampler="random", pruner="none", trials=2,
                          space={"optim.lr": [0.05], "name": MARKUP_LIKE})
    code, text = run_tune(config, out)
    assert code == 0, text
    flat = " ".join(text.split())
    assert str(out) in flat and "name in ['[bold]x', '[dim]tmp', '[relu, tanh]']" in flat
    assert all(f"name={v}" in flat for v in {t.params["name"] for t in load(out)})
    # every kind of trial line: complete, pruned (the reason), failed (the error)
    setup = _setup(tmp_path, space={"optim.lr": [0.05], "name": MARKUP_LIKE})
    dists = {p.key: p.distribution() for p in setup.space}
    trials = [optuna.trial.create_trial(params={"optim.lr": 0.05, "name": name}, distributions=dists, state=state,
                                        value=0.5 if state == TrialState.COMPLETE else None,
                                        user_attrs={"pruned": "[red]why[/]", "error": "bad value [relu, tanh]"})
              for name, state in zip(MARKUP_LIKE, [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL],
                                     strict=True)]
    for i, t in enumerate(trials):
        t.number = i
    buf = io.StringIO()
    progress = TrialProgress(setup, Console(file=buf, width=80, highlight=False), bar=False)
    progress.start()
    progress.update(trials)
    lines = " ".join(buf.getvalue().split())
    assert "name=[bold]x" in lines and "name=[dim]tmp" in lines and "name=[relu, tanh]" in lines
    assert "[red]why[/]" in lines and "bad value [relu, tanh]" in lines


# --------------------------------------------------------------------------------- workers and resuming


def test_two_workers_complete_n_trials_none_lost_or_duplicated(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tune.yaml", sampler="tpe", trials=8)
    out = tmp_path / "study"
    # 30 epochs without early stopping (~0.3 s a trial): long enough that both workers get trials
    proc = gw_tune(str(config), "--out", str(out), "--workers", "2", "train.epochs=30",
                   "train.early_stopping.enabled=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = load(out)
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(t.state.is_finished() and t.state != TrialState.FAIL for t in trials)
    dirs = trial_dirs(out)
    assert [d.name for d in dirs] == [f"trial-{i:04d}" for i in range(8)]
    assert all((d / "summary.json").exists() for d in dirs)
    owners = {t.system_attrs["gradwise:owner"]["pid"] for t in trials}
    assert len(owners) == 2  # both workers ran trials
    logs = sorted((out / "logs").glob("worker-*.log"))
    assert len(logs) == 2 and all("stopped on budget" in p.read_text() for p in logs)
    assert (out / "best.yaml").exists() and "best trial" in proc.stdout


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def _running_owner(out: Path) -> int | None:
    try:
        trials = load(out)
    except Exception:
        return None
    running = [t for t in trials if t.state == TrialState.RUNNING and "gradwise:owner" in t.system_attrs]
    return running[0].system_attrs["gradwise:owner"]["pid"] if running else None


def test_killed_study_resumes_to_exactly_n_trials(tmp_path: Path) -> None:
    n = 4
    # 200 epochs, pruning off: each trial takes a couple of seconds, long enough to be killed in the middle of one
    config = write_config(tmp_path / "tune.yaml", sampler="random", pruner="none", trials=n)
    out = tmp_path / "study"
    args = [str(config), "--out", str(out), "train.epochs=200", "train.early_stopping.enabled=false"]
    # one thread: two on a loaded 2-core machine crawled past the wait below (135 epochs in 60 s instead of 200 in 3)
    proc = popen_tune(*args, log=tmp_path / "first.log", threads=1)
    metrics = out / "trial-0001" / "metrics.jsonl"
    try:
        _wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3)
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup at all: the trial stays RUNNING in the journal
        proc.wait()
    before = load(out)
    (running,) = [t for t in before if t.state == TrialState.RUNNING]
    assert len(before) < n
    # the kill may land between two trials, before the next one wrote anything: only a started run can be resumed
    killed_dir = out / f"trial-{running.number:04d}"
    had_checkpoint = (killed_dir / "checkpoints" / "last.pt").exists()
    done_before = len((killed_dir / "metrics.jsonl").read_text().splitlines()) if had_checkpoint else 0

    again = gw_tune(*args, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stdout + again.stderr
    trials = load(out)
    redo = retried(trials)
    counted = [t for t in trials if t.number not in redo]
    assert redo == {running.number} and len(counted) == n
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in counted)
    assert len({t.number for t in trials}) == len(trials)  # no duplicated trial numbers
    (killed,) = [t for t in trials if t.number in redo]
    assert killed.state == TrialState.FAIL
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert retry.params == killed.params  # the killed trial is redone with the same parameters
    assert len(trial_dirs(out)) == n + int(killed_dir.exists())  # the killed trial's partial run directory stays
    if had_checkpoint:
        # the retry continued the killed run from its checkpoint instead of starting over
        assert retry.user_attrs["resumed_from"] == str(killed_dir)
        rows = [json.loads(line) for line in (out / f"trial-{retry.number:04d}" / "metrics.jsonl").open()]
        assert [r["epoch"] for r in rows] == list(range(1, 201))
        resumed = json.loads((out / f"trial-{retry.number:04d}" / "summary.json").read_text())
        assert resumed["resumed"] is True
        assert done_before >= 1
    assert "retried" in again.stdout
    frame = pd.read_csv(out / "trials.csv")
    assert int(frame["retried"].sum()) == 1


def test_a_killed_worker_is_replaced_by_the_other_one(tmp_path: Path) -> None:
    n = 6
    config = write_config(tmp_path / "tune.yaml", sampler="random", pruner="none", trials=n)
    out = tmp_path / "study"
    args = [str(config), "--out", str(out), "--workers", "2", "train.epochs=60",
            "train.early_stopping.enabled=false"]
    proc = popen_tune(*args, log=tmp_path / "parallel.log")
    try:
        _wait_for(lambda: _running_owner(out) is not None)
        victim = _running_owner(out)
        assert victim is not None and victim != proc.pid
        os.kill(victim, signal.SIGKILL)  # one worker dies in the middle of a trial; its sibling goes on
        assert proc.wait(timeout=120) == 0, (tmp_path / "parallel.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    trials = load(out)
    redo = retried(trials)
    counted = [t for t in trials if t.number not in redo]
    assert len(redo) == 1 and len(counted) == n
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in counted)
    # a re-run finds the study complete and runs nothing more
    again = gw_tune(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(load(out)) == len(trials)


def test_show_prints_the_leaderboard_without_running(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tune.yaml", sampler="random", trials=3)
    out = tmp_path / "study"
    assert run_tune(config, out)[0] == 0
    before = len(load(out))
    proc = gw_tune(str(config), "--out", str(out), "--show", "--trials", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "digits-tune" in proc.stdout and "val_accuracy" in proc.stdout and "lr" in proc.stdout
    assert len(load(out)) == before
    missing = gw_tune(str(config), "--out", str(tmp_path / "none"), "--show", "--study", "nothing", cwd=tmp_path)
    assert missing.returncode == 2 and "no study 'nothing'" in missing.stderr and "Traceback" not in missing.stderr


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("tune_section", "overrides", "expected"), [
    (None, [], "no tune: section"),
    ({"space": {}}, [], "tune.space is empty"),
    ({"sampler": "bayes"}, [], "tune.sampler"),
    ({"pruner": "asha"}, [], "tune.pruner"),
    ({"space": {"optim.lrr": {"low": 1.0e-3, "high": 0.1}}}, [], "Did you mean 'optim.lr'"),
    ({"space": {"model.activaton": ["relu"]}}, [], "Did you mean 'model.activation'"),
    ({"space": {"optim": ["sgd", "adam"]}}, [], "whole section"),
    ({"space": {"model.dropout": {"low": 0.0, "high": 1.5}}}, [], "model.dropout"),
    ({"sampler": "grid"}, [], "continuous range"),
    ({"metric": "accuracy"}, [], "Did you mean 'val_accuracy'"),
    ({"metrics": ["val_accuracy", "parameters"], "directions": ["maximize"]}, [], "one direction"),
    ({}, ["--storage", "mysql://u@h/db"], "is not a storage gradwise understands"),
    ({}, ["--storage", "sqlite:///s.db", "--workers", "2"], "database is locked"),
])
def test_clear_config_errors(tmp_path: Path, tune_section: dict | None, overrides: list[str],
                             expected: str) -> None:
    cfg = json.loads(json.dumps(BASE))
    if tune_section is None:
        del cfg["tune"]
    else:
        cfg["tune"].update(tune_section)
        if "space" in tune_section:
            cfg["tune"]["space"] = tune_section["space"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    opts = dict(zip(overrides[::2], overrides[1::2], strict=True))
    with pytest.raises(ConfigError) as info:
        tune(path, None, opts.get("--storage"), None, int(opts["--workers"]) if "--workers" in opts else None, False,
             tmp_path / "study", [], console=Console(file=io.StringIO()))
    assert expected in str(info.value)
    assert not (tmp_path / "study").exists()  # nothing was started


def test_postgres_url_without_driver_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradwise.tune.storage as storage

    monkeypatch.setattr(storage, "_module_available", lambda name: False)
    config = write_config(tmp_path / "tune.yaml")
    with pytest.raises(ConfigError) as info:
        tune(config, None, "postgresql://me:secret@db.example:5432/optuna", None, None, False, tmp_path / "s", [],
             console=Console(file=io.StringIO()))
    message = str(info.value)
    assert "pip install psycopg2-binary" in message and "secret" not in message and "db.example" in message


def test_command_line_errors_have_no_traceback(tmp_path: Path) -> None:
    cfg = json.loads(json.dumps(BASE))
    del cfg["tune"]
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(cfg))
    proc = gw_tune("plain.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "no tune: section" in proc.stderr and "Traceback" not in proc.stderr
    config = write_config(tmp_path / "tune.yaml")
    proc = gw_tune(str(config), "--storage", "redis://localhost", cwd=tmp_path)
    assert proc.returncode == 2 and "redis://localhost" in proc.stderr and "postgresql://" in proc.stderr


def test_a_broken_setup_stops_after_three_failed_trials(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tune.yaml", sampler="random", trials=6,
                          space={"optim.lr": [0.01, 0.1], "model.name": ["no_such_model"]})
    out = tmp_path / "study"
    code, text = run_tune(config, out)
    assert code == 1 and "3 trials in a row failed" in text and "no_such_model" in text
    trials = load(out)
    assert len(trials) == 3 and all(t.state == TrialState.FAIL for t in trials)
    assert (Path(trials[-1].user_attrs["run_dir"]) / "error.txt").exists()


def test_space_keys_may_be_nested_or_overridden(tmp_path: Path) -> None:
    from gradwise.config import load_config
    from gradwise.tune.setup import resolve_setup

    config = write_config(tmp_path / "tune.yaml", space={"optim": {"lr": {"low": 1.0e-3, "high": 0.1, "log": True}},
                                                         "train.epochs": {"low": 1, "high": 3}})
    overrides = ["tune.space.model.dropout={low: 0.0, high: 0.5, step: 0.1}", "tune.sampler=grid",
                 "tune.space.optim.lr=[0.01, 0.1]", "tune.trials=null"]
    setup = resolve_setup(load_config(config, overrides), config, overrides)
    kinds = {p.key: p.kind for p in setup.space}
    assert kinds == {"optim.lr": "categorical", "train.epochs": "int", "model.dropout": "float"}
    assert setup.trials == 2 * 3 * 6  # no trial count given: the whole grid, each point once


def test_example_config_is_valid() -> None:
    from gradwise.config import load_config
    from gradwise.tune.setup import resolve_setup

    path = Path(__file__).resolve().parents[1] / "examples" / "tune_mnist1d.yaml"
    setup = resolve_setup(load_config(path), path, [])
    assert setup.metrics == ["val_accuracy"] and setup.directions == ["maximize"] and setup.prunable


# ------------------------------------------------------------------------------------------- PostgreSQL

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server (Debian's binaries), as a non-root user, on a free port."""
    initdb = PG_BIN / "initdb" if (PG_BIN / "initdb").exists() else shutil.which("initdb")
    pg_ctl = PG_BIN / "pg_ctl" if (PG_BIN / "pg_ctl").exists() else shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2 is not installed: pip install psycopg2-binary")
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: use the postgres system user Debian creates
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to switch to the postgres user")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="gradwise-pg-"))
    if as_user:
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data, port = base / "data", _free_port()
    subprocess.run([*as_user, str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True, timeout=60)
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, str(pg_ctl), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start"],
                   check=True, capture_output=True, timeout=60)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def test_two_machines_share_a_postgres_study(tmp_path: Path, postgres_url: str) -> None:
    n = 8
    config = write_config(tmp_path / "tune.yaml", sampler="tpe", trials=n)
    # two independent commands, as on two machines: same URL and study, each its own study directory
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    procs = [popen_tune(str(config), "--storage", postgres_url, "--study", "shared", "--out", str(out),
                        "train.epochs=40", "train.early_stopping.enabled=false", log=tmp_path / f"{out.name}.log",
                        threads=1)
             for out in outs]
    for p, out in zip(procs, outs, strict=True):
        assert p.wait(timeout=180) == 0, (tmp_path / f"{out.name}.log").read_text()
    trials = load(tmp_path, "shared", storage=postgres_url)
    assert sorted(t.number for t in trials) == list(range(n))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    dirs = trial_dirs(*outs)
    assert sorted(d.name for d in dirs) == [f"trial-{i:04d}" for i in range(n)]  # each trial ran once, somewhere
    assert all(any(d.parent == out for d in dirs) for out in outs)  # both "machines" ran trials
    for out in outs:
        assert (out / "best.yaml").exists() and len(pd.read_csv(out / "trials.csv")) == n
    # --show on either machine reads the shared study
    show = gw_tune(str(config), "--storage", postgres_url, "--study", "shared", "--out", str(outs[0]), "--show")
    assert show.returncode == 0 and "shared" in show.stdout

"""The trial loop of one worker process, and the launcher of `--workers K` processes on this machine.

Each loop turn: take the study lock, fail trials whose process died (and enqueue their retries), stop if the
budget is used up, otherwise let optuna start one trial (sampling happens under the lock too, so every sampler
sees the trials already running); the objective releases the lock as soon as its trial is recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from gradwise.errors import ConfigError
from gradwise.signals import SignalLog
from gradwise.tune.objective import LockHolder, Objective
from gradwise.tune.progress import TrialProgress
from gradwise.tune.setup import TuneSetup, make_pruner, make_sampler, sampler_seed
from gradwise.tune.storage import (
    counted_trials,
    make_lock,
    open_storage,
    recover_stale_trials,
)

STORAGE_ENV = "GRADWISE_TUNE_STORAGE"


@dataclass
class Outcome:
    ran: int = 0  # trials this invocation ran
    stop: str = "budget"  # budget | timeout | interrupted | failing | worker_died
    recovered: int = 0  # stale trials found and retried
    error: str | None = None  # why trials fail, when they kept failing
    signal: int | None = None  # the signal that interrupted the study (SIGINT, SIGTERM), when known


def _signal_of(exc: BaseException, signals: SignalLog | None) -> int:
    """Which signal a KeyboardInterrupt stands for: our handler's Interrupted knows; a trial whose Trainer caught
    the signal raises a plain one, and the signal log (the interpreter's wakeup fd) saw it arrive."""
    number = getattr(exc, "signum", None)
    if number is None and signals is not None:
        number = signals.last
    return int(number) if number is not None else int(signal.SIGINT)


FAILURES_IN_A_ROW = 3  # a broken setup fails every trial: stop instead of burning the whole budget on it


def create_or_load(setup: TuneSetup, storage: BaseStorage) -> optuna.Study:
    """Create the study or load it (a re-run resumes), checking that its objectives are the config's."""
    study = optuna.create_study(storage=storage, study_name=setup.name, directions=setup.directions,
                                load_if_exists=True, sampler=optuna.samplers.RandomSampler(seed=0))
    have = [d.name.lower() for d in study.directions]
    if have != list(setup.directions):
        raise ConfigError(f"study '{setup.name}' in {setup.storage.display} was created with direction(s) {have}, "
                          f"but this config asks for {setup.directions} ({setup.label()}). Use another study name "
                          "(--study NAME) or the original objective.")
    metrics = study.user_attrs.get("gradwise:metrics")
    if metrics is None:
        study.set_user_attr("gradwise:metrics", setup.metrics)
    elif list(metrics) != setup.metrics:
        raise ConfigError(f"study '{setup.name}' in {setup.storage.display} optimizes {metrics}, but this config "
                          f"asks for {setup.metrics}. Use another study name (--study NAME) or the original metric.")
    return study


def load_existing(setup: TuneSetup, storage: BaseStorage) -> optuna.Study:
    try:
        return optuna.load_study(study_name=setup.name, storage=storage,
                                 sampler=optuna.samplers.RandomSampler(seed=0))
    except KeyError:
        raise ConfigError(f"there is no study '{setup.name}' in {setup.storage.display} yet; run `gradwise tune "
                          f"{setup.config}` first (without --show), or give the right --study / --storage.") from None


def has_budget(storage: BaseStorage, study: optuna.Study, budget: int | None) -> bool:
    trials = storage.get_all_trials(study._study_id, deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return True  # a retry is queued; it was counted when its original was
    return budget is None or len(counted_trials(trials)) < budget


def run_worker(setup: TuneSetup, *, index: int = 0, progress: TrialProgress | None = None,
               storage: BaseStorage | None = None, signals: SignalLog | None = None) -> Outcome:
    """Run trials until the budget (counted over every process) or this process's time budget is used up.

    ``signals`` (from `gradwise.signals.stop_on_signals`) is asked after each trial: a SIGINT/SIGTERM that arrived
    while a trial's run was finishing (after its last epoch, where the Trainer no longer stops for it) still stops
    the study instead of being lost.
    """
    storage = storage or open_storage(setup.storage)
    lock = make_lock(setup.storage, setup.name)
    holder = LockHolder(lock)
    outcome = Outcome()
    objective = Objective(setup, holder)
    try:
        with holder:
            study = create_or_load(setup, storage)
            outcome.recovered += len(recover_stale_trials(study))
            existing = len(storage.get_all_trials(study._study_id, deepcopy=False))
        study.sampler = make_sampler(setup, sampler_seed(setup, existing, index))
        study.pruner = make_pruner(setup)
        if progress is not None:
            progress.start(study.get_trials(deepcopy=False))

        def report(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
            if progress is not None:
                progress.update(study.get_trials(deepcopy=False))

        started = time.monotonic()
        failures = 0
        while True:
            if setup.timeout is not None and time.monotonic() - started >= setup.timeout:
                outcome.stop = "timeout"
                break
            holder.acquire()
            objective.current = None
            try:
                outcome.recovered += len(recover_stale_trials(study))
                if not has_budget(storage, study, setup.trials):
                    break
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    # one trial per call: the budget check above and the trial's creation stay under one lock
                    study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[report])
            finally:
                holder.release()
            outcome.ran += 1
            if objective.fatal is not None:
                raise objective.fatal
            if signals is not None and signals.received():
                raise KeyboardInterrupt  # asked to stop while the trial ended: it is complete, stop before the next
            last = storage.get_trial(objective.current._trial_id) if objective.current is not None else None
            if last is not None and last.state == TrialState.FAIL:
                failures += 1
                if failures >= FAILURES_IN_A_ROW:
                    outcome.stop = "failing"
                    outcome.error = (f"{failures} trials in a row failed, the last (trial {last.number}) with: "
                                     f"{last.user_attrs.get('error', 'an error')} (details in "
                                     f"{last.user_attrs.get('run_dir', setup.dir)}/error.txt)")
                    break
            else:
                failures = 0
    except KeyboardInterrupt as exc:
        objective.retry_current()  # the trial being run is redone by the next invocation
        outcome.stop = "interrupted"
        outcome.signal = _signal_of(exc, signals)
        if progress is not None:
            with contextlib.suppress(Exception):
                progress.update(storage.get_all_trials(objective.current.study._study_id, deepcopy=False)
                                if objective.current is not None else [])
    finally:
        holder.release()
        lock.close()
        with contextlib.suppress(Exception):
            storage.remove_session()
    return outcome


# ---------------------------------------------------------------------------------------- several workers


def worker_command(setup: TuneSetup, index: int) -> list[str]:
    # the storage URL goes by environment (STORAGE_ENV), not argv: a PostgreSQL password would show in `ps`
    cmd = [sys.executable, "-m", "gradwise.tune", str(setup.config), "--study", setup.name, "--out", str(setup.dir),
           "--workers", str(setup.workers), "--worker", str(index)]
    if setup.trials is not None:
        cmd += ["--trials", str(setup.trials)]
    return cmd + list(setup.overrides)


def run_parallel(setup: TuneSetup, progress: TrialProgress | None, signals: SignalLog | None = None) -> Outcome:
    """Start `setup.workers` worker processes on this machine and follow the study until they all exit."""
    storage = open_storage(setup.storage)
    lock = make_lock(setup.storage, setup.name)
    outcome = Outcome()
    with lock:  # create the study and recover a killed run's trials once, before the workers race for trials
        study = create_or_load(setup, storage)
        outcome.recovered = len(recover_stale_trials(study))
    lock.close()
    before = {t.number for t in study.get_trials(deepcopy=False)}
    if progress is not None:
        progress.start(study.get_trials(deepcopy=False))

    logs = setup.dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env[STORAGE_ENV] = setup.storage.url
    procs: list[tuple[subprocess.Popen, Path]] = []
    for i in range(setup.workers):
        log = logs / f"worker-{i}.log"
        with open(log, "w") as fh:
            procs.append((subprocess.Popen(worker_command(setup, i), stdout=fh, stderr=subprocess.STDOUT, env=env,
                                           cwd=os.getcwd()), log))
    try:
        while any(p.poll() is None for p, _ in procs):
            if progress is not None:
                progress.update(study.get_trials(deepcopy=False))
            time.sleep(0.5)
    except KeyboardInterrupt as exc:
        outcome.stop = "interrupted"
        outcome.signal = _signal_of(exc, signals)
        for p, _ in procs:  # on a terminal they got the Ctrl-C too; a second SIGINT would abort their trials
            if p.poll() is None and (outcome.signal != signal.SIGINT or not sys.stdin.isatty()):
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(outcome.signal)
        deadline = time.monotonic() + 60
        for p, _ in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    trials = study.get_trials(deepcopy=False)
    if progress is not None:
        progress.update(trials)
    outcome.ran = len({t.number for t in trials} - before)
    codes = [p.returncode for p, _ in procs]
    for i, (code, (_, log)) in enumerate(zip(codes, procs, strict=True)):
        if code == 2:  # a ConfigError in the worker: the same problem for every trial, so say it
            raise ConfigError(f"worker {i} stopped: {_error_text(log)} (full log: {log})")
        if code == 1 and outcome.stop != "interrupted":  # trials kept failing
            outcome.stop, outcome.error = "failing", _error_text(log)
    if outcome.stop == "budget":
        stopped = [c for c in codes if c in (128 + signal.SIGINT, 128 + signal.SIGTERM)]
        if stopped:  # a worker was stopped by a signal sent to it alone
            outcome.stop, outcome.signal = "interrupted", stopped[0] - 128
        elif has_budget(storage, study, setup.trials):
            # workers leave budget unused on their timeout, or when one of them was killed
            outcome.stop = "timeout" if setup.timeout is not None and all(c == 0 for c in codes) else "worker_died"
    with contextlib.suppress(Exception):
        storage.remove_session()
    return outcome


def _error_text(log: Path) -> str:
    try:
        lines = [line for line in log.read_text().splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    for i, line in enumerate(lines):
        if line.startswith("error:"):
            return " ".join(lines[i:])[len("error:"):].strip()
    return lines[-1] if lines else "(empty log)"

"""One trial = one normal gradwise run in its own directory, watched by a callback that reports to the pruner."""

from __future__ import annotations

import math
import shutil
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from gradwise.data.prepare import PreparedData, reuse_prepared
from gradwise.doctor.preflight import DataChecks, reuse_data_checks
from gradwise.errors import ConfigError, GradwiseError, TrainingError
from gradwise.train.events import Callback
from gradwise.train.trial import TrialMode, trial_mode
from gradwise.tune.setup import SUMMARY_METRICS, TuneSetup
from gradwise.tune.storage import OWNER_KEY, StudyLock, add_retry, owner_record, retried_numbers

if TYPE_CHECKING:
    from gradwise.api import Run
    from gradwise.train.loop import Trainer

# the doctor's verdicts after which more epochs cannot help: stop the trial now and mark it pruned
HOPELESS = ("nonfinite_values", "diverging_loss")


def trial_dir(setup: TuneSetup, number: int) -> Path:
    return setup.dir / f"trial-{number:04d}"


class LockHolder:
    """The study lock plus whether this process holds it (the objective releases it once its trial exists)."""

    def __init__(self, lock: StudyLock) -> None:
        self.lock = lock
        self.held = False

    def acquire(self) -> None:
        self.lock.acquire()
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()

    def __enter__(self) -> LockHolder:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _doctor_verdict(trainer: Trainer) -> str | None:
    from gradwise.doctor import Doctor

    doctor = trainer.callbacks.find(Doctor)
    for finding in getattr(doctor, "findings", []) or []:
        if finding.code in HOPELESS:
            return f"doctor: {finding.code}"
    return None


class TrialPruning(Callback):
    """Reports the objective metric every epoch; stops the run when the pruner says so or the run is hopeless."""

    order = 80  # after the doctor (30) and early stopping (40) have seen the epoch, before progress output (90)

    def __init__(self, trial: optuna.Trial, metrics: list[str], pruner: str, report: bool) -> None:
        self.trial = trial
        self.metrics = metrics  # per-epoch objective metrics: a non-finite value is hopeless
        self.pruner = pruner
        self.report = report and len(metrics) == 1  # optuna prunes single-objective studies only
        self.reason: str | None = None
        self.epoch: int | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        # a retry resumed from its interrupted original: hand the pruner the epochs it will not see again, so the
        # trial's intermediate values are complete
        if self.report and trainer.history:
            for row in trainer.history:
                if self.metrics[0] in row and _finite(row[self.metrics[0]]):
                    self.trial.report(float(row[self.metrics[0]]), int(row.get("epoch", 0)))

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self.reason is not None:
            return
        epoch = int(logs.get("epoch", trainer.epoch + 1))
        watched = [k for k in ("train_loss", "val_loss", *self.metrics) if k in logs]
        bad = [k for k in watched if not _finite(logs[k])]
        reason = f"{bad[0]} is {logs[bad[0]]} at epoch {epoch}" if bad else _doctor_verdict(trainer)
        if reason is None and self.report and self.metrics[0] in logs:
            value = float(logs[self.metrics[0]])
            self.trial.report(value, epoch)
            if self.trial.should_prune():
                reason = f"{self.pruner} pruner at epoch {epoch} ({self.metrics[0]} {value:.4g})"
        if reason is not None:
            self.reason, self.epoch = reason, epoch
            trainer.should_stop = True
            trainer.stop_reason = f"pruned by gradwise tune: {reason}"


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return True  # not a number: nothing to judge


def objective_value(run: Run, metric: str, direction: str) -> float | None:
    """A trial's value for one metric: the best epoch's value (early stopping restores that epoch's weights)."""
    if metric == "parameters":
        return float(run.summary["parameters"])
    if metric == "seconds":
        return float(run.summary["wall_seconds"])
    values = [float(row[metric]) for row in run.history if metric in row and _finite(row[metric])]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


class Objective:
    """The function optuna calls with each trial; it holds the study lock on entry and releases it first thing."""

    def __init__(self, setup: TuneSetup, holder: LockHolder) -> None:
        self.setup = setup
        self.holder = holder
        self.fatal: ConfigError | None = None  # a config problem every trial would hit: stop the study
        self.current: optuna.Trial | None = None
        self.retried = False
        self.finished = False
        self.mlflow_parent: str | None = None  # the study's MLflow run (track: [mlflow]), found or made once
        self.mlflow_off = "mlflow" not in setup.base.track.use
        self.prepared = PreparedData()  # the trials' data, prepared by the first trial of this process
        self.data_checks = DataChecks()  # the doctor's pre-flight data checks, run by the first trial on that data
        self.mode = TrialMode(test=setup.test, checkpoint_seconds=setup.checkpoint_seconds)

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        # who runs this trial, written before the lock is released: a worker that finds it RUNNING later can tell
        # whether its process is still alive
        trial.storage.set_trial_system_attr(trial._trial_id, OWNER_KEY, owner_record())
        context = self._mlflow_context(trial)  # under the lock: workers find the one parent run, not make several
        self.holder.release()
        self.current, self.retried, self.finished = trial, False, False
        token = _mlflow_trial().set(context) if context is not None else None
        state, values = "interrupted", {}  # what a KeyboardInterrupt (retried later) leaves
        try:
            result = self._run(trial)
            state = "complete"
            values = dict(zip(self.setup.metrics, result if isinstance(result, list) else [result], strict=True))
        except optuna.TrialPruned:
            state = "pruned"
            self.finished = True
            raise
        except Exception:  # failed: finished, nothing to retry
            state = "failed"
            self.finished = True
            raise
        finally:
            if token is not None:
                _mlflow_trial().reset(token)
                self._mlflow_record(context, state, values)
        self.finished = True  # a KeyboardInterrupt leaves it False: the trial is retried
        return result

    def _mlflow_context(self, trial: optuna.Trial) -> Any:
        """With track: [mlflow], the study's parent MLflow run for this trial's run to nest under (None: no MLflow,
        or the tracking store failed once: a warning, and the trials run without it)."""
        if self.mlflow_off:
            return None
        from gradwise.track.mlflow_tracker import TrialContext, study_parent_run
        from gradwise.tune.storage import shown

        setup = self.setup
        try:
            if self.mlflow_parent is None:
                settings = {"study": setup.name, "metrics": ",".join(setup.metrics),
                            "directions": ",".join(setup.directions), "sampler": setup.sampler,
                            "pruner": setup.pruner, "trials": setup.trials, "storage": shown(setup.storage.url),
                            **{f"space.{p.key}": p.describe() for p in setup.space}}
                self.mlflow_parent = study_parent_run(setup.base, setup.name, setup.dir, settings)
        except Exception as exc:
            self._mlflow_failed(exc)
            return None
        return TrialContext(self.mlflow_parent, trial.number, setup.name)

    def _mlflow_record(self, context: Any, state: str, values: dict[str, float]) -> None:
        from gradwise.track.mlflow_tracker import record_trial

        try:
            record_trial(self.setup.base, context, state, values)
        except Exception as exc:
            self._mlflow_failed(exc)

    def _mlflow_failed(self, exc: Exception) -> None:
        from gradwise.config import mask_secrets

        self.mlflow_off = True
        text = mask_secrets(str(exc).strip().splitlines()[0] if str(exc).strip() else "")[:200]
        print(f"warning: MLflow tracking of the study failed ({type(exc).__name__}: {text}); its trials are not "
              "nested under a study run from here on", file=sys.stderr)

    def _run(self, trial: optuna.Trial) -> float | list[float]:
        setup = self.setup
        params = {p.key: p.suggest(trial) for p in setup.space}
        run_dir = trial_dir(setup, trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        overrides: dict[str, Any] = {**params, "out": str(run_dir), "train.progress": "none",
                                     "name": f"{setup.name}-trial-{trial.number:04d}"}
        # several objectives or a summary metric: nothing goes to a pruner, but hopeless runs still stop at once
        watched = [m for m in setup.metrics if m not in SUMMARY_METRICS]
        watcher = TrialPruning(trial, watched, setup.pruner, report=setup.prunable)

        import gradwise

        partial = _partial_run(setup, trial)
        if partial is not None:
            # a retry of an interrupted trial: continue its run from the last checkpoint in a copy of its directory
            # (the original stays as it was, so the killed trial's record is intact)
            shutil.copytree(partial, run_dir, dirs_exist_ok=True)
            (run_dir / "summary.json").unlink(missing_ok=True)
            trial.set_user_attr("resumed_from", str(partial))
        try:
            # the data is read, cleaned, split and fitted once per process, and checked by the doctor once; the run
            # is a trial: no per-epoch checkpoints, test pass or report.html (gradwise.train.trial)
            with reuse_prepared(self.prepared), reuse_data_checks(self.data_checks), trial_mode(self.mode):
                if partial is not None:
                    run = gradwise.train(None, {k: v for k, v in overrides.items() if k not in params},
                                         resume=run_dir, callbacks=[watcher])
                else:
                    run = gradwise.train(setup.base, overrides, callbacks=[watcher])
        except TrainingError as exc:  # a non-finite loss with the doctor off: as hopeless as it gets
            metrics = run_dir / "metrics.jsonl"
            trial.set_user_attr("epochs", len(metrics.read_text().splitlines()) if metrics.exists() else 0)
            trial.set_user_attr("pruned", f"training error: {str(exc).splitlines()[0][:300]}")
            raise optuna.TrialPruned(str(exc)) from None
        except GradwiseError as exc:
            _write_error(run_dir, f"{type(exc).__name__}: {exc}\n")
            trial.set_user_attr("error", str(exc).splitlines()[0][:300])
            raise
        except Exception as exc:
            _write_error(run_dir, traceback.format_exc())
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
            raise

        summary = run.summary
        trial.set_user_attr("epochs", len(run.history))
        trial.set_user_attr("seconds", float(summary.get("wall_seconds", 0.0)))
        trial.set_user_attr("parameters", int(summary.get("parameters", 0)))
        for key, value in (summary.get("test") or {}).items():
            if _finite(value):
                trial.set_user_attr(key, float(value))

        if summary.get("status") == "stopped" and str(summary.get("stop_reason") or "").startswith("received"):
            # Ctrl-C / SIGTERM: the run saved a checkpoint and stopped. The trial did not finish: enqueue a retry
            # (so a re-run of the command redoes it) and stop this worker.
            self.retry_current()
            raise KeyboardInterrupt

        if watcher.reason is not None:
            trial.set_user_attr("pruned", watcher.reason)
            raise optuna.TrialPruned(watcher.reason)
        verdict = next((f"doctor: {f.code}" for f in run.findings if f.code in HOPELESS), None)
        if verdict is None and summary.get("status") == "failed":
            verdict = f"run failed: {summary.get('stop_reason') or summary.get('error')}"
        if verdict is not None:
            trial.set_user_attr("pruned", verdict)
            raise optuna.TrialPruned(verdict)

        values = []
        for name, direction in zip(setup.metrics, setup.directions, strict=True):
            value = objective_value(run, name, direction)
            if value is None:
                seen = sorted({k for row in run.history for k in row} - {"epoch", "step", "lr", "seconds"})
                if any(name in row for row in run.history):  # reported, but never a finite number
                    trial.set_user_attr("pruned", f"{name} never finite")
                    raise optuna.TrialPruned(f"{name} was never finite")
                self.fatal = ConfigError(
                    f"tune.metric '{name}' is not reported by these runs; they report {', '.join(seen)} per epoch "
                    f"(and parameters, seconds). Set tune.metric to one of those.")
                raise self.fatal
            values.append(value)
            if setup.multi:
                trial.set_user_attr(name, value)
        return values[0] if len(values) == 1 else values

    def retry_current(self) -> None:
        """Enqueue a retry of the trial being run (interrupted), once."""
        trial = self.current
        if trial is None or self.retried or self.finished:
            return
        with self.holder:
            storage = trial.storage
            frozen = storage.get_trial(trial._trial_id)
            trials = storage.get_all_trials(trial.study._study_id, deepcopy=False)
            if frozen.number not in retried_numbers(trials):
                add_retry(trial.study, frozen)
        self.retried = True


def _mlflow_trial() -> Any:
    from gradwise.track.mlflow_tracker import TRIAL

    return TRIAL


def _partial_run(setup: TuneSetup, trial: optuna.Trial) -> Path | None:
    """The run directory of the interrupted trial this one retries, when it holds a checkpoint to resume from."""
    history = trial.storage.get_trial_system_attrs(trial._trial_id).get("retry_history") or []
    for number in reversed([int(n) for n in history]):
        candidate = trial_dir(setup, number)
        if (candidate / "checkpoints" / "last.pt").exists() and (candidate / "config.yaml").exists():
            return candidate
    return None


def _write_error(run_dir: Path, text: str) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(text)
    except OSError:
        pass

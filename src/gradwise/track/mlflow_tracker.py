"""MLflow: one MLflow run per gradwise run, in a local store by default or a tracking server.

Where: ``track.mlflow.uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///runs/mlflow.db`` under the working
directory (MLflow's own default is an ``mlflow.db`` in the working directory; beside runs/ it sits with the runs it
records), with the artifacts in ``runs/mlartifacts/``. Experiment: ``track.mlflow.experiment`` (default gradwise).

What: the flattened config as params; every number of each epoch's metrics.jsonl row as a metric (step = epoch),
the training loss and LR every ``train.log_every`` optimizer steps as ``step/train_loss`` and ``step/lr`` (step =
optimizer step), the test metrics; the doctor's findings (``findings.json`` and tags ``gradwise.findings``), the
summary, the config, ``report.html`` (when the run wrote one) and the best checkpoint as artifacts; the run's
status (FINISHED, KILLED for a stopped run, FAILED). The run's id is kept in DIR/mlflow_run.json, so a resumed run
goes on logging into the same MLflow run. A tuning study is one parent run with a nested run per trial.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradwise.config import mask_secrets, url_password
from gradwise.track.base import StepTracker, epoch_metrics, findings_of, flat_config

if TYPE_CHECKING:
    from gradwise.config import RunConfig
    from gradwise.train.loop import Trainer

DEFAULT_STORE = Path("runs") / "mlflow.db"
DEFAULT_EXPERIMENT = "gradwise"
RUN_FILE = "mlflow_run.json"  # DIR/mlflow_run.json: the MLflow run this run directory logs to
_BATCH = 1000  # MLflow's limit of metrics per log_batch call (params: 100)


@dataclass
class TrialContext:
    """Set by the tuning objective around one trial: the study's parent run; the trial's run id is filled in."""

    parent_run_id: str
    trial: int
    study: str
    run_id: str | None = None


TRIAL: contextvars.ContextVar[TrialContext | None] = contextvars.ContextVar("gradwise_mlflow_trial", default=None)


def tracking_uri(cfg: RunConfig) -> str:
    """The tracking URI this config logs to (a local SQLite file path made absolute)."""
    uri = cfg.track.mlflow.uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if "***@" in uri and cfg.track.mlflow.uri:  # a config.yaml (resumed) holds the URI with its password masked
        raise ValueError("the tracking URI's password is masked in config.yaml; give it again with "
                         "track.mlflow.uri=... or MLFLOW_TRACKING_URI (or set MLFLOW_TRACKING_PASSWORD)")
    if not uri:
        DEFAULT_STORE.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{DEFAULT_STORE.resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri[len("sqlite:///"):]).expanduser().resolve()  # relative to the working directory
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return uri


def shown(uri: str) -> str:
    return mask_secrets(uri, url_password(uri))


def connect(cfg: RunConfig) -> tuple[Any, str]:
    """(MlflowClient, experiment id) for this config; the experiment is created when missing (a local SQLite store
    keeps its artifacts in mlartifacts/ beside the database)."""
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    name = cfg.track.mlflow.experiment or DEFAULT_EXPERIMENT
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)  # creating a store's tables logs INFO lines into the run's output
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return client, experiment.experiment_id
        location = None
        if uri.startswith("sqlite:///"):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts" / safe).as_uri()
        try:
            return client, client.create_experiment(name, artifact_location=location)
        except Exception:  # created meanwhile by another process (parallel tuning workers)
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return client, experiment.experiment_id
    finally:
        logger.setLevel(level)


class MlflowTracker(StepTracker):
    name = "mlflow"

    def start(self, trainer: Trainer) -> None:
        from mlflow.entities import Param

        self.client, self.experiment_id = connect(self.cfg)
        self.run_id: str | None = None
        self.run_path = trainer.run_dir.path
        self._written_findings = 0
        resumed = self._resumed_run(trainer)
        if resumed is not None:
            self.run_id = resumed
            self.client.update_run(resumed, status="RUNNING")
        else:
            context = TRIAL.get()
            tags = {"gradwise.dir": str(trainer.run_dir.path.resolve()), "mlflow.source.name": "gradwise",
                    "mlflow.source.type": "LOCAL"}
            if context is not None:  # a trial of a tuning study: nested under the study's run
                tags.update({"mlflow.parentRunId": context.parent_run_id, "gradwise.study": context.study,
                             "gradwise.trial": str(context.trial)})
            run = self.client.create_run(self.experiment_id, run_name=self.cfg.name, tags=tags)
            self.run_id = run.info.run_id
            (self.run_path / RUN_FILE).write_text(json.dumps({
                "run_id": self.run_id, "experiment_id": self.experiment_id,
                "tracking_uri": shown(tracking_uri(self.cfg))}) + "\n")
            params = [Param(k, str(v)[:6000]) for k, v in flat_config(self.cfg).items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[i:i + 100])
        context = TRIAL.get()
        if context is not None:
            context.run_id = self.run_id

    def _resumed_run(self, trainer: Trainer) -> str | None:
        """The MLflow run of a resumed run directory, when it is in this store (else a new MLflow run)."""
        path = trainer.run_dir.path / RUN_FILE
        if not trainer.resumed or not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            run = self.client.get_run(str(record["run_id"]))
        except Exception:  # another store, or a deleted run
            return None
        return run.info.run_id if run.info.experiment_id == self.experiment_id else None

    def write_steps(self, rows: list[tuple[int, float, float]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [m for step, loss, lr in rows
                   for m in (Metric("step/train_loss", loss, now, step), Metric("step/lr", lr, now, step))]
        self._log_metrics(metrics)

    def epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        epoch = int(logs["epoch"])
        self._log_metrics([Metric(k, v, now, epoch) for k, v in epoch_metrics(logs).items()])
        self._log_findings(trainer)

    def fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        epochs = int(summary.get("epochs_completed") or 0)
        self._log_metrics([Metric(k, v, now, epochs) for k, v in epoch_metrics(summary.get("test") or {}).items()])
        self._log_findings(trainer)
        self.client.log_dict(self.run_id, json.loads(json.dumps(summary, default=str)), "summary.json")
        config = self.run_path / "config.yaml"
        if config.exists():  # its tracking URI's password is masked (RunConfig.to_yaml)
            self.client.log_artifact(self.run_id, str(config))
        report = self.run_path / "report.html"
        if report.exists():
            self.client.log_artifact(self.run_id, str(report))
        checkpoints = self.run_path / "checkpoints"
        best = next((p for p in (checkpoints / "best.pt", checkpoints / "last.pt") if p.exists()), None)
        if best is not None:
            self.client.log_artifact(self.run_id, str(best), "checkpoints")
        self.client.set_tag(self.run_id, "gradwise.status", str(summary.get("status")))
        status = {"completed": "FINISHED", "stopped": "KILLED"}.get(str(summary.get("status")), "FAILED")
        self.client.set_terminated(self.run_id, status)

    def failed(self, trainer: Trainer, exc: BaseException) -> None:
        if self.run_id is None:
            return
        self._log_findings(trainer)
        self.client.set_tag(self.run_id, "gradwise.error", mask_secrets(f"{type(exc).__name__}: {exc}")[:5000])
        self.client.set_terminated(self.run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")

    def close(self) -> None:
        run_id = getattr(self, "run_id", None)
        if run_id is not None:  # an error of our own: end the MLflow run rather than leave it RUNNING
            self.run_id = None
            self.client.set_terminated(run_id, "FAILED")

    def _log_metrics(self, metrics: list[Any]) -> None:
        for i in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + _BATCH])

    def _log_findings(self, trainer: Trainer) -> None:
        findings = findings_of(trainer)
        if len(findings) == self._written_findings:
            return
        self._written_findings = len(findings)
        self.client.log_dict(self.run_id, [f.to_dict() for f in findings], "findings.json")
        codes = ",".join(dict.fromkeys(f.code for f in findings))
        self.client.set_tag(self.run_id, "gradwise.findings", codes[:5000])


# ------------------------------------------------------------------------------------------ tuning studies


def study_parent_run(cfg: RunConfig, study: str, study_dir: Path, settings: dict[str, Any]) -> str:
    """The id of a study's parent run (created on first use; found again by its tags on a re-run or by another
    worker). `settings` (metric, direction, sampler, space, ...) become its params."""
    from mlflow.entities import Param

    client, experiment_id = connect(cfg)
    where = str(study_dir.resolve())
    for run in client.search_runs([experiment_id], filter_string=f"tags.`gradwise.study` = '{study}' and "
                                  "tags.`gradwise.role` = 'study'", max_results=100):
        if run.data.tags.get("gradwise.dir") == where:
            return run.info.run_id
    run = client.create_run(experiment_id, run_name=f"study {study}", tags={
        "gradwise.study": study, "gradwise.role": "study", "gradwise.dir": where, "mlflow.source.name": "gradwise"})
    params = [Param(k, mask_secrets(str(v))[:6000]) for k, v in settings.items()]
    for i in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[i:i + 100])
    return run.info.run_id


def record_trial(cfg: RunConfig, context: TrialContext, state: str, values: dict[str, float]) -> None:
    """After a trial: its state and objective values on its own run, and the values on the parent (step = trial
    number, so the parent's charts are the study's history); the parent is left FINISHED after each trial."""
    from mlflow.entities import Metric

    client, _ = connect(cfg)
    now = int(time.time() * 1000)
    if context.run_id is not None:
        client.set_tag(context.run_id, "gradwise.trial_state", state)
        if values:
            client.log_batch(context.run_id, metrics=[Metric(f"objective/{k}", v, now, 0) for k, v in values.items()])
    if values:
        client.log_batch(context.parent_run_id,
                         metrics=[Metric(k, v, now, context.trial) for k, v in values.items()])
    client.set_terminated(context.parent_run_id, "FINISHED")

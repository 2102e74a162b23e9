"""TensorBoard: event files in DIR/tensorboard/ (`tensorboard --logdir runs`).

Scalars: ``step/train_loss`` and ``step/lr`` every ``train.log_every`` optimizer steps (x: the step), every number of
an epoch's metrics.jsonl row as ``epoch/<name>`` (x: the epoch), summary.json's test metrics as ``test/<name>``. The
doctor's findings as text at the step each was made (tag ``doctor/findings``, which TensorBoard files under
``doctor/findings/text_summary``); the config as hparams (HPARAMS tab, with the kept epoch's and the test metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradwise.track.base import StepTracker, epoch_metrics, findings_of, flat_config

if TYPE_CHECKING:
    from gradwise.train.loop import Trainer

DIRNAME = "tensorboard"


class TensorBoardTracker(StepTracker):
    name = "tensorboard"

    def start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._written_findings = 0
        # a resumed run appends a new event file next to the old ones; TensorBoard reads them as one run
        # flush_secs: written by the writer's own thread, so the loop never waits on the disk
        self.writer = SummaryWriter(log_dir=str(trainer.run_dir.path / DIRNAME), max_queue=1000, flush_secs=10)

    def write_steps(self, rows: list[tuple[int, float, float]]) -> None:
        for step, loss, lr in rows:
            self.writer.add_scalar("step/train_loss", loss, step)
            self.writer.add_scalar("step/lr", lr, step)

    def epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        epoch = int(logs["epoch"])
        for key, value in epoch_metrics(logs).items():
            self.writer.add_scalar(f"epoch/{key}", value, epoch)
        self._write_findings(trainer)

    def fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        epochs = int(summary.get("epochs_completed") or 0)
        test = epoch_metrics(summary.get("test") or {})
        for key, value in test.items():
            self.writer.add_scalar(f"test/{key}", value, epochs)
        self._write_findings(trainer)
        self._write_hparams(trainer, summary, test)
        self.close()

    def failed(self, trainer: Trainer, exc: BaseException) -> None:
        self._write_findings(trainer)
        self.close()

    def close(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            self.writer = None
            writer.close()

    def _write_findings(self, trainer: Trainer) -> None:
        findings = findings_of(trainer)
        for finding in findings[self._written_findings:]:
            fixes = "".join(f"\n- fix: {fix}" for fix in finding.fixes)
            text = f"**{finding.severity.upper()} `{finding.code}`** (epoch {finding.epoch}, step " \
                   f"{finding.step}): {finding.message}{fixes}"
            self.writer.add_text("doctor/findings", text, finding.step if finding.step is not None else trainer.step)
        self._written_findings = len(findings)

    def _write_hparams(self, trainer: Trainer, summary: dict[str, Any], test: dict[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams

        # the metrics beside the config: the kept epoch's (the weights the run ends with) and the test split's
        kept = {f"hparam/{k}": v for k, v in epoch_metrics(summary.get("kept") or {}).items()
                if k.startswith(("train_", "val_"))}
        metrics = {**kept, **{f"hparam/{k}": v for k, v in test.items()}}
        exp, ssi, sei = hparams(flat_config(self.cfg), metrics)
        # into this run's own event file (SummaryWriter.add_hparams would start a sub-run in a new directory)
        file_writer = self.writer._get_file_writer()
        for summary_proto in (exp, ssi, sei):
            file_writer.add_summary(summary_proto)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, int(summary.get("epochs_completed") or 0))

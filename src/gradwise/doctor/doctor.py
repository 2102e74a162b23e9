"""The Doctor callback: probes in the loop's events, findings written live to the run directory."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from gradwise.doctor.findings import Finding
from gradwise.train.events import Callback

if TYPE_CHECKING:
    from gradwise.config import DoctorConfig
    from gradwise.train.loop import Trainer


class Doctor(Callback):
    key = "doctor"
    order = 30  # before early stopping and the progress bar

    def __init__(self, cfg: DoctorConfig, task: str | None = None, bundle: Any = None) -> None:
        self.cfg = cfg
        self.task = task
        self.bundle = bundle
        self.findings: list[Finding] = []
        self._seen: set[str] = set()
        self.repairs = 0

    # reporting ----------------------------------------------------------------------------------------
    def report(self, trainer: Trainer, finding: Finding) -> None:
        if finding.code in self._seen:
            return
        self._seen.add(finding.code)
        self.findings.append(finding)
        trainer.run_dir.append_finding(finding.to_dict())
        if trainer.is_main and trainer.config.train.progress != "none":
            style = {"error": "bold red", "warning": "yellow", "info": "cyan"}[finding.severity]
            trainer.console.print(f"[{style}]doctor[/] {finding.render()}", highlight=False)

    # the NaN guard ------------------------------------------------------------------------------------
    def on_batch_end(self, trainer: Trainer) -> None:
        if not self.cfg.nan_guard:
            return
        if bool(torch.isfinite(trainer.last_loss)):
            return
        trainer.state_is_good = False
        self.report(trainer, Finding(
            "nonfinite_values", "error",
            f"the training loss became {trainer.last_loss.item()} at step {trainer.step}",
            evidence={"step": trainer.step, "loss": str(trainer.last_loss.item()),
                      "lr": trainer.optimizer.param_groups[0]["lr"]},
            causes=["learning rate too high", "exploding gradients", "log of zero / division by zero in the loss"],
            fixes=["optim.lr=<a tenth of now>", "train.clip_grad=1.0", "doctor.repair=true"],
            step=trainer.step, epoch=trainer.epoch + 1))
        if self.cfg.repair and self.repairs < self.cfg.max_repairs:
            self.repairs += 1
            trainer.request_rollback("nonfinite loss", lr_factor=0.1, clip_grad=trainer.clip_grad or 1.0)
            self._seen.discard("nonfinite_values")
        elif self.cfg.halt_on_error:
            trainer.should_stop = True
            trainer.stop_reason = f"non-finite loss at step {trainer.step} (doctor NaN guard)"
            trainer.status_override = "failed"

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if not math.isfinite(logs.get("train_loss", 0.0)):
            trainer.state_is_good = False

    def state_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings], "repairs": self.repairs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.findings = [Finding.from_dict(d) for d in state.get("findings", [])]
        self._seen = {f.code for f in self.findings}
        self.repairs = state.get("repairs", 0)

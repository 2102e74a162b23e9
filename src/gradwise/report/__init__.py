"""What a run leaves to look at: per-step records (steps.jsonl, probes.jsonl) and the self-contained report.html."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gradwise.config import RunConfig
    from gradwise.train.events import Callback


def run_callbacks(cfg: RunConfig) -> list[Callback]:
    """The callbacks every run gets from this package (added to the fit's callbacks by gradwise.api)."""
    from gradwise.report.steps import StepLog
    from gradwise.report.writer import ReportWriter
    from gradwise.train.trial import current as current_trial

    if current_trial() is not None:  # a tuning trial: its report.html on demand, `gradwise report DIR`
        return [StepLog(cfg.train.log_every)]
    return [StepLog(cfg.train.log_every), ReportWriter()]

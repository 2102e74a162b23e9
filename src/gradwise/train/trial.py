"""Trial mode: what a run started by `gradwise tune` leaves out that a plain run does.

A tuning trial is an ordinary run in its own directory, but most of what a plain run writes for later is never read
for a trial: the study compares trials by their metrics. Measured on 8 MNIST-1D trials of 2 epochs, the fixed costs
(a checkpoint every epoch with fsync, report.html, reloading the best checkpoint for a test pass, fsynced small
files) were about as much time again as the training itself. In trial mode (`trial_mode(...)`, entered by
gradwise.tune.objective around each trial):

- checkpoints: `checkpoints/last.pt` at an epoch's end only once `checkpoint_seconds` have passed since the trial
  started or last wrote one (a long trial killed outright loses at most that much); a Ctrl-C / SIGTERM still saves
  one where it stops (the retry continues from it). No best.pt, so no best-weights reload at the end;
- no test pass (unless `test`: then the trial runs with a plain run's checkpoints, restores its best epoch and
  evaluates the test split, whose metrics go into trials.csv);
- no report.html (`gradwise report DIR` writes one on demand from config, metrics and findings);
- config.yaml, summary.json, data_report.json, preprocess.json, findings.jsonl without fsync: they are renamed into
  place whole as before, but the study's own record is the Optuna storage, not the trial's files.

What stays: config.yaml, metrics.jsonl, findings.jsonl, summary.json, data_report.json, preprocess.json, steps.jsonl,
and every live check of the doctor (how a trial is marked diverged).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass

from gradwise.files import unsynced


@dataclass
class TrialMode:
    test: bool = False  # evaluate the test split (best epoch restored): per-epoch checkpoints as in a plain run
    checkpoint_seconds: float = 300.0  # a checkpoint at an epoch's end once this long since the last; 0: every epoch

    def epoch_checkpoints(self) -> EpochCheckpoints | None:
        """The rule for epoch-end checkpoints of one trial's fit (None: every epoch, as a plain run)."""
        if self.test or self.checkpoint_seconds <= 0:
            return None
        return EpochCheckpoints(self.checkpoint_seconds)


class EpochCheckpoints:
    """Whether an epoch's end writes last.pt: once `seconds` have passed since the fit started or last wrote one."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.since = time.monotonic()
        self.written = 0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.since < self.seconds:
            return False
        self.since = now
        self.written += 1
        return True


_MODE: contextvars.ContextVar[TrialMode | None] = contextvars.ContextVar("gradwise_trial_mode", default=None)


def current() -> TrialMode | None:
    """The trial mode of the run being set up or trained in this thread (None: a plain run)."""
    return _MODE.get()


@contextlib.contextmanager
def trial_mode(mode: TrialMode) -> Iterator[TrialMode]:
    """Within the block, `gradwise.train` runs are tuning trials (see the module's docstring)."""
    token = _MODE.set(mode)
    try:
        with unsynced():  # small files renamed into place whole, not fsynced (gradwise.files)
            yield mode
    finally:
        _MODE.reset(token)

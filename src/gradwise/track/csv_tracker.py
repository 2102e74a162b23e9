"""CSV: DIR/metrics.csv, the epoch rows of metrics.jsonl as a table (one column per metric) for a spreadsheet."""

from __future__ import annotations

import csv
import io
import os
from typing import TYPE_CHECKING, Any

from gradwise.track.base import Tracker

if TYPE_CHECKING:
    from pathlib import Path

    from gradwise.train.loop import Trainer

FILENAME = "metrics.csv"


class CsvTracker(Tracker):
    name = "csv"

    def start(self, trainer: Trainer) -> None:
        self.path: Path = trainer.run_dir.path / FILENAME
        if trainer.history:  # resumed: the epochs before the resume
            self._write(trainer.history)

    def epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        # the whole table, rewritten: columns appear as metrics do (val_* on evaluated epochs, keys the doctor adds),
        # and a rollback drops epochs from the history; a few rows of text cost microseconds
        self._write([*trainer.history, logs])

    def fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        self._write(trainer.history)

    def failed(self, trainer: Trainer, exc: BaseException) -> None:
        self._write(trainer.history)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(buffer.getvalue())
        os.replace(tmp, self.path)  # a reader never sees half a file

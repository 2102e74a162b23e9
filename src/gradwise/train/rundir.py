"""The run directory, a documented contract that users and tools read.

    DIR/config.yaml          the resolved config (every default filled in)
    DIR/metrics.jsonl        one JSON object per epoch: epoch, step, lr, train_loss, val_loss, val_*, seconds
    DIR/findings.jsonl       the doctor's findings, one JSON object each
    DIR/summary.json         status (running|completed|stopped|failed), best/final/test metrics, wall seconds
    DIR/checkpoints/last.pt  the newest good state (model, optimizer, schedule, RNG, ...); best.pt the best one
                             (a hard link to last.pt when both hold the same epoch: gradwise only ever replaces
                             these files, so overwrite them by renaming, not by writing into them)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from gradwise.errors import CheckpointError
from gradwise.train.checkpoint import atomic_write_json, atomic_write_text


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{name}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


class RunDir:
    """Writes the run directory. Only the main process writes (others get is_main=False and write nothing)."""

    def __init__(self, path: str | Path, is_main: bool = True) -> None:
        self.path = Path(path)
        self.is_main = is_main
        self.checkpoints = self.path / "checkpoints"
        if is_main:
            self.checkpoints.mkdir(parents=True, exist_ok=True)

    # files ----------------------------------------------------------------------------------------------
    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    def write_config(self, text: str) -> None:
        if self.is_main:
            atomic_write_text(self.path / "config.yaml", text)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl whole (used on resume, so it matches the checkpoint exactly)."""
        if self.is_main:
            atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))

    def append_metrics(self, row: dict[str, Any]) -> None:
        # no fsync: the checkpoint holds the history too, and a resume rewrites metrics.jsonl from it
        self._append("metrics.jsonl", row, sync=False)

    def append_finding(self, finding: dict[str, Any]) -> None:
        self._append("findings.jsonl", finding)

    def write_findings(self, findings: list[dict[str, Any]]) -> None:
        if self.is_main:
            atomic_write_text(self.path / "findings.jsonl", "".join(json.dumps(f) + "\n" for f in findings))

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.is_main:
            atomic_write_json(self.path / "summary.json", summary)

    def _append(self, name: str, obj: dict[str, Any], sync: bool = True) -> None:
        if not self.is_main:
            return
        # one line per write, flushed (and fsynced unless asked not to): a killed run keeps every complete line
        with open(self.path / name, "a") as f:
            f.write(json.dumps(obj, default=str) + "\n")
            f.flush()
            if sync:
                os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: everything before it is still good
    return rows


def read_run(path: str | Path) -> dict[str, Any]:
    """Read a run directory's files (for `gradwise doctor DIR`, reports and tools)."""
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"run directory '{p}' does not exist; give a directory written by gradwise train "
                              "(it holds config.yaml and metrics.jsonl).")
    if not (p / "config.yaml").exists() and not (p / "metrics.jsonl").exists():
        raise CheckpointError(f"'{p}' is not a gradwise run directory: it has no config.yaml or metrics.jsonl.")
    summary = {}
    if (p / "summary.json").exists():
        try:
            summary = json.loads((p / "summary.json").read_text())
        except json.JSONDecodeError:
            summary = {}
    return {"metrics": read_jsonl(p / "metrics.jsonl"), "findings": read_jsonl(p / "findings.jsonl"),
            "summary": summary, "config": (p / "config.yaml").read_text() if (p / "config.yaml").exists() else ""}

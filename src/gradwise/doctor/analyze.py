"""Re-analysis of a finished or crashed run directory from its files (`gradwise doctor DIR`).

Only the curve rules can run from files: metrics.jsonl holds the per-epoch losses (and the eval-mode loss on
training rows the live doctor logs), summary.json the facts the pre-flight measured (the know-nothing loss, ...)
when the run got that far. Findings already in findings.jsonl are kept; the curve rules add what they find on
top (e.g. for a run trained with the doctor off, or one that crashed before its end-of-training checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gradwise.doctor.findings import SEVERITY_RANK, Finding, fill_fixes
from gradwise.doctor.preflight import Facts
from gradwise.doctor.rules import curve_findings, explained
from gradwise.train.rundir import read_run


def _config(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def analyze_run(path: str | Path) -> list[Finding]:
    """Findings for the run directory `path`, most severe first. Raises CheckpointError when `path` is not a
    run directory."""
    run = read_run(path)
    metrics = [r for r in run["metrics"] if isinstance(r, dict) and "train_loss" in r]
    summary = run["summary"] if isinstance(run["summary"], dict) else {}
    cfg = _config(run["config"])
    facts_d = (summary.get("doctor") or {}).get("facts")
    facts = Facts.from_dict(facts_d) if isinstance(facts_d, dict) else None
    train = cfg.get("train") or {}
    es = train.get("early_stopping") or {}
    keeps_best = bool(es.get("enabled", True) and es.get("restore_best", True)
                      and es.get("monitor", "val_loss") == "val_loss" and any("val_loss" in r for r in metrics))
    epochs = train.get("epochs") if isinstance(train.get("epochs"), int) else None
    finished = bool(summary) and summary.get("status") != "running"

    found: dict[str, Finding] = {}
    for d in run["findings"]:
        try:
            f = Finding.from_dict(d)
        except (TypeError, ValueError):
            continue  # a line from another tool or version: skip it rather than fail the analysis
        if f.code not in found or f.rank > found[f.code].rank:
            found[f.code] = f
    lrs = [r["lr"] for r in metrics if isinstance(r.get("lr"), int | float)]
    bs = train.get("batch_size") if isinstance(train.get("batch_size"), int) else None
    for f in curve_findings(metrics, facts, final=finished, planned_epochs=epochs, early_stopping=keeps_best):
        if f.code not in found or f.rank > found[f.code].rank:
            f.fixes = fill_fixes(f.fixes, max(lrs) if lrs else None, bs)
            found[f.code] = f
    # a symptom whose root cause another check found is info, as in the live doctor's summary
    return sorted(explained(list(found.values())), key=lambda f: -SEVERITY_RANK[f.severity])

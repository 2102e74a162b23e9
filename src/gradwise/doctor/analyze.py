"""Re-analysis of a finished or crashed run directory from its files (`gradwise doctor DIR`).

Only the curve rules can run from files: metrics.jsonl holds the per-epoch losses (and the eval-mode loss on
training rows the live doctor logs), summary.json the facts the pre-flight measured (the know-nothing loss, ...)
when the run got that far. Findings already in findings.jsonl are kept (a finished run's file is its final list,
the same as summary.json's); the curve rules add what they find on top (e.g. for a run trained with the doctor
off, or one that crashed before its end-of-training checks), with fixes judged against the run's config and model
as the live doctor judges them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gradwise.config import validate_config
from gradwise.doctor.findings import SEVERITY_RANK, Finding, fill_fixes
from gradwise.doctor.fixes import RunContext
from gradwise.doctor.preflight import Facts
from gradwise.doctor.rules import curve_findings, explained
from gradwise.errors import ConfigError
from gradwise.train.rundir import read_run


def _config(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _context(path: Path, cfg: dict[str, Any], summary: dict[str, Any]) -> RunContext | None:
    """The run context the live doctor stored (summary.json: doctor.run); for a run without one (doctor off, or
    crashed) what the files say: a config run leaves data_report.json (with the input shape), a fit() run does
    not. None when config.yaml is not a valid config."""
    try:
        config = validate_config(cfg, "config.yaml").to_dict()
    except ConfigError:
        return None
    stored = (summary.get("doctor") or {}).get("run")
    if isinstance(stored, dict):
        return RunContext.from_dict(config, stored)
    try:
        report = json.loads((path / "data_report.json").read_text())
    except (OSError, ValueError):
        return RunContext(config, "module")
    facts = (summary.get("doctor") or {}).get("facts") or {}
    counts = report.get("class_counts_before_sampling")
    n_outputs = facts.get("n_outputs") or (len(counts) if isinstance(counts, dict | list) and counts else None)
    if n_outputs is None and report.get("task") == "regression":
        n_outputs = 1
    return RunContext(config, "factory" if (config.get("model") or {}).get("factory") else "builtin",
                      report.get("input_shape"), n_outputs, report.get("task"))


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

    # the latest line of each code, as the live doctor holds it: a finished run's file is its final list (one line
    # per code); a crashed run's is the log of its reports, where a later one is the newer judgment
    found: dict[str, Finding] = {}
    for d in run["findings"]:
        try:
            f = Finding.from_dict(d)
        except (TypeError, ValueError):
            continue  # a line from another tool or version: skip it rather than fail the analysis
        found[f.code] = f
    lrs = [r["lr"] for r in metrics if isinstance(r.get("lr"), int | float)]
    bs = train.get("batch_size") if isinstance(train.get("batch_size"), int) else None
    context = _context(Path(path), cfg, summary)
    for f in curve_findings(metrics, facts, final=finished, planned_epochs=epochs, early_stopping=keeps_best):
        if f.code not in found or f.rank > found[f.code].rank:
            # the fixes judged as the live doctor judges them (the same run context)
            if context is None:
                f.fixes = fill_fixes(f.fixes, max(lrs) if lrs else None, bs)
            else:
                context.adapt(f, max(lrs) if lrs else None, bs)
            found[f.code] = f
    # a symptom whose root cause another check found is info, as in the live doctor's summary
    return sorted(explained(list(found.values())), key=lambda f: -SEVERITY_RANK[f.severity])

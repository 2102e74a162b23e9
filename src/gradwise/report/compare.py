"""`gradwise compare DIR DIR ...`: one page overlaying several runs' curves, with their config differences and final
metrics (how a user decides which change helped)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from gradwise.errors import CheckpointError
from gradwise.report.html import CSP, CSS, RunFiles, _cell, _num
from gradwise.report.svg import PALETTE, Chart
from gradwise.train.rundir import read_run


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _labels(runs: list[RunFiles]) -> list[str]:
    """A short label per run: its directory name (its name and the directory when those repeat)."""
    names = [r.path.name or str(r.path) for r in runs]
    if len(set(names)) < len(names):
        names = [str(r.path) for r in runs]
    return names


def build_compare(paths: list[Path]) -> str:
    runs: list[RunFiles] = []
    for p in paths:
        read_run(p)  # a clear error for a directory that is no run
        run = RunFiles(p)
        if not run.metrics and not run.config:
            raise CheckpointError(f"'{p}' holds no metrics.jsonl or config.yaml to compare; give directories written "
                                  "by gradwise train.")
        runs.append(run)
    labels = _labels(runs)
    monitor = {str(((r.config.get("train") or {}).get("early_stopping") or {}).get("monitor") or "val_loss")
               for r in runs}
    keys = ["val_loss", "train_loss"] + sorted(m for m in monitor if m not in ("val_loss", "train_loss"))
    charts = []
    for key in keys:
        if not any(key in row for r in runs for row in r.metrics):
            continue
        c = Chart(key, "epoch", key, width=900, height=320, xint=True)
        for i, (r, label) in enumerate(zip(runs, labels, strict=True)):
            rows = [row for row in r.metrics if key in row]
            c.line([row.get("epoch") for row in rows], [_num(row.get(key)) for row in rows], label,
                   color=PALETTE[i % len(PALETTE)], points=True)
        charts.append(c.render())
    flat = [_flatten(r.config) for r in runs]
    all_keys = list(dict.fromkeys(k for f in flat for k in f))
    skip = {"out", "name"}  # always differ, and say nothing about what changed the outcome
    differing = [k for k in all_keys if k not in skip and len({repr(f.get(k, "—")) for f in flat}) > 1]
    head = "".join(f"<th>{escape(label)}</th>" for label in labels)
    diff_rows = "".join(f"<tr><th>{escape(k)}</th>" + "".join(f"<td>{_cell(f.get(k, '—'))}</td>" for f in flat)
                        + "</tr>" for k in differing)
    diff = (f"<table><tr><th>config key</th>{head}</tr>{diff_rows}</table>" if differing else
            '<p class="muted">the configs are the same (besides name and out).</p>')

    def final(r: RunFiles) -> dict[str, Any]:
        s = r.summary
        row: dict[str, Any] = {"status": s.get("status", "—"), "epochs": s.get("epochs_completed", len(r.metrics))}
        kept = s.get("kept") or (r.metrics[-1] if r.metrics else {})
        row.update({k: v for k, v in kept.items() if k.startswith(("val_", "train_loss"))})
        if (s.get("best") or {}).get("value") is not None:
            row[f"best {s['best'].get('monitor')}"] = s["best"]["value"]
        row.update(s.get("test") or {})
        row["findings"] = ", ".join(str(f.get("code")) for f in r.findings) or "none"
        row["wall_seconds"] = s.get("wall_seconds", "—")
        return row

    finals = [final(r) for r in runs]
    mkeys = list(dict.fromkeys(k for f in finals for k in f))
    metric_rows = "".join(f"<tr><th>{escape(k)}</th>" + "".join(f"<td>{_cell(f.get(k, '—'))}</td>" for f in finals)
                          + "</tr>" for k in mkeys)
    dirs = "".join(f"<li><b>{escape(label)}</b>: {escape(str(r.path))} ({escape(r.name)})</li>"
                   for r, label in zip(runs, labels, strict=True))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\"><title>gradwise compare: "
            f"{escape(', '.join(labels))}</title><style>{CSS}</style></head><body><h1>Comparing {len(runs)} runs</h1>"
            f"<ul>{dirs}</ul><h2>Curves</h2>{''.join(charts) or '<p class=muted>no metrics.</p>'}"
            f"<h2>Config differences</h2>{diff}<h2>Final metrics</h2>"
            f"<table class='num'><tr><th></th>{head}</tr>{metric_rows}</table></body></html>")

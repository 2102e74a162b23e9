"""DIR/report.html: one self-contained page (inline SVG and CSS, no script, no fetch) of a run directory.

Built from whatever files the directory has (metrics.jsonl, steps.jsonl, probes.jsonl, findings.jsonl,
summary.json, config.yaml, data_report.json), so runs trained before steps/probes were recorded get a report too.
Every string that comes from the user or the data (run name, paths, column and class names, layer names, config
values, messages) is escaped; a Content-Security-Policy forbids scripts and network fetches besides.
"""

from __future__ import annotations

import functools
import json
import math
from html import escape
from pathlib import Path
from typing import Any

import yaml

from gradwise.report.steps import PROBES_FILE, STEPS_FILE
from gradwise.report.svg import PALETTE, SEVERITY_COLOR, Chart
from gradwise.train.rundir import read_jsonl

REPORT_FILE = "report.html"
MAX_LAYERS = 12  # layers drawn per gradient-flow chart (the rest are listed as "+N more")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1120px;padding:16px 24px;
color:#222;background:#fff}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
.status{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:13px;vertical-align:middle}
.completed{background:#2ca02c}.failed{background:#d62728}.stopped{background:#e69500}.running{background:#1f77b4}
table{border-collapse:collapse;margin:6px 0 12px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}table.num td{font-variant-numeric:tabular-nums}tr.tot td{font-weight:600}
pre{background:#f7f7f7;border:1px solid #e4e4e4;padding:8px;overflow:auto;max-height:420px;font-size:12px}
.finding-item{border-left:4px solid #999;padding:4px 10px;margin:8px 0;background:#fafafa}
.sev-error{border-color:#d62728}.sev-warning{border-color:#e69500}.sev-info{border-color:#1f77b4}
.code{font-family:ui-monospace,monospace;font-weight:600}.muted{color:#777}.row{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{display:block;margin:6px 0;max-width:100%;height:auto}svg .ct{font-weight:600;font-size:13px}
svg .tl{font-size:11px;fill:#444}svg .al{font-size:12px;fill:#333}svg .lg{font-size:11px;fill:#333}
svg .ml{font-size:10px;font-weight:600}svg .frame{fill:none;stroke:#bbb}svg .grid{stroke:#eee}svg .tick{stroke:#999}
svg .ref{stroke:#999;stroke-dasharray:4 3}svg .empty{fill:#999}
details summary{cursor:pointer}
"""


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _num(v: Any) -> float:
    """A value from a record: numbers as they are, "nan"/"inf" strings back to floats, anything else NaN."""
    if isinstance(v, bool):
        return math.nan
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return escape(f"{v:.6g}")
    if isinstance(v, dict | list):
        return escape(json.dumps(v, default=str))
    return escape(str(v))


def _kv_table(d: dict[str, Any]) -> str:
    if not d:
        return '<p class="muted">none</p>'
    return '<table class="num">' + "".join(f"<tr><th>{escape(str(k))}</th><td>{_cell(v)}</td></tr>"
                                           for k, v in d.items()) + "</table>"


def _finding(f: dict[str, Any]) -> dict[str, Any]:
    """A finding row with its fields in the shapes the report draws (an edited file may hold anything)."""
    out = dict(f)
    out["code"] = str(f.get("code", "finding"))
    out["message"] = str(f.get("message", ""))
    fixes = f.get("fixes")
    out["fixes"] = [str(x) for x in fixes] if isinstance(fixes, list) else ([str(fixes)] if fixes else [])
    out["evidence"] = f.get("evidence") if isinstance(f.get("evidence"), dict) else {}
    for key in ("epoch", "step"):
        if not isinstance(f.get(key), int | float) or isinstance(f.get(key), bool):
            out[key] = None
    return out


def finding_tooltip(f: dict[str, Any]) -> str:
    where = f" (epoch {f.get('epoch')}, step {f.get('step')})" if f.get("epoch") is not None else ""
    ev = f.get("evidence") or {}
    lines = [f"{str(f.get('severity', '')).upper()} {f.get('code')}{where}", str(f.get("message", ""))]
    if ev:
        lines.append("evidence: " + ", ".join(f"{k}={v}" for k, v in list(ev.items())[:12]))
    if f.get("fixes"):
        lines.append("fix: " + "; ".join(str(x) for x in f["fixes"]))
    return "\n".join(lines)


def action_tooltip(a: dict[str, Any]) -> str:
    ch = a.get("changes") or {}
    what = ", ".join(f"{k}={v}" for k, v in ch.items() if k not in ("by",))
    src = f", restored {a.get('restored')}" if a.get("restored") else ""
    return f"{a.get('action', 'repair')} at step {a.get('step')} (epoch {a.get('epoch')}){src}: {a.get('reason')}\n" \
           f"{what}" + (f"\noutcome: {a['outcome']}" if a.get("outcome") else "")


class RunFiles:
    """What a run directory holds, read once (missing files read as empty)."""

    def __init__(self, path: Path, summary: dict[str, Any] | None = None) -> None:
        self.path = path
        self.metrics = read_jsonl(path / "metrics.jsonl")
        rows = read_jsonl(path / STEPS_FILE)
        self.steps = [r for r in rows if "event" not in r]
        self.step_events = [r for r in rows if "event" in r]
        self._step_rows = rows
        self.probes = read_jsonl(path / PROBES_FILE)
        self.findings = read_jsonl(path / "findings.jsonl")
        self.summary = summary if summary is not None else _json(path / "summary.json")
        if isinstance(self.summary.get("findings"), list):
            self.findings = list(self.summary["findings"])  # the final judgment of each code
        # the files are data someone may have edited: a finding is drawn only as a dict of the expected shapes
        self.findings = [_finding(f) for f in self.findings if isinstance(f, dict)]
        self.data_report = _json(path / "data_report.json")
        cfg_path = path / "config.yaml"
        self.config_text = cfg_path.read_bytes().decode("utf-8", "replace") if cfg_path.exists() else ""
        actions = self.summary.get("actions")
        self.actions: list[dict[str, Any]] = [a for a in actions if isinstance(a, dict)] \
            if isinstance(actions, list) else []

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        """config.yaml parsed (only when asked: the pure-Python parser is the slowest part of a report)."""
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            cfg = yaml.load(self.config_text, Loader=loader) if self.config_text else {}  # noqa: S506 (a safe loader)
        except yaml.YAMLError:
            cfg = {}
        return cfg if isinstance(cfg, dict) else {}

    @property
    def name(self) -> str:
        return str(self.summary.get("name") or (self.config.get("name") if self.config_text else None)
                   or self.path.name)

    def step_segments(self) -> list[tuple[list[dict[str, Any]], bool]]:
        """steps.jsonl as (rows, undone) lines: the run's steps, and apart the steps each rollback took back (the
        rows after the state it restored, up to the rollback)."""
        kept: list[dict[str, Any]] = []
        undone: list[list[dict[str, Any]]] = []
        for r in self._step_rows:
            if r.get("event") == "rollback":
                back = _num(r.get("step"))
                back = back if math.isfinite(back) else 0.0
                cut = [x for x in kept if _num(x.get("step")) > back]
                if cut:
                    # keep the last kept row in the undone line too, so it is drawn from where it left the run
                    before = [x for x in kept if _num(x.get("step")) <= back]
                    undone.append(before[-1:] + cut)
                    kept = before
            elif "event" not in r:
                kept.append(r)
        return [(kept, False)] * bool(kept) + [(u, True) for u in undone]

    def step_of_epoch(self, epoch: Any) -> float:
        row = next((r for r in self.metrics if r.get("epoch") == epoch), None)
        return _num(row.get("step")) if row else math.nan


def _mark_findings(chart: Chart, run: RunFiles, axis: str) -> None:
    for f in run.findings:
        if axis == "step":
            x = f.get("step")
            x = _num(x) if x is not None else (run.step_of_epoch(f.get("epoch")) if f.get("epoch") else 0.0)
        else:
            x = _num(f.get("epoch")) if f.get("epoch") is not None else 0.0
        chart.mark(x, str(f.get("code")), finding_tooltip(f), color=SEVERITY_COLOR.get(str(f.get("severity")), "#555"),
                   cls=f"finding sev-{f.get('severity')}", code=str(f.get("code")))
    _mark_actions(chart, run, axis)


def _mark_actions(chart: Chart, run: RunFiles, axis: str) -> None:
    """A marker per repair where it happened: steps.jsonl's events know the step a rollback left (from_step);
    without them, the summary's actions at the step they went on from."""
    events = run.step_events if axis == "step" and run.step_events else None
    for a in events if events is not None else run.actions:
        if events is not None:
            x = _num(a.get("from_step"))
            text = f"↺ {a.get('event')}" + (f" to {a.get('step')}" if a.get("restored") else "")
            tip = action_tooltip({**a, "action": a.get("event")})
        else:
            x = _num(a.get("step")) if axis == "step" else _num(a.get("epoch"))
            text, tip = f"↺ {a.get('action', 'repair')}", action_tooltip(a)
        chart.mark(x, text, tip, color="#9467bd", cls="action", code=str(a.get("action", a.get("event"))))


def _loss_chart(run: RunFiles) -> Chart | None:
    if not run.metrics and not run.steps:
        return None
    vals = [_num(r.get("loss")) for r in run.steps] + [_num(r.get("train_loss")) for r in run.metrics]
    positive = [v for v in vals if math.isfinite(v)]
    logy = bool(positive) and min(positive) > 0 and max(positive) / min(positive) > 30
    c = Chart("Loss", "optimizer step", "loss" + (" (log)" if logy else ""), logy=logy, xint=True)
    for seg, undone in run.step_segments():
        c.line([r.get("step") for r in seg], [_num(r.get("loss")) for r in seg],
               "train (per step)" + (", undone" if undone else ""), color="#9ecae1" if not undone else "#bbbbbb",
               faded=undone, points=undone)
    if run.metrics:
        xs = [r.get("step") for r in run.metrics]
        c.line(xs, [_num(r.get("train_loss")) for r in run.metrics], "train (epoch)", color=PALETTE[0], points=True)
        if any("val_loss" in r for r in run.metrics):
            rows = [r for r in run.metrics if "val_loss" in r]
            c.line([r.get("step") for r in rows], [_num(r.get("val_loss")) for r in rows], "val", color=PALETTE[1],
                   points=True)
    _mark_findings(c, run, "step")
    return c


def _metric_charts(run: RunFiles) -> list[Chart]:
    """The validation metrics per epoch: one chart when they share the 0..1 scale (accuracy, F1, ...), else one
    chart each (MAE next to R² would flatten one of them)."""
    keys = [k for k in dict.fromkeys(k for r in run.metrics for k in r) if k.startswith("val_") and k != "val_loss"]
    keys = [k for k in keys if any(math.isfinite(_num(r.get(k))) for r in run.metrics)][:10]
    if not keys:
        return []
    values = [_num(r.get(k)) for r in run.metrics for k in keys]
    unit = all(-0.01 <= v <= 1.01 for v in values if math.isfinite(v))
    groups = [keys] if unit else [[k] for k in keys]
    charts = []
    for group in groups:
        c = Chart("Validation metrics" if unit else group[0], "epoch", "" if unit else group[0], xint=True)
        for k in group:
            rows = [r for r in run.metrics if k in r]
            c.line([r.get("epoch") for r in rows], [_num(r.get(k)) for r in rows], k, points=True)
        _mark_findings(c, run, "epoch")
        charts.append(c)
    return charts


def _lr_chart(run: RunFiles) -> Chart | None:
    c = Chart("Learning rate", "optimizer step", "LR", xint=True)
    if run.steps:
        for seg, undone in run.step_segments():
            c.line([r.get("step") for r in seg], [_num(r.get("lr")) for r in seg],
                   "LR (per step)" + (", undone" if undone else ""), color="#2ca02c", faded=undone, points=undone)
    elif run.metrics:
        c.line([r.get("step") for r in run.metrics], [_num(r.get("lr")) for r in run.metrics], "LR (epoch end)",
               color="#2ca02c", points=True)
    else:
        return None
    _mark_actions(c, run, "step")
    return c


def split_rewinds(rows: list[dict[str, Any]], key: str) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Records in file order as (kept, undone): a row whose `key` (step, epoch) is not past the row before it starts
    again after a rollback, and the rows it went back over are undone (drawn faded)."""
    kept: list[dict[str, Any]] = []
    undone: list[list[dict[str, Any]]] = []
    for r in rows:
        k = _num(r.get(key))
        if kept and math.isfinite(k) and k <= _num(kept[-1].get(key)):
            cut = [x for x in kept if _num(x.get(key)) >= k]
            kept = [x for x in kept if _num(x.get(key)) < k]
            undone.append(kept[-1:] + cut)
        kept.append(r)
    return kept, undone


def _layer_lines(c: Chart, rows: list[dict[str, Any]], key: str, name: str, field: str, color: str) -> None:
    kept, undone = split_rewinds([p for p in rows if name in (p.get("layers") or {})], key)
    c.line([p.get(key) for p in kept], [_num(p["layers"][name].get(field)) for p in kept], name, color=color,
           points=True)
    for seg in undone:  # before a rollback: what the repair undid (often the evidence, e.g. a gradient spike)
        c.line([p.get(key) for p in seg], [_num(p["layers"][name].get(field)) for p in seg], f"{name}, undone",
               color=color, points=True, faded=True, legend=False)


def _layer_charts(run: RunFiles) -> list[Chart]:
    steps = [p for p in run.probes if p.get("kind") == "step"]
    charts: list[Chart] = []
    if steps:
        layers = list(dict.fromkeys(n for p in steps for n in (p.get("layers") or {})))
        shown = layers[:MAX_LAYERS]
        g = Chart("Gradient norm per layer (doctor's probe steps)", "optimizer step", "‖grad‖ (log)", logy=True,
                  xint=True)
        u = Chart("Update / weight ratio per layer", "optimizer step", "‖ΔW‖ / ‖W‖ (log)", logy=True, xint=True)
        for i, name in enumerate(shown):
            color = PALETTE[i % len(PALETTE)]
            _layer_lines(g, steps, "step", name, "grad", color)
            _layer_lines(u, steps, "step", name, "update_ratio", color)
        if len(layers) > MAX_LAYERS:
            g.title += f" (first {MAX_LAYERS} of {len(layers)} layers)"
            u.title += f" (first {MAX_LAYERS} of {len(layers)} layers)"
        for c in (g, u):
            for f in run.findings:
                if f.get("code") in ("exploding_gradients", "vanishing_gradients", "lr_too_high", "lr_too_low",
                                     "nonfinite_values", "diverging_loss"):
                    c.mark(_num(f.get("step")), str(f.get("code")), finding_tooltip(f),
                           color=SEVERITY_COLOR.get(str(f.get("severity")), "#555"),
                           cls=f"finding sev-{f.get('severity')}", code=str(f.get("code")))
            _mark_actions(c, run, "step")
        charts += [g, u]
    acts = [p for p in run.probes if p.get("kind") == "activations"]
    if acts:
        layers = list(dict.fromkeys(n for p in acts for n in (p.get("layers") or {})))
        dead = [n for n in layers if any("dead" in (p["layers"].get(n) or {}) for p in acts)]
        sat = [n for n in layers if any("saturated" in (p["layers"].get(n) or {}) for p in acts)]
        for names, key, title in ((dead, "dead", "Dead units per layer (ReLU units that never fire on the probe "
                                   "batch)"), (sat, "saturated", "Saturated units per layer (sigmoid/tanh)")):
            if not names:
                continue
            c = Chart(title, "epoch", "share of the layer's units", xint=True)
            for i, name in enumerate(names[:MAX_LAYERS]):
                _layer_lines(c, acts, "epoch", name, key, PALETTE[i % len(PALETTE)])
            for f in run.findings:
                if f.get("code") in ("dead_units", "saturated_units", "bad_initialization"):
                    c.mark(_num(f.get("epoch")), str(f.get("code")), finding_tooltip(f),
                           color=SEVERITY_COLOR.get(str(f.get("severity")), "#555"),
                           cls=f"finding sev-{f.get('severity')}", code=str(f.get("code")))
            charts.append(c)
    return charts


def _findings_html(run: RunFiles) -> str:
    if not run.findings:
        return '<p class="muted">the doctor found nothing to report' + (
            "" if run.summary.get("doctor") or run.findings else " (or it was off)") + ".</p>"
    out = []
    for f in run.findings:
        sev = str(f.get("severity"))
        where = f" — epoch {escape(str(f.get('epoch')))}, step {escape(str(f.get('step')))}" \
            if f.get("epoch") is not None else ""
        fixes = "".join(f"<li><code>{escape(str(x))}</code></li>" for x in f.get("fixes") or [])
        causes = ", ".join(escape(str(x)) for x in f.get("causes") or [])
        out.append(f'<div class="finding-item sev-{escape(sev)}"><span class="code">{escape(sev.upper())} '
                   f'{escape(str(f.get("code")))}</span><span class="muted">{where}</span><br>'
                   f'{escape(str(f.get("message", "")))}'
                   + (f"<br><span class='muted'>likely causes: {causes}</span>" if causes else "")
                   + (f"<br>fix:<ul>{fixes}</ul>" if fixes else "")
                   + f"<details><summary>evidence</summary>{_kv_table(f.get('evidence') or {})}</details></div>")
    return "".join(out)


def _actions_html(run: RunFiles) -> str:
    if not run.actions:
        return ""
    rows = "".join(f"<tr><td>{_cell(a.get('step'))}</td><td>{_cell(a.get('epoch'))}</td>"
                   f"<td>{_cell(a.get('action'))}</td><td>{_cell(a.get('reason'))}</td><td>{_cell(a.get('restored'))}"
                   f"</td><td>{_cell({k: v for k, v in (a.get('changes') or {}).items()})}</td>"
                   f"<td>{_cell(a.get('outcome', ''))}</td></tr>" for a in run.actions)
    return ("<h3>Repairs</h3><table><tr><th>step</th><th>epoch</th><th>action</th><th>reason</th><th>restored</th>"
            f"<th>changes</th><th>outcome</th></tr>{rows}</table>")


def layer_table(model: Any) -> str:
    """The model's modules that hold parameters directly, with their counts."""
    rows, total, trainable = [], 0, 0
    for name, m in model.named_modules():
        own = list(m.named_parameters(recurse=False))
        if not own:
            continue
        n = sum(p.numel() for _, p in own)
        t = sum(p.numel() for _, p in own if p.requires_grad)
        total += n
        trainable += t
        shapes = ", ".join(f"{pn} {tuple(p.shape)}" for pn, p in own)
        rows.append(f"<tr><td>{escape(name or '(model)')}</td><td>{escape(type(m).__name__)}</td>"
                    f"<td>{escape(shapes)}</td><td>{n:,}</td><td>{'yes' if t == n else ('no' if t == 0 else 'part')}"
                    "</td></tr>")
    return ('<table class="num"><tr><th>layer</th><th>type</th><th>parameters</th><th>count</th><th>trains</th></tr>'
            + "".join(rows) + f"<tr class='tot'><td colspan='3'>total ({trainable:,} trainable)</td><td>{total:,}</td>"
            "<td></td></tr></table>")


def _summary_html(run: RunFiles) -> str:
    s = run.summary
    keep = ("status", "epochs_completed", "steps", "wall_seconds", "device", "precision", "parameters", "resumed",
            "restored_epoch", "stop_reason", "error")
    parts = [_kv_table({k: s[k] for k in keep if s.get(k) not in (None, "")})]
    for key, title in (("best", "best"), ("kept", "weights kept (the epoch the run ends with)"), ("test", "test")):
        if s.get(key):
            parts.append(f"<h3>{escape(title)}</h3>" + _kv_table(s[key]))
    if not s:
        parts = ['<p class="muted">no summary.json: the run is still going or was killed before it ended.</p>']
    return "".join(parts)


def build_report(path: str | Path, *, summary: dict[str, Any] | None = None, model: Any = None,
                 predictions: dict[str, Any] | None = None, notes: list[str] | None = None) -> str:
    """The HTML text of a run's report (the caller writes it)."""
    run = RunFiles(Path(path), summary)
    loss, lr = _loss_chart(run), _lr_chart(run)
    charts: list[Chart] = [c for c in (loss, *_metric_charts(run), lr) if c is not None]
    layer_charts = _layer_charts(run)
    status = str(run.summary.get("status") or "unknown")
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>gradwise report: {escape(run.name)}</title><style>{CSS}</style></head><body>")
    body = [f"<h1>{escape(run.name)} <span class='status {escape(status)}'>{escape(status)}</span></h1>",
            f"<p class='muted'>{escape(str(run.path))}</p>"]
    if run.summary.get("error"):
        body.append(f"<p><b>error:</b> {escape(str(run.summary['error']))}</p>")
    if run.summary.get("stop_reason"):
        body.append(f"<p><b>stopped:</b> {escape(str(run.summary['stop_reason']))}</p>")
    body.append("<h2>Training curves</h2><p class='muted'>Markers: the doctor's findings (hover for the message, "
                "evidence and fix; all of them are listed below) and repairs (↺).</p>"
                + "".join(c.render() for c in charts))
    if not charts:
        body.append('<p class="muted">no metrics recorded yet.</p>')
    body.append("<h2>Doctor's findings</h2>" + _findings_html(run) + _actions_html(run))
    body.append("<h2>Gradient flow and activations</h2>")
    body.append("".join(c.render() for c in layer_charts) if layer_charts else
                '<p class="muted">no probes.jsonl: the doctor was off, or the run predates probe records.</p>')
    n_eval = 0
    body.append("<h2>Evaluation</h2>")
    if predictions is not None:
        from gradwise.report.evaluation import evaluation_section

        try:
            html_eval, n_eval = evaluation_section(predictions)
            body.append(html_eval)
        except Exception as exc:  # one section must not cost the whole report
            body.append(f"<p class='muted'>could not evaluate: {escape(f'{type(exc).__name__}: {exc}')}</p>")
    else:
        body.append('<p class="muted">no predictions (no model or no val/test split available).</p>')
    for note in notes or []:
        body.append(f"<p class='muted'>{escape(note)}</p>")
    body.append("<h2>Summary</h2>" + _summary_html(run))
    if model is not None:
        body.append("<h2>Model</h2>" + layer_table(model))
    if run.data_report:
        body.append("<h2>Data</h2>" + _data_html(run.data_report))
    body.append("<h2>Config</h2><pre>" + escape(run.config_text or "(no config.yaml)") + "</pre>")
    body.append(f"<p class='muted'>{len(charts) + len(layer_charts) + n_eval} plots. Written by gradwise from the "
                "files of the run directory.</p></body></html>")
    return head + "".join(body)


def _data_html(report: dict[str, Any]) -> str:
    flat = {k: v for k, v in report.items() if not isinstance(v, dict | list) or k in ("warnings",)}
    parts = [_kv_table(flat)]
    for k, v in report.items():
        if isinstance(v, dict) and v:
            parts.append(f"<details><summary>{escape(str(k))}</summary>{_kv_table(v)}</details>")
    return "".join(parts)

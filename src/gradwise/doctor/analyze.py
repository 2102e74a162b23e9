"""Re-analysis of a finished or crashed run directory from its files (`gradwise doctor DIR`).

Only the curve rules can run from files: metrics.jsonl holds the per-epoch losses (and the eval-mode loss on
training rows the live doctor logs), summary.json the facts the pre-flight measured (the know-nothing loss, ...)
when the run got that far. Findings already in findings.jsonl are kept (a finished run's file is its final list,
the same as summary.json's); the curve rules add what they find on top (e.g. for a run trained with the doctor
off, or one that crashed before its end-of-training checks), with fixes judged against the run's config and model
as the live doctor judges them.

The files may be damaged (a crash mid-line, an edit, another tool's output, bytes that are not UTF-8): each is read
on its own, the lines and fields that can be read are analysed, and each damaged file is named in a note (one line)
instead of failing the analysis.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from pathlib import Path
from typing import Any

import yaml

from gradwise.config import validate_config
from gradwise.doctor import checks
from gradwise.doctor.facts import Facts
from gradwise.doctor.findings import SEVERITY_RANK, Finding, fill_fixes
from gradwise.doctor.fixes import RunContext
from gradwise.doctor.rules import curve_findings, explained
from gradwise.doctor.thresholds import DEFAULT, Thresholds, configured
from gradwise.errors import CheckpointError, ConfigError

# the fields of a findings.jsonl line, with the types Finding.render and the rules rely on
_FINDING_TYPES: dict[str, Any] = {"message": str, "evidence": dict, "causes": list, "fixes": list,
                                  "step": (int, type(None)), "epoch": (int, type(None))}


# what reading a value of the wrong type out of a hand-edited file raises
_DAMAGED = (TypeError, ValueError, KeyError, IndexError, AttributeError)
_NO_FACTS = ("summary.json is damaged: its doctor.facts cannot be read; analysed without the facts the pre-flight "
             "measured.")


class DamagedFileWarning(UserWarning):
    """A file of a run directory could not be read whole; `analyze_run` analysed what it could."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Files:
    """A run directory's files, read so that a damaged one is named in `notes` and never stops the analysis."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.notes: list[str] = []

    def bytes(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None  # a run stopped early has not written every file: nothing to say
        except OSError as exc:
            self.notes.append(f"{name} cannot be read ({exc.strerror or exc}); analysed without it.")
            return None

    def text(self, name: str) -> str | None:
        data = self.bytes(name)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.notes.append(f"{name} is damaged: byte {exc.start} is not UTF-8 text; analysed without it.")
            return None

    def json_object(self, name: str) -> dict[str, Any]:
        text = self.text(name)
        if text is None:
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            self.notes.append(f"{name} is damaged: it is not JSON (cut short or edited); analysed without it.")
            return {}
        if not isinstance(data, dict):
            self.notes.append(f"{name} is damaged: it holds a JSON {type(data).__name__}, not an object; analysed "
                              "without it.")
            return {}
        return data

    def jsonl(self, name: str) -> list[dict[str, Any]]:
        """The rows of a JSON-lines file that can be read; the others (not UTF-8, not JSON, not an object: a line
        cut short by a crash, an edit) are counted in a note."""
        data = self.bytes(name)
        if data is None:
            return []
        rows, bad = [], 0
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError is a ValueError too
                bad += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad += 1
        if bad:
            self.notes.append(f"{name}: {bad} line(s) damaged (not UTF-8 JSON objects: cut short by a crash or "
                              f"edited) were skipped; {len(rows)} line(s) analysed.")
        return rows

    def config(self) -> dict[str, Any]:
        text = self.text("config.yaml")
        if text is None:
            return {}
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            self.notes.append("config.yaml is damaged: it is not YAML; analysed without the run's settings.")
            return {}
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.notes.append("config.yaml is damaged: it is not a mapping of settings; analysed without them.")
            return {}
        return data


def _section(d: Any, key: str) -> dict[str, Any]:
    """`d[key]` when both are mappings, else {} (a damaged or hand-edited file can hold anything there)."""
    value = d.get(key) if isinstance(d, dict) else None
    return value if isinstance(value, dict) else {}


def _metric_rows(rows: list[dict[str, Any]], files: _Files) -> list[dict[str, Any]]:
    """metrics.jsonl's epoch rows as the curve rules read them: numbers only (NaN and inf are numbers: the rules
    report them), a row without a numeric train_loss skipped, a non-numeric field dropped, each counted in a note."""
    kept, bad_rows, bad_fields = [], 0, 0
    for row in rows:
        if "train_loss" not in row:
            continue  # not an epoch row (another tool's line): not ours to judge
        if not _number(row["train_loss"]):
            bad_rows += 1
            continue
        clean = {k: v for k, v in row.items() if _number(v) or v is None}
        if not isinstance(clean.get("epoch"), int) or clean["epoch"] < 1:
            clean.pop("epoch", None)
        bad_fields += len(row) - len(clean)
        kept.append(clean)
    if bad_rows or bad_fields:
        what = [f"{bad_rows} row(s) without a numeric train_loss skipped"] if bad_rows else []
        what += [f"{bad_fields} non-numeric value(s) ignored"] if bad_fields else []
        files.notes.append(f"metrics.jsonl is damaged: {' and '.join(what)}; {len(kept)} row(s) analysed.")
    return kept


def _finding(d: dict[str, Any]) -> Finding | None:
    """A findings.jsonl line as a Finding, or None when it is not one this version reads."""
    if any(k in d and not isinstance(d[k], t) for k, t in _FINDING_TYPES.items()):
        return None
    if not all(isinstance(x, str) for x in [*d.get("causes", []), *d.get("fixes", [])]):
        return None
    try:
        return Finding.from_dict(d)
    except (TypeError, ValueError):
        return None


def _context(path: Path, cfg: dict[str, Any], summary: dict[str, Any], files: _Files) -> RunContext | None:
    """The run context the live doctor stored (summary.json: doctor.run); for a run without one (doctor off, or
    crashed) what the files say: a config run leaves data_report.json (with the input shape), a fit() run does
    not. None when config.yaml is not a valid config."""
    try:
        config = validate_config(cfg, "config.yaml").to_dict()
    except ConfigError as exc:
        if cfg:  # an edited config.yaml (a missing one was said, or is a fit() run's choice)
            reason = " ".join(str(exc).split()).split(". ")[0]  # the first problem is enough to find the file
            reason = reason if len(reason) <= 200 else f"{reason[:197]}..."
            files.notes.append(f"config.yaml is not a valid config ({reason}); fixes are given without the run's "
                               "settings.")
        return None
    stored = _section(summary, "doctor").get("run")
    if isinstance(stored, dict):
        return RunContext.from_dict(config, stored)
    report = files.json_object("data_report.json")
    if not report:  # a fit() run writes none; a damaged one is named in the notes
        return RunContext(config, "module")
    facts = _section(summary, "doctor").get("facts")
    facts = facts if isinstance(facts, dict) else {}
    counts = report.get("class_counts_before_sampling")
    n_outputs = facts.get("n_outputs") or (len(counts) if isinstance(counts, dict | list) and counts else None)
    if n_outputs is None and report.get("task") == "regression":
        n_outputs = 1
    return RunContext(config, "factory" if (config.get("model") or {}).get("factory") else "builtin",
                      report.get("input_shape"), n_outputs, report.get("task"))


def _read(path: Path) -> _Files:
    if not path.is_dir():
        raise CheckpointError(f"run directory '{path}' does not exist; give a directory written by gradwise train "
                              "(it holds config.yaml and metrics.jsonl).")
    if not (path / "config.yaml").exists() and not (path / "metrics.jsonl").exists():
        raise CheckpointError(f"'{path}' is not a gradwise run directory: it has no config.yaml or metrics.jsonl.")
    return _Files(path)


def analyze_run(path: str | Path, notes: list[str] | None = None) -> list[Finding]:
    """Findings for the run directory `path`, most severe first. Raises CheckpointError when `path` is not a
    run directory.

    A damaged file (not UTF-8, not JSON, edited, a line cut short) does not stop the analysis: what can be read is
    analysed, and one line per damaged file is appended to `notes` (or, without a list, issued as a
    DamagedFileWarning)."""
    files = _read(Path(path))
    try:
        return _analyze(files)
    finally:
        if notes is not None:
            notes.extend(files.notes)
        else:
            for note in files.notes:
                warnings.warn(note, DamagedFileWarning, stacklevel=2)


def _doctor_settings(cfg: dict[str, Any], files: _Files) -> tuple[Thresholds, tuple[str, ...]]:
    """The run's doctor.thresholds and doctor.disable (as the live doctor used them); defaults when damaged."""
    doc = _section(cfg, "doctor")
    try:
        t = configured(doc.get("thresholds") or None)
        disabled = tuple(str(n) for n in doc.get("disable") or ())
        checks.validate_disabled(disabled)
    except (ConfigError, *_DAMAGED):
        files.notes.append("config.yaml: doctor.thresholds / doctor.disable cannot be read; judged with the "
                           "defaults.")
        return DEFAULT, ()
    return t, disabled


def _stored_facts(summary: dict[str, Any], files: _Files) -> Facts | None:
    """The pre-flight's facts kept in summary.json (None when absent or damaged: then judged without them)."""
    facts_d = _section(summary, "doctor").get("facts")
    if facts_d is None:
        return None
    try:
        return Facts.from_dict(facts_d)
    except _DAMAGED:
        files.notes.append(_NO_FACTS)
        return None


def _stored_findings(files: _Files) -> dict[str, Finding]:
    """The latest line of each code, as the live doctor holds it: a finished run's file is its final list (one line
    per code); a crashed run's is the log of its reports, where a later one is the newer judgment."""
    found: dict[str, Finding] = {}
    skipped = 0
    for d in files.jsonl("findings.jsonl"):
        f = _finding(d)
        if f is None:  # a line from another tool or version, or edited: skip it rather than fail the analysis
            skipped += 1
            continue
        found[f.code] = f
    if skipped:
        files.notes.append(f"findings.jsonl: {skipped} line(s) that are not findings this version reads were "
                           "skipped.")
    return found


def _judge_fixes(f: Finding, context: Any, lr: float | None, bs: int | None, files: _Files) -> None:
    """The fixes judged as the live doctor judges them (the same run context)."""
    fixes = f.fixes
    try:
        if context is None:
            f.fixes = fill_fixes(fixes, lr, bs)
        else:
            context.adapt(f, lr, bs)
    except _DAMAGED:
        # a stored run context that is damaged (summary.json edited): the fixes as the rules wrote them
        f.fixes = fill_fixes(fixes, lr, bs)
        note = "summary.json is damaged: its doctor.run cannot be read; fixes are given without it."
        if note not in files.notes:
            files.notes.append(note)


def _analyze(files: _Files) -> list[Finding]:
    metrics = _metric_rows(files.jsonl("metrics.jsonl"), files)
    summary = files.json_object("summary.json")
    if not isinstance(summary.get("doctor", {}), dict):
        files.notes.append("summary.json is damaged: its 'doctor' is not an object; analysed without it.")
    cfg = files.config()
    facts = _stored_facts(summary, files)
    train = _section(cfg, "train")
    es = _section(train, "early_stopping")
    keeps_best = bool(es.get("enabled", True) and es.get("restore_best", True)
                      and es.get("monitor", "val_loss") == "val_loss" and any("val_loss" in r for r in metrics))
    epochs = train.get("epochs") if isinstance(train.get("epochs"), int) else None
    finished = bool(summary) and summary.get("status") != "running"
    found = _stored_findings(files)
    lrs = [r["lr"] for r in metrics if _number(r.get("lr")) and math.isfinite(r["lr"])]
    bs = train.get("batch_size") if isinstance(train.get("batch_size"), int) else None
    try:
        context = _context(files.path, cfg, summary, files)
    except _DAMAGED:
        context = None
        files.notes.append("summary.json or data_report.json is damaged: the run's model and data cannot be read "
                           "from them; fixes are given without them.")
    t, disabled = _doctor_settings(cfg, files)
    judge = functools.partial(curve_findings, final=finished, planned_epochs=epochs, early_stopping=keeps_best,
                              t=t, disabled=disabled)
    try:
        curves = judge(metrics, facts, guard=facts is None)
    except _DAMAGED:
        # facts of the wrong type (summary.json edited: a string where a count was): judged without them
        files.notes.append(_NO_FACTS)
        curves = judge(metrics, None)
    for f in curves:
        if f.code not in found or f.rank > found[f.code].rank:
            _judge_fixes(f, context, max(lrs) if lrs else None, bs, files)
            found[f.code] = f
    # a symptom whose root cause another check found is info, as in the live doctor's summary
    return sorted(explained(list(found.values())), key=lambda f: -SEVERITY_RANK[f.severity])

"""k-fold cross-validation: one normal run per fold, then the mean ± std of every metric over the folds.

`gradwise train CONFIG data.folds=5` (and `gradwise.cross_validate(config)`) writes::

    DIR/fold-0 ... DIR/fold-4   normal run directories (config.yaml, metrics.jsonl, summary.json, checkpoints/,
                                preprocess.json, data_report.json), fold k validating on the k-th fold
    DIR/cv_summary.json         per-fold val/test metrics, and mean, std and values of each metric

The test split is carved first (data.test_fraction, same seed), so every fold is tested on the same rows; the
(stratified) K-fold partition covers the remaining rows, each fold validating on one part and training on the
others. A fold's val metrics are those of the epoch whose weights the run ended with (the best epoch when early
stopping restores it, else the last), i.e. the weights its test metrics were measured with. `std` is numpy's
(population, ddof=0) over the completed folds.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from gradwise.api import Run
from gradwise.api import train as train_run
from gradwise.config import RunConfig, apply_overrides, load_config, validate_config
from gradwise.errors import CheckpointError, ConfigError
from gradwise.train.checkpoint import atomic_write_json
from gradwise.train.events import Callback
from gradwise.train.rundir import RunLock, clear_run_dir, default_run_dir, make_dir, run_files, unwritable

SUMMARY_FILE = "cv_summary.json"


def fold_dir(root: str | Path, fold: int) -> Path:
    return Path(root) / f"fold-{fold}"


@dataclass
class CVResult:
    """What `cross_validate` returns: one Run per fold (in fold order) and the cv_summary.json content."""

    runs: list[Run]
    summary: dict[str, Any]
    dir: Path

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def metrics(self) -> dict[str, tuple[float, float]]:
        """metric -> (mean, std) over the completed folds."""
        return {k: (v["mean"], v["std"]) for k, v in self.summary["metrics"].items()}

    def table(self) -> str:
        return format_table(self.summary)

    def __repr__(self) -> str:
        shown = {k: f"{m:.4f} ± {s:.4f}" for k, (m, s) in self.metrics.items() if k.startswith("test_")}
        return (f"CVResult(status={self.status!r}, folds={self.summary['folds_completed']}/{self.summary['folds']}, "
                f"test={shown}, dir='{self.dir}')")


def is_cross_validation(config: RunConfig | str | Path | None = None,
                        overrides: list[str] | dict[str, Any] | None = None,
                        resume: str | Path | None = None) -> bool:
    """True when these arguments ask for k-fold cross-validation (data.folds > 1, or a CV directory to resume)."""
    if resume is not None:
        p = Path(resume)
        return not (p / "config.yaml").exists() and (fold_dir(p, 0) / "config.yaml").exists()
    return _resolve(config, overrides).data.folds > 1


def cross_validate(config: RunConfig | str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None,
                   *, resume: str | Path | None = None, callbacks: list[Callback] | None = None,
                   console: Console | None = None, trust_code: bool = False, overwrite: bool = False) -> CVResult:
    """Train one run per fold of ``data.folds = K > 1`` under one directory and summarise them (module docstring).

    ``resume`` continues a cross-validation directory: folds with a run directory are resumed (a completed one
    just re-measures its test split), the others are trained. ``callbacks`` are handed to every fold's run in
    turn. A fold that ends stopped (SIGTERM / Ctrl-C) or failed ends the cross-validation; cv_summary.json then
    has that status and the folds done so far. ``trust_code`` is handed to each resumed fold: see `gradwise.train`
    (a model.factory named by the directory's fold-0/config.yaml is imported only when allowed; fold 0 is always
    resumed first, so the folds trained from its config are covered by that check).

    A new cross-validation needs a new or empty directory (``overwrite=True`` clears an earlier one's fold runs and
    cv_summary.json); the directory is locked while the folds are trained, each fold's run locks its own.
    """
    start = time.perf_counter()
    if resume is not None:
        root = Path(resume)
        first = fold_dir(root, 0) / "config.yaml"
        if not first.exists():
            raise CheckpointError(f"--resume '{root}' is not a cross-validation directory (no fold-0/config.yaml in "
                                  "it). Give the directory `gradwise train ... data.folds=K` wrote.")
        cfg = load_config(first, overrides)
    else:
        cfg = _resolve(config, overrides)
        root = Path(cfg.out or default_run_dir(cfg.name))
        if (fold_dir(root, 0) / "config.yaml").exists() and not overwrite:
            raise ConfigError(f"'{root}' already holds a cross-validation; continue it with --resume {root} "
                              "(gradwise.cross_validate(resume=...)), replace it with --overwrite (overwrite=True) "
                              "or choose another out directory.")
    folds = cfg.data.folds
    if folds < 2:
        raise ConfigError(f"cross-validation needs data.folds >= 2 (got {folds}); set e.g. data.folds=5, or use "
                          "gradwise.train for a single run.")
    created = not root.exists()
    _claim_root(root, resume is not None, overwrite)
    try:
        return _run_folds(cfg, root, folds, overrides, resume, callbacks, console, trust_code, start)
    except Exception:
        if created and not run_files(root):  # nothing trained (e.g. bad data): leave no empty directory either
            with contextlib.suppress(OSError):
                root.rmdir()
        raise


def _claim_root(root: Path, resume: bool, overwrite: bool) -> None:
    """A new cross-validation's directory must be new or empty (overwrite: its fold runs and summary cleared).

    The directory itself is not locked (it would hold a lock file beside fold-0 ... fold-K-1): each fold's run locks
    its own directory, so a second cross-validation started on the same directory stops at its first fold.
    """
    make_dir(root, "--out", "the cross-validation", "cross-validation directory")
    names = run_files(root)
    if names and not resume:
        if not overwrite:
            raise ConfigError(f"--out '{root}' is not empty (it holds {', '.join(names[:4])}"
                              f"{', ...' if len(names) > 4 else ''}): write the cross-validation to another "
                              "directory, or replace what is there with --overwrite (overwrite=True).")
        foreign = [n for n in names if n != SUMMARY_FILE and not n.startswith("fold-")]
        if foreign:
            raise ConfigError(f"--overwrite: '{root}' holds files a cross-validation did not write "
                              f"({', '.join(foreign[:5])}); give an empty or new directory, or remove them first.")
        try:
            for name in names:
                if name.startswith("fold-"):
                    fold = root / name
                    with RunLock(fold).acquire():  # not while another process trains that fold
                        clear_run_dir(fold)
                    (fold / ".lock").unlink(missing_ok=True)
                    fold.rmdir()
            (root / SUMMARY_FILE).unlink(missing_ok=True)
        except OSError as exc:
            raise unwritable(root, exc, "cross-validation directory") from None


def _run_folds(cfg: RunConfig, root: Path, folds: int, overrides: list[str] | dict[str, Any] | None,
               resume: str | Path | None, callbacks: list[Callback] | None, console: Console | None,
               trust_code: bool, start: float) -> CVResult:
    show = console is not None and cfg.train.progress != "none"
    runs: list[Run] = []
    try:
        for k in range(folds):
            fdir = fold_dir(root, k)
            if show:
                assert console is not None
                console.print(f"[bold]fold {k + 1}/{folds}[/]  {escape(str(fdir))}")
            if resume is not None and (fdir / "config.yaml").exists():
                run = train_run(None, overrides, resume=fdir, fold=k, callbacks=callbacks, console=console,
                                trust_code=trust_code)
            else:
                fcfg = cfg.model_copy(deep=True)
                fcfg.out = str(fdir)
                run = train_run(fcfg, fold=k, callbacks=callbacks, console=console)
            runs.append(run)
            if run.status != "completed":
                break
    except BaseException as exc:  # a fold raised: record the folds done so far, then let the error through
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        summary = summarize(runs, folds, root, cfg.name, time.perf_counter() - start, status=status)
        summary["error"] = f"fold {len(runs)}: {type(exc).__name__}: {exc}"
        if (fold_dir(root, 0) / "config.yaml").exists():  # nothing trained yet (e.g. bad data): leave no files
            atomic_write_json(root / SUMMARY_FILE, summary)
        raise
    summary = summarize(runs, folds, root, cfg.name, time.perf_counter() - start)
    atomic_write_json(root / SUMMARY_FILE, summary)
    return CVResult(runs=runs, summary=summary, dir=root)


def summarize(runs: list[Run], folds: int, root: Path, name: str, seconds: float, status: str | None = None
              ) -> dict[str, Any]:
    """cv_summary.json: per-fold metrics and, per metric, mean / std (numpy, ddof=0) / values over completed folds."""
    per_fold = []
    for k, run in enumerate(runs):
        val, epoch = fold_val_metrics(run)
        bundle = run.extras.get("bundle")
        rows = dict(bundle.report.get("rows", {})) if bundle is not None else {}
        per_fold.append({"fold": k, "dir": str(run.dir), "status": run.status,
                         "epochs_completed": run.summary.get("epochs_completed", len(run.history)),
                         "val_epoch": epoch, "rows": rows,
                         "metrics": {**val, **{k2: float(v) for k2, v in (run.summary.get("test") or {}).items()}},
                         "wall_seconds": run.summary.get("wall_seconds")})
    done = [f for f in per_fold if f["status"] == "completed"]
    names = [m for m in (done[0]["metrics"] if done else {}) if all(m in f["metrics"] for f in done)]
    metrics = {}
    for m in sorted(names, key=lambda m: (not m.startswith("val_"), m)):
        values = np.array([f["metrics"][m] for f in done], dtype=np.float64)
        metrics[m] = {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}
    if status is not None:
        pass
    elif len(done) == folds:
        status = "completed"
    else:
        status = next((f["status"] for f in per_fold if f["status"] != "completed"), "incomplete")
    return {"status": status, "name": name, "dir": str(root), "folds": folds, "folds_completed": len(done),
            "std": "numpy std over the completed folds (population, ddof=0)", "metrics": metrics,
            "per_fold": per_fold, "wall_seconds": round(seconds, 3)}


def fold_val_metrics(run: Run) -> tuple[dict[str, float], int | None]:
    """The val_* metrics of the epoch whose weights the run ended with (summary.json's `kept`: the best epoch when
    early stopping restored it, else the last)."""
    row = run.summary.get("kept") or (run.history[-1] if run.history else None)
    if not row:
        return {}, None
    vals = {k: float(v) for k, v in row.items()
            if k.startswith("val_") and isinstance(v, int | float) and math.isfinite(v)}
    return vals, row.get("epoch")


def print_result(cv: CVResult, console: Console) -> None:
    """What `gradwise train` prints after a cross-validation: status, the fold table, where the files are."""
    s = cv.summary
    console.print(f"[bold]cross-validation[/] {s['status']}: {s['folds_completed']}/{s['folds']} folds, "
                  f"{s['wall_seconds']:.1f} s")
    console.print(format_table(s), markup=False)
    console.print(f"run directory: {cv.dir}  (per-fold runs fold-0 … fold-{s['folds'] - 1}, {SUMMARY_FILE})",
                  markup=False)


def format_table(summary: dict[str, Any]) -> str:
    """One row per metric, one column per fold, then mean ± std (plain text, for the terminal)."""
    folds = summary["per_fold"]
    width = max([len("metric"), *(len(m) for m in summary["metrics"])])
    head = f"{'metric':<{width}}  " + "  ".join(f"{'fold-' + str(f['fold']):>8}" for f in folds) + "  mean ± std"
    lines = [head]
    for m, stats in summary["metrics"].items():
        cells = "  ".join(f"{f['metrics'][m]:>8.4f}" if f["status"] == "completed" and m in f["metrics"]
                          else f"{'-':>8}" for f in folds)
        lines.append(f"{m:<{width}}  {cells}  {stats['mean']:.4f} ± {stats['std']:.4f}")
    epochs = "  ".join(f"{f['epochs_completed']:>8}" for f in folds)
    lines.append(f"{'epochs':<{width}}  {epochs}")
    return "\n".join(lines)


def _resolve(config: RunConfig | str | Path | None, overrides: list[str] | dict[str, Any] | None) -> RunConfig:
    if isinstance(config, RunConfig):
        return validate_config(apply_overrides(config.to_dict(), overrides or []), "config")
    return load_config(config, overrides)

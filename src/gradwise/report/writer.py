"""Writing report.html: at the end of every run (a callback) and for any run directory (`gradwise report DIR`)."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradwise.errors import CheckpointError, GradwiseError
from gradwise.report.html import REPORT_FILE, build_report
from gradwise.train.events import Callback
from gradwise.train.rundir import read_run

if TYPE_CHECKING:
    from gradwise.train.loop import Trainer


def write_page(path: Path, text: str) -> None:
    """Replace `path` by renaming a finished temp file: a reader never sees half a page. No fsync (unlike the
    checkpoints): a page lost to a power cut is rebuilt by `gradwise report`, and fsync was a third of its time."""
    # not mkstemp: its 0600 mode would hide the page from the other readers of a shared run directory
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_report(path: str | Path, **kwargs: Any) -> Path:
    """Build and write DIR/report.html."""
    out = Path(path) / REPORT_FILE
    write_page(out, build_report(path, **kwargs))
    return out


def _classes(path: Path) -> list[str] | None:
    from gradwise.report.html import _json

    pre = _json(path / "data_report.json").get("preprocessor") or {}
    classes = pre.get("classes")
    return [str(c) for c in classes] if isinstance(classes, list) else None


class ReportWriter(Callback):
    """Writes DIR/report.html when the fit ends, completed, stopped or failed. Never fails the run: a report that
    cannot be written is a one-line warning."""

    order = 95  # after the doctor (its final findings) and the step log (its last row); progress output is 100

    def __init__(self) -> None:
        self.seconds: float | None = None  # how long the last report took to write

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        self._write(trainer, summary, predict=True)

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        # the summary is written after this event: the report gets the same essentials
        summary = {"status": trainer.status, "name": trainer.config.name, "dir": str(trainer.run_dir.path),
                   "epochs_completed": len(trainer.history), "steps": trainer.step, "actions": trainer.actions,
                   "final": trainer.history[-1] if trainer.history else {},
                   "error": f"{type(exc).__name__}: {exc}"}
        self._write(trainer, summary, predict=False)

    def _write(self, trainer: Trainer, summary: dict[str, Any], predict: bool) -> None:
        if not trainer.is_main:
            return
        t0 = time.perf_counter()
        try:
            path = Path(trainer.run_dir.path)
            pred, notes = None, []
            if predict:
                loader, split = ((trainer.test_loader, "test") if trainer.test_loader is not None
                                 else (trainer.val_loader, "val"))
                if loader is not None and trainer.task in ("classification", "regression"):
                    from gradwise.report.evaluation import predict_batches

                    try:  # a model or loader the evaluation cannot read costs that section, not the page
                        pred = predict_batches(trainer.model, loader, trainer.task, device=trainer.device,
                                               forward=trainer.forward, target_transform=trainer.target_transform,
                                               split=split, classes=_classes(path))
                    except Exception as exc:
                        notes.append(f"predictions left out: {type(exc).__name__}: {exc}")
            write_report(path, summary=summary, model=trainer.model, predictions=pred, notes=notes)
            self.seconds = time.perf_counter() - t0
        except Exception as exc:  # the report is a view of the run: it must never be why the run fails
            trainer.console.print(f"warning: report.html not written: {type(exc).__name__}: {exc}", markup=False,
                                  style="yellow", highlight=False)


def report_dir(path: str | Path, *, trust_code: bool = False) -> tuple[Path, list[str]]:
    """`gradwise report DIR`: the report of a run directory, from its files; the model and its predictions on the
    test split (else val) when the run can be rebuilt. Returns the file and notes on what was left out."""
    p = Path(path)
    read_run(p)  # a clear error for a directory that is no run
    notes: list[str] = []
    model = pred = None
    if (p / "checkpoints" / "last.pt").exists() and (p / "config.yaml").exists():
        try:
            from gradwise.inference import load_run

            run = load_run(p, trust_code=trust_code)
            model = run.model
            task = getattr(run.bundle, "task", None)
            split = "test" if getattr(run.bundle, "test", None) is not None else "val"
            data = getattr(run.bundle, split, None)
            if data is not None and task in ("classification", "regression"):
                from gradwise.data.loaders import TensorLoader
                from gradwise.report.evaluation import predict_batches

                classes = getattr(run.preprocessor, "class_names", None)
                loader = TensorLoader(data[0], data[1], 512, shuffle=False,
                                      transform=getattr(run.bundle, "normalize", None))  # uint8 images
                pred = predict_batches(model, loader, task,
                                       target_transform=run.preprocessor.inverse_target, split=split,
                                       classes=classes)
        except GradwiseError as exc:
            notes.append(f"model and predictions left out: {exc}")
        except Exception as exc:  # the curves and findings are still worth a page
            notes.append(f"model and predictions left out: {type(exc).__name__}: {exc}")
    else:
        notes.append("model and predictions left out: the run has no checkpoint (checkpoints/last.pt).")
    try:
        return write_report(p, model=model, predictions=pred, notes=notes), notes
    except OSError as exc:
        raise CheckpointError(f"cannot write {p / 'report.html'}: {exc.strerror or exc}; check the directory's "
                              "permissions.") from None

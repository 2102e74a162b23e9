"""From a trained run to use: ONNX, TorchScript and safetensors exports of a run directory's weights."""

from __future__ import annotations

from pathlib import Path

from gradwise.errors import GradwiseError


def export_run(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None, *,
               which: str = "auto") -> Path:
    """Export RUN_DIR's model; returns the written path."""
    raise GradwiseError("export is not available yet")

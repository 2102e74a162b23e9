"""`gradwise export RUN_DIR --format onnx|torchscript|safetensors [--out PATH]` (registered by gradwise.cli)."""

from __future__ import annotations

from pathlib import Path

import click

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.command("export", context_settings=_CONTEXT, short_help="Export a run's model: ONNX, TorchScript, safetensors.")
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR")
@click.option("--format", "-f", "fmt", type=click.Choice(["onnx", "torchscript", "safetensors"]), default="onnx",
              show_default=True, help="Export format.")
@click.option("--out", "-o", type=click.Path(path_type=Path), metavar="PATH", help="Where to write it.")
def export_cmd(run_dir: Path, fmt: str, out: Path | None) -> int:
    """Export RUN_DIR's trained weights with its preprocessing kept beside them."""
    from gradwise.export import export_run

    path = export_run(run_dir, fmt, out)
    click.echo(f"exported {fmt}: {path}")
    return 0

"""`gradwise export RUN_DIR --format onnx|torchscript|safetensors [--out PATH]` (registered by gradwise.cli)."""

from __future__ import annotations

import json
from pathlib import Path

import click

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.command("export", context_settings=_CONTEXT, short_help="Export a run's model: ONNX, TorchScript, safetensors.")
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR")
@click.option("--format", "-f", "fmt", type=click.Choice(["onnx", "torchscript", "safetensors"]), default="onnx",
              show_default=True, help="Export format.")
# a str, not a Path: Path drops the trailing '/' that marks a folder which does not exist yet
@click.option("--out", "-o", type=click.Path(), metavar="PATH",
              help="Where to write it: a file, or a folder (an existing one, or a path ending in '/'). Default: "
                   "RUN_DIR/export/model.onnx|torchscript.pt|safetensors.")
@click.option("--which", type=click.Choice(["auto", "best", "last"]), default="auto", show_default=True,
              help="Which weights: auto is the ones the run ended with (best when early stopping restored them).")
@click.option("--no-preprocessing", "bare", is_flag=True,
              help="ONNX/TorchScript: export the bare network (input: the preprocessed feature vector; regression "
                   "output scaled) instead of folding the run's preprocessing into the graph.")
@click.option("--no-check", "no_check", is_flag=True,
              help="Do not run the exported model against the trained one before writing it.")
@click.option("--trust-code", is_flag=True,
              help="Allow importing the model.factory module that the run directory's config.yaml names (it runs "
                   "that module's code; GRADWISE_TRUSTED_MODULES=mypkg allows one package for good).")
def export_cmd(run_dir: Path, fmt: str, out: str | None, which: str, bare: bool, no_check: bool,
               trust_code: bool) -> int:
    """Export RUN_DIR's trained weights with its preprocessing kept beside them.

    ONNX and TorchScript take raw rows/samples (the run's scaling, clipping and imputation are inside the model;
    a table with categorical columns takes the preprocessed feature vector) and return logits, or values in the
    target's units. Beside the file: FILE.json (input, output, class names, preprocessing, check) and
    NAME.preprocess.json (a copy of the run's preprocess.json). safetensors holds the network's weights, for
    model.pretrained.
    """
    from gradwise.export import export_run, sidecar_path

    path = export_run(run_dir, fmt, out, which=which, trust_code=trust_code, preprocessing=not bare,
                      check=not no_check)
    click.echo(f"exported {fmt}: {path}")
    meta = json.loads(sidecar_path(path).read_text())
    inp, res = meta["input"], meta["output"]
    click.echo(f"  input  {inp['dtype']} {_shape(inp['shape'])}: {inp['takes']}"
               + (" (preprocessing in the graph)" if meta["preprocessing"]["in_graph"] else ""))
    click.echo(f"  output {res['dtype']} {_shape(res['shape'])}: {res['meaning']}")
    check = meta.get("check")
    if check:
        click.echo(f"  checked in {check['runtime']}: max abs difference {check['max_abs_diff']:.2g} on "
                   f"{check['rows']} rows")
    elif fmt == "onnx" and not no_check:
        click.echo("  not checked: onnxruntime is not installed (pip install onnxruntime)")
    click.echo(f"  details: {sidecar_path(path)}")
    return 0


def _shape(shape: list[object]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"

"""`gradwise report DIR` and `gradwise compare DIR DIR ...` (registered on the CLI by gradwise.cli)."""

from __future__ import annotations

from pathlib import Path

import click

from gradwise.errors import GradwiseError

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.command("report", context_settings=_CONTEXT, short_help="Write DIR/report.html for a run directory.")
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR")
def report_cmd(run_dir: Path) -> int:
    """Write RUN_DIR/report.html: curves with the doctor's findings, metrics, config and data report."""
    raise GradwiseError("gradwise report is not available yet")


@click.command("compare", context_settings=_CONTEXT, short_help="One HTML page comparing several runs.")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR...")
def compare_cmd(run_dirs: tuple[Path, ...]) -> int:
    """Overlay the runs' curves, with a table of their config differences and final metrics."""
    raise GradwiseError("gradwise compare is not available yet")

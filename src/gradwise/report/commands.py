"""`gradwise report DIR` and `gradwise compare DIR DIR ...` (registered on the CLI by gradwise.cli)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from gradwise.errors import CheckpointError

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.command("report", context_settings=_CONTEXT, short_help="Write DIR/report.html for a run directory.")
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR")
@click.option("--trust-code", is_flag=True,
              help="Allow importing the model.factory module the run's config.yaml names (to rebuild its model).")
def report_cmd(run_dir: Path, trust_code: bool) -> int:
    """Write RUN_DIR/report.html: curves with the doctor's findings, metrics, config and data report."""
    from gradwise.cli import console
    from gradwise.report.writer import report_dir

    t0 = time.perf_counter()
    out, notes = report_dir(run_dir, trust_code=trust_code)
    for note in notes:
        console.print(note, markup=False, style="yellow")
    console.print(f"report: {out} ({time.perf_counter() - t0:.1f} s)", markup=False)
    return 0


@click.command("compare", context_settings=_CONTEXT, short_help="One HTML page comparing several runs.")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR...")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("compare.html"), show_default=True,
              metavar="FILE", help="Where to write the page.")
def compare_cmd(run_dirs: tuple[Path, ...], out: Path) -> int:
    """Overlay the runs' curves, with a table of their config differences and final metrics."""
    from gradwise.cli import console
    from gradwise.report.compare import build_compare
    from gradwise.report.writer import write_page

    page = build_compare(list(run_dirs))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_page(out, page)
    except OSError as exc:
        raise CheckpointError(f"--out '{out}': cannot write the page there ({exc.strerror or exc}); give a writable "
                              "file, e.g. -o compare.html.") from None
    console.print(f"compare: {out} ({len(run_dirs)} runs)", markup=False)
    return 0

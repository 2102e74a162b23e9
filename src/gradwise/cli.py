"""The command line: `gradwise train|doctor|eval|predict|lr-find|tune|config`.

Errors gradwise raises on purpose are printed as one clear message and exit with status 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console

from gradwise.errors import GradwiseError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="gradwise: train deep neural networks well, and say what goes wrong.")
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


def _split_args(args: list[str] | None) -> tuple[str | None, list[str]]:
    """`train [CONFIG] [key=value ...]`: the first argument is the config unless it is an override."""
    args = list(args or [])
    config = None
    if args and "=" not in args[0]:
        config = args.pop(0)
    bad = [a for a in args if "=" not in a]
    if bad:
        raise GradwiseError(f"'{bad[0]}' is neither a config file (it must come first) nor an override of the form "
                            "key=value (e.g. optim.lr=3e-4).")
    return config, args


@app.command(context_settings={"allow_extra_args": False})
def train(
    args: list[str] = typer.Argument(None, metavar="[CONFIG] [KEY=VALUE]...",
                                     help="YAML config (optional) then dotted overrides, e.g. optim.lr=3e-4"),
    out: Path | None = typer.Option(None, "--out", "-o", help="run directory (default runs/<time>-<name>)"),
    resume: Path | None = typer.Option(None, "--resume", help="continue the run in this directory"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
) -> None:
    """Train a model. With no config: the built-in CNN on MNIST-1D (under a minute on 2 CPU cores)."""
    from gradwise.api import train as train_run

    config, overrides = _split_args(args)
    if resume is not None and config is not None:
        raise GradwiseError("give either a CONFIG or --resume DIR, not both: a resumed run uses the config stored "
                            "in its directory (overrides such as train.epochs=40 are allowed).")
    if out is not None:
        overrides.append(f"out={out}")
    if quiet:
        overrides.append("train.progress=none")
    if config is None and resume is None:
        console.print("No config given: training the built-in default (cnn1d on MNIST-1D). "
                      "See examples/ for more.", style="dim")
    from gradwise.crossval import cross_validate, is_cross_validation, print_result

    if is_cross_validation(config, overrides, resume):  # data.folds > 1: one run per fold, then mean ± std
        cv = cross_validate(config, overrides, resume=resume, console=console)
        print_result(cv, console)
        if cv.status == "failed":
            raise typer.Exit(1)
        return
    run = train_run(config, overrides, resume=resume)
    _print_result(run)
    if run.status == "failed":
        raise typer.Exit(1)


def _print_result(run: Any) -> None:
    s = run.summary
    console.print(f"[bold]status[/] {s['status']}" + (f"  ({s['stop_reason']})" if s.get("stop_reason") else ""))
    final = s.get("final") or {}
    for key in ("train_loss", "val_loss", "val_accuracy", "val_mae", "val_r2"):
        if key in final:
            console.print(f"  {key:<14} {final[key]:.4f}")
    for key, value in (s.get("test") or {}).items():
        console.print(f"  [bold]{key:<14} {value:.4f}[/]")
    if run.findings:
        console.print(f"  doctor: {len(run.findings)} finding(s): {', '.join(f.code for f in run.findings)}")
    console.print(f"  wall time      {s['wall_seconds']:.1f} s")
    console.print(f"run directory: {run.dir}")


@app.command("config")
def show_config(
    args: list[str] = typer.Argument(None, metavar="[CONFIG] [KEY=VALUE]..."),
) -> None:
    """Print the resolved config (every default filled in), e.g. to start a YAML file from."""
    from gradwise.config import load_config

    config, overrides = _split_args(args)
    sys.stdout.write(load_config(config, overrides).to_yaml())


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory written by gradwise train"),
    split: str = typer.Option("test", "--split", help="train, val or test"),
) -> None:
    """Evaluate a trained run on one of its splits (same data, same stored preprocessing)."""
    from gradwise.inference import evaluate_run

    metrics = evaluate_run(run_dir, split)
    for key, value in metrics.items():
        console.print(f"{split}_{key:<12} {value:.4f}")


@app.command("predict")
def predict_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory written by gradwise train"),
    inputs: Path = typer.Argument(..., help="new rows: .csv, .parquet, .npy or .npz"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write predictions here as CSV (default: stdout)"),
) -> None:
    """Predict new rows with a trained run: class names (and probabilities) or values, as CSV."""
    from gradwise.inference import predict

    frame = predict(run_dir, inputs)
    if out is None:
        sys.stdout.write(frame.to_csv(index=False))
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        console.print(f"{len(frame)} predictions written to {out}")


@app.command("lr-find")
def lr_find_cmd(
    args: list[str] = typer.Argument(None, metavar="[CONFIG] [KEY=VALUE]..."),
    plot: Path = typer.Option(Path("lr_find.png"), "--plot", help="where to save the loss-vs-LR plot"),
    steps: int = typer.Option(100, "--steps", min=10, help="mini-batches in the sweep"),
) -> None:
    """LR range test: sweep the LR exponentially, suggest one, save a plot."""
    from gradwise.api import find_lr, prepare

    config, overrides = _split_args(args)
    cfg, model, loss_fn, loader, device = prepare(config, overrides)
    search = find_lr(cfg, model, loss_fn, loader, device, steps=steps)
    r = search.result
    console.print(f"steepest descent: {r.suggestion}")
    console.print(f"valley          : {r.valley}")
    console.print(f"[bold]suggested optim.lr={search.pick():.3g}[/]" + (f"  ({r.reason})" if r.reason else ""))
    console.print(f"plot: {r.plot(plot)}")


@app.command("tune")
def tune_cmd(
    args: list[str] = typer.Argument(..., metavar="CONFIG [KEY=VALUE]...",
                                     help="a config with a tune: section, then dotted overrides"),
    trials: int | None = typer.Option(None, "--trials", help="total trials (all workers together)"),
    storage: str | None = typer.Option(None, "--storage", help="postgresql://... to share a study across machines"),
    study: str | None = typer.Option(None, "--study", help="study name (default: the config's name)"),
    workers: int | None = typer.Option(None, "--workers", help="processes on this machine"),
    show: bool = typer.Option(False, "--show", help="print the leaderboard and run nothing"),
    out: Path | None = typer.Option(None, "--out", "-o", help="study directory (default studies/<name>)"),
) -> None:
    """Hyperparameter search on Optuna (grid, random, tpe, gp, cmaes, nsga2) with pruning."""
    from gradwise.tune.command import tune

    config, overrides = _split_args(args)
    if config is None:
        raise GradwiseError("gradwise tune needs a CONFIG with a tune: section first, e.g. "
                            "gradwise tune examples/tune_mnist1d.yaml")
    code = tune(Path(config), trials=trials, storage=storage, study=study, workers=workers, show=show, out=out,
                overrides=overrides, console=console)
    if code:
        raise typer.Exit(code)


@app.command("doctor")
def doctor_cmd(run_dir: Path = typer.Argument(..., help="a finished or crashed run directory")) -> None:
    """Re-analyse a run from its files and print the findings; exit 1 when any is an error."""
    from gradwise.doctor.analyze import analyze_run

    findings = analyze_run(run_dir)
    if not findings:
        console.print("doctor: no problems found")
    for f in findings:
        console.print(f.render())
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except GradwiseError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()

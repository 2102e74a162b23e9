"""The command line: `gradwise train|doctor|eval|predict|lr-find|tune|config`.

Built on click directly. Typer 0.2x vendors its own fork of click whose exception classes and help layout changed
between minor releases (`--quiet -q <bool>`, `{RUN_DIR}`), which is how a user once met tracebacks here; click is
the stable base typer itself was made on.

Exit status: 0 completed, 1 the run failed or the doctor found an error, 2 bad input (one clear line on stderr,
never a traceback), 128+N stopped by signal N (130 for Ctrl-C, 143 for SIGTERM) whenever the signal arrives: from
the start of `main` (imports, data loading, model building) through the run and its summary, each command runs
under `gradwise.signals.stop_on_signals` and the Trainer handles the signals while it trains. Everything a user
typed or a file holds (values, keys, paths, fixes) is printed literally: rich markup never eats text in brackets.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from gradwise.errors import GradwiseError
from gradwise.signals import Interrupted, exit_status, signal_name, signum_of, stop_on_signals
from gradwise.train.distributed import PeerError, launched, rank

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

_FLAG_WORDS = ("true", "false", "yes", "no", "on", "off", "0", "1")
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gradwise")
    except PackageNotFoundError:  # running from a checkout that was never installed
        from gradwise import __version__

        return __version__


def _split_args(args: tuple[str, ...] | list[str] | None, command: str = "train") -> tuple[str | None, list[str]]:
    """`train [CONFIG] [key=value ...]`: the first argument is the config unless it is an override."""
    args = list(args or [])
    config = None
    if args and "=" not in args[0]:
        config = args.pop(0)
        if config.lower() in _FLAG_WORDS and not Path(config).exists():
            raise GradwiseError(f"'{config}' is not a config file. Flags such as --quiet take no value: write "
                                f"`gradwise {command} --quiet`, not `--quiet {config}`.")
    bad = [a for a in args if "=" not in a]
    if bad:
        raise GradwiseError(f"'{bad[0]}' is neither a config file (it must come first) nor an override of the form "
                            "key=value (e.g. optim.lr=3e-4).")
    return config, args


def _builtins() -> str:
    from gradwise.data.datasets import BUILTIN_DATASETS
    from gradwise.models.build import MODELS

    return (f"Built-in datasets (data.dataset=...): {', '.join(BUILTIN_DATASETS)}; or data.dataset=FILE.csv|"
            f".parquet|.npz with data.target=COLUMN.\n\nBuilt-in models (model.name=...): {', '.join(MODELS)}.")


class _Commands(click.Group):
    """Commands listed in the order a user meets them, not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        order = ["train", "eval", "predict", "doctor", "report", "compare", "export", "lr-find", "tune", "config"]
        return sorted(self.commands, key=lambda name: order.index(name) if name in order else len(order))


@click.group(cls=_Commands, context_settings=_CONTEXT, invoke_without_command=True)
@click.version_option(_version(), "--version", "-V", prog_name="gradwise", message="%(prog)s %(version)s")
@click.pass_context
def app(ctx: click.Context) -> None:
    """gradwise: train deep neural networks well, and say what goes wrong.

    Start with `gradwise train` (a built-in default, under a minute on 2 CPU cores), then
    `gradwise train CONFIG key=value ...`. `gradwise COMMAND --help` explains each command.
    """
    if ctx.invoked_subcommand is None:  # a bare `gradwise`: the help, not an error
        click.echo(ctx.get_help())


@app.command(context_settings=_CONTEXT, short_help="Train a model (with no config: a built-in default).",
             epilog="\b\nExamples:\n"
             "  gradwise train                                # the built-in default: cnn1d on MNIST-1D\n"
             "  gradwise train data.dataset=digits model.name=mlp train.epochs=20\n"
             "  gradwise train examples/mnist1d_cnn.yaml optim.lr=1e-3 --out runs/cnn\n"
             "  gradwise train --resume runs/cnn              # continue a stopped or killed run\n"
             "  gradwise config                               # every key with its default")
@click.argument("args", nargs=-1, metavar="[CONFIG] [KEY=VALUE]...")
@click.option("--out", "-o", type=click.Path(path_type=Path), metavar="DIR",
              help="Run directory (default runs/<time>-<name>).")
@click.option("--resume", type=click.Path(path_type=Path), metavar="DIR",
              help="Continue the run in this directory (overrides such as train.epochs=40 are allowed).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output, only the final summary.")
@click.option("--overwrite", is_flag=True,
              help="Replace the run in --out DIR: its files are removed first (without this flag a directory that "
                   "holds files is refused).")
@click.option("--trust-code", is_flag=True,
              help="Allow importing the model.factory module that the run directory's config.yaml names (it runs "
                   "that module's code; GRADWISE_TRUSTED_MODULES=mypkg allows one package for good).")
@click.option("--nproc", type=click.IntRange(min=1), metavar="N",
              help="Train data-parallel in N processes on this machine (one per GPU, or CPU processes sharing the "
                   "cores), started by torch's launcher (torchrun); train.batch_size is per process.")
def train(args: tuple[str, ...], out: Path | None, resume: Path | None, quiet: bool, overwrite: bool,
          trust_code: bool, nproc: int | None) -> int:
    """Train a model from a YAML config and/or KEY=VALUE overrides.

    With no config: built-in defaults (a 1-D CNN on MNIST-1D) with your overrides applied. Every key and its
    default: `gradwise config`; a YAML file starts from its output (`gradwise config > my.yaml`).
    """
    from gradwise.api import train as train_run

    config, overrides = _split_args(args)
    if resume is not None and config is not None:
        raise GradwiseError("give either a CONFIG or --resume DIR, not both: a resumed run uses the config stored "
                            "in its directory (overrides such as train.epochs=40 are allowed).")
    if resume is not None and overwrite:
        raise GradwiseError(f"--overwrite replaces a run and --resume continues one: give one of them (--resume "
                            f"{resume} keeps what the run has trained).")
    if resume is not None and out is not None:
        if Path(out).resolve() != Path(resume).resolve():
            raise GradwiseError(f"--resume {resume} writes to its own directory, not to --out {out}: leave --out out, "
                                "or copy the run directory there first and resume the copy.")
        out = None
    if out is not None:
        overrides.append(f"out={out}")
    if quiet:
        overrides.append("train.progress=none")
    if nproc is not None and nproc > 1 and launched() is None:  # this process starts the N that train
        from gradwise.train.launch import launch

        return launch(nproc, ([config] if config else []) + overrides + (["--resume", str(resume)] if resume else [])
                      + (["--overwrite"] if overwrite else []) + (["--trust-code"] if trust_code else []))
    main_rank = rank() == 0  # the other processes of a data-parallel run print nothing but their errors
    if config is None and resume is None and not quiet and main_rank:
        from gradwise.config import load_config

        cfg = load_config(None, overrides)
        what = "the built-in default" if len(overrides) == len([o for o in overrides if o.startswith(("out=",
                                                                   "train.progress="))]) else "defaults + overrides"
        console.print(f"No config given: training {cfg.model.name} on {cfg.data.dataset} ({what}; "
                      "`gradwise config` lists every key, examples/ holds configs).", style="dim", markup=False)
    from gradwise.crossval import cross_validate, is_cross_validation, print_result

    if is_cross_validation(config, overrides, resume):  # data.folds > 1: one run per fold, then mean ± std
        cv = cross_validate(config, overrides, resume=resume, console=console, trust_code=trust_code,
                            overwrite=overwrite)
        print_result(cv, console)
        last = cv.runs[-1].summary.get("stop_reason") if cv.runs else None  # a signal stops the fold it hit
        return _status_code(cv.status, last)
    run = train_run(config, overrides, resume=resume, console=console, trust_code=trust_code, overwrite=overwrite)
    note = run.extras.get("already_completed")
    if note and main_rank:
        console.print(note, markup=False)
    if main_rank:
        _print_result(run)
    return _status_code(run.status, run.summary.get("stop_reason"))


@contextlib.contextmanager
def _writing(what: str, suggestion: str) -> Iterator[None]:
    """An output path the user gave that cannot be written (a folder, under a file, read-only) is bad input."""
    try:
        yield
    except OSError as exc:
        raise GradwiseError(f"{what} ({exc.strerror or exc}). Give a file path in a writable folder, "
                            f"{suggestion}.") from None


def _status_code(status: str, stop_reason: str | None) -> int:
    if status == "failed":
        return 1
    if status == "stopped" and stop_reason and stop_reason.startswith("received SIG"):
        return exit_status(signum_of(stop_reason) or signal.SIGINT)
    return 0


def _print_result(run: Any) -> None:
    s = run.summary
    reason = f"  ({s['stop_reason']})" if s.get("stop_reason") else ""
    console.print(f"status {s['status']}{reason}", markup=False, style="bold")
    final = s.get("final") or {}
    kept = s.get("kept") or final
    if kept and final and kept.get("epoch") != final.get("epoch"):
        # the weights (and so eval and the test metrics) are the restored best epoch's, not the last one's
        console.print(f"  kept epoch {kept.get('epoch')} of {final.get('epoch')} (best "
                      f"{(s.get('best') or {}).get('monitor', 'val_loss')}; its weights were restored)", markup=False)
    shown = [k for k in ("train_loss", "val_loss", "val_accuracy", "val_mae", "val_r2") if kept.get(k) is not None]
    test = s.get("test") or {}
    width = max([14, *map(len, shown), *map(len, test)])  # one column for the values (test_balanced_accuracy)
    for key in shown:
        console.print(f"  {key:<{width}} {kept[key]:.4f}", markup=False)
    for key, value in test.items():
        console.print(f"  {key:<{width}} {value:.4f}", markup=False, style="bold")
    if run.findings:
        console.print(f"  doctor: {len(run.findings)} finding(s): {', '.join(f.code for f in run.findings)}",
                      markup=False)
    console.print(f"  {'wall time':<{width}} {s['wall_seconds']:.1f} s", markup=False)
    console.print(f"run directory: {run.dir}", markup=False)
    if (run.dir / "report.html").exists():
        console.print(f"report: {run.dir / 'report.html'}", markup=False)


@app.command("config", context_settings=_CONTEXT, short_help="Print the resolved config (every key with its value).")
@click.argument("args", nargs=-1, metavar="[CONFIG] [KEY=VALUE]...")
def show_config(args: tuple[str, ...]) -> int:
    """Print the resolved config (every default filled in), e.g. to start a YAML file from."""
    from gradwise.config import load_config

    config, overrides = _split_args(args, "config")
    sys.stdout.write(load_config(config, overrides).to_yaml())
    return 0


@app.command("eval", context_settings=_CONTEXT, short_help="Evaluate a trained run on one of its splits.")
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="Which split to evaluate.")
@click.option("--trust-code", is_flag=True,
              help="Allow importing the model.factory module that the run directory's config.yaml names (it runs "
                   "that module's code; GRADWISE_TRUSTED_MODULES=mypkg allows one package for good).")
def eval_cmd(run_dir: Path, split: str, trust_code: bool) -> int:
    """Evaluate a trained run on one of its splits (same data, same stored preprocessing)."""
    from gradwise.inference import evaluate_run

    metrics = evaluate_run(run_dir, split, trust_code=trust_code)
    for key, value in metrics.items():
        console.print(f"{split}_{key:<12} {value:.4f}", markup=False)
    return 0


@app.command("predict", context_settings=_CONTEXT, short_help="Predict new rows with a trained run.")
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR")
@click.argument("inputs", type=click.Path(path_type=Path), metavar="ROWS")
@click.option("--out", "-o", type=click.Path(path_type=Path), metavar="FILE",
              help="Write predictions here as CSV (default: stdout).")
@click.option("--trust-code", is_flag=True,
              help="Allow importing the model.factory module that the run directory's config.yaml names (it runs "
                   "that module's code; GRADWISE_TRUSTED_MODULES=mypkg allows one package for good).")
def predict_cmd(run_dir: Path, inputs: Path, out: Path | None, trust_code: bool) -> int:
    """Predict new ROWS (.csv, .parquet, .npy or .npz) with a trained run: class names (and probabilities) or
    values, as CSV."""
    from gradwise.inference import predict

    # warnings about the new rows (unseen categories, values far outside training, filled gaps): one line each
    frame = predict(run_dir, inputs, trust_code=trust_code,
                    on_warning=lambda m: err_console.print(f"warning: {m}", markup=False, style="yellow"))
    if out is None:
        sys.stdout.write(frame.to_csv(index=False))
    else:
        with _writing(f"--out '{out}': cannot write the predictions there", "e.g. -o predictions.csv"):
            out.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(out, index=False)
        console.print(f"{len(frame)} predictions written to {out}", markup=False)
    return 0


@app.command("lr-find", context_settings=_CONTEXT, short_help="LR range test: suggest a learning rate, save a plot.")
@click.argument("args", nargs=-1, metavar="[CONFIG] [KEY=VALUE]...")
@click.option("--plot", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Where to save the loss-vs-LR plot (default: lr_find.png in runs/<time>-lr-find-<name>/, or in "
                   "out= when given); lr_find.json goes beside it.")
@click.option("--steps", type=click.IntRange(min=10), default=100, show_default=True,
              help="Mini-batches in the sweep.")
def lr_find_cmd(args: tuple[str, ...], plot: Path | None, steps: int) -> int:
    """LR range test: sweep the LR exponentially, suggest one, save a plot."""
    from gradwise.api import find_lr, prepare, save_lr_find
    from gradwise.train.threads import CpuLoad, choose_threads, cpu_threads

    load = CpuLoad()
    config, overrides = _split_args(args, "lr-find")
    cfg, model, loss_fn, loader, device = prepare(config, overrides)
    with cpu_threads(choose_threads(cfg.train.threads, load)):  # the same thread count as `optim.lr: auto`
        search = find_lr(cfg, model, loss_fn, loader, device, steps=steps)
    *details, suggestion = search.describe()
    for line in details:
        console.print(line, markup=False)
    console.print(suggestion, markup=False, style="bold")
    with _writing(f"--plot '{plot}': cannot write the plot there", "or leave --plot out (the run-style folder)"):
        saved = save_lr_find(search, cfg, plot)
    console.print(f"plot: {saved}", markup=False)
    return 0


@app.command("tune", context_settings=_CONTEXT, short_help="Hyperparameter search on Optuna, with pruning.")
@click.argument("args", nargs=-1, metavar="CONFIG [KEY=VALUE]...")
@click.option("--trials", type=int, help="Total trials (all workers together).")
@click.option("--storage", metavar="URL", help="postgresql://... to share a study across machines.")
@click.option("--study", metavar="NAME", help="Study name (default: the config's name).")
@click.option("--workers", type=int, help="Processes on this machine.")
@click.option("--show", is_flag=True, help="Print the leaderboard and run nothing.")
@click.option("--out", "-o", type=click.Path(path_type=Path), metavar="DIR",
              help="Study directory (default studies/<name>).")
def tune_cmd(args: tuple[str, ...], trials: int | None, storage: str | None, study: str | None,
             workers: int | None, show: bool, out: Path | None) -> int:
    """Hyperparameter search on Optuna (grid, random, tpe, gp, cmaes, nsga2) with pruning."""
    from gradwise.tune.command import tune

    config, overrides = _split_args(args, "tune")
    if config is None:
        raise GradwiseError("gradwise tune needs a CONFIG with a tune: section first, e.g. "
                            "gradwise tune examples/tune_mnist1d.yaml")
    return int(tune(Path(config), trials=trials, storage=storage, study=study, workers=workers, show=show, out=out,
                    overrides=overrides, console=console) or 0)


@app.command("doctor", context_settings=_CONTEXT, short_help="Re-analyse a run directory; exit 1 on an error finding.")
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR", required=False)
@click.option("--list", "list_checks", is_flag=True,
              help="Print every check: code, stage, what it measures, thresholds.")
def doctor_cmd(run_dir: Path | None, list_checks: bool) -> int:
    """Re-analyse a finished or crashed run from its files and print the findings; exit 1 when any is an error.
    With --list, print every check the doctor runs instead."""
    from gradwise.doctor.analyze import analyze_run

    if list_checks:
        from gradwise.doctor.checks import describe

        console.print(describe(), markup=False, highlight=False)
        return 0
    if run_dir is None:
        raise GradwiseError("gradwise doctor needs a RUN_DIR (a run directory), or --list to print the checks")

    notes: list[str] = []  # damaged or missing files: named, and the rows that can be read are still analysed
    findings = analyze_run(run_dir, notes=notes)
    for note in notes:
        err_console.print(f"warning: {note}", markup=False, style="yellow")
    if not findings:
        console.print("doctor: no problems found")
    for f in findings:
        console.print(f.render(), markup=False)
    return 1 if any(f.severity == "error" for f in findings) else 0


train.help = inspect.cleandoc(train.help or "") + "\n\n" + _builtins()


# `gradwise report DIR` and `gradwise compare DIR DIR ...` live with the report they write
from gradwise.report.commands import compare_cmd, report_cmd  # noqa: E402

app.add_command(report_cmd)
app.add_command(compare_cmd)
# `gradwise export RUN_DIR --format onnx|torchscript|safetensors` lives with the exporter
from gradwise.export.commands import export_cmd  # noqa: E402

app.add_command(export_cmd)


def _usage_hint(exc: click.UsageError, argv: list[str]) -> str:
    """One line that says how to fix a command-line mistake."""
    ctx = exc.ctx
    if ctx is not None:
        command = ctx.command_path
    else:  # raised by the option parser before the command's context existed: name the command typed
        command = " ".join(["gradwise", *[a for a in argv[:1] if a in app.commands]])
    message = exc.format_message().rstrip(".")
    hint = f"see `{command} --help`"
    if isinstance(exc, click.NoSuchOption) and ctx is not None and ctx.command.name in ("train", "config", "lr-find"):
        # `--epochs 5`: settings are dotted overrides, so point at the key the user meant
        keys = _config_keys()
        word = exc.option_name.lstrip("-").replace("-", "_")
        matches = [k for k in keys if k.split(".")[-1] == word] or difflib.get_close_matches(word, keys, n=1)
        if matches:
            message = f"No such option '{exc.option_name}'"  # not click's "Did you mean '--help'?"
            hint = (f"settings are KEY=VALUE overrides, e.g. `{command} {matches[0]}=...` (`gradwise config` lists "
                    "every key)")
    elif "No such command" in message and ctx is not None and isinstance(ctx.command, click.Group):
        hint = f"commands: {', '.join(ctx.command.list_commands(ctx))} (`gradwise --help`)"
    # click's "Did you mean 'train'?" already ends a sentence
    return f"{message} {hint[0].upper()}{hint[1:]}." if message.endswith("?") else f"{message}; {hint}."


def _config_keys() -> list[str]:
    from gradwise.config import RunConfig

    keys: list[str] = []

    def walk(d: dict[str, Any], prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict) and v:
                walk(v, f"{prefix}{k}.")
            else:
                keys.append(f"{prefix}{k}")

    walk(RunConfig().to_dict(), "")
    return keys


def _stopped_line(exc: Interrupted) -> str:
    """What a command stopped by a signal outside the training loop says (one line)."""
    name = signal_name(exc.signum)
    how = "Ctrl-C" if exc.signum == signal.SIGINT else name
    run_dir = getattr(exc, "run_dir", None)
    if run_dir is not None and (Path(run_dir) / "config.yaml").exists():
        return (f"stopped by {how} ({name}) before training finished; continue the run with "
                f"`gradwise train --resume {run_dir}`")
    return f"stopped by {how} ({name}); nothing was trained"


def main(argv: list[str] | None = None) -> None:
    # SIGINT / SIGTERM raise Interrupted until the Trainer takes them over (and again after it hands them back):
    # a signal during start-up is one line and 128+N, not a traceback, an exit 0 or a silent death
    with stop_on_signals():
        _main(argv)


def _main(argv: list[str] | None) -> None:
    try:
        code = app.main(args=argv, prog_name="gradwise", standalone_mode=False)
    except Interrupted as exc:
        err_console.print(_stopped_line(exc), markup=False)
        sys.exit(exc.exit_status)
    except GradwiseError as exc:
        # a process of a data-parallel run names its rank; one that stopped because another failed says nothing
        # more (that one's own line says why)
        if isinstance(exc, PeerError) and rank() > 0:
            sys.exit(1)
        where = f"[rank {rank()}] " if launched() is not None and launched()[1] > 1 else ""  # type: ignore[index]
        err_console.print(f"error: {where}{exc}", markup=False, style="bold red")
        sys.exit(2 if not isinstance(exc, PeerError) else 1)
    except click.UsageError as exc:
        err_console.print(f"error: {_usage_hint(exc, list(sys.argv[1:] if argv is None else argv))}", markup=False,
                          style="bold red")
        sys.exit(2)
    except click.ClickException as exc:
        err_console.print(f"error: {exc.format_message()}", markup=False, style="bold red")
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # click turns a KeyboardInterrupt (our Interrupted is one) into Abort, keeping the original as its cause
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, Interrupted):
            err_console.print(_stopped_line(cause), markup=False)
            sys.exit(cause.exit_status)
        err_console.print("stopped by Ctrl-C (SIGINT)", markup=False)
        sys.exit(130)
    except BrokenPipeError:
        # `gradwise config | head`: the reader closed the pipe. Exit quietly as a program killed by SIGPIPE would
        # (128 + 13), and point stdout at devnull so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + 13)
    except Exception as exc:  # a bug of gradwise's, not the user's input: one line, the traceback kept for a report
        if os.environ.get("GRADWISE_TRACEBACK"):
            raise
        path = _save_traceback(exc)
        err_console.print(f"error: unexpected {type(exc).__name__}: {exc}. This is a gradwise bug, not your input; "
                          f"please report it with the traceback saved in {path} (GRADWISE_TRACEBACK=1 prints it).",
                          markup=False, style="bold red")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _save_traceback(exc: BaseException) -> str:
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="gradwise-traceback-", suffix=".txt", delete=False) as f:
        f.write("".join(traceback.format_exception(exc)))
        return f.name


__all__ = ["app", "escape", "main"]

if __name__ == "__main__":
    main()

"""`gradwise tune CONFIG [--trials N] [--storage URL] [--study NAME] [--workers K] [--show] [--out DIR] [k=v ...]`.

Problems with the config, the space or the storage raise ConfigError (the CLI prints one message, no traceback).
Exit codes: 0 done, 1 no trial completed, 128+N stopped by signal N: 130 Ctrl-C (SIGINT), 143 SIGTERM, whenever it
arrives (during a trial, between trials, while the study starts); re-run the same command to resume.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import optuna
from rich.console import Console
from rich.markup import escape

from gradwise.config import load_config
from gradwise.errors import ConfigError
from gradwise.signals import exit_status, signal_name, stop_on_signals
from gradwise.tune.progress import TrialProgress
from gradwise.tune.results import best_trial, complete_trials, format_value, leaderboard, params_text, write_results
from gradwise.tune.setup import TuneSetup, budget_text, resolve_setup, startup_trials
from gradwise.tune.storage import open_storage
from gradwise.tune.worker import STORAGE_ENV, Outcome, load_existing, run_parallel, run_worker


def _setup(config: Path, trials: int | None, storage: str | None, study: str | None, workers: int | None,
           out: Path | None, overrides: list[str]) -> TuneSetup:
    if config is None:
        raise ConfigError("gradwise tune needs a config file with a tune: section, e.g. "
                          "`gradwise tune examples/tune_mnist1d.yaml`.")
    cfg = load_config(config, list(overrides))
    return resolve_setup(cfg, Path(config), list(overrides), trials=trials, storage=storage, study=study,
                         workers=workers, out=out)


def tune(config: Path, trials: int | None = None, storage: str | None = None, study: str | None = None,
         workers: int | None = None, show: bool = False, out: Path | None = None,
         overrides: list[str] | None = None, *, console: Console | None = None) -> int:
    """Run (or resume) a hyperparameter search; with show=True print the leaderboard and run nothing."""
    console = console or Console(highlight=False, soft_wrap=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are reported by our own lines
    setup = _setup(config, trials, storage, study, workers, out, list(overrides or []))

    if show:
        existing = load_existing(setup, open_storage(setup.storage))
        stored = existing.user_attrs.get("gradwise:metrics")
        if stored is not None and list(stored) != setup.metrics:
            # the study's own objectives decide its leaderboard (e.g. one started with tune.metrics=[...] on the
            # command line, shown without it): the config's would mislabel and misalign its values
            console.print(f"note: study '{setup.name}' optimizes {', '.join(stored)}, not the config's "
                          f"{', '.join(setup.metrics)}: showing its own objectives", style="dim", markup=False)
            setup.metrics = list(stored)
            setup.directions = [d.name.lower() for d in existing.directions]
        leaderboard(setup, existing.get_trials(deepcopy=False), console)
        return 0

    setup.dir.mkdir(parents=True, exist_ok=True)
    # names, paths, URLs and values are the user's text: escaped, so that rich markup cannot eat `[relu, tanh]`
    # or fail on a directory called `[/tmp]`
    console.print(f"[bold]study[/] {escape(setup.name)}  [dim]{escape(str(setup.dir))}[/]")
    console.print(f"  storage   {escape(setup.storage.display)}" + (f"  ({setup.workers} workers)"
                                                                    if setup.workers > 1 else ""))
    console.print(f"  objective {escape(setup.label())}   budget {budget_text(setup)}")
    pruner = setup.pruner if setup.prunable else ("none" if setup.pruner == "none" else
                                                  f"none ({setup.pruner} needs one per-epoch objective)")
    sampler = setup.sampler
    if sampler in ("tpe", "gp", "cmaes"):
        k = startup_trials(setup)
        sampler += f" (first {k} trial{'' if k == 1 else 's'} random)"
    console.print(f"  sampler   {sampler}   pruner {pruner} (+ non-finite / doctor-hopeless runs)")
    for p in setup.space:
        console.print(f"  space     {escape(p.describe())}")

    progress = TrialProgress(setup, console)
    # a signal between trials raises Interrupted (the study stops as interrupted); during a trial the Trainer takes
    # it; the log tells which signal it was either way, so the exit status is 130 for Ctrl-C and 143 for SIGTERM
    with stop_on_signals() as signals:
        try:
            if setup.workers > 1:
                outcome = run_parallel(setup, progress, signals)
            else:
                outcome = run_worker(setup, progress=progress, signals=signals)
        finally:
            progress.close()

    final = load_existing(setup, open_storage(setup.storage))
    files, notes = write_results(setup, final)
    return _report(setup, final, outcome, files, notes, console)


def _report(setup: TuneSetup, study: optuna.Study, outcome: Outcome, files: dict[str, Path], notes: list[str],
            console: Console) -> int:
    trials = study.get_trials(deepcopy=False)
    console.print()
    leaderboard(setup, trials, console)
    if outcome.recovered:
        console.print(f"{outcome.recovered} trial(s) left running by a stopped process were marked failed and "
                      "retried with the same parameters.")
    for note in notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    best = best_trial(trials, setup)
    if best is not None:
        values = ", ".join(f"{m} {format_value(v)}" for m, v in zip(setup.metrics, best.values, strict=True))
        console.print(f"[bold]best[/] trial {best.number}: {escape(values)}  {escape(params_text(setup, best))}")
    for key in ("best", "trials", "pareto", "report"):
        if key in files:
            console.print(f"  {files[key].name:<11} {escape(_rel(files[key]))}")
    plots = [p for k, p in files.items() if k.startswith("plot_")]
    if plots:
        console.print(f"  plots       {escape(_rel(plots[0].parent))} ({', '.join(p.stem for p in plots)})")
    if "best" in files:
        console.print(f"train the best config: gradwise train {escape(_rel(files['best']))}")
    if outcome.stop == "interrupted":
        number = outcome.signal or 2
        how = "Ctrl-C (SIGINT)" if number == 2 else signal_name(number)
        console.print(f"[yellow]interrupted[/] by {how}: run the same command again to resume the study.")
        return exit_status(number)
    if outcome.stop == "timeout":
        console.print(f"time budget of {setup.timeout:g} s used; run the command again to continue the study.")
    if outcome.stop == "failing":
        console.print(f"[red]stopped[/]: {escape(outcome.error or '')}. Fix the cause and run the command again.")
        return 1
    if outcome.stop == "worker_died":
        console.print("[yellow]a worker process stopped early[/]: run the same command again to finish the study "
                      f"(worker logs in {escape(_rel(setup.dir / 'logs'))}).")
    return 0 if complete_trials(trials) else 1


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def main_worker(config: Path, trials: int | None, storage: str | None, study: str | None, workers: int | None,
                out: Path | None, overrides: list[str], index: int) -> int:
    """One of the `--workers K` processes: run trials quietly; the launching process reports."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = os.environ.get(STORAGE_ENV) or storage
    setup = _setup(config, trials, storage, study, workers, out, overrides)
    if setup.workers > 1:
        import torch

        # K processes share the machine's cores: more threads than cores each would slow all of them down. The
        # environment variable tells train.threads: auto that the count is chosen (the other workers' busy cores
        # are this study's own, already accounted for).
        threads = max(1, (os.cpu_count() or 1) // setup.workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    with stop_on_signals() as signals:
        outcome = run_worker(setup, index=index, signals=signals)
    print(f"worker {index}: {outcome.ran} trial(s), stopped on {outcome.stop}", file=sys.stderr)
    if outcome.stop == "failing":
        print(f"error: {outcome.error}", file=sys.stderr)
        return 1
    return exit_status(outcome.signal or 2) if outcome.stop == "interrupted" else 0

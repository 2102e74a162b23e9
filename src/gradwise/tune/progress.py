"""Progress over trials: a rich bar with the best so far on a terminal, one plain line per finished trial always."""

from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gradwise.tune.results import best_trial, format_value, params_text, pareto_front
from gradwise.tune.setup import TuneSetup
from gradwise.tune.storage import counted_trials, retried_numbers


class TrialProgress:
    """Fed the study's trials after each change; prints trials as they finish (from any worker or machine)."""

    def __init__(self, setup: TuneSetup, console: Console, bar: bool | None = None) -> None:
        self.setup = setup
        self.console = console
        self.bar = console.is_terminal if bar is None else bar
        self.progress: Progress | None = None
        self._task: Any = None
        self._printed: set[int] = set()
        self._finished: list[FrozenTrial] = []  # finished trials seen so far, in finishing order

    def start(self, trials: list[FrozenTrial] | None = None) -> None:
        # trials finished before this invocation (a resumed study) are counted but not printed again
        for t in trials or []:
            if t.state.is_finished():
                self._printed.add(t.number)
                self._finished.append(t)
        if self.bar:
            self.progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("{task.fields[best]}", markup=False),
                                     console=self.console, transient=False)
            self.progress.start()
            self._task = self.progress.add_task("tune", total=self.setup.trials, best="")
        if trials:
            self.update(trials)

    def update(self, trials: list[FrozenTrial]) -> None:
        retried = retried_numbers(trials)
        # in the order they finished (workers finish out of number order), each with the best as of then
        new = [t for t in trials if t.state.is_finished() and t.number not in self._printed]
        for t in sorted(new, key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number)):
            self._printed.add(t.number)
            self._finished.append(t)
            self._print(self._line(t, retried))
        if self.progress is not None:
            done = sum(1 for t in counted_trials(trials) if t.state.is_finished())
            self.progress.update(self._task, completed=done, best=self._best_text(trials))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    # -------------------------------------------------------------------------------------------- text
    def _print(self, line: str) -> None:
        (self.progress.console if self.progress is not None else self.console).print(line, highlight=False,
                                                                                      soft_wrap=True)

    def _best_text(self, trials: list[FrozenTrial]) -> str:
        s = self.setup
        if s.multi:
            front = pareto_front(trials, s)
            return f"Pareto front: {len(front)} trial(s)" if front else ""
        best = best_trial(trials, s)
        return f"best {s.metrics[0]} {best.values[0]:.4g} (trial {best.number})" if best else ""

    def _line(self, t: FrozenTrial, retried: set[int]) -> str:
        s = self.setup
        total = f"/{s.trials}" if s.trials else ""
        done = sum(1 for x in self._finished if x.number not in retried)
        head = f"trial {t.number:>3} ({done}{total})"
        secs = t.user_attrs.get("seconds")
        # parameter values, pruning reasons and errors are plain text inside markup lines: escaped
        tail = f"  {escape(params_text(s, t))}" + (f"  {secs:.1f}s" if isinstance(secs, int | float) else "")
        if t.number in retried:
            return f"{head}  [yellow]interrupted[/] (its process stopped; retried with the same parameters){tail}"
        if t.state == TrialState.COMPLETE and t.values is not None:
            values = "  ".join(f"{m} {format_value(v)}" for m, v in zip(s.metrics, t.values, strict=True))
            return f"{head}  [green]complete[/]  {escape(values)}  | {escape(self._best_text(self._finished))}{tail}"
        if t.state == TrialState.PRUNED:
            why = t.user_attrs.get("pruned", "")
            return f"{head}  [cyan]pruned[/] after {t.user_attrs.get('epochs', '?')} epoch(s): {escape(str(why))}{tail}"
        error = t.user_attrs.get("error", "the worker process stopped")
        return f"{head}  [red]failed[/]: {escape(str(error))}{tail}"

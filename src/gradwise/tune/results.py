"""What a study leaves in its directory, and the leaderboard.

    studies/<name>/best.yaml        the best trial's config, complete and ready for `gradwise train best.yaml`
    studies/<name>/trials.csv       every trial: number, state, value(s), params, epochs, run_dir, ...
    studies/<name>/pareto.csv       several objectives: the Pareto-optimal trials
    studies/<name>/plots/*.png      optimization history, parameter importances, parallel coordinates (Pareto front)
    studies/<name>/report.html      one self-contained page: those plots, the leaderboard and the best trial's config
    studies/<name>/trial-0007/      each trial's ordinary run directory
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradwise.config import RunConfig, apply_overrides, validate_config
from gradwise.tune.setup import TuneSetup
from gradwise.tune.space import trial_overrides
from gradwise.tune.storage import retried_numbers


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "maximize" else a < b


def complete_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
            and all(math.isfinite(v) for v in t.values)]


def ranked(trials: list[FrozenTrial], setup: TuneSetup) -> list[FrozenTrial]:
    """Complete trials, best first (several objectives: by the first metric)."""
    sign = -1.0 if setup.directions[0] == "maximize" else 1.0
    return sorted(complete_trials(trials), key=lambda t: (sign * t.values[0], t.number))


def pareto_front(trials: list[FrozenTrial], setup: TuneSetup) -> list[FrozenTrial]:
    done = complete_trials(trials)

    def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
        pairs = list(zip(a.values, b.values, setup.directions, strict=True))
        no_worse = all(x == y or _better(x, y, d) for x, y, d in pairs)
        return no_worse and any(_better(x, y, d) for x, y, d in pairs)

    front = [t for t in done if not any(dominates(o, t) for o in done if o is not t)]
    return sorted(front, key=lambda t: (-t.values[0] if setup.directions[0] == "maximize" else t.values[0]))


def best_trial(trials: list[FrozenTrial], setup: TuneSetup) -> FrozenTrial | None:
    """The best trial; with several objectives the Pareto-optimal trial that is best on the first metric."""
    pool = pareto_front(trials, setup) if setup.multi else ranked(trials, setup)
    return pool[0] if pool else None


def trial_config(setup: TuneSetup, trial: FrozenTrial) -> RunConfig:
    """The full run config of a trial, as it should be trained again (no study paths, no tune section)."""
    data = setup.base.to_dict()
    data["tune"] = None
    apply_overrides(data, trial_overrides(setup.space, trial.params))
    return validate_config(data, "best trial")


def format_value(v: Any) -> str:
    """A value as the user would write it: 4 significant digits for floats, lists and dicts as JSON with no spaces
    (`widths=[64,64]` is one word: text wraps between parameters, never inside one, and it is a valid override)."""
    if isinstance(v, float):
        # counts stored as floats (the `parameters` objective) in full: 155658, not 1.557e+05
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    if isinstance(v, list | dict):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _short(key: str, keys: list[str]) -> str:
    leaf = key.rsplit(".", 1)[-1]
    return leaf if sum(k.rsplit(".", 1)[-1] == leaf for k in keys) == 1 else key


def params_text(setup: TuneSetup, trial: FrozenTrial) -> str:
    """`lr=0.01 widths=[64,64]`: plain text, not rich markup (escape it before mixing it into markup)."""
    keys = [p.key for p in setup.space]
    values = trial_overrides(setup.space, trial.params)
    return " ".join(f"{_short(k, keys)}={format_value(values[k])}" for k in keys if k in values)


# ------------------------------------------------------------------------------------------------- files


def state_counts(trials: list[FrozenTrial]) -> str:
    """'3 complete, 1 interrupted, 1 pruned': the trials by state (a trial queued again after its process stopped
    counts as interrupted), or 'no trials yet'."""
    retried = retried_numbers(trials)
    counts: dict[str, int] = {}
    for t in trials:
        state = "INTERRUPTED" if t.number in retried else t.state.name
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials yet"


def write_results(setup: TuneSetup, study: optuna.Study) -> tuple[dict[str, Path], list[str]]:
    """Write trials.csv, best.yaml, pareto.csv and the plots; returns the files and notes on what was skipped."""
    setup.dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    files: dict[str, Path] = {}
    notes: list[str] = []

    if trials:
        files["trials"] = _write_trials_csv(setup, study, trials)
    best = best_trial(trials, setup)
    if best is not None:
        files["best"] = _write_best_yaml(setup, best)
    else:
        notes.append("no trial completed, so there is no best.yaml yet")
    if setup.multi:
        front = pareto_front(trials, setup)
        rows = [{"number": t.number, **dict(zip(setup.metrics, t.values, strict=True)),
                 **{f"params_{k}": v for k, v in t.params.items()}, "run_dir": t.user_attrs.get("run_dir")}
                for t in front]
        path = setup.dir / "pareto.csv"
        pd.DataFrame(rows, columns=None if rows else ["number", *setup.metrics]).to_csv(path, index=False)
        files["pareto"] = path
    svgs: dict[str, str] = {}
    plots, skipped = _write_plots(setup, study, svgs)
    files.update(plots)
    notes.extend(skipped)
    try:  # the study's page: a nicety, never a reason to lose the study's results
        from gradwise.report.study import write_study_report

        files["report"] = write_study_report(setup, study, svgs, best, notes)
    except Exception as exc:
        notes.append(f"report.html not written: {type(exc).__name__}: {exc}")
    return files, notes


def _write_trials_csv(setup: TuneSetup, study: optuna.Study, trials: list[FrozenTrial]) -> Path:
    attrs = ("number", "values" if setup.multi else "value", "datetime_start", "datetime_complete", "duration",
             "params", "user_attrs", "state")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = study.trials_dataframe(attrs=attrs)
    if setup.multi:  # values_0, values_1 -> the metric names
        frame = frame.rename(columns={f"values_{i}": m for i, m in enumerate(setup.metrics)})
    else:
        frame = frame.rename(columns={"value": setup.metrics[0]})
    retried = retried_numbers(trials)
    frame["retried"] = frame["number"].isin(retried)  # interrupted and redone: not counted in the budget
    path = setup.dir / "trials.csv"
    frame.to_csv(path, index=False)
    return path


def _write_best_yaml(setup: TuneSetup, best: FrozenTrial) -> Path:
    cfg = trial_config(setup, best)
    values = ", ".join(f"{m}={format_value(v)}" for m, v in zip(setup.metrics, best.values, strict=True))
    header = [f"# Best trial of study '{setup.name}': trial {best.number} ({values}).",
              f"# Searched: {', '.join(p.key for p in setup.space)}. Run directory: {best.user_attrs.get('run_dir')}",
              f"# Train it: gradwise train {setup.dir / 'best.yaml'}"]
    if setup.multi:
        header.insert(1, f"# Several objectives: this is the Pareto-optimal trial with the best {setup.metrics[0]};"
                      " see pareto.csv for the others.")
    path = setup.dir / "best.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text("\n".join(header) + "\n" + cfg.to_yaml())
    tmp.replace(path)  # readers (another machine's worker, a user) never see half a file
    return path


def _write_plots(setup: TuneSetup, study: optuna.Study, svgs: dict[str, str] | None = None
                 ) -> tuple[dict[str, Path], list[str]]:
    """The PNG plots; each also as inline SVG text into `svgs` (for report.html) when given."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        import matplotlib.pyplot as plt

        plt.switch_backend("Agg")  # files only: no window may open, whatever backend the user's session has
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    done = complete_trials(study.get_trials(deepcopy=False))
    if not done:
        return {}, ["no completed trial: no plots"]
    plot_dir = setup.dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    target = (lambda t: t.values[0]) if setup.multi else None
    target_name = setup.metrics[0]
    jobs: list[tuple[str, Any]] = [
        ("history", lambda: ovm.plot_optimization_history(study, target=target, target_name=target_name)),
        ("importances", lambda: ovm.plot_param_importances(study, target=target, target_name=target_name)),
        ("parallel", lambda: ovm.plot_parallel_coordinate(study, target=target, target_name=target_name)),
    ]
    if setup.multi and len(setup.metrics) in (2, 3):
        jobs.append(("pareto", lambda: ovm.plot_pareto_front(study, target_names=setup.metrics)))
    files, notes = {}, []
    for name, make in jobs:
        if name == "importances" and (len(done) < 2 or len(setup.space) < 2):
            notes.append(f"skipped the parameter importances plot: it needs at least 2 completed trials and 2 "
                         f"parameters (have {len(done)} and {len(setup.space)})")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make()
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(max(fig.get_size_inches()[0], 8), max(fig.get_size_inches()[1], 5))
            path = plot_dir / f"{name}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            if svgs is not None:
                import io

                buf = io.StringIO()
                with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text: a small, searchable page
                    fig.savefig(buf, format="svg", bbox_inches="tight")
                text = buf.getvalue()
                svgs[name] = text[text.find("<svg"):]  # no XML prolog or DOCTYPE inside an HTML page
            plt.close(fig)
            files[f"plot_{name}"] = path
        except Exception as exc:  # a plot is a nicety: never lose the study's results over one
            notes.append(f"skipped the {name} plot: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            plt.close("all")
    return files, notes


# --------------------------------------------------------------------------------------------- leaderboard


def leaderboard(setup: TuneSetup, trials: list[FrozenTrial], console: Console, top: int = 10) -> None:
    """The study's state and its best trials (several objectives: the Pareto front).

    One column per searched key when that fits the console; otherwise (an 80-column terminal, or a pipe, which
    rich gives 80 columns) the parameters share one column that wraps between `key=value` words. Metric names and
    values are never cut short. Names and values are the user's text: printed as Text, never parsed as markup
    (`[relu, tanh]` would otherwise vanish as an unknown style tag).
    """
    summary = state_counts(trials)
    console.print(Text.assemble(("study", "bold"), f" {setup.name}  ({summary})  objective: {setup.label()}"))
    rows = pareto_front(trials, setup) if setup.multi else ranked(trials, setup)[:top]
    if not rows:
        console.print("no completed trial yet", markup=False)
        return
    title = "Pareto front" if setup.multi else f"top {len(rows)} trials"
    # measured as if the console were unlimited (measuring at its width reports the squeezed table, not the need)
    unlimited = console.options.update_width(100_000)
    wide = _leaderboard_table(setup, rows, title, one_column_per_key=True)
    if console.measure(wide, options=unlimited).maximum <= console.width:
        console.print(wide, soft_wrap=False)
        return
    narrow = _leaderboard_table(setup, rows, title, one_column_per_key=False)
    if console.measure(narrow, options=unlimited).minimum <= console.width:
        console.print(narrow, soft_wrap=False)
        return
    # many objectives on a very narrow console: no table can keep every name whole, so one line per trial
    console.print(title, markup=False)
    for rank, t in enumerate(rows, 1):
        values = "  ".join(f"{m} {format_value(v)}" for m, v in zip(setup.metrics, t.values, strict=True))
        console.print(Text(f"{rank:>2}. trial {t.number}  {values}  epochs {t.user_attrs.get('epochs', '')}  "
                           f"{params_text(setup, t)}"), soft_wrap=False)


def _leaderboard_table(setup: TuneSetup, rows: list[FrozenTrial], title: str, *, one_column_per_key: bool) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    # numbers and metric names are never wrapped or cut: a column is at least as wide as its header
    for name in ("#", "trial", *setup.metrics, "epochs"):
        table.add_column(Text(name), justify="right", no_wrap=True, min_width=len(name))
    keys = [p.key for p in setup.space]
    if one_column_per_key:
        for k in keys:
            table.add_column(Text(_short(k, keys)), no_wrap=True, min_width=len(_short(k, keys)))
    else:
        table.add_column(Text("params"), overflow="fold")
    for rank, t in enumerate(rows, 1):
        if one_column_per_key:
            values = trial_overrides(setup.space, t.params)
            params = [Text(format_value(values[k]) if k in values else "") for k in keys]
        else:
            params = [Text(params_text(setup, t))]
        table.add_row(str(rank), str(t.number), *[format_value(v) for v in t.values],
                      str(t.user_attrs.get("epochs", "")), *params)
    return table

"""studies/<name>/report.html: a tuning study on one self-contained page.

Optuna's own matplotlib plots (optimization history, parameter importances, parallel coordinates, Pareto front),
inline as SVG (plotly would pull its library from a CDN or weigh megabytes), the leaderboard with each trial's run
directory, and the best trial's config as `gradwise train best.yaml` will train it.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from gradwise.report.html import CSP, CSS
from gradwise.report.writer import write_page

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from gradwise.tune.setup import TuneSetup

TITLES = {"history": "Optimization history", "importances": "Parameter importances",
          "parallel": "Parallel coordinates", "pareto": "Pareto front"}


def _trial_link(setup: TuneSetup, t: FrozenTrial) -> str:
    run_dir = t.user_attrs.get("run_dir")
    if not run_dir:
        return ""
    path = Path(str(run_dir))
    # a trial writes no report.html (gradwise.train.trial); once `gradwise report DIR` made one, link that page
    report = path / "report.html" if (path / "report.html").exists() else path
    try:  # relative, so the study directory can be moved or copied whole
        href = os.path.relpath(report, setup.dir)
    except ValueError:
        href = report.as_posix()
    return f"<a href='{escape(Path(href).as_posix(), quote=True)}'>{escape(path.name)}</a>"


def study_html(setup: TuneSetup, study: optuna.Study, svgs: dict[str, str], best: FrozenTrial | None,
               notes: list[str]) -> str:
    from gradwise.tune.results import format_value, pareto_front, ranked, state_counts, trial_config
    from gradwise.tune.space import trial_overrides

    trials = study.get_trials(deepcopy=False)
    states = state_counts(trials)
    keys = [p.key for p in setup.space]
    rows = pareto_front(trials, setup) if setup.multi else ranked(trials, setup)[:20]
    head = "".join(f"<th>{escape(h)}</th>" for h in ("#", "trial", *setup.metrics, "epochs", *keys, "run"))
    body = []
    for rank, t in enumerate(rows, 1):
        values = trial_overrides(setup.space, t.params)
        cells = [str(rank), str(t.number), *(format_value(v) for v in t.values), str(t.user_attrs.get("epochs", "")),
                 *(format_value(values[k]) if k in values else "" for k in keys)]
        body.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + f"<td>{_trial_link(setup, t)}</td>"
                    "</tr>")
    board = (f"<table class='num'><tr>{head}</tr>{''.join(body)}</table>" if body else
             "<p class='muted'>no completed trial yet.</p>")
    if body:  # trials keep config, metrics and findings; their pages cost a trial's time only when asked for
        example = rows[0].user_attrs.get("run_dir") or setup.dir / "trial-0000"
        board += (f"<p class='muted'>A trial's own report (curves, findings, config, data): <code>gradwise report "
                  f"{escape(str(example))}</code>; its link then opens it.</p>")
    plots = "".join(f"<h3>{escape(TITLES.get(name, name))}</h3><div class='plot'>{svg}</div>"
                    for name, svg in svgs.items())
    if best is not None:
        values = ", ".join(f"{m} = {format_value(v)}" for m, v in zip(setup.metrics, best.values, strict=True))
        best_html = (f"<p>trial {best.number} ({escape(values)}) {_trial_link(setup, best)}. Train it again: "
                     f"<code>gradwise train {escape(str(setup.dir / 'best.yaml'))}</code></p>"
                     f"<pre>{escape(trial_config(setup, best).to_yaml())}</pre>")
    else:
        best_html = "<p class='muted'>no trial completed yet.</p>"
    note_html = "".join(f"<li>{escape(n)}</li>" for n in notes)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\"><title>gradwise study: "
            f"{escape(setup.name)}</title><style>{CSS} .plot svg{{max-width:100%;height:auto}}</style></head><body>"
            f"<h1>Study {escape(setup.name)}</h1><p>{escape(states)}; objective: {escape(setup.label())}; sampler "
            f"{escape(setup.sampler)}, pruner {escape(setup.pruner)}. Searched: {escape(', '.join(keys))}.</p>"
            f"<p class='muted'>{escape(str(setup.dir))}</p>"
            + (f"<ul class='muted'>{note_html}</ul>" if note_html else "")
            + f"<h2>{'Pareto front' if setup.multi else 'Leaderboard'}</h2>{board}"
            f"<h2>Plots</h2>{plots or '<p class=muted>no plots.</p>'}<h2>Best trial</h2>{best_html}</body></html>")


def write_study_report(setup: TuneSetup, study: optuna.Study, svgs: dict[str, str], best: FrozenTrial | None,
                       notes: list[str]) -> Path:
    path = setup.dir / "report.html"
    write_page(path, study_html(setup, study, svgs, best, list(notes)))
    return path



"""`python -m gradwise.tune CONFIG [options] [key=value ...]`, the same arguments as `gradwise tune`.

Also the entry point of the worker processes that `--workers K` starts (the hidden `--worker INDEX` option).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from gradwise.errors import GradwiseError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradwise tune", description="Hyperparameter search over a config's tune: "
                                "section; each trial is a normal gradwise run under the study directory.")
    p.add_argument("config", type=Path, help="YAML config with a tune: section")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. tune.sampler=random")
    p.add_argument("--trials", type=int, default=None, help="trials in the whole study (across workers and re-runs)")
    p.add_argument("--storage", default=None, help="journal:PATH, sqlite:///PATH.db or postgresql://... "
                   "(default: a journal file in the study directory)")
    p.add_argument("--study", default=None, help="study name (default: tune.study or the config's name)")
    p.add_argument("--workers", type=int, default=None, help="worker processes on this machine")
    p.add_argument("--show", action="store_true", help="print the leaderboard of the study; run no trials")
    p.add_argument("--out", type=Path, default=None, help="study directory (default studies/<study>)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        if bad:
            raise GradwiseError(f"'{bad[0]}' is not an override of the form key=value (e.g. tune.trials=30); the "
                                "config file comes first.")
        if args.worker is not None:
            from gradwise.tune.command import main_worker

            return main_worker(args.config, args.trials, args.storage, args.study, args.workers, args.out,
                               args.overrides, args.worker)
        from gradwise.tune.command import tune

        return tune(args.config, args.trials, args.storage, args.study, args.workers, args.show, args.out,
                    args.overrides)
    except GradwiseError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")  # paths and values in it are not markup
        return 2
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to resume the study")
        return 130


if __name__ == "__main__":
    sys.exit(main())

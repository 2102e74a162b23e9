"""Run `gradwise ARGS` (the real CLI, `gradwise.cli.main`) with a fault at an exact point of the run.

    python killpoint.py WHAT WHERE [gradwise args ...]

WHAT is `kill` (the process SIGKILLs itself: no handler, no cleanup, as `kill -9` or the OOM killer) or `pause`
(it writes DIR/.paused-at-WHERE and waits, up to 120 s, for the test to send it a signal; the run then goes on,
and the test sees what the signal does). WHERE is `startup` (while the data loads: the run directory exists, no
model yet) or `step:N` (right after optimizer step N, counted over the whole run, a resumed one included).

Killing from inside the process makes the point of the fault exact (a test that sleeps and then kills from outside
lands somewhere different on a loaded machine). DIR is the value after --out or --resume.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def _run_dir(argv: list[str]) -> Path:
    for flag in ("--out", "--resume"):
        if flag in argv:
            return Path(argv[argv.index(flag) + 1])
    raise SystemExit("killpoint: give --out DIR or --resume DIR")


def _fault(what: str, where: str, run_dir: Path, trainer: Any = None) -> None:
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    marker = run_dir / f".paused-at-{where.replace(':', '-')}"
    marker.write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    # the Trainer's handler records the signal and returns (the loop stops after this step); the start-up
    # handler raises, which ends this wait by itself
    while time.monotonic() < deadline and (trainer is None or trainer._signal is None):
        time.sleep(0.02)


def main() -> None:
    what, where, *argv = sys.argv[1:]
    run_dir = _run_dir(argv)
    if where == "startup":
        import gradwise.data

        real = gradwise.data.load_data

        def load_data(*args: Any, **kwargs: Any) -> Any:
            _fault(what, where, run_dir)
            return real(*args, **kwargs)

        gradwise.data.load_data = load_data
    else:
        step = int(where.split(":")[1])
        from gradwise.train.loop import Trainer

        real_step = Trainer._train_step

        def train_step(self: Trainer, window: list[Any]) -> None:
            real_step(self, window)
            if self.step == step:
                _fault(what, where, run_dir, self)

        Trainer._train_step = train_step  # type: ignore[method-assign]
    from gradwise.cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()

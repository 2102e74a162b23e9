"""One process of a data-parallel `gradwise train` with a fault at an exact step, on one rank only.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_fault.py WHAT RANK STEP -- ARGS

runs `gradwise train ARGS` (the real CLI) in each process that torchrun starts; right after optimizer step STEP
(counted over the whole run; `nan`: at that step), process RANK does WHAT:

* `kill`: once the checkpoints written so far have landed, SIGKILL to the whole process group (launcher and every
  process: a machine that loses power);
* `pause`: writes DIR/.paused-rank-RANK (its pid) and waits, up to 120 s, for a signal (the test sends SIGTERM to
  this one process only);
* `nan`: that step's batch of this process only is NaN (a bad row on one machine);
* `stop`: this process alone sets `should_stop` after that step (a callback of the user's that looks at its own
  batches only).

DIR is the value after --out or --resume.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    what, rank, step, sep, *argv = sys.argv[1:]
    assert sep == "--"
    run_dir = Path(argv[argv.index("--out" if "--out" in argv else "--resume") + 1])
    mine = int(os.environ["RANK"]) == int(rank)
    from gradwise.train.loop import Trainer

    real_step = Trainer._train_step

    def train_step(self: Trainer, window: list[Any]) -> None:
        if mine and what == "nan" and self.step == int(step):
            window = [(batch[0] * float("nan"), batch[1]) for batch in window]
        real_step(self, window)
        if not mine or self.step != int(step):
            return
        if what == "stop":
            self.should_stop, self.stop_reason = True, f"rank {rank} asked to stop"
        if what == "kill":
            self.checkpoints.flush()  # the step checkpoints so far have landed: the point of the kill is exact
            os.killpg(os.getpgid(0), signal.SIGKILL)
        if what == "pause":
            (run_dir / f".paused-rank-{rank}").write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and self.dist.pending_signal is None:
                time.sleep(0.02)

    Trainer._train_step = train_step  # type: ignore[method-assign]
    from gradwise.cli import main as cli_main

    cli_main(["train", *argv])


if __name__ == "__main__":
    main()

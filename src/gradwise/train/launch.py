"""`gradwise train CONFIG --nproc N`: N processes on this machine, started by torch's own launcher.

It is `torchrun --standalone --nproc-per-node N -m gradwise train CONFIG ...` run in this process
(`torch.distributed.run`, the elastic agent: a rendezvous on a free local port, one worker per process with RANK,
WORLD_SIZE and LOCAL_RANK set), each process with torch's threads / N CPU threads unless OMP_NUM_THREADS is set.
On several machines, call torchrun itself (README "Training on several processes and machines"); the training is
the same.
"""

from __future__ import annotations

import os
import signal
import sys

from rich.console import Console

from gradwise.signals import exit_status


def launch(nproc: int, argv: list[str]) -> int:
    """Run `gradwise train ARGV` in `nproc` processes; the exit status of the run (0, 1 failed, 2 bad input, 128+N
    stopped by signal N)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc), "--module", "gradwise",
                                         "train", *argv])
    if "OMP_NUM_THREADS" not in os.environ:
        # torchrun would give every process 1 thread (and print a banner saying so); the cores are shared out
        # instead: torch's threads (one per physical core) / N each, at least 1. A count that is set is kept.
        import torch

        os.environ["OMP_NUM_THREADS"] = str(max(1, torch.get_num_threads() // nproc))
    try:
        run(args)
    except SignalException as exc:  # the launcher got SIGTERM/SIGINT: it passed it on to the processes
        return exit_status(exc.sigval)
    except ChildFailedError as exc:
        codes = {rank: failure.exitcode for rank, failure in exc.failures.items()}
        return _status(codes)
    return 0


def _status(codes: dict[int, int]) -> int:
    """One exit status for the processes' exit codes (those that failed): a stop by signal when that is all there
    is (every process stopped at the same step and rank 0 recorded it), else the first failure's (1: a process
    that stopped because another one failed)."""
    stops = {exit_status(signal.SIGINT), exit_status(signal.SIGTERM)}
    if any(code in stops for code in codes.values()) and all(code in stops or code == 1 for code in codes.values()):
        # stopped by a signal (during start-up, a process that got it alone stops, the others then fail with 1)
        return max(code for code in codes.values() if code in stops)
    rank, code = min(((r, c) for r, c in codes.items() if c not in stops and c != 1), default=min(codes.items()))
    if code < 0:  # killed by a signal (the OOM killer: SIGKILL), so it could not say why itself
        Console(stderr=True, highlight=False).print(
            f"error: process rank {rank} was killed by {signal.Signals(-code).name}; the others were stopped. The "
            "last checkpoint is intact: `gradwise train --resume DIR --nproc N` continues from it.", markup=False)
        return 1
    if code not in (1, 2):
        print(f"error: process rank {rank} exited with status {code}; the others were stopped.", file=sys.stderr)
    return code if code in (1, 2) else 1

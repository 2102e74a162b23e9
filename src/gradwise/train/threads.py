"""`train.threads`: how many CPU threads torch's kernels use during a run.

torch starts one OpenMP thread per physical core, and idle threads spin-wait for the next op. Next to another busy
process that is a trap: the pool's threads take turns with it on every op and an epoch can take 3-55x longer (on
2 cores the default MNIST-1D run went from 0.52 s to 1.8-29 s per epoch, varying run to run). bench/threads.py
measured the choices (README "Benchmarks"):

- a sleeping wait policy (OMP_WAIT_POLICY=PASSIVE) cost 1.4-1.7x on a quiet machine and still 2.3x when busy;
- one thread fewer than the busy cores leave is never trapped, but on a quiet machine it gives away cores;
- so `auto` counts the cores other processes keep busy while the run sets up, and uses what is left:
  all of torch's threads on a quiet machine, fewer next to other work. A process that starts later is not seen.

The count of busy cores comes from /proc/stat (all CPUs' busy time) minus this process's own CPU time, over the
window from the start of `fit`/`train` to the first epoch (at least 50 ms). Where /proc/stat does not exist
(macOS, Windows) `auto` leaves torch's setting alone.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import torch

_MIN_WINDOW = 0.05  # seconds: /proc/stat counts in 10 ms ticks, so shorter windows are mostly rounding


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) ticks of all CPUs since boot, or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class CpuLoad:
    """A snapshot to measure, later, how many cores other processes kept busy since it was taken."""

    def __init__(self) -> None:
        self.wall = time.monotonic()
        self.jiffies = _cpu_jiffies()
        self.own = _own_cpu_seconds()

    def busy_cores(self) -> float | None:
        """Cores kept busy by other processes since the snapshot (None where it cannot be measured)."""
        if self.jiffies is None:
            return None
        wait = _MIN_WINDOW - (time.monotonic() - self.wall)
        if wait > 0:
            time.sleep(wait)
        now = _cpu_jiffies()
        if now is None:
            return None
        busy, total = now[0] - self.jiffies[0], now[1] - self.jiffies[1]
        if total <= 0:
            return None
        cpus = os.cpu_count() or 1
        wall = time.monotonic() - self.wall
        # all CPUs' busy fraction, in cores, less what this process itself used in the window
        others = busy / total * cpus - (_own_cpu_seconds() - self.own) / max(wall, 1e-9)
        return max(0.0, others)


def choose_threads(setting: int | str, load: CpuLoad | None) -> int | None:
    """The thread count for a run, or None to leave torch's as it is."""
    if isinstance(setting, int):
        return setting
    if setting == "all" or load is None:
        return None
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return None  # the user chose for the whole process
    busy = load.busy_cores()
    if busy is None:
        return None
    available = torch.get_num_threads()
    return max(1, min(available, available - int(busy + 0.5)))


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` intra-op threads (None: unchanged), then restore the caller's setting."""
    if count is None or count == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

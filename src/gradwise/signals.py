"""SIGINT and SIGTERM outside the training loop: start-up, between tune trials, the end of a command.

While it trains, the Trainer handles both signals itself (it saves a checkpoint, marks the run `stopped` and the
CLI exits 128+N). Before its first epoch (imports, data loading, model building, the LR finder) and around it
(a tune study between trials), a command runs under `stop_on_signals()`: a signal raises `Interrupted`, a
KeyboardInterrupt that knows its signal, so every stop ends the same way: one line and exit status 128+N (130 for
Ctrl-C, 143 for SIGTERM), never a traceback, never 0, never a silent death by SIGTERM's default action.

`SignalLog` also records every signal delivered while it is active, including those the Trainer's handler took
(via the interpreter's wakeup file descriptor, which sees each signal whichever Python handler runs): a tune
study asks it after each trial whether it was asked to stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised by `stop_on_signals`' handler: the process got `signum` (SIGINT or SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = int(signum)

    @property
    def exit_status(self) -> int:
        return exit_status(self.signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int) -> int:
    """The shell's convention for a process stopped by signal N: 128 + N (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


def signum_of(stop_reason: str | None) -> int | None:
    """The signal a run's summary.json `stop_reason` names ("received SIGTERM: ..."), if any."""
    if not stop_reason or not stop_reason.startswith("received SIG"):
        return None
    name = stop_reason.split()[1].rstrip(":")
    value = getattr(signal, name, None)
    return int(value) if value is not None else None


class SignalLog:
    """The signals delivered to this process while the log is open (read with `received()`)."""

    def __init__(self) -> None:
        self._read_fd: int | None = None
        self._seen: list[int] = []

    def received(self) -> list[int]:
        if self._read_fd is not None:
            while True:
                try:
                    data = os.read(self._read_fd, 512)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if not data:
                    break
                self._seen.extend(b for b in data if b in SIGNALS)
        return list(self._seen)

    @property
    def last(self) -> int | None:
        seen = self.received()
        return seen[-1] if seen else None


def _raise(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[SignalLog]:
    """SIGINT and SIGTERM raise `Interrupted` until the block ends; the previous handlers come back after it.

    Outside the main thread (where Python cannot install handlers) nothing is installed and the log stays empty.
    A signal that was ignored when the process started (SIG_IGN, e.g. a background job of a script) is handled too:
    an explicit `kill -INT` must stop the run, as it does once training started (the Trainer's own handler).
    """
    log = SignalLog()
    if threading.current_thread() is not threading.main_thread():
        yield log
        return
    previous = {sig: signal.signal(sig, _raise) for sig in SIGNALS}
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    try:
        old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main interpreter: no log, the handlers still work
        old_wakeup = None
    log._read_fd = read_fd
    try:
        yield log
    finally:
        if old_wakeup is not None:
            signal.set_wakeup_fd(old_wakeup)
        log.received()  # keep what arrived, then close the pipe
        log._read_fd = None
        os.close(read_fd)
        os.close(write_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

"""The doctor's held-out and blind sets, one command line for all of them:

    python bench/doctor/run.py SET [--seed N] [--only NAME,NAME] [--no-doctor] [--keep DIR] [--list]

SET is one of holdout, blind, blind2 .. blind7 (the modules in bench/doctor/sets/; `python bench/doctor_<SET>.py`
runs the same set). The case suite, which also scores repair, has its own runner: bench/doctor_cases.py.

Exit status 0 when every expected code was found (for blind6 and blind7: one acceptable code a faulty run) and no
healthy run raised a warning or error.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: `doctor` is this folder's package

SETS = ("holdout", "blind", "blind2", "blind3", "blind4", "blind5", "blind6", "blind7")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SETS:
        print(__doc__, file=sys.stderr)
        return 2
    held = importlib.import_module(f"doctor.sets.{argv[0]}").SET
    return held.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

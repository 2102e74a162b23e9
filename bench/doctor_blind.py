"""The doctor's blind set, now in bench/doctor/sets/blind.py (its docstring tells its history); this name stays
as an alias: `python bench/doctor_blind.py ...` = `python bench/doctor/run.py blind ...`."""

import sys

from doctor.sets.blind import SET

RUNS, RUN_BY_NAME, execute, main = SET.runs, SET.by_name, SET.execute, SET.main

if __name__ == "__main__":
    sys.exit(main(None))

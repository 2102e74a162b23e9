"""The doctor's blind4 set, now in bench/doctor/sets/blind4.py (its docstring tells its history); this name stays
as an alias: `python bench/doctor_blind4.py ...` = `python bench/doctor/run.py blind4 ...`."""

import sys

from doctor.sets.blind4 import SET

RUNS, RUN_BY_NAME, execute, main = SET.runs, SET.by_name, SET.execute, SET.main

if __name__ == "__main__":
    sys.exit(main(None))

"""The doctor's blind7 set, now in bench/doctor/sets/blind7.py (its docstring tells its history); this name stays
as an alias: `python bench/doctor_blind7.py ...` = `python bench/doctor/run.py blind7 ...`."""

import sys

from doctor.sets.blind7 import SET

RUNS, RUN_BY_NAME, execute, main = SET.runs, SET.by_name, SET.execute, SET.main

if __name__ == "__main__":
    sys.exit(main(None))

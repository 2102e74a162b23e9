"""The doctor's hold-out set; it lives in bench/doctor/sets/holdout.py (its docstring tells its history). This name
stays as an alias: `python bench/doctor_holdout.py ...` = `python bench/doctor/run.py holdout ...`."""

import sys

from doctor.sets.holdout import SET

RUNS, RUN_BY_NAME, execute, main = SET.runs, SET.by_name, SET.execute, SET.main

if __name__ == "__main__":
    sys.exit(main(None))

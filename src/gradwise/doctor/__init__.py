"""The doctor: diagnoses training problems from the loop's events and says what to change.

`Doctor` is the callback `fit()` adds; `analyze_run(DIR)` re-analyses a finished or crashed run directory from its
files; `Finding` is what both return; `CODES` are the stable finding codes.
"""

from gradwise.doctor.analyze import analyze_run
from gradwise.doctor.doctor import Doctor
from gradwise.doctor.findings import CODES, Finding
from gradwise.doctor.rules import DEFAULT as DEFAULT_THRESHOLDS
from gradwise.doctor.rules import Thresholds

__all__ = ["CODES", "DEFAULT_THRESHOLDS", "Doctor", "Finding", "Thresholds", "analyze_run"]

"""The doctor: diagnoses training problems from the loop's events and says what to change.

`Doctor` is the callback `fit()` adds; `analyze_run(DIR)` re-analyses a finished or crashed run directory from its
files; `Finding` is what both return; `CODES` (`Code`) are the stable finding codes. What it checks is a registry of
declared checks (`gradwise.doctor.checks`, `gradwise doctor --list`), each reading named thresholds
(`gradwise.doctor.thresholds`); repair is a decision (`gradwise.doctor.repair`) the loop carries out.
"""

from gradwise.doctor.analyze import analyze_run
from gradwise.doctor.doctor import Doctor
from gradwise.doctor.findings import CODES, Code, Finding
from gradwise.doctor.thresholds import DEFAULT as DEFAULT_THRESHOLDS
from gradwise.doctor.thresholds import Thresholds

__all__ = ["CODES", "DEFAULT_THRESHOLDS", "Code", "Doctor", "Finding", "Thresholds", "analyze_run"]

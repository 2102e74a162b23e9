"""The doctor: diagnoses training problems from the loop's events and says what to change."""

from gradwise.doctor.doctor import Doctor
from gradwise.doctor.findings import CODES, Finding

__all__ = ["CODES", "Doctor", "Finding"]

"""Moved to bench/doctor/harness.py (with its data builders in doctor/data.py and its models in doctor/models.py);
this name stays so that `import doctor_harness as harness` keeps working: HeldOutRun, registrar, HeldOutSet,
execute, report, main and the data/model helpers are the same objects."""

from doctor.data import *  # noqa: F403
from doctor.harness import *  # noqa: F403
from doctor.harness import Built, Case, CaseSet, HeldOutSet, Result, Scored, TorchOptim, collect  # noqa: F401
from doctor.models import *  # noqa: F403

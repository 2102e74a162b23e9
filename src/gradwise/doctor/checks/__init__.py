"""The doctor's checks, one declared class per check, grouped by family; `REGISTRY` holds them all.

A check declares what it is (its `name`, the finding `code` it raises, its `family`, the `stage` it runs at, its
usual `severity`, what it `measures`, the `thresholds` it reads, its `causes` and `fixes`) and implements one
function, `check(facts, t)`: read-only facts of its stage and the thresholds in, a `Finding` or None out. The
runner (`run`) calls every check of a stage the same guarded way: a bug in one check loses that check's verdict
(reported once as a Python warning), never the user's training. `doctor.disable: [name, ...]` switches checks
off; `gradwise doctor --list` prints the registry.

The pre-flight checks (data, splits, wiring, init) read facts measured once before they run
(doctor/preflight_facts.py); their order is declared in checks/preflight.py. The live checks (checks/live.py) read
`LiveFacts` the Doctor callback measures from the trainer on the step a NaN appears or at an epoch end.
"""

from gradwise.doctor.checks.base import (
    FAMILIES,
    REGISTRY,
    STAGES,
    Check,
    Stage,
    checks,
    describe,
    guarded,
    listed,
    markdown_table,
    register,
    run,
    validate_disabled,
)

# the families register their checks on import, in the order they run
from gradwise.doctor.checks import data, splits, wiring, init  # noqa: E402,F401  isort: skip
from gradwise.doctor.checks import activations, curves, curves_fit, live, steps  # noqa: E402,F401  isort: skip

__all__ = ["FAMILIES", "REGISTRY", "STAGES", "Check", "Stage", "checks", "describe", "guarded", "listed",
           "markdown_table", "register", "run", "validate_disabled"]

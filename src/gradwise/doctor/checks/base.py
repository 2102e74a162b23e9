"""The check base class, the registry, the guarded runner and the listing (see doctor/checks/__init__.py)."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Literal

from gradwise.doctor.findings import Code, Finding, Fix, Severity, render_fixes
from gradwise.doctor.thresholds import NAMES, Thresholds

Stage = Literal["preflight", "step", "epoch", "final"]
STAGES: tuple[Stage, ...] = ("preflight", "step", "epoch", "final")
FAMILIES = ("data", "splits", "wiring", "init", "steps", "activations", "curves", "capacity")


class Check:
    """One check. Subclasses set the declarations and implement `check`."""

    name: ClassVar[str]
    code: ClassVar[Code]
    also: ClassVar[tuple[Code, ...]] = ()  # other codes a declared-only check can raise
    family: ClassVar[str]
    stage: ClassVar[Stage]
    severity: ClassVar[Severity] = "warning"
    measures: ClassVar[str]
    thresholds: ClassVar[tuple[str, ...]] = ()
    causes: ClassVar[tuple[str, ...]] = ()
    fixes: ClassVar[tuple[Fix | str, ...]] = ()
    reads: ClassVar[str] = "curves"  # the facts it reads: curves | preflight | probes | activations
    runs_in: ClassVar[str] = ""  # a check not yet moved out of an older function: that function's name

    def check(self, facts: Any, t: Thresholds) -> Finding | None:  # pragma: no cover - declared-only checks
        raise NotImplementedError

    @classmethod
    def finding(cls, message: str, evidence: dict[str, Any], *, epoch: int | None, step: int | None = None,
                severity: Severity | None = None, causes: Iterable[str] | None = None,
                fixes: Iterable[Fix | str] | None = None, code: Code | None = None) -> Finding:
        """This check's finding, with its declared code, severity, causes and fixes unless given."""
        return Finding(code or cls.code, severity or cls.severity, message, evidence,
                       list(cls.causes if causes is None else causes),
                       render_fixes(cls.fixes if fixes is None else fixes), step=step, epoch=epoch)


REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Add a check to the registry, checking its declarations (a typo fails at import, not mid-run)."""
    if cls.name in REGISTRY:
        raise ValueError(f"two doctor checks are named {cls.name!r}")
    if cls.family not in FAMILIES or cls.stage not in STAGES:
        raise ValueError(f"check {cls.name}: family {cls.family!r} / stage {cls.stage!r} unknown")
    Code(cls.code)  # raises on an unknown code
    unknown = [n for n in cls.thresholds if n not in NAMES]
    if unknown:
        raise ValueError(f"check {cls.name} reads unknown thresholds {unknown}")
    REGISTRY[cls.name] = cls
    return cls


def checks(stage: Stage | None = None, family: str | None = None) -> list[type[Check]]:
    """The registered checks, in registration order (the order they run in), of one stage and/or family."""
    return [c for c in REGISTRY.values() if (stage is None or c.stage == stage)
            and (family is None or c.family == family)]


_FAILED: set[str] = set()


def guarded(name: str, fn: Any, *args: Any) -> Any:
    """Call one check; an exception in it is a bug in that check: warn once per check and go on without it."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - a check's bug must never stop the user's training
        if name not in _FAILED:
            _FAILED.add(name)
            warnings.warn(f"doctor check {name} failed and was skipped: {type(e).__name__}: {e}", RuntimeWarning,
                          stacklevel=2)
        return None


def run(selected: Sequence[type[Check]], facts: Any, t: Thresholds, disabled: Iterable[str] = (),
        guard: bool = True) -> list[Finding]:
    """Every selected check over the same facts, in order, each guarded (unless `guard=False`: then a check's
    exception propagates); the findings they raised."""
    off = set(disabled)
    out: list[Finding] = []
    for cls in selected:
        if cls.name in off or cls.runs_in:
            continue
        found = guarded(cls.name, cls().check, facts, t) if guard else cls().check(facts, t)
        if found is not None:
            out.append(found)
            if isinstance(getattr(facts, "found", None), list):  # later checks of the pass read what was found
                facts.found.append(found)
    return out


def validate_disabled(names: Iterable[str]) -> None:
    """`doctor.disable` names checks that exist (a ConfigError naming the unknown one otherwise)."""
    from gradwise.errors import ConfigError

    for n in names:
        if n not in REGISTRY:
            close = difflib.get_close_matches(str(n), list(REGISTRY), n=3)
            raise ConfigError(f"doctor.disable: no check named {n!r}"
                              + (f" (did you mean {', '.join(close)}?)" if close else "")
                              + "; `gradwise doctor --list` prints every check's name")



# ------------------------------------------------------------------------------------------------- the listing
def listed() -> list[type[Check]]:
    """The checks by stage (pre-flight first), then family."""
    return sorted(REGISTRY.values(), key=lambda c: (STAGES.index(c.stage), FAMILIES.index(c.family)))


def describe(t: Thresholds | None = None) -> str:
    """`gradwise doctor --list`: every check with its code(s), stage, family, what it measures and the thresholds
    it reads (with the values in force), in the order the checks run."""
    from gradwise.doctor.thresholds import DEFAULT

    t = t or DEFAULT
    lines = []
    for c in listed():
        codes = ", ".join([c.code, *c.also])
        lines.append(f"{c.name}  [{codes}]  stage={c.stage} family={c.family} severity={c.severity}")
        lines.append(f"    {c.measures}")
        if c.thresholds:
            lines.append("    thresholds: " + ", ".join(f"{n}={getattr(t, n):g}" for n in c.thresholds))
    lines.append(f"{len(REGISTRY)} checks; switch one off with doctor.disable=[name], change a threshold with "
                 "doctor.thresholds.<name>=<value>")
    return "\n".join(lines)


def markdown_table() -> str:
    """The README's table of checks, generated from the registry (tests/test_doctor_checks.py keeps them equal)."""
    rows = ["| check | code | stage | measures | thresholds |", "|---|---|---|---|---|"]
    for c in listed():
        codes = ", ".join(f"`{x}`" for x in (c.code, *c.also))
        ths = ", ".join(f"`{n}`" for n in c.thresholds) or "-"
        rows.append(f"| `{c.name}` | {codes} | {c.stage} | {c.measures} | {ths} |")
    return "\n".join(rows)

"""Findings: what the doctor saw (evidence), why it matters, and what to change — with stable codes."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2}

class Code(StrEnum):
    """The stable finding codes (strings: `Finding.code == "plateau"` holds for `Code.PLATEAU`)."""

    NONFINITE_VALUES = "nonfinite_values"
    DIVERGING_LOSS = "diverging_loss"
    LR_TOO_HIGH = "lr_too_high"
    LR_TOO_LOW = "lr_too_low"
    EXPLODING_GRADIENTS = "exploding_gradients"
    VANISHING_GRADIENTS = "vanishing_gradients"
    DEAD_UNITS = "dead_units"
    SATURATED_UNITS = "saturated_units"
    OSCILLATING_LOSS = "oscillating_loss"
    PLATEAU = "plateau"
    NO_LEARNING = "no_learning"
    OVERFITTING = "overfitting"
    UNDERFITTING = "underfitting"
    UNNORMALIZED_INPUTS = "unnormalized_inputs"
    LABEL_PROBLEM = "label_problem"
    CLASS_IMBALANCE = "class_imbalance"
    DATA_LEAKAGE = "data_leakage"
    LOSS_OUTPUT_MISMATCH = "loss_output_mismatch"
    BAD_INITIALIZATION = "bad_initialization"
    OVER_REGULARIZATION = "over_regularization"
    TRAIN_EVAL_MISMATCH = "train_eval_mismatch"


CODES = tuple(c.value for c in Code)



def plain(value: Any) -> Any:
    """A JSON- and `torch.load(weights_only=True)`-safe copy: tensors/numpy scalars become Python numbers, floats
    are rounded to 4 significant digits (evidence is read by people) and non-finite floats become strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # torch tensor, numpy array or scalar
        return plain(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return float(f"{value:.4g}")
    return str(value)


# ------------------------------------------------------------------------------------------------- fixes as data
# A placeholder's short name: the LR and batch size a run trains with are filled from the run (fill_fixes), any
# other key from its resolved config value (fixes.RunContext).
_SHORT = {"optim.lr": "lr", "train.batch_size": "bs"}


@cache
def _schema_field(key: str) -> Any:
    """The pydantic field of RunConfig that a dotted key names, or None."""
    from gradwise.config import RunConfig

    model: Any = RunConfig
    info = None
    for part in key.split("."):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        model = next((a for a in (info.annotation, *getattr(info.annotation, "__args__", ()))
                      if hasattr(a, "model_fields")), None)
    return info


@dataclass(frozen=True)
class Fix:
    """One change of the run's config: `key` set to `value`, or `key` scaled by `scale` of its current value
    (filled in from the run when the finding is shown); `note` says why, in brackets after it. Rendered the one
    way the CLI, findings.jsonl and the report show it: ``optim.lr=<lr*0.1>``, ``train.clip_grad=1.0``. The key
    and the value are checked against the config schema when the fix is made (at import, for the declared ones)."""

    key: str
    value: Any = None
    scale: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        info = _schema_field(self.key)
        if info is None:
            raise ValueError(f"fix names {self.key!r}, which is not a config key (see `gradwise config`)")
        if (self.value is None) == (self.scale is None):
            raise ValueError(f"fix {self.key}: give a value or a scale of the current value, not both or neither")
        if self.value is not None:
            from pydantic import TypeAdapter

            TypeAdapter(info.annotation).validate_python(self.value)  # raises on a value the key does not take

    def render(self) -> str:
        if self.scale is not None:
            text = f"{self.key}=<{_SHORT.get(self.key, self.key)}*{self.scale:g}>"
        else:
            v = self.value
            text = f"{self.key}={str(v).lower() if isinstance(v, bool) else v}"
        return f"{text} ({self.note})" if self.note else text

    __str__ = render


@dataclass(frozen=True)
class Fixes:
    """Several config changes given as one fix: all of them (`joiner` " " or " and ") or any one (" or "),
    optionally inside advice in words (`text`, where "{}" stands for them). Rendered like a Fix:
    ``model.activation=relu model.init=he_normal``; each part is a validated Fix."""

    parts: tuple[Fix, ...]
    joiner: str = " "
    text: str = ""

    def render(self) -> str:
        joined = self.joiner.join(p.render() for p in self.parts)
        return self.text.format(joined) if self.text else joined

    __str__ = render


def both(*parts: Fix, joiner: str = " ") -> Fixes:
    """All of these changes together."""
    return Fixes(parts, joiner)


def either(*parts: Fix) -> Fixes:
    """Any one of these changes."""
    return Fixes(parts, " or ")


def advice(text: str, *parts: Fix) -> Fixes:
    """Advice in words around config changes: ``advice("a smaller model ({})", Fix(...))``."""
    return Fixes(parts, " ", text)


def render_fixes(fixes: Any) -> list[str]:
    """Fixes as the strings a Finding holds (findings.jsonl, the CLI and the report show these): a Fix or Fixes
    rendered, free advice (a str) as it is."""
    return [f.render() if isinstance(f, Fix | Fixes) else str(f) for f in fixes]


# The fixes several checks share, declared once.
LR_DOWN = Fix("optim.lr", scale=0.1)
LR_DOWN_SOME = Fix("optim.lr", scale=0.3)
LR_UP = Fix("optim.lr", scale=10)
LR_UP_SOME = Fix("optim.lr", scale=3)
CLIP = Fix("train.clip_grad", 1.0)
REPAIR = Fix("doctor.repair", True)
BATCH_UP = Fix("train.batch_size", scale=2)
COSINE = Fix("schedule.name", "warmup_cosine")
HE_INIT = Fix("model.init", "he_normal")
WIDER = Fix("model.widths", scale=2)
DIVERGENCE_FIXES = (LR_DOWN, CLIP, REPAIR)


_PLACEHOLDER = re.compile(r"<(lr|bs)\*([0-9.]+)>")


def fill_fixes(fixes: list[str], lr: float | None, batch_size: int | None) -> list[str]:
    """Turn '<lr*0.1>' / '<bs*2>' placeholders in fixes into numbers from the run (left as is when unknown)."""
    values = {"lr": lr, "bs": batch_size}

    def sub(m: re.Match) -> str:
        base = values[m.group(1)]
        if base is None:
            return m.group(0)
        v = base * float(m.group(2))
        return f"{v:.2g}" if m.group(1) == "lr" else str(max(1, int(v)))

    return [_PLACEHOLDER.sub(sub, f) for f in fixes]


@dataclass
class Finding:
    code: str
    severity: Severity
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    causes: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    step: int | None = None
    epoch: int | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}")
        # a plain str, whatever made it (Code.PLATEAU or "plateau"): findings.jsonl, YAML, reprs stay as they were
        self.code = str(self.code)
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {self.severity!r}; use info, warning or error")
        self.evidence = plain(self.evidence)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(**{k: d.get(k) for k in ("code", "severity", "message", "evidence", "causes", "fixes", "step",
                                            "epoch") if k in d})

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]

    def render(self) -> str:
        """One line for people: 'WARNING code (epoch e, step s): message  fix: ...'. No square brackets around the
        severity, so a rich console printing it with markup on does not swallow it as a style tag."""
        where = f" (epoch {self.epoch}, step {self.step})" if self.epoch is not None else ""
        fixes = f"  fix: {'; '.join(self.fixes)}" if self.fixes else ""
        return f"{self.severity.upper()} {self.code}{where}: {self.message}{fixes}"

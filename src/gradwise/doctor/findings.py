"""Findings: what the doctor saw (evidence), why it matters, and what to change — with stable codes."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2}

CODES = (
    "nonfinite_values", "diverging_loss", "lr_too_high", "lr_too_low", "exploding_gradients",
    "vanishing_gradients", "dead_units", "saturated_units", "oscillating_loss", "plateau", "no_learning",
    "overfitting", "underfitting", "unnormalized_inputs", "label_problem", "class_imbalance", "data_leakage",
    "loss_output_mismatch", "bad_initialization", "over_regularization", "train_eval_mismatch",
)


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

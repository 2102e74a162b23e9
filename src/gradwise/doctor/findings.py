"""Findings: what the doctor saw (evidence), why it matters, and what to change — with stable codes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]

CODES = (
    "nonfinite_values", "diverging_loss", "lr_too_high", "lr_too_low", "exploding_gradients",
    "vanishing_gradients", "dead_units", "saturated_units", "oscillating_loss", "plateau", "no_learning",
    "overfitting", "underfitting", "unnormalized_inputs", "label_problem", "class_imbalance", "data_leakage",
    "loss_output_mismatch", "bad_initialization", "over_regularization", "train_eval_mismatch",
)


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(**{k: d.get(k) for k in ("code", "severity", "message", "evidence", "causes", "fixes", "step",
                                            "epoch") if k in d})

    def render(self) -> str:
        where = f" (epoch {self.epoch}, step {self.step})" if self.epoch is not None else ""
        fixes = f"  fix: {'; '.join(self.fixes)}" if self.fixes else ""
        return f"[{self.severity}] {self.code}{where}: {self.message}{fixes}"

"""Repair as a decision: from the findings and what the run has been through to one `RepairRequest` (or none).

Pure functions, with `doctor.repair=true`: the Doctor gathers the facts (`RepairState`), asks, and hands the
request to the loop's one public way to carry it out, `Trainer.request` (`RepairRequest.to_request`: restore a
checkpoint or the snapshot of the initial weights the Doctor took at fit start, then change the LR or turn clipping
on). Which finding is answered first: a blow-up before large
steps, large steps before small ones -- raising the LR of a run whose steps were just found too large, or whose
loss bounces, would make it worse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradwise.doctor.findings import Code, Finding
from gradwise.doctor.thresholds import Thresholds
from gradwise.train.events import Request

START = "start"  # the name of the Doctor's snapshot of the state at the start of the fit (trainer.snapshot)

# The states a restore tries, in order: a missing checkpoint falls back to last.pt, then to the start; "start" on a
# resumed fit (which took no snapshot) goes back to the best checkpoint, the earliest good state it has.
_FALLBACKS = {"last": ("last", START), "best": ("best", "last", START), START: (START, "best", "last")}


@dataclass(frozen=True)
class RepairRequest:
    """What the loop is asked to do. `to`: the state to go back to (last | best | start); `restore=False` keeps the
    current weights and only applies the changes; `now=False` waits for the end of the current batch."""

    finding: str
    reason: str
    lr_factor: float | None = None
    clip_grad: float | None = None
    restore: bool = True
    to: str = "last"
    now: bool = True

    def to_request(self, note: dict[str, Any]) -> Request:
        """The loop's Request: the states to restore, tried in order, and the changes; `note` goes into the record."""
        return Request(self.reason, restore=_FALLBACKS[self.to] if self.restore else (), lr_factor=self.lr_factor,
                       clip_grad=self.clip_grad, note=note)


@dataclass(frozen=True)
class RepairState:
    """What the run has been through, as the decisions read it."""

    epoch: int  # epochs done (0-based index of the current one)
    epochs: int  # planned
    clip_grad: float | None  # the run's clipping now
    cut_lr: bool = False  # a repair has lowered the LR already
    init_abnormal: bool = False
    seen: frozenset[str] = field(default_factory=frozenset)  # codes reported so far (warning or error)
    largest_step: float | None = None  # the largest probed update/weight ratio at the peak LR
    recent_updates: tuple[float, ...] = ()  # update/weight ratios of the last probes


def lr_factor(finding: Finding, low: float, high: float, target: float) -> float:
    """The LR factor that brings the measured update/weight ratio to `target`, within [low, high]."""
    ratio = finding.evidence.get("update_to_weight")
    ratio = float(ratio) if isinstance(ratio, int | float) and ratio > 0 else target
    return float(f"{min(high, max(low, target / ratio)):.3g}")


def after_nonfinite(step: int, s: RepairState) -> RepairRequest:
    """A non-finite loss: back to the last good checkpoint with LR / 10 and clipping on."""
    return RepairRequest(Code.NONFINITE_VALUES, f"non-finite loss at step {step}", lr_factor=0.1,
                         clip_grad=s.clip_grad or 1.0)


def after_probes(found: list[Finding], s: RepairState, t: Thresholds) -> RepairRequest | None:
    """After a probe step. The probe windows restart after every repair, so a finding here is about the current
    settings. Exploding gradients with clipping already on are bounded: a diverging loss or a NaN decides then."""
    by = {f.code: f for f in found if f.severity != "info"}
    if Code.EXPLODING_GRADIENTS in by and s.clip_grad is None:
        return RepairRequest(Code.EXPLODING_GRADIENTS, "exploding gradients", clip_grad=1.0)
    if Code.LR_TOO_HIGH in by:
        # large steps damage the weights within a few hundred steps (dead units, saturation): early in the run
        # start again from the initial weights, later go back to the best checkpoint
        return RepairRequest(Code.LR_TOO_HIGH, "updates too large for the weights",
                             lr_factor=lr_factor(by[Code.LR_TOO_HIGH], 1e-3, 0.3, t.lr_target_ratio),
                             to="start" if s.epoch < 2 else "best")
    if Code.LR_TOO_LOW in by and not s.cut_lr:
        # never undo an LR cut the doctor made because the run blew up: small steps right after such a repair come
        # from the restored (often damaged) weights and the cut itself, not from a user's too-low LR
        return RepairRequest(Code.LR_TOO_LOW, "updates too small for the loss to move", restore=False,
                             lr_factor=lr_factor(by[Code.LR_TOO_LOW], 3.0, 1000.0, t.lr_low_target_ratio))
    return None


def _saturation_plateau(found: list[Finding]) -> bool:
    """A plateau from saturated units: a larger LR does not unsaturate them."""
    return any(f.code == Code.SATURATED_UNITS and f.severity != "info" for f in found)


def after_epoch(fresh: dict[str, Finding], found: list[Finding], s: RepairState, t: Thresholds, now: int | None
                ) -> RepairRequest | None:
    """At an epoch end, on the findings of this epoch (`fresh`)."""
    if Code.DIVERGING_LOSS in fresh:
        return RepairRequest(Code.DIVERGING_LOSS, f"diverging loss in epoch {now}", lr_factor=0.1,
                             clip_grad=s.clip_grad or 1.0, to="best")
    dead = fresh.get(Code.DEAD_UNITS)
    if (dead is not None and dead.severity != "info" and not s.cut_lr and not s.init_abnormal
            and Code.BAD_INITIALIZATION not in s.seen and s.epoch < max(3, s.epochs // 4)):
        return _retrain_dead(s, t)
    return _raise_lr_on_plateau(fresh, found, s, t, now)


def _retrain_dead(s: RepairState, t: Thresholds) -> RepairRequest | None:
    """Units that died after steps above the healthy size: the large steps pushed their pre-activations below zero
    for good. Retrain from the initial weights with the LR that brings the largest step to the target."""
    big = s.largest_step
    if big is None or big < t.dead_repair_step:
        return None
    factor = float(f"{min(0.3, max(1e-3, t.lr_target_ratio / big)):.3g}")
    return RepairRequest(Code.DEAD_UNITS, f"units died after steps of {big:.0%} of the weights", to="start",
                         lr_factor=factor)


def _raise_lr_on_plateau(fresh: dict[str, Finding], found: list[Finding], s: RepairState, t: Thresholds,
                         now: int | None) -> RepairRequest | None:
    plateau = fresh.get(Code.PLATEAU)
    if plateau is None or not plateau.evidence.get("early") or _saturation_plateau(found):
        return None
    # a larger LR helps only a run whose steps are small and whose loss does not bounce: an oscillating loss
    # (tiny batches, a noisy gradient) is never answered by raising the LR
    if Code.OSCILLATING_LOSS in s.seen or any(f.code == Code.OSCILLATING_LOSS for f in found):
        return None
    if s.recent_updates and max(s.recent_updates) < t.plateau_small_step:
        return RepairRequest(Code.PLATEAU, f"early plateau in epoch {now}", lr_factor=3.0, restore=False, now=False)
    return None

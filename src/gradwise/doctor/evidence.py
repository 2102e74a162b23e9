"""Evidence several checks share: pure functions of the per-epoch rows and the pre-flight facts."""

from __future__ import annotations

import math
from typing import Any

from gradwise.doctor.facts import Facts
from gradwise.doctor.thresholds import DEFAULT, Thresholds


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _beats_majority(history: list[dict[str, Any]], facts: Facts | None, t: Thresholds = DEFAULT
                    ) -> dict[str, float] | None:
    """The best validation accuracy clears the majority class's share by a clear margin (evidence), else None
    (also when the neighbour check did not run: without it, what carries over is not known)."""
    if facts is None or not facts.class_counts or facts.neighbour_agreement is None:
        return None
    counts = facts.class_counts
    majority = max(counts) / max(sum(counts), 1)
    accs = [h["val_accuracy"] for h in history if _finite(h.get("val_accuracy"))]
    if not accs or max(accs) < majority + max(t.carry_margin, t.neighbour_margin * (1 - majority)):
        return None
    # ... and about as well as the inputs' neighbours predict each other: far below that, the validation labels
    # disagree with what the inputs say (another encoding in that split), which is a label problem
    if max(accs) < facts.neighbour_agreement - t.carry_gap:
        return None
    return {"best_val_accuracy": max(accs), "majority_share": majority}


def labels_look_random(facts: Facts | None, t: Thresholds = DEFAULT) -> dict[str, float] | None:
    """The inputs' nearest neighbours share a label hardly more often than two random rows do (evidence), or
    None when they share it clearly more often or it was not measured."""
    if facts is None or facts.neighbour_agreement is None or facts.label_chance is None:
        return None
    a, c = facts.neighbour_agreement, facts.label_chance
    if a - c > t.neighbour_margin * (1 - c):
        return None
    return {"neighbour_label_agreement": a, "chance_agreement": c, "threshold": c + t.neighbour_margin * (1 - c)}


def _gap_evidence(history: list[dict[str, Any]]) -> dict[str, Any]:
    last = history[-1] if history else {}
    e = last.get("train_loss_eval_mode")
    return {"train_loss_eval_mode": e if _finite(e) else None, "val_loss": last.get("val_loss")}


def _fits_no_better(history: list[dict[str, Any]], t: Thresholds = DEFAULT, gap: float | None = None) -> bool:
    """At the end, the model fits its training rows about as badly as new ones: the eval-mode loss on training rows
    (the train-mode mean when not measured) is >= under_gap x the validation loss. A model with capacity to spare
    ends below its validation loss; this one has nothing left that regularization or more data would fix."""
    if not history:
        return False
    last = history[-1]
    v = last.get("val_loss")
    e = last.get("train_loss_eval_mode")
    e = e if _finite(e) else last.get("train_loss")
    return _finite(v) and _finite(e) and v > 0 and e >= (t.under_gap if gap is None else gap) * v

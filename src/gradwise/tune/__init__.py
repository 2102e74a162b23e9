"""Hyperparameter search on optuna: `gradwise tune CONFIG` runs each trial as a normal gradwise run.

See `gradwise.tune.command.tune` (the command), `gradwise.tune.storage` (where studies live and how several
processes and machines share one), `gradwise.tune.results` (what the study directory holds).
"""

from __future__ import annotations

from typing import Any


def tune(*args: Any, **kwargs: Any) -> int:
    """`gradwise.tune.command.tune`, imported on first use (optuna is not needed to train)."""
    from gradwise.tune.command import tune as _tune

    return _tune(*args, **kwargs)


__all__ = ["tune"]

"""Trackers people already use (TensorBoard, MLflow, CSV), fed from the fit's events."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gradwise.config import RunConfig
    from gradwise.train.events import Callback


def run_callbacks(cfg: RunConfig) -> list[Callback]:
    """The trackers the config asks for (added to the fit's callbacks by gradwise.api)."""
    return []

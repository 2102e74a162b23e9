"""Trackers people already use (TensorBoard, MLflow, CSV), fed from the fit's events.

Chosen with ``track: [tensorboard, mlflow, csv]`` in the config (or ``fit(..., track=[...])``). None of their
packages is imported by gradwise itself: a tracker that is asked for and not installed is a ConfigError when the fit
(or the tuning study) starts, naming the package and ``pip install 'gradwise[track]'``. Once running, a tracker
never fails the run: an error in one is a one-line warning, that tracker stops and training goes on.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from gradwise.errors import ConfigError

if TYPE_CHECKING:
    from gradwise.config import RunConfig
    from gradwise.train.events import Callback

# tracker -> the package it needs (csv needs none)
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


def check_trackers(cfg: RunConfig) -> None:
    """ConfigError when a tracker the config asks for needs a package that is not installed (nothing is imported:
    finding the package is enough, so the check costs no start-up time)."""
    for name in cfg.track.use:
        package = PACKAGES.get(name)
        if package is None:
            continue
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):  # a broken install, or a module without a spec
            found = False
        if not found:
            raise ConfigError(f"track = {list(cfg.track.use)} asks for {name}, but the '{package}' package is not "
                              f"installed. Install the trackers with `pip install 'gradwise[track]'` (or "
                              f"`pip install {package}`), or remove {name} from track.")


def run_callbacks(cfg: RunConfig) -> list[Callback]:
    """The trackers the config asks for (added to the fit's callbacks by gradwise.api)."""
    if not cfg.track.use:
        return []
    check_trackers(cfg)
    from gradwise.track.csv_tracker import CsvTracker
    from gradwise.track.mlflow_tracker import MlflowTracker
    from gradwise.track.tensorboard_tracker import TensorBoardTracker

    kinds = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "csv": CsvTracker}
    return [kinds[name](cfg) for name in cfg.track.use]

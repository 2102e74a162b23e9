"""gradwise: train deep neural networks well — sensible defaults, a training doctor, tuning and reports."""

import os
import sys

if "torch" not in sys.modules:
    # Idle OpenMP threads sleep instead of spin-waiting. Spinning threads fight any other busy process for the
    # cores: next to one, the default run went from ~0.6 s to 40-80 s per epoch (bench/threads.py, README
    # "Benchmarks"). OpenMP reads this once when torch loads it, so it is set here, before gradwise imports torch;
    # a value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gradwise.api import Run, fit, train  # noqa: E402 (after the thread policy above)
from gradwise.config import RunConfig, load_config
from gradwise.crossval import CVResult, cross_validate
from gradwise.doctor import Finding
from gradwise.errors import CheckpointError, ConfigError, DataError, GradwiseError, ModelError, TrainingError
from gradwise.train.events import Callback

__version__ = "0.1.0"

__all__ = [
    "CVResult", "Callback", "CheckpointError", "ConfigError", "DataError", "Finding", "GradwiseError", "ModelError",
    "Run", "RunConfig", "TrainingError", "cross_validate", "fit", "load_config", "train",
]

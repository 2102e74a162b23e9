"""gradwise: train deep neural networks well — sensible defaults, a training doctor, tuning and reports."""

from gradwise.api import Run, fit, train
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

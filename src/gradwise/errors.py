"""One exception family. Every message says what happened, where, what was expected and how to fix it."""

from __future__ import annotations


class GradwiseError(Exception):
    """Base class of every error gradwise raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(GradwiseError, ValueError):
    """A config file, key or value is wrong."""


class DataError(GradwiseError, ValueError):
    """The data cannot be used as given (missing file, NaN, label range, shape...)."""


class ModelError(GradwiseError, ValueError):
    """A model cannot be built or does not fit the data."""


class CheckpointError(GradwiseError, RuntimeError):
    """A checkpoint or run directory cannot be read or resumed."""


class TrainingError(GradwiseError, RuntimeError):
    """Training cannot go on (e.g. non-finite loss with the NaN guard on and no repair)."""

"""Training recipes: optimizers, LR schedules, losses, penalties and the learning-rate finder."""

from gradwise.recipes.losses import (
    LOSSES,
    BinaryLoss,
    ClassificationLoss,
    GradwiseLoss,
    RegressionLoss,
    balanced_class_weights,
    build_loss,
    penalty,
)
from gradwise.recipes.optim import OPTIMIZERS, build_optimizer, no_decay_parameter_names, parameter_groups
from gradwise.recipes.schedules import SCHEDULES, LRFindResult, Schedule, build_scheduler, lr_find

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "BinaryLoss",
    "ClassificationLoss",
    "GradwiseLoss",
    "LRFindResult",
    "RegressionLoss",
    "Schedule",
    "balanced_class_weights",
    "build_loss",
    "build_optimizer",
    "build_scheduler",
    "lr_find",
    "no_decay_parameter_names",
    "parameter_groups",
    "penalty",
]

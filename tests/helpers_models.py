"""Model factories used by tests/test_models.py through model.factory strings."""

from __future__ import annotations

import math

from torch import nn


def make_net(input_shape: tuple[int, ...], n_outputs: int, hidden: int = 8) -> nn.Module:
    layers = [nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, n_outputs)]
    return nn.Sequential(*layers)


def make_fixed(width: int = 3) -> nn.Module:
    # No input_shape/n_outputs parameters: build_model must not pass them.
    return nn.Linear(width, 2)


def make_kwargs(**kwargs: object) -> nn.Module:
    # Takes **kwargs only: build_model must pass just the options, not the shape info.
    assert "input_shape" not in kwargs and "n_outputs" not in kwargs
    return nn.Linear(int(kwargs.get("width", 4)), 2)  # type: ignore[call-overload]


def not_a_module() -> str:
    return "oops"


NOT_CALLABLE = 3

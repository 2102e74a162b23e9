"""The module an ONNX or TorchScript export holds: the fitted preprocessing, the network, the target's units.

What `Preprocessor` does in numpy at `gradwise predict` time is rewritten here as tensor operations where it can be:
every step except one-hot encoding of categories is elementwise or affine. So a user of the exported file feeds raw
rows (table columns, or signal/image samples) and gets the network's logits, or regression values in the target's
units. A table with categorical columns keeps all of its preprocessing outside the graph (one-hot encoding turns
strings into columns, which a float tensor cannot carry), and the graph takes the preprocessed feature vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

# sklearn scaler class -> the method name a loaded (preprocess.json) scaler carries
_SCALER_METHODS = {"StandardScaler": "standard", "MinMaxScaler": "minmax", "RobustScaler": "robust"}


@dataclass
class Plan:
    """What the serving module does: its input, the steps folded into it and those left to the caller."""

    takes: str  # "raw" (the graph preprocesses) or "features" (preprocessed feature vector)
    input_shape: tuple[int, ...]  # one sample, without the batch dim
    input_names: list[str]  # table columns (raw) or feature names (features); empty for arrays
    in_graph: list[str] = field(default_factory=list)  # human-readable steps folded into the graph
    outside: list[str] = field(default_factory=list)  # steps the caller applies before feeding the graph
    target_in_graph: bool = False  # regression outputs already in the target's units


class ServingModel(nn.Module):
    """raw input -> (clip, impute, scale) or (input_scale, centre, spread) -> network -> target units.

    Every constant is a buffer (float64 for the table steps, which numpy computes in float64 before the final
    float32 cast; float32 for arrays, which numpy computes in float32), so the graph reproduces `Preprocessor`.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.table = False
        self.array = False
        self.clip = False
        self.impute = False
        self.scale_mode = ""  # "", "subdiv" ((x - a) / b) or "muladd" (x * a + b)
        self.n_numeric = 0
        self.target = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.table:
            x = self._table(x)
        elif self.array:
            x = x.to(torch.float32) * self.input_scale
            if self.scale_mode:
                x = (x - self.center) / self.spread
        out = self.network(x)
        if self.target:
            out = out * self.target_scale + self.target_mean
        return out

    def _table(self, x: torch.Tensor) -> torch.Tensor:
        num = x[:, : self.n_numeric].to(torch.float64)
        rest = x[:, self.n_numeric:].to(torch.float64)  # boolean columns: 0/1 as given
        # numpy turns +-inf into NaN first (a missing value); the mask is taken before clipping so that a NaN
        # never depends on how a backend's Min/Max treats it
        num = torch.where(torch.isfinite(num), num, torch.full_like(num, float("nan")))
        missing = torch.isnan(num)
        if self.clip:
            num = torch.minimum(torch.maximum(num, self.clip_low), self.clip_high)
        if self.impute:
            num = torch.where(missing, self.fill.expand_as(num), num)
        if self.scale_mode == "subdiv":
            num = (num - self.scale_a) / self.scale_b
        elif self.scale_mode == "muladd":
            num = num * self.scale_a + self.scale_b
        return torch.cat([num, rest], dim=1).to(torch.float32)


def _buffer(module: nn.Module, name: str, value: Any, dtype: torch.dtype) -> None:
    module.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=dtype).clone(), persistent=True)


def scaler_arrays(scaler: Any) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(mode, a, b) of a fitted scaler: "subdiv" for (x - a) / b, "muladd" for x * a + b; None without one."""
    if scaler is None:
        return None
    method = getattr(scaler, "method", None) or _SCALER_METHODS.get(type(scaler).__name__)
    if method == "standard":
        return "subdiv", np.asarray(scaler.mean_, np.float64), np.asarray(scaler.scale_, np.float64)
    if method == "robust":
        return "subdiv", np.asarray(scaler.center_, np.float64), np.asarray(scaler.scale_, np.float64)
    if method == "minmax":
        return "muladd", np.asarray(scaler.scale_, np.float64), np.asarray(scaler.min_, np.float64)
    return None


def input_shape_of(pre: Any, fallback: tuple[int, ...] | None) -> tuple[int, ...]:
    """The network's input shape (one sample): the feature count of a table, the sample shape of arrays."""
    if pre is not None and pre.kind == "table" and pre.feature_names:
        return (len(pre.feature_names),)
    if pre is not None and pre.kind != "table" and pre.sample_shape:
        return tuple(pre.sample_shape)
    if fallback is None:
        raise ValueError("the input shape is unknown")
    return tuple(fallback)


def build_serving(network: nn.Module, pre: Any, task: str, *, fold: bool,
                  fallback_shape: tuple[int, ...] | None = None) -> tuple[ServingModel, Plan]:
    """The serving module of `network` with `pre` folded in where expressible (and `fold`), and its plan."""
    serving = ServingModel(network)
    features = input_shape_of(pre, fallback_shape)
    if pre is None:
        return serving, Plan("features", features, [], outside=["none stored with the run"])
    names = [str(n) for n in pre.feature_names]
    if pre.kind == "table":
        if not fold or pre.categorical:
            plan = Plan("features", features, names, outside=table_steps(pre))
            if pre.categorical and fold:
                plan.outside.append("(kept outside the graph: one-hot encoding of categorical columns "
                                    f"{', '.join(map(str, pre.categorical))} needs their string values)")
        else:
            plan = Plan("raw", (len(pre.columns),), [str(c) for c in pre.columns], in_graph=table_steps(pre))
            _fold_table(serving, pre)
    else:
        if fold:
            plan = Plan("raw", tuple(pre.sample_shape), [], in_graph=array_steps(pre))
            _fold_array(serving, pre)
        else:
            plan = Plan("features", features, [], outside=array_steps(pre))
    if task == "regression" and fold and pre.target_mean is not None and pre.target_scale is not None:
        serving.target = True
        _buffer(serving, "target_mean", pre.target_mean, torch.float32)
        _buffer(serving, "target_scale", pre.target_scale, torch.float32)
        plan.target_in_graph = True
    return serving, plan


def _fold_table(serving: ServingModel, pre: Any) -> None:
    serving.table = True
    serving.n_numeric = len(pre.numeric)
    n = serving.n_numeric
    if pre.clip_bounds:
        low = np.full(n, -np.inf)
        high = np.full(n, np.inf)
        for j, col in enumerate(pre.numeric):
            if col in pre.clip_bounds:
                low[j], high[j] = pre.clip_bounds[col]
        serving.clip = True
        _buffer(serving, "clip_low", low, torch.float64)
        _buffer(serving, "clip_high", high, torch.float64)
    if pre.num_imputer is not None:
        serving.impute = True
        _buffer(serving, "fill", np.asarray(pre.num_imputer.statistics_, np.float64).reshape(1, n), torch.float64)
    arrays = scaler_arrays(pre.scaler)
    if arrays is not None:
        serving.scale_mode, a, b = arrays
        _buffer(serving, "scale_a", a, torch.float64)
        _buffer(serving, "scale_b", b, torch.float64)


def _fold_array(serving: ServingModel, pre: Any) -> None:
    serving.array = True
    _buffer(serving, "input_scale", np.float32(pre.input_scale), torch.float32)
    if pre.center is not None and pre.spread is not None:
        serving.scale_mode = "subdiv"
        _buffer(serving, "center", pre.center, torch.float32)
        _buffer(serving, "spread", pre.spread, torch.float32)


def table_steps(pre: Any) -> list[str]:
    """The table preprocessing in words, in the order it is applied (to the numeric columns unless said)."""
    steps = []
    if pre.numeric and pre.num_imputer is not None:
        steps.append("non-finite numeric values (+-inf) count as missing (NaN)")
    if pre.clip_bounds:
        steps.append(f"clip columns {', '.join(map(str, pre.clip_bounds))} to their fitted bounds")
    if pre.num_imputer is not None:
        steps.append(f"missing numeric values -> the column's training {pre.num_imputer.strategy}")
    arrays = scaler_arrays(pre.scaler)
    if arrays is not None:
        method = getattr(pre.scaler, "method", None) or _SCALER_METHODS.get(type(pre.scaler).__name__)
        formula = "(x - center) / scale" if arrays[0] == "subdiv" else "x * scale + min"
        steps.append(f"{method} scaling of the numeric columns: {formula}")
    if pre.boolean:
        steps.append(f"boolean columns {', '.join(map(str, pre.boolean))} as 0/1")
    if pre.categorical:
        steps.append(f"one-hot encoding of {', '.join(map(str, pre.categorical))} (feature order: feature_names)")
    return steps


def array_steps(pre: Any) -> list[str]:
    steps = []
    if pre.input_scale != 1.0:
        steps.append(f"multiply by input_scale {pre.input_scale!r}")
    if pre.center is not None:
        scope = "per channel" if np.asarray(pre.center).ndim else "global"
        steps.append(f"{pre.scale_method} scaling ({scope}): (x - center) / spread")
    return steps


def example_inputs(pre: Any, plan: Plan, rows: int, seed: int = 0) -> torch.Tensor:
    """Inputs at the scale the network saw in training: standard normal features mapped back through the
    (affine) preprocessing when the graph takes raw values. Used to trace and to check an export."""
    gen = np.random.default_rng(seed)
    z = gen.standard_normal((rows, *plan.input_shape))
    if plan.takes == "raw" and pre is not None:
        if pre.kind == "table":
            n = len(pre.numeric)
            arrays = scaler_arrays(pre.scaler)
            if arrays is not None:
                mode, a, b = arrays
                z[:, :n] = z[:, :n] * b + a if mode == "subdiv" else (z[:, :n] - b) / a
            z[:, n:] = z[:, n:] > 0  # boolean columns
        else:
            if pre.center is not None and pre.spread is not None:
                z = z * pre.spread + pre.center
            z = z / pre.input_scale
    return torch.as_tensor(z, dtype=torch.float32)

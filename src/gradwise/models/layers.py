"""Building blocks shared by the built-in models: activations, normalisation layers, weight init, name checks."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from gradwise.errors import ModelError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}

INITS: tuple[str, ...] = ("default", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "orthogonal",
                          "lecun", "constant")

NORMS: tuple[str, ...] = ("batch", "layer", "none")


def closest(value: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to a misspelt one, or None when nothing is close."""
    matches = difflib.get_close_matches(value, list(valid), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_error(kind: str, value: str, valid: Sequence[str], field: str) -> ModelError:
    """A ModelError for a name that is not one of ``valid``, with a 'did you mean' hint."""
    hint = closest(value, valid)
    did_you_mean = f" Did you mean '{hint}'?" if hint else ""
    return ModelError(f"unknown {kind} '{value}' (model.{field}).{did_you_mean} "
                      f"Valid names: {', '.join(valid)}. Fix: set model.{field} to one of them.")


def canonical(name: str) -> str:
    # People write "LeakyReLU", "leaky-relu" or "He_Normal"; accept the obvious spellings of the same name.
    return name.strip().lower().replace("-", "_")


def check_activation(name: str) -> str:
    key = canonical(name)
    aliases = {"leakyrelu": "leaky_relu", "swish": "silu"}
    key = aliases.get(key, key)
    if key not in ACTIVATIONS:
        raise unknown_name_error("activation", name, list(ACTIVATIONS), "activation")
    return key


def make_activation(name: str) -> nn.Module:
    """A fresh activation module (never shared, so each appears in the module tree where it is used)."""
    return ACTIVATIONS[check_activation(name)]()


def check_init(name: str) -> str:
    key = canonical(name)
    aliases = {"kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal", "glorot_uniform": "xavier_uniform",
               "glorot_normal": "xavier_normal", "lecun_normal": "lecun", "none": "default"}
    key = aliases.get(key, key)
    if key not in INITS:
        raise unknown_name_error("init", name, list(INITS), "init")
    return key


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel dimension of a (N, C, *spatial) tensor.

    Conv feature maps keep channels in dim 1 while nn.LayerNorm normalises the last dims, so we move the channel
    axis last and back. Normalising over channels only (not space) keeps the layer independent of input length.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


def make_norm(kind: str, num_features: int, spatial_dims: int) -> nn.Module | None:
    """The normalisation layer for ``num_features`` channels, or None for ``kind == "none"``.

    ``spatial_dims`` is 0 for (N, C) vectors, 1 for (N, C, L) and 2 for (N, C, H, W) maps.
    """
    if kind == "none":
        return None
    if kind == "batch":
        return (nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d)[spatial_dims](num_features)
    if kind == "layer":
        return nn.LayerNorm(num_features) if spatial_dims == 0 else ChannelLayerNorm(num_features)
    raise unknown_name_error("norm", kind, list(NORMS), "norm")


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


@torch.no_grad()
def init_weight(weight: torch.Tensor, scheme: str, activation: str = "relu", value: float = 0.0) -> None:
    """Initialise one weight tensor in place (shape (out, in, *kernel)); ``value`` is the constant scheme's."""
    if scheme == "default":
        return
    fan_in, _ = _fans(weight)
    if scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight)
    elif scheme in ("he_uniform", "he_normal"):
        # He init assumes a rectifier; only leaky_relu changes the gain (by its slope), the rest use relu's sqrt(2).
        nonlinearity, slope = ("leaky_relu", 0.01) if activation == "leaky_relu" else ("relu", 0.0)
        fn = nn.init.kaiming_uniform_ if scheme == "he_uniform" else nn.init.kaiming_normal_
        fn(weight, a=slope, mode="fan_in", nonlinearity=nonlinearity)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(weight)
    elif scheme == "constant":
        # every unit of the layer then computes the same function (and gets the same gradient, so they stay equal):
        # kept because users ask for it (ablations, tests); the doctor's preflight reports it as bad_initialization
        nn.init.constant_(weight, value)
    elif scheme == "lecun":
        # LeCun normal: the variance-preserving choice for selu/tanh networks.
        nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in))
    else:  # pragma: no cover - names are checked before we get here
        raise unknown_name_error("init", scheme, list(INITS), "init")


@torch.no_grad()
def apply_init(model: nn.Module, scheme: str, activation: str = "relu", value: float = 0.0) -> None:
    """Apply ``scheme`` to every Linear/Conv weight (and RNN/attention input matrices) of ``model``; zero biases.

    ``value`` is the weight of every entry for ``scheme="constant"`` (ignored by the others).

    Stacked gate matrices (GRU/LSTM ``weight_ih``/``weight_hh``, attention ``in_proj_weight``) are initialised one
    block at a time, because each block is its own (hidden, in) map and the fans must be those of one block.
    """
    scheme = check_init(scheme)
    if scheme == "default":
        return
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            init_weight(module.weight, scheme, activation, value)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.RNNBase):
            gates = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}[module.mode]
            for name, param in module.named_parameters(recurse=False):
                if name.startswith("weight"):
                    for block in param.chunk(gates, dim=0):
                        init_weight(block, scheme, activation, value)
                elif name.startswith("bias"):
                    param.zero_()
        elif isinstance(module, nn.MultiheadAttention):
            if module.in_proj_weight is not None:
                for block in module.in_proj_weight.chunk(3, dim=0):
                    init_weight(block, scheme, activation, value)
            if module.in_proj_bias is not None:
                module.in_proj_bias.zero_()

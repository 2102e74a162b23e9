"""Optimizers from an ``OptimConfig``: torch.optim classes with sensible parameter groups.

Parameter groups
----------------
Every parameter of the model goes in (frozen ones too: they have no gradient, so torch skips them, and they
train as soon as they are unfrozen without rebuilding the optimizer). Parameters are split into

* ``decay``: weight matrices and conv kernels (ndim >= 2) get ``cfg.weight_decay``;
* ``no_decay``: biases and normalization parameters (ndim <= 1, or owned by a BatchNorm/LayerNorm/GroupNorm/
  InstanceNorm/RMSNorm, or named ``*bias``) get weight decay 0, unless ``cfg.decay_norm_and_bias`` is set.
  Shrinking a norm scale or a bias towards 0 only fights the normalization and rarely regularizes anything.

crossed with optional per-group learning-rate scales (``groups=[{"params": [names], "lr_scale": 0.1}, ...]``).
Each torch param group carries extra keys ``group`` (a label), ``lr_scale`` and its own ``lr``/``weight_decay``;
torch keeps unknown keys, and all are primitives, so ``optimizer.state_dict()`` stays ``weights_only``-loadable.

Weight decay is torch's own ``weight_decay`` argument: decoupled (AdamW-style) for ``adamw``, L2-in-the-gradient
for every other optimizer. For an explicit penalty added to the loss see :func:`gradwise.recipes.penalty`.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from gradwise.config import OptimConfig
from gradwise.errors import ConfigError, ModelError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adamax": torch.optim.Adamax,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
}

# torch's fused kernels (one kernel over every parameter, instead of a loop of small ops per tensor): the fastest
# implementation where they exist. On a small CPU model the per-tensor loop is most of the optimizer's time.
_FUSED = {"cuda": ("sgd", "adam", "adamw"), "cpu": ("sgd", "adam", "adamw", "adagrad")}

_NORM_TYPES: tuple[type[nn.Module], ...] = tuple(
    t for t in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*d, SyncBatchNorm, InstanceNorm*d
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),  # torch >= 2.4
    ) if t is not None
)


# --------------------------------------------------------------------------------------------- helpers


def unknown_name_error(key: str, value: Any, choices: Iterable[str], what: str) -> ConfigError:
    """A ConfigError for an unknown name: the key, the value, the valid choices and the closest match."""
    choices = list(choices)
    close = difflib.get_close_matches(str(value).lower(), choices, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"{key} = {value!r} is not a known {what}; expected one of {', '.join(choices)}.{hint} "
                       f"Set {key} to one of these.")


def canonical_name(key: str, value: Any, choices: Iterable[str], what: str,
                   aliases: dict[str, str] | None = None) -> str:
    """Normalize a user-given name (case, '-' and spaces) and check it is one of ``choices``."""
    choices = list(choices)
    norm = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    norm = (aliases or {}).get(norm, norm)
    if norm not in choices:
        raise unknown_name_error(key, value, choices, what)
    return norm


def no_decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get no weight decay and no explicit penalty: biases and norm parameters."""
    in_norm: set[int] = set()
    for module in model.modules():
        if isinstance(module, _NORM_TYPES):
            in_norm.update(id(p) for p in module.parameters(recurse=False))
    return {name for name, p in model.named_parameters()
            if p.ndim <= 1 or id(p) in in_norm or name.endswith("bias")}


def _resolve_lr(cfg: OptimConfig, lr: float | None) -> float:
    value: Any = cfg.lr if lr is None else lr
    if isinstance(value, str):
        raise ConfigError(f"optim.lr = {value!r} must be resolved to a number before the optimizer is built; "
                          "run the learning-rate finder (`gradwise lr-find`) or set optim.lr to e.g. 3e-3.")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"optim.lr = {value!r} is invalid: the learning rate must be a positive finite number "
                          "such as 3e-3. Fix optim.lr.")
    return float(value)


def _lr_scales(model: nn.Module, groups: Sequence[dict[str, Any]] | None) -> list[tuple[float, list[str]]]:
    """Split parameter names into (lr_scale, names) buckets: unlisted params (scale 1) first, then each group.

    A group entry matches a parameter name exactly, as a module prefix ('encoder' matches 'encoder.0.weight')
    or as an fnmatch pattern ('encoder.*'). A parameter listed by several groups belongs to the first one.
    """
    names = [name for name, _ in model.named_parameters()]
    owner: dict[str, int] = {}
    for gi, group in enumerate(groups or []):
        if not isinstance(group, dict) or "params" not in group:
            raise ConfigError(f"optimizer group {gi}: expected a dict like {{'params': ['layer.weight'], "
                              f"'lr_scale': 0.1}}, got {group!r}.")
        entries = group["params"]
        if isinstance(entries, str):
            entries = [entries]
        scale = group.get("lr_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) or scale < 0:
            raise ConfigError(f"optimizer group {gi}: lr_scale = {scale!r} is invalid; expected a number >= 0 "
                              "such as 0.1.")
        for entry in entries:
            hits = [n for n in names if n == entry or n.startswith(entry + ".") or fnmatch.fnmatchcase(n, entry)]
            if not hits:
                close = difflib.get_close_matches(entry, names, n=1, cutoff=0.5)
                hint = f" Did you mean '{close[0]}'?" if close else f" Parameter names look like '{names[0]}'."
                raise ConfigError(f"optimizer group {gi}: '{entry}' matches no parameter of the model.{hint}")
            for n in hits:
                owner.setdefault(n, gi)
    buckets: list[tuple[float, list[str]]] = [(1.0, [n for n in names if n not in owner])]
    for gi, group in enumerate(groups or []):
        buckets.append((float(group.get("lr_scale", 1.0)), [n for n in names if owner.get(n) == gi]))
    return buckets


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, decay_norm_and_bias: bool = False,
                     groups: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """torch param groups: (lr-scale buckets) x (decay / no_decay), empty ones left out, in a stable order."""
    params = dict(model.named_parameters())
    if not params:
        raise ModelError("the model has no parameters, so there is nothing to optimize; check the model "
                         "definition (e.g. a factory returning a module without layers).")
    skip = set() if decay_norm_and_bias else no_decay_parameter_names(model)
    out: list[dict[str, Any]] = []
    for bi, (scale, names) in enumerate(_lr_scales(model, groups)):
        suffix = "" if bi == 0 else f"/{bi - 1}"
        for label, chosen, wd in (("decay", [n for n in names if n not in skip], weight_decay),
                                  ("no_decay", [n for n in names if n in skip], 0.0)):
            if chosen:
                out.append({"params": [params[n] for n in chosen], "lr": lr * scale, "weight_decay": wd,
                            "lr_scale": scale, "group": label + suffix})
    return out


def _optimizer_kwargs(name: str, cfg: OptimConfig) -> dict[str, Any]:
    betas = tuple(float(b) for b in cfg.betas)
    if name in ("adam", "adamw", "adamax", "nadam", "radam"):
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"optim.betas = {list(cfg.betas)} is invalid: both betas must be in [0, 1), "
                              "e.g. [0.9, 0.999]. Fix optim.betas.")
        return {"betas": betas, "eps": cfg.eps}
    if name == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise ConfigError(f"optim.nesterov = true needs momentum > 0, but optim.momentum = {cfg.momentum}. "
                              "Set optim.momentum=0.9 or optim.nesterov=false.")
        return {"momentum": cfg.momentum, "nesterov": cfg.nesterov}
    if name == "rmsprop":
        return {"momentum": cfg.momentum, "eps": cfg.eps}
    if name == "adagrad":
        return {"eps": cfg.eps}
    raise AssertionError(name)  # pragma: no cover - OPTIMIZERS and this function list the same names


# --------------------------------------------------------------------------------------------- public


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float | None = None,
                    groups: list[dict[str, Any]] | None = None) -> torch.optim.Optimizer:
    """Build the torch optimizer named by ``cfg.name`` over all parameters of ``model``.

    ``lr`` overrides ``cfg.lr`` (required when ``cfg.lr == "auto"``). ``groups`` gives per-group LR scales:
    ``[{"params": ["encoder"], "lr_scale": 0.1}]`` trains ``encoder.*`` at lr x 0.1. Move the model to its
    device before calling this: fused kernels are chosen where torch has them for the parameters' device.
    """
    name = canonical_name("optim.name", cfg.name, OPTIMIZERS, "optimizer")
    base_lr = _resolve_lr(cfg, lr)
    weight_decay = cfg.resolved_weight_decay()
    param_groups = parameter_groups(model, base_lr, weight_decay, cfg.decay_norm_and_bias, groups)
    kwargs = _optimizer_kwargs(name, cfg)
    all_params = [p for g in param_groups for p in g["params"]]
    devices = {p.device.type for p in all_params}
    fusable = (len(devices) == 1 and name in _FUSED.get(next(iter(devices)), ())
               and all(p.is_floating_point() for p in all_params))
    if cfg.fused is True and not fusable:
        known = "; ".join(f"{d}: {', '.join(n)}" for d, n in _FUSED.items())
        raise ConfigError(f"optim.fused = true, but torch has no fused '{name}' kernel for parameters on "
                          f"{', '.join(sorted(devices)) or 'no device'} (fused kernels: {known}). "
                          "Remove optim.fused (auto) or set it to false.")
    if fusable and cfg.fused is not False:
        kwargs["fused"] = True
    return OPTIMIZERS[name](param_groups, lr=base_lr, weight_decay=weight_decay, **kwargs)

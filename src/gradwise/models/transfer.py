"""Transfer learning: start from saved weights, freeze parts of a model, group parameters by depth."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradwise.errors import ModelError

# Wrappers add these to every key: DataParallel/DDP ("module.") and torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise ModelError(f"pretrained weights '{path}' are not a readable safetensors file ({exc}).") from exc
    try:
        # weights_only: a checkpoint is data, never code; never unpickle arbitrary objects from a file.
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise ModelError(f"pretrained weights '{path}' cannot be read with torch.load(weights_only=True) ({exc}). "
                         f"If it holds a whole pickled model, re-save it as `torch.save(model.state_dict(), path)`; "
                         f"safetensors files need the .safetensors suffix.") from exc
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
        raise ModelError(f"pretrained weights '{path}' hold a dict with keys {sorted(map(str, obj))[:10]} but no "
                         f"state_dict under 'model' (a gradwise checkpoint) and are not a state_dict themselves. "
                         f"Fix: point model.pretrained at a gradwise checkpoint, a torch.save'd state_dict or a "
                         f".safetensors file.")
    raise ModelError(f"pretrained weights '{path}' contain a {type(obj).__name__}, not a state_dict. "
                     f"Fix: save weights with `torch.save(model.state_dict(), path)`.")


def _strip_wrappers(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in model_keys):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _preview(names: list[str], limit: int = 8) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_pretrained(model: nn.Module, path: str, strict: bool, exclude: list[str] | None = None
                    ) -> dict[str, list[str]]:
    """Load weights from ``path`` into ``model`` (in place) and report what matched.

    ``path`` may be a gradwise checkpoint (a dict whose "model" entry is a state_dict), a state_dict saved with
    ``torch.save`` or a ``.safetensors`` file. With ``strict`` every model entry must be present with the same shape
    and no extra entries are allowed (else ModelError, nothing loaded); otherwise only entries whose name and shape
    both match are loaded - the usual way to reuse a backbone under a new head.

    ``exclude`` names modules or fnmatch patterns (as for freeze) whose entries are not loaded even when they match,
    e.g. ["head"] to start a new task's head fresh when its width happens to equal the old one.

    Returns {"matched", "missing", "unexpected", "shape_mismatch", "excluded"}: lists of state_dict names (missing =
    in the model but not in the file; unexpected = in the file but not in the model; shape_mismatch = in both, shapes
    differ, not loaded; excluded = left out on request).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelError(f"pretrained weights file '{path}' does not exist"
                         f"{' (it is a directory)' if file.is_dir() else ''}. Fix: set model.pretrained to the path "
                         f"of a checkpoint (.pt), a state_dict or a .safetensors file.")
    own = model.state_dict()
    state = _strip_wrappers(_read_state_dict(file), set(own))
    excluded: list[str] = []
    for pattern in exclude or []:
        hits = [k for k in own if _matches(k, pattern)]
        if not hits:
            prefixes = sorted({k.split(".")[0] for k in own})
            raise ModelError(f"model.pretrained_exclude pattern '{pattern}' matches nothing in the model. Top-level "
                             f"modules: {', '.join(prefixes)}. Fix: use a module name such as '{prefixes[-1]}' or an "
                             "fnmatch pattern such as 'head.*'.")
        excluded += [k for k in hits if k not in excluded]
    state = {k: v for k, v in state.items() if k not in excluded}
    matched = [k for k in own if k in state and tuple(state[k].shape) == tuple(own[k].shape)]
    shape_mismatch = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state and k not in excluded]
    unexpected = [k for k in state if k not in own]
    report = {"matched": matched, "missing": missing, "unexpected": unexpected, "shape_mismatch": shape_mismatch,
              "excluded": excluded}
    if strict and (missing or unexpected or shape_mismatch):
        details = []
        if missing:
            details.append(f"missing from the file: {_preview(missing)}")
        if unexpected:
            details.append(f"not in the model: {_preview(unexpected)}")
        if shape_mismatch:
            details.append("shape differs: " + _preview(
                [f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in shape_mismatch], 4))
        raise ModelError(f"pretrained weights '{path}' do not fit the model exactly ({'; '.join(details)}). "
                         f"Fix: set model.pretrained_strict: false to load only the matching weights (e.g. a "
                         f"backbone under a new head), or build the model the checkpoint was saved from.")
    if not matched:
        raise ModelError(f"pretrained weights '{path}': no entry matches the model by name and shape. File has "
                         f"{_preview(list(state), 5)}; the model has {_preview(list(own), 5)}. Fix: check that the "
                         f"file was saved from the same kind of model.")
    model.load_state_dict({k: state[k] for k in matched}, strict=False)
    return report


def _matches(name: str, pattern: str) -> bool:
    # "features" and "features.*" both mean everything under the module "features"; plain fnmatch covers the rest.
    return fnmatch.fnmatchcase(name, pattern) or name.startswith(pattern.rstrip(".") + ".")


def freeze(model: nn.Module, patterns: list[str]) -> list[str]:
    """Set ``requires_grad=False`` on every parameter whose name matches one of ``patterns``; return their names.

    A pattern is an fnmatch pattern over full parameter names ("block1.*", "*.bias") or a module prefix
    ("block1" freezes "block1.0.weight"). A pattern that matches nothing is an error, since it is usually a typo.
    BatchNorm running statistics are buffers, not parameters: `keep_frozen_norms_in_eval` keeps them fixed too.
    """
    names = [n for n, _ in model.named_parameters()]
    frozen: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if _matches(n, pattern)]
        if not hits:
            prefixes = sorted({n.split(".")[0] for n in names})
            raise ModelError(f"freeze pattern '{pattern}' matches no parameter. Top-level modules: "
                             f"{', '.join(prefixes)}; parameters include {_preview(names, 6)}. Fix: use a module "
                             f"name (e.g. '{prefixes[0] if prefixes else 'block1'}') or an fnmatch pattern such "
                             f"as 'block1.*'.")
        frozen += [n for n in hits if n not in frozen]
    params = dict(model.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    return frozen


def keep_frozen_norms_in_eval(model: nn.Module) -> list[str]:
    """Make every batch-norm layer whose parameters are all frozen run in eval mode, also while training.

    Freezing stops gradients, but a BatchNorm layer in train mode still normalises by the batch and overwrites its
    running mean and variance: a frozen pretrained block would drift away from the statistics it was trained with
    (and a small fine-tuning set makes them noisy). A forward pre-hook checks `requires_grad` at every call, so a
    layer that is unfrozen later (gradual unfreezing) trains normally from then on. Returns the layers' names.
    """
    names = []
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats and params:
            if not getattr(module, "_gradwise_frozen_norm_hook", False):  # once, however often a model is fitted
                module.register_forward_pre_hook(_frozen_norm_hook)
                module._gradwise_frozen_norm_hook = True
            names.append(name)
    return names


def _frozen_norm_hook(module: nn.Module, args: Any) -> None:
    if module.training and not any(p.requires_grad for p in module.parameters(recurse=False)):
        module.training = False


def unfreeze(model: nn.Module) -> None:
    """Make every parameter trainable again."""
    for param in model.parameters():
        param.requires_grad_(True)


def param_groups_by_depth(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped by top-level child module, input side first (for discriminative learning rates).

    Children without parameters are skipped. Parameters held directly by ``model`` (not by a child) come first as
    their own group, as they are usually input-side (e.g. a positional embedding).
    """
    direct = {name for name, _ in model.named_parameters(recurse=False)}
    groups: dict[str, list[str]] = {}
    # named_parameters() yields the root's own parameters first, then each child in registration order, and lists a
    # shared parameter once (under its first name) - exactly the grouping we want.
    for name, _ in model.named_parameters():
        key = "" if name in direct else name.split(".")[0]
        groups.setdefault(key, []).append(name)
    return list(groups.values())

"""Architectures from torchvision and timm by name: ``model.name: torchvision:resnet18`` or ``timm:convnext_atto``.

The library builds the network (``model.options`` go to its constructor); gradwise fits it to the task: the
classifier is replaced by one of ``n_outputs`` (timm: ``num_classes``; torchvision: the last Linear of the network
replaced), and a first convolution of another channel count than the data's is replaced by one that takes the data's
channels. The network keeps the library's own module names, so ``model.freeze`` patterns (``layer1``, ``stages.0``),
``unfreeze_after`` and ``lr_decay_groups`` (one group per top-level child, input side first) read as its
documentation does.

``model.pretrained: weights`` asks the library for its published weights (torchvision's DEFAULT weights of the
model, timm's pretrained tag): the library's own cache does the download on a machine with internet. They are put
into the model when a run starts (never when a run directory is opened: eval, predict and export read the run's
checkpoint), all but the replaced classifier; a first convolution that now takes one channel gets the sum of the
published RGB filters (what timm does).

Both libraries are optional: ``pip install "gradwise[vision]"``.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from gradwise.errors import ModelError

LIBRARIES = ("torchvision", "timm")
PUBLISHED = "weights"  # model.pretrained: weights -> the library's published weights


def is_hub_name(name: str) -> bool:
    return name.partition(":")[0].strip().lower() in LIBRARIES and ":" in name


def _library(name: str) -> tuple[str, str, Any]:
    lib, _, arch = name.partition(":")
    lib, arch = lib.strip().lower(), arch.strip()
    if not arch:
        raise ModelError(f"model.name = {name!r} names no architecture after '{lib}:'; write e.g. "
                         "torchvision:resnet18 or timm:convnext_atto.")
    try:
        module = importlib.import_module("torchvision.models" if lib == "torchvision" else "timm")
    except Exception as exc:  # ImportError, or a torchvision built for another torch ("operator ... does not exist")
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(f"model.name = {name!r} needs {lib}, which cannot be imported here ({type(exc).__name__}: "
                         f"{first}). Install it with pip install \"gradwise[vision]\" (a torchvision built for this "
                         "torch), or use a built-in model.") from None
    return lib, arch, module


def _construct(lib: str, arch: str, module: Any, options: dict[str, Any], n_outputs: int, in_chans: int) -> nn.Module:
    import difflib

    names = module.list_models()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=5)
        where = "timm.list_models()" if lib == "timm" else "torchvision.models.list_models()"
        raise ModelError(f"model.name = '{lib}:{arch}' is not a {lib} model; similar: {', '.join(close) or 'none'} "
                         f"({where} lists them).")
    try:
        if lib == "timm":
            return module.create_model(arch, pretrained=False, num_classes=n_outputs, in_chans=in_chans, **options)
        return module.get_model(arch, weights=None, **options)
    except ModelError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"model.name = '{lib}:{arch}' could not be built with model.options {options}: "
                         f"{str(exc).splitlines()[0]}. Fix model.options to the library's constructor "
                         "arguments.") from None


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ModelError(f"{type(model).__name__} has no Linear classifier to replace for this task's outputs.")
    return found[-1]


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


class _ChannelFirst(nn.Module):
    """(N, H, W) grayscale batches as (N, 1, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1) if x.dim() == 3 else x


def build_hub_model(name: str, input_shape: tuple[int, ...], n_outputs: int,
                    options: dict[str, Any] | None = None) -> nn.Module:
    """The library's `name` (``torchvision:resnet18``) with random weights, fitted to samples of `input_shape`
    ((C, H, W) or (H, W)) and `n_outputs` outputs."""
    lib, arch, module = _library(name)
    if len(input_shape) not in (2, 3):
        raise ModelError(f"model.name = {name!r} takes images shaped (C, H, W) or (H, W), but the data's samples "
                         f"have shape {tuple(input_shape)}; use it on an image folder or fashion_mnist.")
    in_chans = input_shape[0] if len(input_shape) == 3 else 1
    model = _construct(lib, arch, module, dict(options or {}), n_outputs, in_chans)
    if lib == "torchvision":
        head_name, head = _last_linear(model)
        _set_module(model, head_name, nn.Linear(head.in_features, n_outputs, bias=head.bias is not None))
        conv = _first_conv(model)
        if conv is not None and conv[1].in_channels != in_chans:
            c = conv[1]
            _set_module(model, conv[0], nn.Conv2d(in_chans, c.out_channels, c.kernel_size, c.stride, c.padding,
                                                  c.dilation, c.groups, c.bias is not None, c.padding_mode))
    if len(input_shape) == 2:
        # a hook rather than a wrapper module: the library's parameter names stay as they are (freeze patterns)
        model.register_forward_pre_hook(lambda _m, args: (_ChannelFirst()(args[0]), *args[1:]))
    try:  # one sample through it now: images too small for its downsampling fail here in one line, not mid-run
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        raise ModelError(f"model.name = {name!r} cannot take samples of shape {tuple(input_shape)} "
                         f"({str(exc).splitlines()[0]}); give it larger images (data.options.image_size, e.g. 64) "
                         "or choose another architecture.") from None
    return model.train()


def load_published_weights(model: nn.Module, name: str, options: dict[str, Any] | None = None) -> list[str]:
    """Put the library's published weights of `name` into `model` (built by build_hub_model), all but what was
    replaced for the task (the classifier; a first convolution of another channel count gets the RGB filters
    summed when it takes one channel). Returns the names left as they were."""
    lib, arch, module = _library(name)
    try:
        if lib == "timm":
            source = module.create_model(arch, pretrained=True, **dict(options or {}))
        else:
            source = module.get_model(arch, weights="DEFAULT", **dict(options or {}))
    except Exception as exc:  # no internet, no cache, or no published weights for this architecture
        raise ModelError(f"model.pretrained = weights: {lib} could not give the published weights of {arch!r} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). On a machine "
                         f"without internet, put them in {lib}'s cache first, or give model.pretrained a local "
                         "checkpoint or safetensors file.") from None
    published = source.state_dict()
    own = model.state_dict()
    load, kept = {}, []
    for key, value in own.items():
        theirs = published.get(key)
        if theirs is not None and theirs.shape == value.shape:
            load[key] = theirs
        elif theirs is not None and theirs.dim() == 4 and value.dim() == 4 and value.shape[1] == 1 \
                and theirs.shape[0] == value.shape[0] and theirs.shape[2:] == value.shape[2:]:
            load[key] = theirs.sum(dim=1, keepdim=True)  # RGB filters for one channel
        else:
            kept.append(key)
    model.load_state_dict(load, strict=False)
    return kept

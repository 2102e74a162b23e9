"""Activation checkpointing (`train.activation_checkpointing`): each top-level block ``block1..N`` of a model (the
recurrent models' one ``encoder``) keeps only its input in the forward pass and recomputes its activations in the
backward pass (torch.utils.checkpoint, non-reentrant). Memory for activations falls from all blocks' to about one
block's, for about one more forward pass.

The block's class is swapped for a subclass whose forward checkpoints, so parameter names, checkpoints, freezing
and copies (weight averaging's deepcopy) are those of the plain model. Outputs and gradients are the plain model's:
dropout draws the same masks in the recomputation (checkpoint restores the RNG state), and BatchNorm's running
statistics are updated once, in the forward pass, not a second time when the block is recomputed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from gradwise.errors import ConfigError


@contextlib.contextmanager
def _frozen_norm_statistics(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers of `module` normalize as in training but leave their running statistics as they are: the
    recomputation of a checkpointed block must not count its batch twice."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            count = m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None
            saved.append((m, m.momentum, count))
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class _Checkpointed:
    """Mixed in before a block's own class: its forward, checkpointed while training with gradients on."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        forward = super().forward  # type: ignore[misc]
        if not (self.training and torch.is_grad_enabled()):  # type: ignore[attr-defined]
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False,
                          context_fn=lambda: (contextlib.nullcontext(), _frozen_norm_statistics(self)), **kwargs)

    def _get_name(self) -> str:  # the model prints as the plain one
        return type(self).__mro__[2].__name__


_CLASSES: dict[type, type] = {}


def _checkpointed_class(cls: type) -> type:
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Checkpointed{cls.__name__}", (_Checkpointed, cls), {})
    return _CLASSES[cls]


def is_checkpointed(module: nn.Module) -> bool:
    return isinstance(module, _Checkpointed)


def enable_activation_checkpointing(model: nn.Module) -> list[str]:
    """Checkpoint each top-level block named ``block1``, ``block2``, ... of `model` (every built-in deep model has
    them; the recurrent ones have one ``encoder``, checkpointed whole; a ResNet stage, each residual block); returns
    their names. A model without such
    blocks is a ConfigError: there is nothing to checkpoint."""
    names = [name for name, _ in model.named_children() if name.startswith("block") or name == "encoder"]
    if not names:
        raise ConfigError("train.activation_checkpointing = true, but the model has no top-level blocks named "
                          "block1, block2, ... to checkpoint (the built-in mlp, cnn1d, cnn2d, resnet and transformer "
                          "have them, rnn/gru/lstm an encoder). Name your model's repeated blocks so (an "
                          "nn.Sequential of OrderedDict([('block1', ...), ...])), wrap them in torch.utils.checkpoint "
                          "yourself, or set train.activation_checkpointing=false.")
    from gradwise.models.architectures import BasicBlock

    for name in names:
        block = getattr(model, name)
        # a ResNet stage is checkpointed residual block by residual block: recomputing a whole stage in the backward
        # pass would hold all of its activations again at once, and the first stage's are the largest
        units = list(block.children()) if isinstance(block, nn.Sequential) and len(block) > 0 and all(
            isinstance(m, BasicBlock) for m in block) else [block]
        for unit in units:
            if not is_checkpointed(unit):
                unit.__class__ = _checkpointed_class(type(unit))
    return names

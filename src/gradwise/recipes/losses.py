"""Loss functions from a ``LossConfig``, and the explicit L1/L2 penalty.

Every loss returned by :func:`build_loss` is an ``nn.Module`` with a ``.name`` (its canonical name) that

* lines up shapes instead of broadcasting: a regression output (N, 1) with a target (N,) is compared
  element by element, never as an (N, N) grid; anything else that does not match raises ``ModelError``;
* casts targets to what the loss needs (float for regression/BCE, long class indices for CE/NLL/hinge);
* computes in float32 (float64 if the output is float64), whatever the autocast dtype of the output, and moves
  class weights to the output's device lazily, so it works without ``loss.to(device)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gradwise.config import LossConfig
from gradwise.errors import ConfigError, ModelError
from gradwise.recipes.optim import canonical_name, no_decay_parameter_names

LOSSES = ("auto", "mse", "mae", "huber", "cross_entropy", "bce_with_logits", "nll", "hinge")
_ALIASES = {"l1": "mae", "l2": "mse", "ce": "cross_entropy", "crossentropy": "cross_entropy",
            "bce": "bce_with_logits", "multi_margin": "hinge"}
REGRESSION_LOSSES = ("mse", "mae", "huber")
INDEX_LOSSES = ("cross_entropy", "nll", "hinge")  # targets are class indices
TASKS = ("classification", "binary", "multilabel", "regression")


def _compute_dtype(output: torch.Tensor) -> torch.dtype:
    return torch.float64 if output.dtype == torch.float64 else torch.float32


def _align(output: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
    """Return ``target`` reshaped to ``output.shape`` when they differ only by a trailing size-1 axis."""
    if target.shape == output.shape:
        return target
    if output.ndim == target.ndim + 1 and output.shape[-1] == 1 and output.shape[:-1] == target.shape:
        return target.unsqueeze(-1)
    if target.ndim == output.ndim + 1 and target.shape[-1] == 1 and target.shape[:-1] == output.shape:
        return target.squeeze(-1)
    raise ModelError(f"loss '{name}': model output shape {tuple(output.shape)} does not match target shape "
                     f"{tuple(target.shape)}; the model's last layer should have as many outputs as the target has "
                     "columns (1 for a single regression target or a binary label).")


class GradwiseLoss(nn.Module):
    """Base class: a loss module with a canonical ``name``."""

    name: str = ""

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class RegressionLoss(GradwiseLoss):
    """mse, mae (L1) or huber (with ``delta``) between an output and a same-shaped float target."""

    def __init__(self, name: str, delta: float = 1.0) -> None:
        super().__init__()
        self.name = name
        self.delta = float(delta)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _align(output, target, self.name)
        dt = _compute_dtype(output)
        output, target = output.to(dt), target.to(device=output.device, dtype=dt)
        if self.name == "mse":
            return F.mse_loss(output, target)
        if self.name == "mae":
            return F.l1_loss(output, target)
        return F.huber_loss(output, target, delta=self.delta)


class ClassificationLoss(GradwiseLoss):
    """cross_entropy (logits; label smoothing; soft targets allowed), nll (log-probabilities) or hinge
    (torch's multi-class margin loss, ``multi_margin_loss``), with optional per-class weights."""

    weight: torch.Tensor | None

    def __init__(self, name: str, weight: Sequence[float] | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.name = name
        self.label_smoothing = float(label_smoothing)
        w = None if weight is None else torch.tensor([float(v) for v in weight], dtype=torch.float32)
        self.register_buffer("weight", w, persistent=False)

    def extra_repr(self) -> str:
        w = None if self.weight is None else [round(v, 4) for v in self.weight.tolist()]
        return f"name={self.name!r}, weight={w}, label_smoothing={self.label_smoothing}"

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if (output.dtype is torch.float32 and target.dtype is torch.int64 and output.ndim == 2 and target.ndim == 1
                and self.name == "cross_entropy" and self.weight is None):
            # The common case goes straight to torch: this runs every step, and the checks below cost ~10 us.
            # Torch checks the batch sizes and devices itself; when they differ, the path below explains (or
            # moves the target to the output's device).
            try:
                return F.cross_entropy(output, target, label_smoothing=self.label_smoothing)
            except torch.OutOfMemoryError:
                raise
            except (RuntimeError, ValueError):
                pass
        dt = _compute_dtype(output)
        output = output.to(dt)
        weight = None if self.weight is None else self.weight.to(device=output.device, dtype=dt)
        target = target.to(output.device)
        soft = self.name == "cross_entropy" and target.shape == output.shape and target.is_floating_point()
        if soft:  # class probabilities (e.g. mixup); torch's cross_entropy handles them, smoothing included
            return F.cross_entropy(output, target.to(dt), weight=weight, label_smoothing=self.label_smoothing)
        if target.ndim == output.ndim and output.ndim >= 2 and target.shape[1] == 1 and output.shape[1] != 1:
            target = target.squeeze(1)  # (N, 1) class indices
        if target.ndim != output.ndim - 1 or target.shape[:1] != output.shape[:1]:
            raise ModelError(f"loss '{self.name}': expected class indices of shape {tuple(output.shape[:1])} for "
                             f"a model output of shape {tuple(output.shape)}, got a target of shape "
                             f"{tuple(target.shape)}. Use one integer label per example.")
        target = target.long()
        if self.name == "cross_entropy":
            return F.cross_entropy(output, target, weight=weight, label_smoothing=self.label_smoothing)
        if self.name == "nll":
            return F.nll_loss(output, target, weight=weight)
        return F.multi_margin_loss(output, target, weight=weight)


class BinaryLoss(GradwiseLoss):
    """bce_with_logits for binary (output width 1) and multi-label targets.

    Label smoothing moves targets towards ½: ``y·(1 - ε) + ε/2``. Binary class weights ``[w_neg, w_pos]`` weight
    each example by the weight of its (unsmoothed) class: ``w_neg·(1 - y) + w_pos·y``.
    """

    weight: torch.Tensor | None

    def __init__(self, weight: Sequence[float] | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.name = "bce_with_logits"
        self.label_smoothing = float(label_smoothing)
        w = None if weight is None else torch.tensor([float(v) for v in weight], dtype=torch.float32)
        self.register_buffer("weight", w, persistent=False)

    def extra_repr(self) -> str:
        w = None if self.weight is None else [round(v, 4) for v in self.weight.tolist()]
        return f"name={self.name!r}, weight={w}, label_smoothing={self.label_smoothing}"

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _align(output, target, self.name)
        dt = _compute_dtype(output)
        output, target = output.to(dt), target.to(device=output.device, dtype=dt)
        example_weight = None
        if self.weight is not None:
            w = self.weight.to(device=output.device, dtype=dt)
            example_weight = w[0] * (1 - target) + w[1] * target
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        return F.binary_cross_entropy_with_logits(output, target, weight=example_weight)


def balanced_class_weights(class_counts: Sequence[int]) -> list[float]:
    """sklearn's 'balanced' weights ``n / (C · count_c)``; a class with no examples is counted as 1 so that its
    weight stays finite (it can then only matter for validation data)."""
    n = float(sum(class_counts))
    c = len(class_counts)
    return [n / (c * max(1, int(k))) for k in class_counts]


def _class_weights(cfg: LossConfig, n_classes: int, class_counts: Sequence[int] | None,
                   name: str) -> list[float] | None:
    if cfg.class_weights is None:
        return None
    if cfg.class_weights == "balanced":
        if class_counts is None:
            raise ConfigError("loss.class_weights = 'balanced' needs the class counts of the training data, but "
                              "none were given. Pass class_counts, or list the weights, e.g. loss.class_weights="
                              "[1.0, 3.0].")
        if len(class_counts) != n_classes:
            raise ConfigError(f"loss.class_weights = 'balanced': got counts for {len(class_counts)} classes but the "
                              f"loss '{name}' has {n_classes}. Check the number of model outputs.")
        if sum(class_counts) <= 0:
            raise ConfigError("loss.class_weights = 'balanced': the class counts are all zero; the training data "
                              "has no labels.")
        return balanced_class_weights(class_counts)
    weights = [float(w) for w in cfg.class_weights]
    if len(weights) != n_classes:
        raise ConfigError(f"loss.class_weights = {weights} has {len(weights)} entries but the loss '{name}' has "
                          f"{n_classes} classes. Give one weight per class, or 'balanced'.")
    if any(not math.isfinite(w) or w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise ConfigError(f"loss.class_weights = {weights} is invalid: weights must be finite, >= 0 and not all "
                          "zero. Fix loss.class_weights.")
    return weights


def canonical_loss_name(name: str) -> str:
    """The canonical name of a loss.name value (``bce`` -> ``bce_with_logits``); ConfigError when unknown."""
    return canonical_name("loss.name", name, LOSSES, "loss", aliases=_ALIASES)


def build_loss(cfg: LossConfig, task: str, n_outputs: int, class_counts: list[int] | None = None) -> GradwiseLoss:
    """Build the loss named by ``cfg.name`` for ``task`` (classification, binary, multilabel or regression).

    ``auto`` picks cross_entropy for classification with >= 2 outputs, bce_with_logits for a single-output
    classifier or multi-label targets, and mse for regression. ``class_counts`` (training examples per class)
    is needed for ``class_weights: balanced``.
    """
    task_ = canonical_name("task", task, TASKS, "task", aliases={"multi_label": "multilabel"})
    name = canonical_loss_name(cfg.name)
    if name == "auto":
        if task_ == "regression":
            name = "mse"
        elif task_ == "multilabel" or n_outputs == 1:
            name = "bce_with_logits"
        else:
            name = "cross_entropy"

    if name in REGRESSION_LOSSES:
        if task_ != "regression":
            raise ConfigError(f"loss.name = {cfg.name!r} is a regression loss but the task is {task_}; use "
                              "cross_entropy (or bce_with_logits for binary/multi-label), or loss.name=auto.")
        for key, value, default in (("label_smoothing", cfg.label_smoothing, 0.0),
                                    ("class_weights", cfg.class_weights, None)):
            if value != default:
                raise ConfigError(f"loss.{key} = {value!r} does not apply to the regression loss '{name}'; "
                                  f"remove it (set loss.{key}={'null' if default is None else default}).")
        return RegressionLoss(name, delta=cfg.huber_delta)

    if name in INDEX_LOSSES:
        if task_ == "regression":
            raise ConfigError(f"loss.name = {cfg.name!r} needs class labels but the task is regression; use mse, "
                              "mae or huber, or loss.name=auto.")
        if n_outputs < 2:
            raise ConfigError(f"loss.name = {cfg.name!r} needs a model with one output per class (>= 2) but it has "
                              f"{n_outputs}; for a single-output binary classifier use loss.name=bce_with_logits.")
        if cfg.label_smoothing and name != "cross_entropy":
            raise ConfigError(f"loss.label_smoothing = {cfg.label_smoothing} only applies to cross_entropy and "
                              f"bce_with_logits, not '{name}'. Set loss.label_smoothing=0 or change loss.name.")
        weights = _class_weights(cfg, n_outputs, class_counts, name)
        return ClassificationLoss(name, weight=weights, label_smoothing=cfg.label_smoothing)

    # bce_with_logits
    weights = None
    if cfg.class_weights is not None:
        if n_outputs != 1:
            raise ConfigError(f"loss.class_weights = {cfg.class_weights!r} is only supported by bce_with_logits "
                              f"for a binary model with 1 output (this one has {n_outputs}, i.e. multi-label). "
                              "Remove loss.class_weights.")
        weights = _class_weights(cfg, 2, class_counts, name)
    return BinaryLoss(weight=weights, label_smoothing=cfg.label_smoothing)


def penalty(model: nn.Module, l1: float, l2: float) -> torch.Tensor | None:
    """Explicit penalty ``l1·Σ|w| + ½·l2·Σw²`` over the trainable weights (not biases or norm parameters).

    The L2 term has the ½ so that its gradient is ``l2·w``, the same as torch's ``weight_decay=l2`` on SGD;
    the L1 term adds ``l1·sign(w)`` to the gradient. Returns None when both strengths are 0 (or there are no
    trainable weights), so callers can skip the addition entirely.
    """
    if not l1 and not l2:
        return None
    skip = no_decay_parameter_names(model)
    params = [p for n, p in model.named_parameters() if n not in skip and p.requires_grad]
    if not params:
        return None
    # reduce low-precision (bf16/fp16) weights in float32: a long bf16 sum loses most of its digits
    ps = [p if p.dtype in (torch.float32, torch.float64) else p.float() for p in params]
    total = ps[0].new_zeros((), dtype=torch.float32 if ps[0].dtype != torch.float64 else torch.float64)
    if l1:
        total = total + l1 * torch.stack([p.abs().sum().to(total.dtype) for p in ps]).sum()
    if l2:
        total = total + 0.5 * l2 * torch.stack([p.pow(2).sum().to(total.dtype) for p in ps]).sum()
    return total

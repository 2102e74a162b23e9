"""Evaluation: the loss and task metrics over a whole split (torchmetrics computes the metrics)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn


def task_metrics(outputs: torch.Tensor, targets: torch.Tensor, task: str) -> dict[str, float]:
    """accuracy for classification; MAE and R² for regression."""
    from torchmetrics.functional import mean_absolute_error, r2_score
    from torchmetrics.functional.classification import binary_accuracy, multiclass_accuracy

    outputs = outputs.float()
    if task == "classification":
        if outputs.ndim == 1 or outputs.shape[-1] == 1:  # one logit: binary
            return {"accuracy": binary_accuracy(outputs.reshape(-1).sigmoid(), targets.reshape(-1).long()).item()}
        return {"accuracy": multiclass_accuracy(outputs, targets.long(), num_classes=outputs.shape[-1],
                                                average="micro").item()}
    out = outputs.reshape(targets.shape) if outputs.numel() == targets.numel() else outputs
    tgt = targets.float()
    metrics = {"mae": mean_absolute_error(out, tgt).item()}
    if len(tgt) > 1:
        metrics["r2"] = r2_score(out.reshape(len(tgt), -1), tgt.reshape(len(tgt), -1)).item()
    return metrics


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Any, loss_fn: Callable, device: torch.device, task: str | None,
             autocast: Callable[[], AbstractContextManager], forward: Callable | None = None,
             target_transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """Mean loss (weighted by batch size) and task metrics; one device sync at the end."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    outs, tgts = [], []
    try:
        for batch in loader:
            x, y = to_device(batch, device)
            with autocast():
                out = forward(model, x) if forward else model(x)
                loss = loss_fn(out, y)
            n = len(y)
            total += loss.detach().double() * n
            count += n
            if task is not None:
                outs.append(out.detach().float())
                tgts.append(y.detach())
    finally:
        model.train(was_training)
    metrics = {"loss": (total / max(count, 1)).item()}
    if task is not None and outs:
        out, tgt = torch.cat(outs), torch.cat(tgts)
        if target_transform is not None:  # report regression metrics in the target's original units
            out, tgt = target_transform(out), target_transform(tgt)
        metrics.update(task_metrics(out, tgt, task))
    return metrics


def to_device(batch: Any, device: torch.device) -> tuple[Any, Any]:
    x, y = batch[0], batch[1]
    if isinstance(x, torch.Tensor) and x.device != device:
        x = x.to(device, non_blocking=True)
    if isinstance(y, torch.Tensor) and y.device != device:
        y = y.to(device, non_blocking=True)
    return x, y

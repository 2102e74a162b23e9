"""Evaluation: the loss and task metrics over a whole split (torchmetrics and scikit-learn compute the metrics)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

# The names task_metrics reports (metrics.jsonl has them as val_<name>, summary.json as test_<name>). All the
# classification ones but accuracy are macro averages over the classes that occur in the targets or predictions
# (scikit-learn's `average="macro"`); balanced accuracy is the mean recall over the classes in the targets (sklearn's
# balanced_accuracy_score); auroc is reported for two classes only (one logit, or two outputs).
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "balanced_accuracy")
BINARY_METRICS = ("auroc",)
REGRESSION_METRICS = ("mae", "r2")


def task_metrics(outputs: torch.Tensor, targets: torch.Tensor, task: str,
                 per_class: bool = False) -> dict[str, Any]:
    """Classification: accuracy, macro precision/recall/F1, balanced accuracy (and AUROC for two classes);
    regression: MAE and R².

    Computed once from a split's accumulated outputs (one confusion matrix), not per batch. ``per_class`` adds
    ``per_class``: {"precision", "recall", "f1", "support"}, lists indexed by class (for summary.json, not for the
    per-epoch rows).
    """
    from torchmetrics.functional import mean_absolute_error, r2_score
    from torchmetrics.functional.classification import binary_accuracy, multiclass_accuracy

    outputs = outputs.float()
    if task == "classification":
        tgt = targets.reshape(-1).long()
        if outputs.ndim == 1 or outputs.shape[-1] == 1:  # one logit: binary
            logit = outputs.reshape(-1)
            # sigmoid > 0.5 in float32, as torchmetrics' binary_accuracy decides (a logit of 1e-9 rounds to 0.5)
            pred = (logit.sigmoid() > 0.5).long()
            metrics: dict[str, Any] = {"accuracy": binary_accuracy(logit.sigmoid(), tgt).item()}
            n_classes, score = 2, logit  # the logit ranks like the probability, without sigmoid's ties at 0 and 1
        else:
            pred = outputs.argmax(-1)
            n_classes = outputs.shape[-1]
            metrics = {"accuracy": multiclass_accuracy(outputs, tgt, num_classes=n_classes, average="micro").item()}
            score = outputs[:, 1] - outputs[:, 0] if n_classes == 2 else None  # log-odds of class 1 (softmax)
        metrics.update(classification_metrics(pred, tgt, n_classes, per_class=per_class))
        if score is not None:
            auroc = binary_auroc(score, tgt)
            if auroc is not None:
                metrics["auroc"] = auroc
        return metrics
    out = outputs.reshape(targets.shape) if outputs.numel() == targets.numel() else outputs
    tgt = targets.float()
    metrics = {"mae": mean_absolute_error(out, tgt).item()}
    if len(tgt) > 1:
        metrics["r2"] = r2_score(out.reshape(len(tgt), -1), tgt.reshape(len(tgt), -1)).item()
    return metrics


def classification_metrics(pred: torch.Tensor, target: torch.Tensor, n_classes: int,
                           per_class: bool = False) -> dict[str, Any]:
    """Macro precision, recall and F1 and balanced accuracy from predicted and true labels, as scikit-learn defines
    them (zero_division=0; the macro mean over classes present in either labels or predictions).

    One bincount builds the confusion matrix, the rest is arithmetic on a C x C matrix in float64 (one host copy).
    """
    n_classes = max(n_classes, int(target.max().item()) + 1 if target.numel() else 0)
    cm = torch.bincount(target * n_classes + pred, minlength=n_classes * n_classes)
    cm = cm.reshape(n_classes, n_classes).double().cpu()  # rows: true class, columns: predicted class
    tp = cm.diagonal()
    support = cm.sum(1)  # true rows of each class
    predicted = cm.sum(0)
    fp, fn = predicted - tp, support - tp

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))

    precision, recall = ratio(tp, predicted), ratio(tp, support)
    f1 = ratio(2 * tp, 2 * tp + fp + fn)  # sklearn's F-score: (1+b²)tp / ((1+b²)tp + b²fn + fp), b = 1
    seen = (support + predicted) > 0  # sklearn's labels: those in y_true or y_pred
    metrics: dict[str, Any] = {
        "precision": precision[seen].mean().item() if seen.any() else 0.0,
        "recall": recall[seen].mean().item() if seen.any() else 0.0,
        "f1": f1[seen].mean().item() if seen.any() else 0.0,
        # sklearn's balanced accuracy averages recall over the classes that have true rows only
        "balanced_accuracy": recall[support > 0].mean().item() if (support > 0).any() else 0.0,
    }
    if per_class:
        metrics["per_class"] = {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
                                "support": [int(s) for s in support.tolist()]}
    return metrics


def binary_auroc(score: torch.Tensor, target: torch.Tensor) -> float | None:
    """Area under the ROC curve of a real-valued score for class 1 (None when the targets hold one class only, or
    when a score is NaN/inf — a diverged model or NaN inputs — where it is undefined). scikit-learn's roc_auc_score:
    exact, ties handled as it does."""
    from sklearn.metrics import roc_auc_score

    y = target.reshape(-1).cpu().numpy()
    if y.size == 0 or (y == y[0]).all() or not bool(torch.isfinite(score).all()):
        return None
    return float(roc_auc_score(y, score.reshape(-1).double().cpu().numpy()))


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Any, loss_fn: Callable, device: torch.device, task: str | None,
             autocast: Callable[[], AbstractContextManager], forward: Callable | None = None,
             target_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             per_class: bool = False, gather: Callable | None = None) -> dict[str, Any]:
    """Mean loss (weighted by batch size) and task metrics (see `task_metrics`; ``per_class`` adds the per-class
    values of a classification); one device sync at the end. ``gather(total, count, outputs, targets)`` combines
    the parts of a split evaluated by several processes (gradwise.train.distributed)."""
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
    if gather is not None:
        total, count, outs, tgts = gather(total, count, outs, tgts)
    metrics: dict[str, Any] = {"loss": (total / max(count, 1)).item()}
    if task is not None and outs:
        out, tgt = torch.cat(outs), torch.cat(tgts)
        if target_transform is not None:  # report regression metrics in the target's original units
            out, tgt = target_transform(out), target_transform(tgt)
        metrics.update(task_metrics(out, tgt, task, per_class=per_class))
    return metrics


def to_device(batch: Any, device: torch.device) -> tuple[Any, Any]:
    x, y = batch[0], batch[1]
    if isinstance(x, torch.Tensor) and x.device != device:
        x = x.to(device, non_blocking=True)
    if isinstance(y, torch.Tensor) and y.device != device:
        y = y.to(device, non_blocking=True)
    return x, y

"""Predictions of a run's model on its test split (else validation) and the sections they make: confusion matrix,
per-class precision/recall/F1 and ROC/PR curves (scikit-learn's metrics), or predicted-vs-true and residuals."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

import numpy as np
import torch
from torch import nn

from gradwise.report.svg import Chart, heatmap

MAX_POINTS = 2000  # scatter points drawn (a larger split is subsampled evenly: the page stays small)


@torch.inference_mode()
def predict_batches(model: nn.Module, batches: Iterable[Any], task: str, *, device: torch.device | None = None,
                    forward: Callable | None = None, target_transform: Callable | None = None,
                    split: str = "test", classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Outputs and targets of one split: class probabilities (classification) or values in the target's units."""
    was = model.training
    model.eval()
    outs, tgts = [], []
    try:
        for batch in batches:
            x, y = batch[0], batch[1]
            if device is not None and isinstance(x, torch.Tensor):
                x, y = x.to(device), y.to(device)
            out = forward(model, x) if forward is not None else model(x)
            outs.append(out.detach().float().cpu())
            tgts.append(y.detach().cpu())
    finally:
        model.train(was)
    out, y = torch.cat(outs), torch.cat(tgts)
    result: dict[str, Any] = {"task": task, "split": split, "n": len(y)}
    if task == "classification":
        if out.ndim == 1 or out.shape[-1] == 1:  # one logit: the probability of the second class
            p1 = out.reshape(-1).sigmoid()
            proba = torch.stack([1 - p1, p1], 1)
        else:
            proba = out.softmax(-1)
        k = proba.shape[1]
        names = list(classes) if classes is not None and len(classes) == k else [str(i) for i in range(k)]
        result.update(y_true=y.reshape(-1).long().numpy(), proba=proba.numpy(), classes=names)
    else:
        if target_transform is not None:
            out, y = target_transform(out), target_transform(y.float())
        y = y.float()
        out = out.reshape(y.shape) if out.numel() == y.numel() else out
        result.update(y_true=y.reshape(len(y), -1).numpy(), y_pred=out.reshape(len(y), -1).numpy())
    return result


def evaluation_section(pred: dict[str, Any]) -> tuple[str, int]:
    """The HTML of the evaluation section and the number of plots in it."""
    if pred["task"] == "classification":
        return _classification(pred)
    return _regression(pred)


def _classification(pred: dict[str, Any]) -> tuple[str, int]:
    from sklearn.metrics import (
        average_precision_score,
        confusion_matrix,
        precision_recall_curve,
        precision_recall_fscore_support,
        roc_auc_score,
        roc_curve,
    )

    y, proba, names = pred["y_true"], pred["proba"], pred["classes"]
    finite = np.isfinite(proba).all(axis=1)
    if not finite.all():
        y, proba = y[finite], proba[finite]
    parts = [f"<p>{pred['split']} split, {len(y)} rows"
             + (f" ({int((~finite).sum())} rows with non-finite outputs left out)" if not finite.all() else "")
             + "</p>"]
    if len(y) == 0:
        return "".join(parts) + "<p>no finite predictions to evaluate.</p>", 0
    labels = list(range(len(names)))
    y_hat = proba.argmax(1)
    cm = confusion_matrix(y, y_hat, labels=labels)
    parts.append(heatmap(cm.tolist(), names, names, f"Confusion matrix ({pred['split']})"))
    p, r, f, s = precision_recall_fscore_support(y, y_hat, labels=labels, zero_division=0)
    rows = "".join(f"<tr><td>{escape(str(n))}</td><td>{p[i]:.3f}</td><td>{r[i]:.3f}</td><td>{f[i]:.3f}</td>"
                   f"<td>{int(s[i])}</td></tr>" for i, n in enumerate(names))
    mp, mr, mf = float(p.mean()), float(r.mean()), float(f.mean())  # macro: the unweighted mean over the classes
    acc = float((y_hat == y).mean())
    parts.append('<table class="num"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>'
                 f"</tr>{rows}<tr class='tot'><td>macro average</td><td>{mp:.3f}</td><td>{mr:.3f}</td><td>{mf:.3f}</td>"
                 f"<td>{len(y)}</td></tr><tr class='tot'><td>accuracy</td><td colspan='4'>{acc:.4f}</td></tr></table>")
    plots = 1
    if len(names) == 2 and len(np.unique(y)) == 2 and np.isfinite(proba[:, 1]).all():  # no curve from NaN scores
        score = proba[:, 1]
        fpr, tpr, _ = roc_curve(y, score)
        auc = roc_auc_score(y, score)
        roc = Chart(f"ROC curve ({pred['split']}): AUROC {auc:.3f}", "false positive rate", "true positive rate",
                    width=520, height=340)
        roc.diagonal = True
        roc.line(fpr, tpr, f"positive class: {names[1]}")
        prec, rec, _ = precision_recall_curve(y, score)
        ap = average_precision_score(y, score)
        pr = Chart(f"Precision-recall curve ({pred['split']}): AP {ap:.3f}", "recall", "precision", width=520,
                   height=340)
        pr.line(rec, prec, f"positive class: {names[1]}", color="#2ca02c")
        parts.append('<div class="row">' + roc.render() + pr.render() + "</div>")
        plots += 2
    return "".join(parts), plots


def _regression(pred: dict[str, Any]) -> tuple[str, int]:
    yt, yp = pred["y_true"], pred["y_pred"]
    if yt.shape != yp.shape:
        return f"<p>outputs of shape {yp.shape} do not match targets {yt.shape}: nothing drawn.</p>", 0
    yt, yp = yt[:, 0], yp[:, 0]  # the first target (a multi-output model: its first column)
    ok = np.isfinite(yt) & np.isfinite(yp)
    yt, yp = yt[ok], yp[ok]
    if len(yt) == 0:
        return "<p>no finite predictions to evaluate.</p>", 0
    res = yp - yt
    mae, rmse = float(np.abs(res).mean()), float(np.sqrt((res ** 2).mean()))
    ss = float(((yt - yt.mean()) ** 2).sum())
    r2 = 1 - float((res ** 2).sum()) / ss if ss > 0 else float("nan")
    idx = np.linspace(0, len(yt) - 1, min(len(yt), MAX_POINTS)).astype(int)
    pv = Chart(f"Predicted vs true ({pred['split']})", "true", "predicted", width=520, height=360)
    pv.diagonal = True
    pv.line(yt[idx], yp[idx], "rows", points=True, line=False)
    rv = Chart(f"Residuals ({pred['split']})", "predicted", "predicted − true", width=520, height=360)
    rv.hline = 0.0
    rv.line(yp[idx], res[idx], "rows", points=True, line=False, color="#d62728")
    summary = (f"<p>{pred['split']} split, {len(yt)} rows: MAE {mae:.4g}, RMSE {rmse:.4g}, R² {r2:.4f}"
               + (f" ({int((~ok).sum())} non-finite rows left out)" if not ok.all() else "") + "</p>")
    return summary + '<div class="row">' + pv.render() + rv.render() + "</div>", 2

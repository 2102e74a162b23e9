"""Pre-flight checks of how the model, the loss and the batches fit together: the model's last op against the loss,
an output shape that broadcasts against the targets, a final activation that cannot reach the targets, two linear
layers with nothing between them, a summed loss, BatchNorm on tiny batches, randomness left on in eval mode."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gradwise.doctor.checks.base import register
from gradwise.doctor.checks.preflight import PreflightCheck
from gradwise.doctor.findings import Code, Finding, Fix
from gradwise.doctor.preflight_facts import REGRESSION_LOSSES, PreflightFacts
from gradwise.doctor.probes import LOGIT_OPS, Trace, last_op
from gradwise.doctor.thresholds import DEFAULT, Thresholds


@register
class NormBatch(PreflightCheck):
    name = "norm_batch"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "wiring"
    measures = "BatchNorm trained on tiny batches (batch statistics too noisy to match the running ones)"
    thresholds = ("norm_batch_min",)
    causes = ("a batch size below ~8 with BatchNorm (memory limits, a tiny dataset)",)
    fixes = (Fix("train.batch_size", 4 * DEFAULT.norm_batch_min),
             Fix("model.norm", "layer", note="LayerNorm or GroupNorm: no batch statistics"),
             "or gradient accumulation (train.accumulate) with a larger micro-batch")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        """Each row's output depends on its few batch mates, and training normalizes with other statistics than
        evaluation does."""
        bs, bns = facts.batch_size, list(facts.batchnorm)
        if not bns or bs is None or bs >= t.norm_batch_min:
            return None
        return self.finding(f"BatchNorm ({bns[0]}{' and others' if len(bns) > 1 else ''}) with batches of {bs} rows: "
                            "batch statistics that noisy make training compute another function than evaluation "
                            "(running statistics)", {"batch_size": bs, "batchnorm_layers": bns[:10],
                                                     "threshold": t.norm_batch_min}, epoch=0, step=0)


@register
class SumReduction(PreflightCheck):
    name = "sum_reduction"
    code = Code.LOSS_OUTPUT_MISMATCH
    family = "wiring"
    severity = "info"
    measures = "a loss summed over the batch instead of averaged (its size grows with the batch)"
    causes = ("reduction='sum' in the loss",)
    fixes = ("use the default reduction='mean'", "or divide the LR by the batch size")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        """The measuring step found the loss summed (the same rows twice give twice the loss) and put the
        know-nothing loss on the scale of one training batch, which the curve checks then read."""
        bs = facts.sum_batch
        if not bs:
            return None
        return self.finding(f"the loss is summed over the batch (reduction='sum'): its value and its gradient grow "
                            f"with the batch size ({bs} rows here), so an LR tuned for a mean-reduced loss is about "
                            "that many times too large",
                            {"batch_size": bs, "loss_per_batch_know_nothing": facts.baseline}, epoch=0, step=0)


@register
class Wiring(PreflightCheck):
    name = "wiring"
    code = Code.LOSS_OUTPUT_MISMATCH
    also = (Code.UNDERFITTING,)
    family = "wiring"
    measures = ("the model's last op against the loss: softmax/sigmoid/ReLU before a loss that expects logits, "
                "an output shape that broadcasts against the targets, a final activation that cannot reach them; "
                "two linear layers with no nonlinearity between them")
    thresholds = ("range_miss",)

    def check(self, facts: PreflightFacts, t: Thresholds) -> list[Finding]:
        trace = facts.trace
        if trace is None:
            return []
        kind, y = facts.loss_kind, facts.y
        out = trace.output.detach().float()
        head = _head(trace, out)
        ev = {"final_module": head["where"], "loss": kind, "output_min": float(out.min()),
              "output_max": float(out.max())}
        found = [f for f in (_logit_mismatch(kind, head, out, ev),) if f is not None]
        if kind in REGRESSION_LOSSES and y.is_floating_point():
            found += [f for f in (_out_of_reach(head, out, y, ev, t), _broadcast(facts, out, y, ev)) if f is not None]
        for a, b in trace.collapsed[:1]:
            found.append(Finding(Code.UNDERFITTING, "warning", f"{a} feeds {b} with no nonlinearity between them: the "
                                 "two collapse into one linear map, so the extra layer adds no capacity",
                                 {"layers": [a, b]}, ["an activation left out of nn.Sequential"],
                                 [f"put an activation between {a} and {b}, e.g. nn.ReLU()",
                                  Fix("model.activation", "relu").render()], step=0, epoch=0))
        return found


def _head(trace: Trace, out: torch.Tensor) -> dict[str, Any]:
    """What ends the model: its final module, the op that made the output, and whether the outputs are
    probabilities (softmax), log-probabilities (log-softmax) or squashed into (0, 1) by a sigmoid."""
    final = trace.final_module
    module = final[1] if final else None
    n = out.numel()
    softmax = log_softmax = False
    if out.ndim == 2 and out.shape[1] >= 2 and n >= 16:
        softmax = bool(((out >= 0) & (out <= 1)).all()) and bool(((out.sum(1) - 1).abs() < 1e-3).all())
        log_softmax = bool((out <= 0).all()) and bool((out.logsumexp(1).abs() < 1e-3).all())
    softmax = softmax or isinstance(module, nn.Softmax)
    log_softmax = log_softmax or isinstance(module, nn.LogSoftmax)
    # A sigmoid is known by the op that made the output; values in (0, 1) alone are no evidence (a fresh
    # single-logit head on positive features often starts there). Only without a graph do values decide.
    op = last_op(trace.output) or ""
    sigmoid = isinstance(module, nn.Sigmoid) or op.startswith("Sigmoid") or (
        not op.startswith(LOGIT_OPS) and not softmax and n >= 16 and bool(((out > 0) & (out < 1)).all()))
    where = f"{final[0]} ({type(module).__name__})" if final else "the model's forward"
    return {"module": module, "op": op, "where": where, "softmax": softmax, "log_softmax": log_softmax,
            "sigmoid": sigmoid}


def _clipped_at_zero(module: nn.Module | None, out: torch.Tensor) -> bool:
    """The output layer is a ReLU-like clip at 0 (by type, or: no negative output and many exact zeros)."""
    if isinstance(module, nn.ReLU | nn.ReLU6):
        return True
    return out.numel() >= 16 and bool((out >= 0).all()) and float((out == 0).float().mean()) > 0.1


def _mismatch(message: str, ev: dict[str, Any], cause: str, fixes: list[str], severity: str = "warning") -> Finding:
    return Finding(Code.LOSS_OUTPUT_MISMATCH, severity, message, ev, [cause], fixes, step=0, epoch=0)  # type: ignore[arg-type]


def _logit_mismatch(kind: str, head: dict[str, Any], out: torch.Tensor, ev: dict[str, Any]) -> Finding | None:
    """The last op against a loss that expects logits (or, for nll, log-probabilities)."""
    where, softmax, sigmoid = head["where"], head["softmax"], head["sigmoid"]
    if kind == "ce" and softmax:
        return _mismatch(f"the model ends in a softmax ({where}) and cross-entropy applies softmax again: outputs "
                         "squashed into [0, 1] give tiny, flat gradients", ev,
                         "nn.Softmax at the end of a model trained with CrossEntropyLoss",
                         ["remove the final softmax: cross_entropy expects raw logits (apply softmax only at "
                          "prediction time)"])
    if kind == "ce" and head["log_softmax"]:
        return _mismatch(f"the model ends in log-softmax ({where}) before cross-entropy; harmless (log-softmax is "
                         "idempotent) but redundant", ev, "LogSoftmax + CrossEntropyLoss",
                         ["remove the final log_softmax, or use loss=nll"], severity="info")
    if kind == "nll" and not head["log_softmax"]:
        return _mismatch(f"nll expects log-probabilities but the outputs of {where} are "
                         f"{'probabilities' if softmax else 'raw scores'}: the loss can fall without bound", ev,
                         "NLLLoss without a final LogSoftmax", ["loss=cross_entropy on raw logits",
                                                                "end the model with nn.LogSoftmax(dim=1)"])
    if kind in ("ce", "bce") and not softmax and not sigmoid and _clipped_at_zero(head["module"], out):
        # logits that cannot go below 0: a class whose logit is clipped gets no gradient through it (the ReLU's
        # zero side), and the model can only express "less likely" by driving other logits up
        return _mismatch(f"the model's outputs pass through a ReLU-like activation ({where}; "
                         f"{float((out == 0).float().mean()):.0%} of them exactly 0) before "
                         f"{'cross-entropy' if kind == 'ce' else 'BCE-with-logits'}, which expects raw logits of any "
                         "sign: clipped logits get no gradient", ev,
                         "an activation left on the output layer (nn.ReLU after the last nn.Linear)",
                         ["remove the final activation: the loss expects raw logits"])
    if kind == "ce" and sigmoid and out.ndim == 2 and out.shape[1] >= 3:
        c = out.shape[1]
        floor = math.log(1 + (c - 1) / math.e)  # the target's logit at 1, every other at 0
        return _mismatch(f"the model's outputs are squashed into (0, 1) by a sigmoid ({where}) before "
                         f"cross-entropy, which expects raw logits: with {c} classes the loss cannot fall below "
                         f"{floor:.3g} and the gradients are weak", {**ev, "loss_floor": floor},
                         "nn.Sigmoid left at the end of a multi-class model",
                         ["remove the final sigmoid: cross_entropy expects raw logits"])
    if kind == "bce" and sigmoid:
        return _mismatch(f"the model ends in a sigmoid ({where}) and BCEWithLogits applies sigmoid again: outputs "
                         "stuck in (0.27, 0.73) and weak gradients", ev,
                         "nn.Sigmoid at the end of a model trained with BCEWithLogitsLoss",
                         ["remove the final sigmoid: bce_with_logits expects raw logits"])
    return None


def _reach(module: nn.Module | None, op: str, out: torch.Tensor) -> tuple[float, float]:
    """The range the output's activation can reach (its module, or the op that made the output when a
    Flatten/view follows it)."""
    if isinstance(module, nn.Sigmoid | nn.Softmax) or op.startswith(("Sigmoid", "Softmax")):
        return 0.0, 1.0
    if isinstance(module, nn.Tanh | nn.Hardtanh | nn.Softsign) or op.startswith("Tanh"):
        return -1.0, 1.0
    if isinstance(module, nn.ReLU | nn.ReLU6 | nn.Softplus) or op.startswith(("Relu", "Softplus")) or (
            bool((out >= 0).all()) and float((out == 0).float().mean()) > 0.1):
        return 0.0, 6.0 if isinstance(module, nn.ReLU6) else math.inf
    return -math.inf, math.inf


def _out_of_reach(head: dict[str, Any], out: torch.Tensor, y: torch.Tensor, ev: dict[str, Any],
                  t: Thresholds) -> Finding | None:
    """A regression model's final activation cannot reach range_miss or more of the targets."""
    lo, hi = _reach(head["module"], head["op"], out)
    if not (math.isfinite(lo) or math.isfinite(hi)):
        return None
    yf = y.float()
    miss = float(((yf < lo - 1e-6) | (yf > hi + 1e-6)).float().mean())
    if miss <= t.range_miss:
        return None
    ev = dict(ev, reachable=[lo, hi], target_min=float(yf.min()), target_max=float(yf.max()),
              targets_out_of_range=miss)
    return Finding(Code.LOSS_OUTPUT_MISMATCH, "warning", f"the final activation ({ev['final_module']}) outputs "
                   f"values in [{lo:g}, {hi:g}] but {miss:.0%} of the targets lie outside it", ev,
                   ["a ReLU/sigmoid/tanh left on the output layer of a regression model"],
                   ["remove the final activation: regression outputs should be linear",
                    "or scale the targets into the activation's range"], step=0, epoch=0)


def _broadcast(facts: PreflightFacts, out: torch.Tensor, y: torch.Tensor, ev: dict[str, Any]) -> Finding | None:
    """(N, 1) outputs against (N,) targets (or the reverse) broadcast to an N x N comparison in torch's own
    regression losses: every output is pulled towards the mean target and the model learns nothing."""
    if facts.broadcast is None:
        return None
    as_given, aligned = facts.broadcast
    if not (math.isfinite(as_given) and math.isfinite(aligned) and abs(as_given - aligned) > 1e-4 * max(aligned, 1e-8)):
        return None
    return Finding(Code.LOSS_OUTPUT_MISMATCH, "warning", f"the outputs have shape {tuple(out.shape[1:])} per row and "
                   f"the targets {tuple(y.shape[1:])}: the loss broadcasts them against each other (every output "
                   "compared with every target), so the model can only learn the mean",
                   {**ev, "output_shape": list(out.shape), "target_shape": list(y.shape)},
                   ["a (N, 1) output and (N,) targets given to nn.MSELoss / F.mse_loss"],
                   ["make the shapes equal: y = y.reshape(-1, 1), or out.squeeze(1) in forward()",
                    "or use loss='mse' (gradwise's loss aligns them)"], step=0, epoch=0)


@register
class EvalDeterminism(PreflightCheck):
    name = "eval_determinism"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "wiring"
    measures = "two eval-mode passes over the same rows give different outputs (dropout left on at evaluation)"
    thresholds = ("eval_difference",)
    causes = ("forward() calls self.train() or F.dropout(x, training=True)", "noise added in forward() without "
              "checking self.training")
    fixes = ("use nn.Dropout modules or F.dropout(x, training=self.training)",
             "ignore this for deliberate sampling at evaluation (MC dropout, a VAE's latent sample)")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        if facts.eval_difference is None:
            return None
        diff, scale = facts.eval_difference
        if not (math.isfinite(diff) and diff > t.eval_difference * scale):  # more than float noise
            return None
        return self.finding(f"two eval-mode passes over the same rows give different outputs (largest difference "
                            f"{diff:.3g}): randomness such as dropout stays on at evaluation, so validation metrics "
                            "are noisy and worse than the model", {"max_abs_difference": diff, "output_scale": scale},
                            epoch=0, step=0)

"""The pre-flight's measuring step: everything its checks read, measured once before they run.

The checks (doctor/checks/data.py, splits.py, wiring.py, init.py) are pure functions of a `PreflightFacts`: they
never run the model, call the loss or read a loader. What several checks share (the traced model, the probe batch,
the class counts, the constant-prediction losses) and what one check used to change for another (the know-nothing
loss rescaled for a summed loss, the class counts the labels check used to record) is measured here instead, in
three steps that follow the order the checks run in:

1. `measure_data`: the training tensors and what the loaders and the data report say (no model yet);
2. `measure_model`: one traced forward pass on the probe batch, and the targets read against its outputs;
3. `measure_rest`: the constant-prediction losses, nearest-neighbour label agreement, the loss reduction, two
   eval-mode passes, the initial loss, the weights' scale, ReLU units dead at init and the first gradients.

Each measurement that can fail on an odd model or loss is guarded: a failure leaves its field None and only the
checks that read it go without a verdict. Nothing here changes the model, the optimizer or the RNG streams (the
forward passes run inside `probes.preserved`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from gradwise.doctor.facts import (
    CLASS_LOSSES,
    Facts,
    classes_of,
    constant_losses,
    differs_in_eval,
    fan_in,
    narrowest,
    neighbour_agreement,
    split_tensors,
    subsample,
)
from gradwise.doctor.findings import Finding
from gradwise.doctor.probes import ActivationStats, Trace, first_tensor, preserved, run_forward

REGRESSION_LOSSES = ("mse", "mae", "huber")


class Splits:
    """The validation and test splits' tensors, each read once per row budget (a Dataset loader is iterated, with
    the RNG streams restored, only when a check asks for that split)."""

    def __init__(self, val: Any = None, test: Any = None) -> None:
        self.loaders = {"val": val, "test": test}
        self._read: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor] | None] = {}

    @classmethod
    def of(cls, val: tuple[torch.Tensor, torch.Tensor] | None = None,
           test: tuple[torch.Tensor, torch.Tensor] | None = None) -> Splits:
        """Splits given as (x, y) tensors (tests, tools)."""
        from types import SimpleNamespace

        def wrap(t: tuple[torch.Tensor, torch.Tensor] | None) -> Any:
            return None if t is None else SimpleNamespace(x=t[0], y=t[1])

        return cls(wrap(val), wrap(test))

    def has(self, split: str) -> bool:
        return self.loaders[split] is not None

    def get(self, split: str, max_rows: int = 20000) -> tuple[torch.Tensor, torch.Tensor] | None:
        key = (split, max_rows)
        if key not in self._read:
            self._read[key] = split_tensors(self.loaders[split], max_rows)
        return self._read[key]


@dataclass(frozen=True)
class Labels:
    """The training targets read against the loss and the model's outputs. `problem` names what the loss cannot
    take (None: nothing): one_logit (cross-entropy over one output), not_class_ids (a class loss on other targets),
    out_of_range (class ids outside the outputs), bce_range (binary targets outside [0, 1]), regression_on_ids (a
    regression loss on integer class ids)."""

    problem: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    counts: list[int] | None = None  # examples per class (class losses, or one 0/1 output of a binary loss)
    outputs: int = 1

    FATAL = ("one_logit", "out_of_range", "bce_range")  # training cannot even start: the pre-flight halts


def read_labels(y: torch.Tensor, kind: str, out_shape: tuple[int, ...], ignore_index: Any) -> Labels:
    """Labels of the training targets `y` for a loss of `kind` over outputs of `out_shape`."""
    width = out_shape[-1] if len(out_shape) > 1 else 1
    if kind in CLASS_LOSSES:
        if len(out_shape) == 2 and width == 1 and kind == "ce":
            return Labels("one_logit", {"outputs": 1, "loss": kind}, outputs=width)
        cls = classes_of(y)
        if cls is None:
            soft = y.is_floating_point() and tuple(y.shape[1:]) == tuple(out_shape[1:])  # soft targets are fine
            return Labels(None if soft else "not_class_ids", {"dtype": str(y.dtype), "shape": list(y.shape)},
                          outputs=width)
        valid = cls[cls != ignore_index] if ignore_index is not None else cls
        if valid.numel() == 0:
            return Labels(outputs=width)
        lo, hi = int(valid.min()), int(valid.max())
        if lo < 0 or hi >= width:
            return Labels("out_of_range", {"min_label": lo, "max_label": hi, "outputs": width}, outputs=width)
        return Labels(counts=torch.bincount(valid.cpu(), minlength=width).tolist(), outputs=width)
    if kind in ("bce", "bce_prob"):
        if not (y.is_floating_point() or y.dtype in (torch.int64, torch.int32, torch.bool, torch.uint8)):
            return Labels(outputs=width)
        yf = y.float()
        if bool(((yf < 0) | (yf > 1)).any()):
            return Labels("bce_range", {"min": float(yf.min()), "max": float(yf.max())}, outputs=width)
        cls = classes_of(yf) if width == 1 else None
        counts = torch.bincount(cls.cpu(), minlength=2).tolist() if cls is not None else None
        return Labels(counts=counts, outputs=width)
    if kind in REGRESSION_LOSSES and not y.is_floating_point() and y.dtype != torch.bool:
        return Labels("regression_on_ids", {"loss": kind, "target_dtype": str(y.dtype),
                                            "distinct_targets": torch.unique(y).numel()}, outputs=width)
    return Labels(outputs=width)


@dataclass(frozen=True)
class Init:
    """The initialized model: each weight matrix's scale, the signal's size through the layers, dead ReLU units."""

    # (name, std, std·√fan_in, constant across units, units) of every weight matrix with >= 2 rows (tables excluded)
    layers: list[tuple[str, float, float, bool, int]] = field(default_factory=list)
    hidden_gains: dict[str, float] = field(default_factory=dict)  # std·√fan_in of the hidden weight matrices
    # RMS of the input of the first weight layer, of the output layer and of the second weight layer (probe batch)
    signal_first: float | None = None
    signal_last: float | None = None
    signal_second: float | None = None
    dead: dict[str, float] = field(default_factory=dict)  # ReLU layer -> share of units that never fire


@dataclass(frozen=True)
class Gradients:
    """The first backward pass: trainable tensors with no gradient or an all-zero one, and their share of the
    parameters."""

    unused: list[str]
    zero: list[str]
    share: float


@dataclass(frozen=True)
class PreflightFacts:
    """What the pre-flight checks read (read-only). Fields of a step not reached yet, or whose measurement failed,
    are None; `found` holds the findings of the checks that ran before (the runner appends to it)."""

    x: torch.Tensor  # the training inputs (all rows of an in-memory split, else the first 20000)
    y: torch.Tensor
    loss_kind: str = "other"
    splits: Splits = field(default_factory=Splits)
    text_by_split: dict[str, Any] | None = None  # a text run's OOV / truncated shares per split (data report)
    feature_names: list[str] = field(default_factory=list)
    batch_size: int | None = None  # the training loader's
    ordered: bool = False  # the training loader does not shuffle (a sequential sampler, shuffle=False)
    loader_weights: bool = False  # the training loader samples rows by weight
    class_weighted: bool = False  # the loss weighs classes, or the sampler does
    found: list[Finding] = field(default_factory=list)
    # -- measure_model
    trace: Trace | None = None
    probe_rows: int = 0  # numel of the probe batch
    first_module: nn.Module | None = None  # the leaf module that ran first
    batchnorm: tuple[str, ...] = ()  # BatchNorm layers
    labels: Labels | None = None
    # -- measure_rest
    baseline: float | None = None  # the best constant prediction's loss (per training batch for a summed loss)
    zero_loss: float | None = None
    initial_loss: float | None = None
    sum_batch: int | None = None  # the loss sums over its rows: the training batch size
    broadcast: tuple[float, float] | None = None  # a regression loss as given and with the shapes aligned
    eval_difference: tuple[float, float] | None = None  # (largest difference, output scale) of two eval passes
    init: Init | None = None
    gradients: Gradients | None = None


# ------------------------------------------------------------------------------------------------ the steps


def measure_data(x: torch.Tensor, y: torch.Tensor, loss_fn: Any, kind: str, train: Any, val: Any, test: Any,
                 bundle: Any, sampler_weights: bool) -> PreflightFacts:
    """Step 1: the training tensors, the loaders and the data report (no model)."""
    report = getattr(bundle, "report", None) or {}
    weighted = getattr(loss_fn, "weight", None) is not None or getattr(loss_fn, "pos_weight", None) is not None
    bs = getattr(train, "batch_size", None)
    return PreflightFacts(x=x, y=y, loss_kind=kind, splits=Splits(val, test),
                          text_by_split=(report.get("text") or {}).get("by_split"),
                          feature_names=list(getattr(bundle, "feature_names", None) or []),
                          batch_size=bs if isinstance(bs, int) else None, ordered=_ordered(train),
                          loader_weights=getattr(train, "weights", None) is not None,
                          class_weighted=weighted or sampler_weights)


def _ordered(loader: Any) -> bool:
    """The loader hands out rows in stored order (it does not shuffle)."""
    inner = getattr(loader, "loader", None)  # gradwise's wrapper around a DataLoader
    inner = loader if inner is None else inner
    sampler = getattr(inner, "sampler", None)
    if sampler is None:
        return getattr(loader, "shuffle", True) is False  # gradwise's in-memory loader
    # a DataLoader: shuffle=False gives a SequentialSampler; gradwise's own sampler has .shuffle
    return isinstance(sampler, torch.utils.data.SequentialSampler) or getattr(sampler, "shuffle", None) is False


def measure_model(pf: PreflightFacts, model: nn.Module, trace: Trace, probe_x: Any, loss_fn: Any,
                  facts: Facts) -> PreflightFacts:
    """Step 2: what the traced forward pass shows (`facts`, kept for the later stages, is filled too)."""
    out = trace.output
    facts.layer_order = trace.layer_order
    facts.narrowest = narrowest(model, trace.layer_order)
    # one Linear layer and nothing else with weights: linear / logistic regression
    owner = trace.layer_order[0].rpartition(".")[0] if len(trace.layer_order) == 1 else None
    facts.linear_model = owner is not None and isinstance(dict(model.named_modules()).get(owner), nn.Linear)
    facts.unit_dims = trace.unit_dims
    facts.n_outputs = int(out.shape[-1]) if out.ndim > 1 else 1
    labels = _guarded(read_labels, pf.y, pf.loss_kind, tuple(out.shape), getattr(loss_fn, "ignore_index", None))
    facts.class_counts = labels.counts if labels is not None and labels.problem is None else None
    return replace(pf, trace=trace, probe_rows=probe_x.numel() if hasattr(probe_x, "numel") else 0,
                   first_module=model.get_submodule(trace.order[0]) if trace.order else None,
                   batchnorm=tuple(n for n, m in model.named_modules()
                                   if isinstance(m, nn.modules.batchnorm._BatchNorm)),
                   labels=labels)


def model_facts(model: nn.Module, facts: Facts) -> None:
    """The module types that make train and eval mode compute different functions (before the trace)."""
    facts.train_eval_modules = any(differs_in_eval(m) for m in model.modules())
    rates = [float(m.p) for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    facts.dropout_max = max(rates or [0.0])


def _guarded(fn: Callable[..., Any], *args: Any) -> Any:
    """A measurement that may fail on an odd model or loss: None then (the checks reading it skip)."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - a measurement's failure loses the checks that read it, nothing more
        return None


def measure_rest(pf: PreflightFacts, model: nn.Module, loss_fn: Any, forward: Any, device: torch.device,
                 probe: tuple[Any, Any], facts: Facts) -> tuple[PreflightFacts, torch.Tensor | None]:
    """Step 3 (inside the pre-flight's `preserved` block: the forward and backward passes leave no trace). Returns
    the facts and the initial loss on the probe batch (its graph: the first gradients are measured from it)."""
    x, y, kind, out = pf.x, pf.y, pf.loss_kind, pf.trace.output if pf.trace is not None else None
    assert out is not None
    if kind in CLASS_LOSSES:
        with contextlib.suppress(Exception):  # a measurement: without it, checks that read it skip
            nb = neighbour_agreement(x, y, getattr(loss_fn, "ignore_index", None))
            if nb is not None:
                facts.neighbour_agreement, facts.label_chance = nb
    ysub = y[subsample(len(y), 20000).to(y.device)].to(device)
    facts.baseline, facts.zero_loss = constant_losses(loss_fn, kind, out.detach(), ysub)
    vt = pf.splits.get("val")
    if vt is not None:
        vy = vt[1][subsample(len(vt[1]), 20000).to(vt[1].device)].to(device)
        facts.val_baseline, _ = constant_losses(loss_fn, kind, out.detach(), vy)
        facts.val_rows = len(vt[1])
    sum_batch = _guarded(summed_over, loss_fn, kind, out.detach(), ysub, pf.batch_size, facts.baseline)
    if sum_batch:  # the know-nothing losses on the scale of one training batch; evaluation sums over its own
        scale = sum_batch / len(ysub)
        facts.sum_reduced = True
        facts.baseline = facts.baseline * scale if facts.baseline is not None else None
        facts.zero_loss = facts.zero_loss * scale if facts.zero_loss is not None else None
        facts.val_baseline = None
    if kind in REGRESSION_LOSSES and y.is_floating_point():
        facts.target_rms = float(ysub.float().pow(2).mean().sqrt())
    broadcast = _guarded(broadcast_losses, loss_fn, out, y) if kind in REGRESSION_LOSSES and \
        y.is_floating_point() else None
    px, py = probe
    eval_difference = _guarded(eval_passes, model, px, forward)
    loss = initial_loss(loss_fn, out, py)
    facts.initial_loss = float(loss.detach()) * (sum_batch / max(len(py), 1) if sum_batch else 1) \
        if loss is not None else None
    if facts.initial_loss is not None and not math.isfinite(facts.initial_loss):
        facts.initial_loss = None
    init = _guarded(measure_init, model, pf.trace, facts.layer_order, px, forward)
    pf = replace(pf, baseline=facts.baseline, zero_loss=facts.zero_loss, initial_loss=facts.initial_loss,
                 sum_batch=sum_batch, broadcast=broadcast, eval_difference=eval_difference, init=init)
    return pf, loss


def summed_over(loss_fn: Any, kind: str, out: torch.Tensor, y: torch.Tensor, bs: int | None,
                baseline: float | None) -> int | None:
    """The training batch size when the loss sums over its rows (reduction='sum') instead of averaging: the same
    rows twice give a mean loss the same value and a sum twice it (whatever order the rows are in)."""
    if baseline is None or bs is None or len(y) < 4 or baseline <= 0:
        return None
    half = y[: min(len(y) // 2, 256)]  # a few hundred rows tell a mean from a sum as well as 20,000
    one, _ = constant_losses(loss_fn, kind, out, half)
    two, _ = constant_losses(loss_fn, kind, out, torch.cat([half, half]))
    if one is None or two is None or one <= 0 or not 1.9 <= two / one <= 2.1:
        return None
    return bs


def broadcast_losses(loss_fn: Any, out: torch.Tensor, y: torch.Tensor) -> tuple[float, float] | None:
    """A regression loss on the outputs and targets as given and with their shapes aligned, when the shapes differ
    but hold as many values ((N, 1) outputs against (N,) targets broadcast to an N x N comparison)."""
    n = min(len(out), len(y), 64)
    o, t = out[:n].detach().float(), y[:n].to(out.device).float()
    if o.shape == t.shape or o.numel() != t.numel():
        return None
    with torch.no_grad():
        return float(loss_fn(o, t)), float(loss_fn(o.reshape(t.shape), t))


def eval_passes(model: nn.Module, px: Any, forward: Any) -> tuple[float, float] | None:
    """(largest difference, output scale) between two eval-mode passes over the probe batch: both passes alike
    (grad mode included: some modules take another path without grad), one after the other so that any
    randomness draws fresh numbers; the RNG streams are put back afterwards."""
    outs = []
    with preserved(model), torch.no_grad():
        for _ in range(2):
            model.eval()
            outs.append(first_tensor(run_forward(model, px, forward)))
    out, again = outs
    if out is None or again is None or again.shape != out.shape or not again.is_floating_point():
        return None
    return float((again.float() - out.float()).abs().max()), float(out.float().abs().max()) or 1.0


def initial_loss(loss_fn: Any, out: torch.Tensor, y: Any) -> torch.Tensor | None:
    """The initialized model's loss on the probe batch (a tensor with its graph), or None."""
    try:
        loss = loss_fn(out, y)
    except Exception:  # noqa: BLE001 - the loop raises the real error with its own message
        return None
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        return None
    return loss


def measure_init(model: nn.Module, trace: Trace, layer_order: list[str], px: Any, forward: Any) -> Init:
    """The weights' scale, the signal through the layers and the ReLU units dead at initialization."""
    named = dict(model.named_parameters())
    # embedding tables are looked up, not multiplied: N(0, 1) rows are torch's default and fan_in means nothing
    tables = {f"{n}.weight" if n else "weight" for n, m in model.named_modules()
              if isinstance(m, nn.Embedding | nn.EmbeddingBag)}
    layers = []
    for name in layer_order or [n for n, p in named.items() if p.ndim >= 2]:
        w = named[name].detach().float()
        if w.ndim < 2 or w.shape[0] < 2 or name in tables:
            continue
        layers.append((name, float(w.std()), float(w.std()) * math.sqrt(fan_in(w)), bool((w.std(0) == 0).all()),
                       int(w.shape[0])))
    weights = [n for n in layer_order if n in named and named[n].ndim >= 2 and n not in tables]
    gains = {n: float(named[n].detach().float().std()) * math.sqrt(fan_in(named[n])) for n in weights[:-1]
             if named[n].numel() > 1}
    owner = [n.rsplit(".", 1)[0] if "." in n else "" for n in weights]
    rms = trace.input_rms
    stats = ActivationStats(model, trace.unit_dims)
    with torch.no_grad():
        _, acts = stats.measure(model, px, forward)
    dead = {k: float(v["dead"].float().mean()) for k, v in acts.items() if v["kind"] == "relu"}
    return Init(layers=layers, hidden_gains=gains,
                signal_first=next((rms[o] for o in owner if o in rms), None),
                signal_last=rms.get(owner[-1]) if owner else None,
                signal_second=next((rms[o] for o in owner[1:] if o in rms), None), dead=dead)


def measure_gradients(model: nn.Module, loss: torch.Tensor) -> Gradients | None:
    """The first backward pass (its gradients stay on the parameters until the pre-flight's `preserved` block puts
    the old ones back)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for _, p in params:
        p.grad = None
    try:
        loss.backward()
    except Exception:  # noqa: BLE001 - no gradient to judge
        return None
    total = sum(p.numel() for _, p in params)
    unused = [n for n, p in params if p.grad is None]
    zero = [n for n, p in params if p.grad is not None and not bool(p.grad.any())]
    dead = sum(p.numel() for n, p in params if n in unused or n in zero)
    return Gradients(unused, zero, dead / max(total, 1))

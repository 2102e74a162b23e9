"""Measurements the doctor takes on the model: a traced forward pass, gradient/update norms on sampled steps,
activation statistics on a fixed probe batch, and the search for the first module that produced a NaN/Inf.

Everything here leaves the model, the optimizer and the RNG streams as it found them: forward passes that are not
part of training run with the model's buffers (BatchNorm running statistics) saved and restored and with the RNG
state restored afterwards, so a run with the doctor on trains exactly like a run with it off.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from gradwise.train.preserve import preserved  # noqa: F401 - the doctor's modules import it from here

RELU_LIKE = (nn.ReLU, nn.ReLU6)  # units that output exactly 0 over a half-line: they can die
SIGMOID_LIKE = (nn.Sigmoid,)
TANH_LIKE = (nn.Tanh, nn.Hardtanh, nn.Softsign)  # Hardtanh at its default range only (see activation_modules)
NONLINEAR = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
             nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
             nn.LogSigmoid, nn.Tanhshrink, nn.Softmax, nn.LogSoftmax, nn.GLU, nn.Threshold, nn.MultiheadAttention,
             nn.RNNBase, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
             nn.LayerNorm, nn.GroupNorm)
AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Bilinear)
# modules that keep an affine map affine: stacking Linear -> (these) -> Linear still collapses to one linear map
PASS_AFFINE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten,
               nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
               nn.AdaptiveAvgPool2d)
CHANNEL_FIRST = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d,
                 nn.InstanceNorm2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
TRAIN_EVAL_DIFFERENT = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                        nn.AlphaDropout, nn.FeatureAlphaDropout, nn.modules.instancenorm._InstanceNorm)

# saturation: the local derivative is below 5% of its maximum (sigmoid: |z| > 4.35; tanh: |z| > 2.18)
SIGMOID_SAT = 0.0127
TANH_SAT = 0.975


def run_forward(model: nn.Module, x: Any, forward: Callable | None) -> Any:
    return forward(model, x) if forward is not None else model(x)


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The tensor a module returned (RNNs return (output, h_n): the output is what the next layer reads)."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, tuple | list) and obj:
        return first_tensor(obj[0])
    return None


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weight matrices / kernels (ndim >= 2) that train: the 'layers' whose gradients and updates we follow.

    Embedding tables are left out: only the rows of the tokens in a batch get a gradient, so their norms say
    nothing about the health of the gradient flow.
    """
    emb = {id(p) for m in model.modules() if isinstance(m, nn.Embedding | nn.EmbeddingBag) for p in m.parameters()}
    return [(n, p) for n, p in model.named_parameters() if p.ndim >= 2 and p.requires_grad and id(p) not in emb]


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    out = []
    for name, m in model.named_modules():
        if isinstance(m, RELU_LIKE):
            out.append((name, m, "relu"))
        elif isinstance(m, SIGMOID_LIKE):
            out.append((name, m, "sigmoid"))
        elif isinstance(m, nn.Hardtanh):  # saturated only where it clips: its gradient is 1 up to +-1
            if (m.min_val, m.max_val) == (-1, 1):  # (one clipping elsewhere is not measured)
                out.append((name, m, "hardtanh"))
        elif isinstance(m, TANH_LIKE):
            out.append((name, m, "tanh"))
        elif isinstance(m, nn.RNN):  # its output is the hidden state, i.e. the nonlinearity's output
            out.append((name, m, "relu" if m.nonlinearity == "relu" else "tanh"))
    return out


# --------------------------------------------------------------------------------------------- the trace


@dataclass
class Trace:
    """What one forward pass showed about the model's wiring."""

    output: torch.Tensor
    order: list[str]  # leaf modules in the order they ran
    final_module: tuple[str, nn.Module] | None  # the leaf module whose output is the model's output
    collapsed: list[tuple[str, str]]  # (Linear a, Linear b): b reads a's output with no nonlinearity between
    unit_dims: dict[str, int]  # activation module -> the dimension that indexes its units
    layer_order: list[str]  # weight parameter names in the order their modules ran
    input_rms: dict[str, float] = field(default_factory=dict)  # leaf module -> RMS of its (first, float) input
    input_numel: dict[str, int] = field(default_factory=dict)  # leaf module -> size of its first input


class _Tracer:
    """The forward hook of `trace_model` and what it records, module by module."""

    def __init__(self, model: nn.Module) -> None:
        self.leaves = {m: n for n, m in model.named_modules() if not list(m.children()) or isinstance(m, nn.RNNBase)}
        self.by_name = {n: m for m, n in self.leaves.items()}
        self.order: list[str] = []
        self.produced: dict[int, tuple[str, nn.Module]] = {}  # data_ptr of an output -> the module that produced it
        self.affine_src: dict[int, str] = {}  # data_ptr -> the Linear/Conv whose output this still is (affine-wise)
        self.collapsed: list[tuple[str, str]] = []
        self.unit_dims: dict[str, int] = {}
        self.input_rms: dict[str, float] = {}
        self.input_numel: dict[str, int] = {}
        self.last: list[tuple[str, nn.Module, torch.Tensor]] = []
        self.affine_node: dict[str, Any] = {}  # Linear/Conv -> the autograd node of its output

    def hook(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        name = self.leaves[module]
        if name not in self.order:
            self.order.append(name)
        out, inp = first_tensor(output), first_tensor(inputs)
        if name not in self.input_rms and inp is not None and inp.is_floating_point() and inp.numel():
            self.input_rms[name] = float(inp.detach().float().pow(2).mean().sqrt())
        if inp is not None:
            self.input_numel.setdefault(name, inp.numel())
        if out is None:
            return
        self._follow_affine(name, module, inp, out)
        if isinstance(module, RELU_LIKE + SIGMOID_LIKE + TANH_LIKE + (nn.RNN,)):
            prev = self.produced.get(inp.data_ptr()) if inp is not None else None
            if isinstance(module, nn.RNN) or out.ndim <= 2:
                self.unit_dims[name] = -1
            else:
                self.unit_dims[name] = 1 if prev is not None and isinstance(prev[1], CHANNEL_FIRST) else -1
        self.produced[out.data_ptr()] = (name, module)
        self.last.append((name, module, out))

    def _follow_affine(self, name: str, module: nn.Module, inp: torch.Tensor | None, out: torch.Tensor) -> None:
        """Track which Linear/Conv an output still is an affine function of; two in a row collapse."""
        src = self.affine_src.get(inp.data_ptr()) if inp is not None and inp.numel() else None
        # every output is kept alive in `last`, so a data_ptr names one tensor for the whole trace
        self.affine_src.pop(out.data_ptr(), None)
        if isinstance(module, AFFINE):
            if src is not None and src != name and (src, name) not in self.collapsed \
                    and not _factorizes(self.by_name[src], module):
                self.collapsed.append((src, name))
            self.affine_src[out.data_ptr()] = name
            self.affine_node.setdefault(name, out.grad_fn)
        elif isinstance(module, PASS_AFFINE) and src is not None:
            self.affine_src[out.data_ptr()] = src

    def trace(self, output: torch.Tensor) -> Trace:
        """The Trace of a forward pass that returned `output`."""
        final = None
        for name, module, out in reversed(self.last):
            if out.data_ptr() == output.data_ptr() and out.numel() == output.numel():
                final = (name, module)
                break
        params_of = {n: [pn for pn, p in m.named_parameters(prefix=n) if p.ndim >= 2] for m, n in self.leaves.items()}
        layer_order = [pn for n in self.order for pn in params_of.get(n, [])]
        collapsed = self.collapsed
        if collapsed and output.grad_fn is not None:
            # a layer whose output is also read elsewhere (a residual stream: h = inp(x); h + block(h)) adds capacity
            # even when one of its readers is linear: only a pure chain collapses
            uses = _node_uses(output.grad_fn)
            collapsed = [(a, b) for a, b in collapsed if uses.get(self.affine_node.get(a), 0) <= 1]
        return Trace(output, self.order, final, collapsed, self.unit_dims, layer_order, self.input_rms,
                     self.input_numel)


def trace_model(model: nn.Module, x: Any, forward: Callable | None) -> Trace:
    """One forward pass with hooks on every leaf module (the caller chooses grad mode and restores state)."""
    tracer = _Tracer(model)
    handles = [m.register_forward_hook(tracer.hook) for m in tracer.leaves]
    try:
        result = run_forward(model, x, forward)
    finally:
        for h in handles:
            h.remove()
    output = first_tensor(result)
    if output is None:
        raise TypeError("the model's forward returned no tensor")
    return tracer.trace(output)


def _factorizes(a: nn.Module, b: nn.Module) -> bool:
    """Two affine layers in a row that are a deliberate factorization of one map, not a forgotten activation: a
    grouped/depthwise conv followed by another (a depthwise-separable conv), or a width below both ends (a low-rank
    map: it has fewer parameters than the one layer it equals, and its rank is the point)."""
    if getattr(a, "groups", 1) > 1:
        return True
    mid = getattr(a, "out_features", getattr(a, "out_channels", None))
    ends = (getattr(a, "in_features", getattr(a, "in_channels", None)),
            getattr(b, "out_features", getattr(b, "out_channels", None)))
    return mid is not None and None not in ends and mid < min(ends)  # type: ignore[type-var]


def last_op(t: torch.Tensor) -> str | None:
    """The name of the autograd op that made `t`, looking through ops that only change its shape (view, flatten,
    squeeze, permute, ...): "SigmoidBackward0" for a model ending in sigmoid then flatten. None without a graph."""
    node = t.grad_fn
    while node is not None and type(node).__name__.startswith(_SHAPE_OPS):
        node = next((n for n, _ in node.next_functions if n is not None), None)
    return type(node).__name__ if node is not None else None


_SHAPE_OPS = ("View", "UnsafeView", "Reshape", "Squeeze", "Unsqueeze", "Permute", "Transpose", "TBackward", "Clone",
              "Expand", "Select", "Slice", "AsStrided", "ToCopy")
# ops whose output is an affine function of their inputs (a logit): an output made by one is no sigmoid, whatever
# its values; any other op (clamp, reciprocal, ...) leaves the question to the values
LOGIT_OPS = ("Addmm", "Mm", "Bmm", "Linear", "Convolution", "MkldnnConvolution", "CudnnConvolution", "Add", "Sub",
             "Mul", "Matmul")


def _node_uses(root: Any) -> dict[Any, int]:
    """How many autograd nodes read each node's output, over the graph that produced `root`."""
    uses: dict[Any, int] = {}
    seen = {root}
    stack = [root]
    while stack:
        node = stack.pop()
        for nxt, _ in getattr(node, "next_functions", ()):
            if nxt is None:
                continue
            uses[nxt] = uses.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return uses


# --------------------------------------------------------------------------------------------- activations


def _other_dims(t: torch.Tensor, dim: int) -> tuple[int, ...]:
    """Every dimension but the unit one counts as a sample (batch, positions, time): reduce over those in place
    (no transposed copy of a large conv activation)."""
    unit = dim % t.ndim
    return tuple(d for d in range(t.ndim) if d != unit)


class ActivationStats:
    """Per-unit statistics of every ReLU/sigmoid/tanh module on one forward pass."""

    def __init__(self, model: nn.Module, unit_dims: dict[str, int]) -> None:
        self.modules = activation_modules(model)
        self.unit_dims = unit_dims
        self.default_dim = 1 if any(isinstance(m, CHANNEL_FIRST) for m in model.modules()) else -1
        self.stats: dict[str, dict[str, Any]] = {}
        self._calls: dict[str, int] = {}
        # whether the forward calls activations as functions (F.relu in forward()); None until the first measure.
        # The probe batch and eval mode are the same every time, so is the path through forward(): when the first
        # pass found none, later passes skip the function mode and the per-module hooks that name the callers.
        self.functional: bool | None = None

    def _hook(self, name: str, kind: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            out = first_tensor(output)
            if out is None or out.numel() == 0:
                return
            calls = self._calls[name] = self._calls.get(name, 0) + 1
            label = f"{name or 'model'} ({type(module).__name__})"  # e.g. "3 (ReLU)" for a Sequential index
            key = label if calls == 1 else f"{label}#{calls}"  # one module used at several depths
            out = out.detach()
            if out.ndim == 1:
                out = out.unsqueeze(1)
            dim = self.unit_dims.get(name, -1 if out.ndim <= 2 else self.default_dim)
            dims = _other_dims(out, dim)
            units = out.shape[dim]
            if kind == "relu":
                self.stats[key] = {"kind": kind, "units": units, "dead": out.amax(dim=dims) <= 0}  # never fires
            else:
                if kind == "sigmoid":
                    sat = (out < SIGMOID_SAT) | (out > 1 - SIGMOID_SAT)
                else:
                    sat = out.abs() >= 1 if kind == "hardtanh" else out.abs() > TANH_SAT
                self.stats[key] = {"kind": kind, "units": units, "saturated": sat.float().mean(dim=dims)}
        return hook

    def measure(self, model: nn.Module, x: Any, forward: Callable | None) -> tuple[Any, dict[str, dict[str, Any]]]:
        self.stats, self._calls = {}, {}
        handles = [m.register_forward_hook(self._hook(n, k)) for n, m, k in self.modules]
        if self.functional is False:
            try:
                return run_forward(model, x, forward), self.stats
            finally:
                for h in handles:
                    h.remove()
        # activations called as functions (F.relu(x) in a forward) have no module to hook: a function mode sees
        # them, and a stack of the modules being run names the module whose forward called them
        stack: list[tuple[str, nn.Module]] = []
        finished = [""]  # the module that finished last: usually the one whose output the activation reads

        def enter(module: nn.Module, args: Any, name: str) -> None:
            stack.append((name, module))

        def leave(module: nn.Module, args: Any, name: str) -> None:  # returns None: the output is left alone
            if stack:
                stack.pop()
            finished[0] = name

        for name, m in model.named_modules():
            handles.append(m.register_forward_pre_hook(functools.partial(_call_with_name, enter, name)))
            handles.append(m.register_forward_hook(functools.partial(_call_with_name, leave, name)))
        self.functional = False  # record_functional sets it
        try:
            with _FunctionalActivations(self, stack, finished):
                out = run_forward(model, x, forward)
        except BaseException:
            self.functional = None  # judge again next time
            raise
        finally:
            for h in handles:
                h.remove()
        return out, self.stats

    def record_functional(self, after: str, kind: str, label: str, out: torch.Tensor) -> None:
        """Statistics of one functional activation call, keyed by what it follows: 'F.relu after fc1'."""
        self.functional = True
        key = f"{label} after {after}" if after else f"{label} (model input)"
        calls = self._calls[key] = self._calls.get(key, 0) + 1
        key = key if calls == 1 else f"{key}#{calls}"
        out = out.detach()
        if out.numel() == 0:
            return
        if out.ndim == 1:
            out = out.unsqueeze(1)
        dim = -1 if out.ndim <= 2 else self.default_dim
        dims, units = _other_dims(out, dim), out.shape[dim]
        if kind == "relu":
            self.stats[key] = {"kind": kind, "units": units, "dead": out.amax(dim=dims) <= 0}
        else:
            sat = (out < SIGMOID_SAT) | (out > 1 - SIGMOID_SAT) if kind == "sigmoid" else out.abs() > TANH_SAT
            self.stats[key] = {"kind": kind, "units": units, "saturated": sat.float().mean(dim=dims)}


def _call_with_name(fn: Callable, name: str, module: nn.Module, args: Any, *output: Any) -> None:
    fn(module, args, name)


# the functional forms of the activations above: (kind, label used in findings)
_FUNCTIONAL: dict[Any, tuple[str, str]] = {
    F.relu: ("relu", "F.relu"), torch.relu: ("relu", "torch.relu"), torch.Tensor.relu: ("relu", "Tensor.relu"),
    F.relu6: ("relu", "F.relu6"), F.relu_: ("relu", "F.relu_"), torch.relu_: ("relu", "torch.relu_"),
    torch.Tensor.relu_: ("relu", "Tensor.relu_"),
    torch.sigmoid: ("sigmoid", "torch.sigmoid"), F.sigmoid: ("sigmoid", "F.sigmoid"),
    torch.Tensor.sigmoid: ("sigmoid", "Tensor.sigmoid"),
    torch.tanh: ("tanh", "torch.tanh"), F.tanh: ("tanh", "F.tanh"), torch.Tensor.tanh: ("tanh", "Tensor.tanh"),
}
_ACTIVATION_MODULES = RELU_LIKE + SIGMOID_LIKE + TANH_LIKE


class _FunctionalActivations(TorchFunctionMode):
    """Records functional activation calls made outside activation modules (an nn.ReLU calls F.relu itself: its
    module hook has measured it already)."""

    def __init__(self, stats: ActivationStats, stack: list[tuple[str, nn.Module]], finished: list[str]) -> None:
        super().__init__()
        self.owner = stats
        self.stack = stack
        self.finished = finished

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        found = _FUNCTIONAL.get(func)
        if found is not None and isinstance(out, torch.Tensor) and out.is_floating_point():
            owner = self.stack[-1][1] if self.stack else None
            if not isinstance(owner, _ACTIVATION_MODULES):
                with contextlib.suppress(Exception):  # a probe must never break the forward pass it watches
                    self.owner.record_functional(self.finished[0], found[0], found[1], out)
        return out


# --------------------------------------------------------------------------------------------- gradients


@dataclass
class ProbeRecord:
    """Gradient and update statistics of one sampled optimizer step."""

    step: int
    epoch: int
    lr: float
    grad_norm: float  # all gradients, before clipping
    grad: dict[str, float] = field(default_factory=dict)  # per weight matrix: ‖g‖
    weight: dict[str, float] = field(default_factory=dict)  # ‖W‖ before the step
    update: dict[str, float] = field(default_factory=dict)  # ‖ΔW‖ of the step
    reg_ratio: float | None = None  # ‖regularization force‖ / ‖data force‖ (None: no regularization)
    loss: float | None = None
    peak_lr: float | None = None  # the schedule's peak LR (initial_lr / max_lr of the group) when it has one
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)  # derived ratios (rules.py)

    def rel_grad(self, name: str) -> float:
        return self.grad[name] / max(self.weight[name], 1e-12)

    def update_ratio(self, name: str) -> float:
        return self.update.get(name, 0.0) / max(self.weight[name], 1e-12)

    def to_row(self) -> dict[str, Any]:
        """The record as one JSON-ready row of DIR/probes.jsonl (the numbers already measured, nothing more)."""
        def num(v: float | None) -> float | str | None:
            return v if v is None or math.isfinite(v) else str(v)

        layers = {n: {"grad": num(g), "weight": num(self.weight.get(n)),
                      "update_ratio": num(self.update_ratio(n)) if n in self.update and n in self.weight else None}
                  for n, g in self.grad.items()}
        return {"kind": "step", "step": self.step, "epoch": self.epoch, "lr": self.lr, "grad_norm": num(self.grad_norm),
                "loss": num(self.loss), "reg_ratio": num(self.reg_ratio), "layers": layers}


def _norms(tensors: list[torch.Tensor]) -> list[float]:
    if not tensors:
        return []
    return torch.stack([n.float() for n in torch._foreach_norm(tensors)]).cpu().tolist()


class StepProbe:
    """Gradient norms (in on_after_backward) and update norms (in on_batch_end) of one optimizer step."""

    def __init__(self, layers: list[tuple[str, nn.Parameter]], decayed_penalty: set[str], l1: float, l2: float
                 ) -> None:
        self.layers = layers
        self.penalized = decayed_penalty  # names the explicit L1/L2 penalty applies to
        self.l1, self.l2 = l1, l2
        self.record: ProbeRecord | None = None
        self._before: list[torch.Tensor] = []
        self._decoupled: list[tuple[int, float]] = []  # (index into the probed layers, lr·weight_decay)

    def after_backward(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, epoch: int) -> None:
        grads_all = [p.grad for p in model.parameters() if p.grad is not None]
        named = [(n, p) for n, p in self.layers if p.grad is not None]
        # one fused norm and one host read for all three lists (every gradient, the probed layers' gradients and
        # weights): three separate reads cost three syncs and three stacks per probe
        at = {id(gr): i for i, gr in enumerate(grads_all)}
        norms = _norms(grads_all + [p.detach() for _, p in named])
        total, w = norms[:len(grads_all)], norms[len(grads_all):]
        g = [total[at[id(p.grad)]] if id(p.grad) in at else 0.0 for _, p in named]
        grad_norm = float(sum(v * v for v in total) ** 0.5) if total else 0.0
        group0 = optimizer.param_groups[0]
        lr = float(group0["lr"])
        # a schedule keeps its peak in the group (LambdaLR & co: initial_lr; OneCycleLR: max_lr): the LR rules
        # need it to tell warmup steps from full-LR steps
        peaks = [float(v) for v in (group0.get("initial_lr"), group0.get("max_lr")) if isinstance(v, int | float)]
        self.record = ProbeRecord(step, epoch, lr, grad_norm, {n: v for (n, _), v in zip(named, g, strict=True)},
                                  {n: v for (n, _), v in zip(named, w, strict=True)},
                                  peak_lr=max(peaks) if peaks else None)
        self._named = named
        self._before = [p.detach().clone() for _, p in named]
        # the regularization force against the data force, in the units the optimizer applies them: coupled weight
        # decay and the explicit L1/L2 penalty as gradients, decoupled (AdamW) decay as a share of the step
        group_of = {id(p): grp for grp in optimizer.param_groups for p in grp["params"]}
        decoupled_opt = isinstance(optimizer, torch.optim.AdamW)
        reg_sq = data_sq = 0.0
        coupled = False
        self._decoupled = []
        for i, (n, p) in enumerate(named):
            grp = group_of.get(id(p))
            if grp is None:
                continue
            wd = float(grp.get("weight_decay", 0.0) or 0.0)
            explicit = n in self.penalized and bool(self.l1 or self.l2)
            decoupled = decoupled_opt or bool(grp.get("decoupled_weight_decay"))
            if wd and decoupled:
                self._decoupled.append((i, float(grp["lr"]) * wd))
            if not (explicit or (wd and not decoupled)):
                continue
            coupled = True
            pd, g = p.detach().float(), p.grad.detach().float()
            reg = self.l2 * pd + self.l1 * pd.sign() if explicit else torch.zeros_like(pd)
            data = g - reg  # the penalty's backward went into .grad together with the data gradient
            if wd and not decoupled:
                reg = reg + wd * pd
            reg_sq += float(reg.pow(2).sum())
            data_sq += float(data.pow(2).sum())
        self._grad_ratio = (reg_sq ** 0.5) / max(data_sq ** 0.5, 1e-12) if coupled else None

    def after_step(self) -> ProbeRecord | None:
        rec = self.record
        if rec is None:
            return None
        deltas = torch._foreach_sub([p.detach() for _, p in self._named], self._before) if self._named else []
        parts = list(deltas)
        if self._decoupled:  # AdamW: decay lr·wd·W against the rest of the step, in the same fused norm and read
            before = [self._before[i].float() for i, _ in self._decoupled]
            decays = torch._foreach_mul(before, [shrink for _, shrink in self._decoupled])
            rests = torch._foreach_add([deltas[i].float() for i, _ in self._decoupled], decays)
            parts += decays + rests
        norms = _norms(parts)
        for (n, _), v in zip(self._named, norms, strict=False):
            rec.update[n] = v
        ratios = [r for r in (self._grad_ratio,) if r is not None]
        if self._decoupled:
            k = len(self._decoupled)
            decay_n, rest_n = norms[len(deltas):len(deltas) + k], norms[len(deltas) + k:]
            decay_sq, rest_sq = sum(v * v for v in decay_n), sum(v * v for v in rest_n)
            ratios.append(decay_sq ** 0.5 / max(rest_sq ** 0.5, 1e-12))
        rec.reg_ratio = max(ratios) if ratios else None
        self._before, self._decoupled, self.record = [], [], None
        return rec


# --------------------------------------------------------------------------------------------- NaN hunt


def nonfinite_parameters(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]


def locate_nonfinite(model: nn.Module, x: Any, forward: Callable | None) -> dict[str, Any]:
    """Re-run the forward pass of `x` with hooks and name the first module whose output is not finite while its
    input was. Runs in the model's current mode (BatchNorm batch statistics can be the culprit) and restores its
    buffers and the RNG streams, so training goes on exactly as before."""
    report: dict[str, Any] = {}
    if isinstance(x, torch.Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        report["first_nonfinite"] = "the input batch itself"
        return report
    found: list[tuple[str, str, str]] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        if found:
            return
        out = first_tensor(output)
        if out is None or not out.is_floating_point() or bool(torch.isfinite(out).all()):
            return
        inp = first_tensor(inputs)
        if inp is not None and inp.is_floating_point() and not bool(torch.isfinite(inp).all()):
            return  # it only passed on a NaN from before
        bad = [pn for pn, p in module.named_parameters(recurse=False) if not bool(torch.isfinite(p).all())]
        found.append((names[module] or type(module).__name__, type(module).__name__,
                      "its parameters " + ", ".join(bad) + " are non-finite" if bad else
                      f"finite input (max |x| {float(inp.abs().max()) if inp is not None else float('nan'):.3g})"))

    leaves = [m for m in model.modules() if not list(m.children()) or isinstance(m, nn.RNNBase)]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with preserved(model), torch.no_grad():
            run_forward(model, x, forward)
    except Exception as exc:  # a forward that raises on NaN input must not take the guard down with it
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for h in handles:
            h.remove()
    if found:
        report["first_nonfinite"] = f"{found[0][0]} ({found[0][1]})"
        report["detail"] = found[0][2]
    else:
        report["first_nonfinite"] = "the loss function (the model's outputs were finite)"
    bad = nonfinite_parameters(model)
    if bad:
        report["nonfinite_parameters"] = bad[:8]
    return report

"""Pre-flight checks: the data, the model/loss wiring, the initialization and the first gradients, before step 1.

Each check compares a scale-free quantity with a reference that holds for any healthy run:
the initial loss against the loss of an all-zero output (ln C for C classes), the weight scale against the
He/Glorot/LeCun family (std·√fan_in between ~0.5 and ~1.5), the class counts against each other, the validation
rows against the training rows. Nothing here changes the model, the optimizer or the RNG streams
(see `probes.preserved`).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from gradwise.doctor.findings import Finding
from gradwise.doctor.probes import (
    LOGIT_OPS,
    TRAIN_EVAL_DIFFERENT,
    ActivationStats,
    Trace,
    first_tensor,
    last_op,
    preserved,
    run_forward,
    trace_model,
)
from gradwise.doctor.text_checks import text_split_findings
from gradwise.doctor.thresholds import DEFAULT, Thresholds
from gradwise.train.checkpoint import rng_state, set_rng_state

PROBE_ROWS = DEFAULT.probe_rows  # the fixed batch of training rows every probe runs on

_CE = ("ce", "nll", "hinge")


@dataclass
class Facts:
    """What the doctor learned before training, kept in checkpoints so a resumed run judges by the same rules."""

    loss_kind: str = "other"  # ce | nll | hinge | bce | bce_prob | mse | mae | huber | other
    task: str | None = None
    n_outputs: int | None = None
    class_counts: list[int] | None = None
    baseline: float | None = None  # loss of the best constant prediction on the training targets
    zero_loss: float | None = None  # loss of an all-zero output: ln C for cross-entropy, E[y²] for MSE
    initial_loss: float | None = None  # loss of the initialized model on the probe batch
    val_baseline: float | None = None  # the best constant prediction's loss on the validation targets
    init_abnormal: bool = False  # the weights' scale is far off (then update/weight ratios mean little)
    target_rms: float | None = None  # RMS of regression targets (outputs start near 0: large targets = big grads)
    layer_order: list[str] = field(default_factory=list)  # weight matrices in the order their modules run
    unit_dims: dict[str, int] = field(default_factory=dict)
    train_eval_modules: bool = False  # BatchNorm/Dropout: train and eval mode compute different functions
    dropout_max: float = 0.0
    # the narrowest hidden layer (a Linear/Conv before the output layer): its name and width
    narrowest: tuple[str, int] | None = None
    # how often a training row's nearest neighbour in input space has the same label, and how often two random
    # rows do (chance): labels that depend on the inputs score well above chance on almost any real data
    neighbour_agreement: float | None = None
    label_chance: float | None = None
    val_rows: int | None = None  # rows in the validation split
    linear_model: bool = False  # a single Linear layer (linear / logistic regression)
    sum_reduced: bool = False  # the loss sums over its rows: validation losses (other batch sizes) do not compare

    @property
    def scale(self) -> float | None:
        """The loss scale every curve rule is relative to: the know-nothing loss of this task and data."""
        for v in (self.baseline, self.zero_loss, self.initial_loss):
            if v is not None and math.isfinite(v) and v > 0:
                return v
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Facts:
        known = set(cls.__dataclass_fields__)
        facts = cls(**{k: v for k, v in d.items() if k in known})
        if facts.narrowest is not None:  # JSON has no tuples
            facts.narrowest = (str(facts.narrowest[0]), int(facts.narrowest[1]))
        return facts


def loss_kind(loss_fn: Any) -> str:
    name = getattr(loss_fn, "name", None) or getattr(loss_fn, "__name__", None) or ""
    by_name = {"cross_entropy": "ce", "nll": "nll", "nll_loss": "nll", "hinge": "hinge", "multi_margin_loss": "hinge",
               "bce_with_logits": "bce", "binary_cross_entropy_with_logits": "bce",
               "binary_cross_entropy": "bce_prob", "mse": "mse", "mse_loss": "mse", "mae": "mae", "l1_loss": "mae",
               "huber": "huber", "huber_loss": "huber", "smooth_l1_loss": "huber"}
    if name in by_name:
        return by_name[name]
    for cls, kind in ((nn.CrossEntropyLoss, "ce"), (nn.NLLLoss, "nll"), (nn.MultiMarginLoss, "hinge"),
                      (nn.BCEWithLogitsLoss, "bce"), (nn.BCELoss, "bce_prob"), (nn.MSELoss, "mse"),
                      (nn.L1Loss, "mae"), (nn.HuberLoss, "huber"), (nn.SmoothL1Loss, "huber")):
        if isinstance(loss_fn, cls):
            return kind
    return "other"


# --------------------------------------------------------------------------------------------- data access


def split_tensors(loader: Any, max_rows: int = 20000) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(x, y) of a split: the tensors of an in-memory loader, else the first batches (RNG streams restored)."""
    if loader is None:
        return None
    x, y = getattr(loader, "x", None), getattr(loader, "y", None)
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        # uint8 image splits: the checks judge the model's inputs (a float copy, for the pre-flight only)
        inputs = getattr(loader, "inputs", None)
        return (inputs(x) if callable(inputs) else x), y
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    n = 0
    state = rng_state()  # a shuffling DataLoader draws its order from the global RNG
    try:
        for batch in loader:
            bx, by = batch[0], batch[1]
            if not isinstance(bx, torch.Tensor) or not isinstance(by, torch.Tensor):
                return None
            xs.append(bx)
            ys.append(by)
            n += len(by)
            if n >= max_rows:
                break
    except Exception:
        return None
    finally:
        set_rng_state(state)
    if not xs:
        return None
    try:
        return torch.cat(xs), torch.cat(ys)
    except RuntimeError:  # ragged batches (e.g. variable-length sequences)
        return xs[0], ys[0]


def subsample(n: int, k: int) -> torch.Tensor:
    """k row indices out of n, the same every time and without touching the global RNG."""
    if n <= k:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(20240531))[:k].sort().values


# --------------------------------------------------------------------------------------------- helpers


def _narrowest(model: nn.Module, layer_order: list[str]) -> tuple[str, int] | None:
    """The hidden Linear/Conv layer with the fewest output units (the output layer itself excluded)."""
    owners = {f"{m_name}.weight" if m_name else "weight": m for m_name, m in model.named_modules()}
    mods = [(name, owners.get(name)) for name in layer_order[:-1]]
    # only the Linear layers after the last convolution: a conv's channels are not the classifier's width (LeNet's
    # 6-channel conv1 is no bottleneck), and layers inside conv blocks (squeeze-and-excitation) are side paths
    last_conv = max((i for i, (_, m) in enumerate(mods) if isinstance(m, nn.modules.conv._ConvNd)), default=-1)
    widths = [(name.removesuffix(".weight"), m.out_features) for name, m in mods[last_conv + 1:]
              if isinstance(m, nn.Linear)]
    return min(widths, key=lambda w: w[1]) if widths else None


def _classes(y: torch.Tensor) -> torch.Tensor | None:
    """Integer class indices (1-D), or None when y is not a vector of whole numbers."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.numel() == 0:
        return None
    if y.is_floating_point() and (not bool(torch.isfinite(y).all()) or not bool((y == y.round()).all())):
        return None
    return y.long()


def constant_losses(loss_fn: Any, kind: str, out: torch.Tensor, y: torch.Tensor) -> tuple[float | None, float | None]:
    """(baseline, zero_loss): the loss of the best constant prediction and of an all-zero output."""
    shape = (len(y), *out.shape[1:])
    dev = out.device
    y = y.to(dev)
    base: torch.Tensor | None = None
    zero = torch.zeros(shape, device=dev, dtype=torch.float32)
    width = out.shape[-1] if out.ndim > 1 else 1
    if kind in _CE and out.ndim == 2:
        cls = _classes(y)
        if cls is not None and int(cls.min()) >= 0 and int(cls.max()) < width:
            p = torch.bincount(cls.cpu(), minlength=width).float().clamp_min(0.5)
            p = (p / p.sum()).log().to(dev)
            base = p.expand(shape).contiguous()
        if kind == "nll":
            zero = zero - math.log(width)  # uniform log-probabilities
    elif kind in ("bce", "bce_prob"):
        p = y.float().reshape(len(y), -1).mean(0).clamp(1e-4, 1 - 1e-4)
        c = (p.log() - (1 - p).log()) if kind == "bce" else p
        base = c.reshape(out.shape[1:]).expand(shape).contiguous() if c.numel() == math.prod(out.shape[1:]) else None
        if kind == "bce_prob":
            zero = zero + 0.5
    elif kind in ("mse", "mae", "huber") and y.is_floating_point():
        yy = y.float().reshape(len(y), -1)
        c = yy.median(0).values if kind == "mae" else yy.mean(0)
        if c.numel() == math.prod(out.shape[1:]):
            base = c.reshape(out.shape[1:]).expand(shape).contiguous()
    results: list[float | None] = []
    for pred in (base, zero):
        if pred is None:
            results.append(None)
            continue
        try:
            with torch.no_grad():
                v = float(loss_fn(pred, y))
            results.append(v if math.isfinite(v) else None)
        except Exception:
            results.append(None)
    return results[0], results[1]


def _differs_in_eval(m: nn.Module) -> bool:
    """BatchNorm/Dropout, or a module of the user's own whose forward() reads self.training."""
    if isinstance(m, TRAIN_EVAL_DIFFERENT):
        return True
    cls = type(m)
    if cls.__module__.startswith("torch."):
        return False
    try:
        return "training" in inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return False


def _fan_in(w: torch.Tensor) -> int:
    return int(w[0].numel()) if w.ndim >= 2 else 1


# ------------------------------------------------------------------------------ data checks, once per data set

# The checks that read the splits only, not the model, loss function or optimizer (plus measure_neighbours, a
# measurement of the data, and the targets' know-nothing losses, keyed by the loss config too): a tuning study's
# trials train on the same prepared tensors, so their verdicts are the same in every trial. Inside
# `reuse_data_checks`, they run once per data set and later runs replay their findings.
DATA_CHECKS = frozenset({"nonfinite_data", "text_splits", "leakage", "near_copies", "split_scale", "label_column",
                         "split_structure", "neighbours", "baselines"})


class DataChecks:
    """The data checks' verdicts on one set of splits (the last one seen), kept across runs on the same tensors."""

    def __init__(self) -> None:
        self._tensors: tuple[Any, ...] = ()  # held, so that another data set cannot come back under the same ids
        self._other: tuple[Any, ...] = ()
        self._verdicts: dict[str, tuple[list[dict[str, Any]], bool, dict[str, Any]]] = {}
        self.computed = 0  # data checks run on the data (a study: each once per worker process and data set)
        self.replayed = 0  # data checks answered from an earlier run on the same data

    def _match(self, tensors: tuple[Any, ...], other: tuple[Any, ...]) -> None:
        same = len(tensors) == len(self._tensors) and all(a is b for a, b in zip(tensors, self._tensors, strict=True))
        if not (same and other == self._other):
            self._tensors, self._other, self._verdicts = tensors, other, {}

    def get(self, key: tuple[tuple[Any, ...], tuple[Any, ...]], name: str
            ) -> tuple[list[dict[str, Any]], bool, dict[str, Any]] | None:
        self._match(*key)
        return self._verdicts.get(name)

    def put(self, key: tuple[tuple[Any, ...], tuple[Any, ...]], name: str, findings: list[Finding], halt: bool,
            facts: dict[str, Any]) -> None:
        self._match(*key)
        self._verdicts[name] = ([f.to_dict() for f in findings], halt, facts)
        self.computed += 1


_DATA_CHECKS: contextvars.ContextVar[DataChecks | None] = contextvars.ContextVar("gradwise_data_checks",
                                                                                  default=None)


@contextlib.contextmanager
def reuse_data_checks(cache: DataChecks) -> Iterator[DataChecks]:
    """Within the block, the pre-flight's data checks (DATA_CHECKS) on splits it has seen run once: runs on the same
    in-memory tensors (gradwise tune's trials, data prepared once per process) get the first run's findings."""
    token = _DATA_CHECKS.set(cache)
    try:
        yield cache
    finally:
        _DATA_CHECKS.reset(token)


# --------------------------------------------------------------------------------------------- checks


class Preflight:
    """Runs every pre-flight check; `findings` holds what they found and `facts` what later rules need."""

    def __init__(self, model: nn.Module, loss_fn: Any, train: Any, val: Any, test: Any, device: torch.device,
                 forward: Any = None, task: str | None = None, bundle: Any = None, sampler_weights: bool = False,
                 thresholds: Thresholds = DEFAULT, disabled: tuple[str, ...] = (), loss_key: Any = None) -> None:
        self.t = thresholds
        self.loss_key = loss_key  # what makes this loss function (its config): equal keys, equal losses
        self.disabled = disabled
        self.model, self.loss_fn, self.device, self.forward = model, loss_fn, device, forward
        self.train, self.val, self.test = train, val, test
        self.bundle = bundle
        self.sampler_weights = sampler_weights
        self.facts = Facts(loss_kind=loss_kind(loss_fn), task=task)
        self.findings: list[Finding] = []
        self._splits: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor] | None] = {}
        self.probe_x: Any = None  # the fixed probe batch (training rows) later epoch-end checks reuse
        self.probe_y: Any = None
        self.halt = False  # a check found something that makes training pointless or impossible
        self._sum_rows = 0  # the loss sums over its rows: the training batch size (0: a mean)

    def _run(self, name: str, *args: Any) -> None:
        """Run the declared check `name` (doctor/checks/preflight.py) the one way every check runs: skipped when
        switched off (doctor.disable), and guarded -- its failure loses that check's verdict, never the training."""
        from gradwise.doctor import checks

        if name in self.disabled:
            return
        method = checks.REGISTRY[name].runs_in.removeprefix("Preflight.")
        self._once(name, lambda: checks.guarded(name, getattr(self, method), *args))

    def _data_key(self) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
        """What a data check's verdict depends on: the splits' tensors (by identity: in-memory loaders only), the
        loss kind, thresholds and switched-off checks. None: the data is not in memory, so nothing is reused. (The
        bundle is a fresh view per run of the same preparation: its tensors say which preparation it is.)"""
        tensors: list[Any] = []
        for loader in (self.train, self.val, self.test):
            if loader is None:
                tensors += [None, None]
                continue
            x, y = getattr(loader, "x", None), getattr(loader, "y", None)
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
                return None
            tensors += [x, y]
        return tuple(tensors), (self.facts.loss_kind, self.t, tuple(sorted(self.disabled)), self.device)

    def _once(self, name: str, run: Any, facts: tuple[str, ...] = (), extra: tuple[Any, ...] = ()) -> None:
        """Run a data check, or replay its verdict from an earlier run on the same data (reuse_data_checks): its
        findings (copies: a run adapts its findings' fixes to its own config), halt decision and `facts` fields.
        ``extra``: what else the verdict depends on (the loss, for the know-nothing losses)."""
        cache = _DATA_CHECKS.get() if name in DATA_CHECKS else None
        key = self._data_key() if cache is not None else None
        if cache is None or key is None:
            run()
            return
        name = f"{name}:{extra!r}" if extra else name
        kept = cache.get(key, name)
        if kept is not None:
            found, halt, values = kept
            self.findings += [Finding.from_dict(d) for d in found]
            self.halt = self.halt or halt
            for k, v in values.items():
                setattr(self.facts, k, v)
            cache.replayed += 1
            return
        before, halted = len(self.findings), self.halt
        run()
        cache.put(key, name, self.findings[before:], self.halt and not halted,
                  {k: getattr(self.facts, k) for k in facts})

    def add(self, code: str, severity: str, message: str, evidence: dict[str, Any], causes: list[str],
            fixes: list[str]) -> None:
        self.findings.append(Finding(code, severity, message, evidence, causes, fixes, step=0, epoch=0))  # type: ignore[arg-type]

    def split(self, loader: Any, max_rows: int = 20000) -> tuple[torch.Tensor, torch.Tensor] | None:
        """split_tensors, read once per split: several checks look at the validation rows, and a Dataset loader
        would be iterated again for each."""
        key = (id(loader), max_rows)
        if key not in self._splits:
            self._splits[key] = split_tensors(loader, max_rows)
        return self._splits[key]

    def run(self) -> None:
        tr = split_tensors(self.train)
        if tr is None:
            return
        x, y = tr
        self._run("nonfinite_data", x, y)
        if self.halt:
            return
        self._run("text_splits")  # text runs: OOV/truncation gaps between splits (no tensors needed)
        idx = subsample(len(y), self.t.probe_rows)
        px, py = x[idx.to(x.device)], y[idx.to(y.device)]
        px, py = px.to(self.device), py.to(self.device)
        self.probe_x, self.probe_y = px, py
        model = self.model
        self.facts.train_eval_modules = any(_differs_in_eval(m) for m in model.modules())
        rates = [float(m.p) for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        self.facts.dropout_max = max(rates or [0.0])
        with preserved(model, mode=False), torch.enable_grad():
            try:
                trace = trace_model(model, px, self.forward)
            except Exception:
                return  # the loop will raise the real error with its own message
            out = trace.output
            self.facts.layer_order = trace.layer_order
            self.facts.narrowest = _narrowest(model, trace.layer_order)
            # one Linear layer and nothing else with weights: linear / logistic regression
            owner = trace.layer_order[0].rpartition(".")[0] if len(trace.layer_order) == 1 else None
            self.facts.linear_model = owner is not None and isinstance(dict(model.named_modules()).get(owner),
                                                                       nn.Linear)
            self.facts.unit_dims = trace.unit_dims
            self.facts.n_outputs = int(out.shape[-1]) if out.ndim > 1 else 1
            self._run("labels", y, out)
            if self.halt:
                return
            self._run("sample_order", y)
            self._run("norm_batch")
            with contextlib.suppress(Exception):  # a measurement: without it, checks that read it skip
                self._once("neighbours", lambda: self.measure_neighbours(x, y),
                           facts=("neighbour_agreement", "label_chance"))
            ysub = y[subsample(len(y), 20000).to(y.device)].to(self.device)

            def baselines() -> None:  # the targets' know-nothing losses: the data and the loss decide them
                self.facts.baseline, self.facts.zero_loss = constant_losses(self.loss_fn, self.facts.loss_kind,
                                                                            out.detach(), ysub)
                vt = self.split(self.val)
                if vt is not None:
                    vy = vt[1][subsample(len(vt[1]), 20000).to(vt[1].device)].to(self.device)
                    self.facts.val_baseline, _ = constant_losses(self.loss_fn, self.facts.loss_kind, out.detach(), vy)
                    self.facts.val_rows = len(vt[1])

            if self.loss_key is None:  # a loss gradwise cannot tell apart from another: computed every run
                baselines()
            else:
                self._once("baselines", baselines, facts=("baseline", "zero_loss", "val_baseline", "val_rows"),
                           extra=(self.loss_key, tuple(out.shape[1:])))
            self._run("sum_reduction", out.detach(), ysub)
            if self.facts.loss_kind in ("mse", "mae", "huber") and y.is_floating_point():
                self.facts.target_rms = float(ysub.float().pow(2).mean().sqrt())
            self._run("input_scale", x, trace)
            self._run("wiring", trace, y)
            self._run("eval_determinism")
            self._run("leakage", x)
            self._run("near_copies", x)
            self._run("split_scale", x)
            self._run("label_column", x, y)
            self._run("split_structure", x)
            loss = self.initial_loss(out, py)
            self._run("initialization", trace, loss)
            if loss is not None and loss.requires_grad:
                self._run("first_gradients", loss)

    # -- data ------------------------------------------------------------------------------------------

    def check_text_splits(self) -> None:
        """A text run's splits tokenized unlike each other (doctor/text_checks.py)."""
        self.findings += text_split_findings(self.bundle, self.t)
    def check_values(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for what, t in (("inputs", x), ("targets", y)):
            if t.is_floating_point():
                bad = ~torch.isfinite(t)
                if bool(bad.any()):
                    rows = int(bad.reshape(len(t), -1).any(1).sum())
                    self.add("nonfinite_values", "error", f"the training {what} contain {int(bad.sum())} NaN/Inf "
                             f"values in {rows} of {len(t)} rows",
                             {"split": "train", "tensor": what, "values": int(bad.sum()), "rows": rows},
                             ["missing values in the data file", "a division by zero or log of 0 in preprocessing"],
                             ["data.missing=median (or drop)", "fit(): drop or impute the rows before training, "
                              "e.g. X = np.nan_to_num(X) or sklearn SimpleImputer"])
                    self.halt = True

    def check_inputs(self, x: torch.Tensor, trace: Trace) -> None:
        if not x.is_floating_point() or x.ndim < 2:
            return  # token ids or other discrete inputs
        xs = x[subsample(len(x), 10000).to(x.device)].float()
        if xs.ndim >= 3 and xs.shape[1] <= 4 and xs.ndim >= 4:  # images: per channel
            cols = xs.transpose(0, 1).reshape(xs.shape[1], -1).T
        else:
            cols = xs.reshape(len(xs), -1)
        rms = cols.pow(2).mean(0).sqrt()
        std = cols.std(0) if len(cols) > 1 else torch.zeros_like(rms)
        worst = int(rms.argmax())
        names = getattr(self.bundle, "feature_names", None) or []
        label = names[worst] if worst < len(names) else f"feature {worst}"
        evidence = {"max_feature_rms": float(rms.max()), "feature": label, "mean": float(cols[:, worst].mean()),
                    "std": float(std[worst]), "median_feature_rms": float(rms.median()),
                    "threshold": self.t.input_large}
        first = self.model.get_submodule(trace.order[0]) if trace.order else None
        if isinstance(first, nn.Embedding | nn.EmbeddingBag) and trace.input_numel.get(trace.order[0]) == \
                self.probe_x.numel():
            return  # the whole input is indices into a table (stored as floats): their scale means nothing
        normalized_first = isinstance(first, nn.modules.batchnorm._BatchNorm | nn.LayerNorm | nn.GroupNorm)
        severity = "info" if normalized_first else "warning"
        fixes = ["data.scale=standard", "fit(): standardize with the training split's mean and std, e.g. "
                 "X = (X - X_train.mean(0)) / X_train.std(0) (sklearn StandardScaler)"]
        if float(rms.max()) > self.t.input_large:
            self.add("unnormalized_inputs", severity,
                     f"input {label} has RMS {float(rms.max()):.3g} (mean {evidence['mean']:.3g}, std "
                     f"{evidence['std']:.3g}); networks initialized for unit-scale inputs saturate or take huge steps",
                     evidence, ["raw features on their own units (prices, counts, pixel values 0-255)"], fixes)
        elif float(rms.max()) < self.t.input_tiny:
            evidence["threshold"] = self.t.input_tiny
            self.add("unnormalized_inputs", severity,
                     f"every input feature has RMS below {self.t.input_tiny} (largest {float(rms.max()):.3g}); the "
                     "signal is tiny against the biases and learning is slow", evidence,
                     ["inputs scaled twice (e.g. /255 applied twice)"], fixes)

    def check_labels(self, y: torch.Tensor, out: torch.Tensor) -> None:
        kind, width = self.facts.loss_kind, self.facts.n_outputs or 1
        if kind in _CE:
            if out.ndim == 2 and width == 1 and kind == "ce":
                self.add("loss_output_mismatch", "error", "cross-entropy over a model with 1 output: softmax of one "
                         "logit is always 1, the loss is constant and nothing learns",
                         {"outputs": 1, "loss": kind}, ["a binary classifier with one output and cross_entropy"],
                         ["loss=bce_with_logits (one output) or give the model 2 outputs",
                          "loss.name=bce_with_logits"])
                self.halt = True
                return
            cls = _classes(y)
            if cls is None:
                if not (y.is_floating_point() and y.shape[1:] == out.shape[1:]):  # soft targets are fine
                    self.add("label_problem", "error", f"{kind} needs integer class labels but the targets are "
                             f"{y.dtype} with shape {tuple(y.shape)}", {"dtype": str(y.dtype), "shape": list(y.shape)},
                             ["regression targets given to a classification loss"],
                             ["use a regression loss (loss=mse) or give class indices 0..C-1"])
                return
            ignore = getattr(self.loss_fn, "ignore_index", None)
            valid = cls[cls != ignore] if ignore is not None else cls
            if valid.numel() == 0:
                return
            lo, hi = int(valid.min()), int(valid.max())
            if lo < 0 or hi >= width:
                self.add("label_problem", "error", f"class labels run from {lo} to {hi} but the model has {width} "
                         f"outputs, so valid labels are 0..{width - 1}",
                         {"min_label": lo, "max_label": hi, "outputs": width},
                         ["labels numbered from 1 instead of 0", "the output layer is narrower than the number of "
                          "classes"],
                         ["fit(): y = y - y.min() (labels 0..C-1)", f"make the last layer output {hi + 1} values"])
                self.halt = True
                return
            counts = torch.bincount(valid.cpu(), minlength=width).tolist()
            self.facts.class_counts = counts
            missing = [c for c, k in enumerate(counts) if k == 0]
            if missing and len(missing) < width:
                self.add("label_problem", "info", f"{len(missing)} of the model's {width} outputs never appear as a "
                         "training label", {"classes_without_examples": missing[:20], "outputs": width},
                         ["the output layer is wider than the number of classes", "a class was filtered out"],
                         [f"make the last layer output {width - len(missing)} values if those classes cannot occur"])
            self._imbalance([k for k in counts if k > 0])
        elif kind in ("bce", "bce_prob"):
            if y.is_floating_point() or y.dtype in (torch.int64, torch.int32, torch.bool, torch.uint8):
                yf = y.float()
                if bool(((yf < 0) | (yf > 1)).any()):
                    self.add("label_problem", "error", f"binary cross-entropy needs targets in [0, 1] but they run "
                             f"from {float(yf.min()):.3g} to {float(yf.max()):.3g}",
                             {"min": float(yf.min()), "max": float(yf.max())},
                             ["class indices 1/2 or -1/+1 given to a binary loss", "several classes given to a "
                              "binary loss"], ["map the labels to 0/1", "loss=cross_entropy with one output per class"])
                    self.halt = True
                    return
                if width == 1:
                    cls = _classes(yf)
                    if cls is not None:
                        counts = torch.bincount(cls.cpu(), minlength=2).tolist()
                        self.facts.class_counts = counts
                        self._imbalance([k for k in counts if k > 0], binary=True)
        elif kind in ("mse", "mae", "huber") and not y.is_floating_point() and y.dtype != torch.bool:
            distinct = torch.unique(y).numel()
            self.add("loss_output_mismatch", "warning", f"a regression loss ({kind}) on integer targets with "
                     f"{distinct} distinct values: class labels treated as numbers (class 9 'twice as far' from 0 as "
                     "class 4) train a poor classifier", {"loss": kind, "target_dtype": str(y.dtype),
                                                        "distinct_targets": distinct},
                     ["loss='mse' on class labels"],
                     ["loss=cross_entropy with one output per class", "loss.name=cross_entropy"])

    def _labelled(self, cls: torch.Tensor) -> torch.Tensor:
        """Indices of the rows with a real class label (not negative, not the loss's ignore_index)."""
        ignore = getattr(self.loss_fn, "ignore_index", None)
        ok = cls >= 0
        if ignore is not None:
            ok &= cls != ignore
        return ok.nonzero().flatten().cpu()

    def measure_neighbours(self, x: torch.Tensor, y: torch.Tensor, rows: int = 600, dims: int = 256) -> None:
        """1-nearest-neighbour label agreement on standardized inputs, for a later no_learning verdict:
        a model that learns nothing from data whose neighbours share labels no more often than chance is fed
        labels unrelated to the inputs. Wide inputs are randomly projected to `dims` features first."""
        if self.facts.loss_kind not in _CE:
            return
        cls = _classes(y)
        if cls is None or len(cls) < 50 or not x.is_floating_point() or x.ndim < 2:
            return
        keep = self._labelled(cls)
        idx = keep[subsample(len(keep), rows)]
        if len(idx) < 50:
            return
        xs = x[idx.to(x.device)].reshape(len(idx), -1).float().cpu()
        ys = cls[idx.to(cls.device)].cpu()
        if not bool(torch.isfinite(xs).all()):
            return
        gen = torch.Generator().manual_seed(7)
        if xs.shape[1] > 16 * dims:  # very wide inputs (images): a random subset of the features first
            xs = xs[:, torch.randperm(xs.shape[1], generator=gen)[:16 * dims]]
        xs = (xs - xs.mean(0)) / xs.std(0).clamp_min(1e-8)
        if xs.shape[1] > dims:  # Johnson-Lindenstrauss: distances survive a random Gaussian projection
            proj = torch.randn(xs.shape[1], dims, generator=gen)
            xs = xs @ proj / dims ** 0.5
        # brute force on <= 600 rows is one (600 x 600) distance matrix: a few ms, no index structure needed
        d = torch.cdist(xs, xs)
        d.fill_diagonal_(math.inf)
        other = d.argmin(1)
        p = torch.bincount(ys).double() / len(ys)
        self.facts.neighbour_agreement = float((ys[other] == ys).double().mean())
        self.facts.label_chance = float((p * p).sum())

    def check_reduction(self, out: torch.Tensor, y: torch.Tensor) -> None:
        """A loss summed over the batch (reduction='sum') instead of averaged: its value and gradient grow with the
        batch size. The know-nothing scale the curve rules use is then the loss of one training batch."""
        bs = getattr(self.train, "batch_size", None)
        base = self.facts.baseline
        if base is None or not isinstance(bs, int) or len(y) < 4 or base <= 0:
            return
        # the same rows twice: a mean gives the same loss, a sum twice it (whatever order the rows are in); a few
        # hundred rows tell the two apart as well as 20,000 (this ran 2 losses over 20,000 rows in every run)
        half = y[: min(len(y) // 2, 256)]
        one, _ = constant_losses(self.loss_fn, self.facts.loss_kind, out, half)
        two, _ = constant_losses(self.loss_fn, self.facts.loss_kind, out, torch.cat([half, half]))
        if one is None or two is None or one <= 0 or not 1.9 <= two / one <= 2.1:
            return
        scale = bs / len(y)
        self._sum_rows = bs
        self.facts.sum_reduced = True
        self.facts.baseline = base * scale
        self.facts.zero_loss = self.facts.zero_loss * scale if self.facts.zero_loss is not None else None
        self.facts.val_baseline = None  # evaluation sums over its own, larger batches
        self.add("loss_output_mismatch", "info", f"the loss is summed over the batch (reduction='sum'): its value "
                 f"and its gradient grow with the batch size ({bs} rows here), so an LR tuned for a mean-reduced "
                 "loss is about that many times too large", {"batch_size": bs, "loss_per_batch_know_nothing":
                                                              self.facts.baseline},
                 ["reduction='sum' in the loss"], ["use the default reduction='mean'", "or divide the LR by the batch "
                                                   "size"])

    def check_eval_determinism(self) -> None:
        """Eval mode must be deterministic: two eval-mode passes over the same rows giving different outputs mean
        dropout or noise stays on at evaluation (a forward() that calls self.train(), F.dropout(training=True))."""
        model = self.model
        outs = []
        # both passes alike (grad mode included: some modules take another path without grad), one after the other
        # so that any randomness draws fresh numbers; the RNG streams are put back afterwards
        with preserved(model), torch.no_grad():
            for _ in range(2):
                model.eval()
                outs.append(first_tensor(run_forward(model, self.probe_x, self.forward)))
        out, again = outs
        if out is None or again is None or again.shape != out.shape or not again.is_floating_point():
            return
        diff = float((again.float() - out.float()).abs().max())
        scale = float(out.float().abs().max()) or 1.0
        if math.isfinite(diff) and diff > 1e-4 * scale:
            self.add("train_eval_mismatch", "warning", f"two eval-mode passes over the same rows give different "
                     f"outputs (largest difference {diff:.3g}): randomness such as dropout stays on at evaluation, so "
                     "validation metrics are noisy and worse than the model", {"max_abs_difference": diff,
                                                                                "output_scale": scale},
                     ["forward() calls self.train() or F.dropout(x, training=True)", "noise added in forward() "
                      "without checking self.training"],
                     ["use nn.Dropout modules or F.dropout(x, training=self.training)",
                      "ignore this for deliberate sampling at evaluation (MC dropout, a VAE's latent sample)"])

    def check_norm_batch(self, smallest: int = 8) -> None:
        """BatchNorm on tiny batches: its batch statistics (what training normalizes with) are too noisy to match
        the running statistics eval mode uses, and each row's output depends on its few batch mates."""
        bs = getattr(self.train, "batch_size", None)
        bns = [n for n, m in self.model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns or not isinstance(bs, int) or bs >= smallest:
            return
        self.add("train_eval_mismatch", "warning", f"BatchNorm ({bns[0]}{' and others' if len(bns) > 1 else ''}) with "
                 f"batches of {bs} rows: batch statistics that noisy make training compute another function than "
                 "evaluation (running statistics)", {"batch_size": bs, "batchnorm_layers": bns[:10],
                                                      "threshold": smallest},
                 ["a batch size below ~8 with BatchNorm (memory limits, a tiny dataset)"],
                 [f"train.batch_size={4 * smallest}", "model.norm=layer (LayerNorm or GroupNorm: no batch statistics)",
                  "or gradient accumulation (train.accumulate) with a larger micro-batch"])

    def check_order(self, y: torch.Tensor) -> None:
        """Batches of one class each: a loader that does not shuffle rows stored sorted by label. SGD then sees one
        class at a time (each batch pulls the model towards its class) and BatchNorm's batch statistics carry the
        label in training, which the running statistics of eval mode do not."""
        loader = self.train
        if self.facts.loss_kind not in _CE or getattr(loader, "weights", None) is not None:
            return
        inner = getattr(loader, "loader", None)  # gradwise's wrapper around a DataLoader
        inner = loader if inner is None else inner
        sampler = getattr(inner, "sampler", None)
        if sampler is None:
            ordered = getattr(loader, "shuffle", True) is False  # gradwise's in-memory loader
        else:  # a DataLoader: shuffle=False gives a SequentialSampler; gradwise's own sampler has .shuffle
            ordered = isinstance(sampler, torch.utils.data.SequentialSampler) or \
                getattr(sampler, "shuffle", None) is False
        if not ordered:
            return  # shuffled, weighted, or an order of the user's own making
        bs = getattr(loader, "batch_size", None)
        cls = _classes(y)
        if cls is None or not isinstance(bs, int) or bs < 4 or len(cls) < 4 * bs or bool((cls < 0).any()):
            return  # (negative labels, e.g. ignore_index=-100 rows: batches are not one class each then)
        counts = torch.bincount(cls.cpu())
        if int((counts > 0).sum()) < 2 or float(counts.max()) / len(cls) > 0.5:
            return
        batches = cls[: len(cls) // bs * bs].cpu().reshape(-1, bs)
        pure = float((batches == batches[:, :1]).all(1).float().mean())
        if pure < 0.5:
            return
        bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        self.add("train_eval_mismatch" if bn else "class_imbalance", "warning",
                 f"{pure:.0%} of the training batches hold a single class: the rows are sorted by label and the "
                 "loader does not shuffle them" + (", so BatchNorm's batch statistics in training carry the label "
                                                   "and its running statistics in eval do not" if bn else
                                                   ", so every step pulls the model towards one class"),
                 {"single_class_batches": pure, "batch_size": bs, "batches": len(batches), "batchnorm": bn},
                 ["a DataLoader built with shuffle=False (the default) over data stored class by class"],
                 ["DataLoader(dataset, batch_size=..., shuffle=True)", "or pass (X, y) arrays to fit(): gradwise "
                  "shuffles them every epoch"])

    def _imbalance(self, counts: list[int], binary: bool = False) -> None:
        if "class_imbalance" in self.disabled:
            return
        if len(counts) < 2:
            return
        ratio = max(counts) / max(min(counts), 1)
        if ratio < self.t.imbalance_ratio:
            return
        weighted = getattr(self.loss_fn, "weight", None) is not None or getattr(self.loss_fn, "pos_weight",
                                                                               None) is not None
        weighted = weighted or self.sampler_weights
        share = min(counts) / sum(counts)
        self.add("class_imbalance", "info" if weighted else "warning",
                 f"the largest class has {ratio:.3g}x the examples of the smallest (smallest share {share:.1%}); "
                 "accuracy rewards predicting the majority" + (" (class weights are on)" if weighted else ""),
                 {"class_counts": counts, "ratio": ratio, "threshold": self.t.imbalance_ratio},
                 ["a rare-event dataset", "a filtered or subsampled dataset"],
                 ["loss.class_weights=balanced", "data.balance=weighted_sampler",
                  "fit(): loss=nn.CrossEntropyLoss(weight=...) and judge by balanced accuracy / F1"])

    def check_leakage(self, x: torch.Tensor) -> None:
        if self.val is None and self.test is None:
            return
        rows = x.reshape(len(x), -1)
        if rows.shape[1] * rows.element_size() > 1 << 16 or len(rows) > 500_000:
            return  # too big to hash cheaply at every fit start
        train_keys = [hash(r.tobytes()) for r in rows.detach().cpu().numpy()]
        train_set = set(train_keys)
        unique_share = len(train_set) / max(len(train_keys), 1)
        for split, loader in (("val", self.val), ("test", self.test)):
            t = self.split(loader, max_rows=100_000)
            if t is None or t[0].shape[1:] != x.shape[1:]:
                continue
            other = t[0].reshape(len(t[0]), -1).detach().cpu().numpy()
            same = sum(hash(r.tobytes()) in train_set for r in other)
            share = same / max(len(other), 1)
            if share < self.t.leak_info or same < 2:
                continue
            # few discrete features: identical rows are expected when most training rows repeat anyway
            discrete = unique_share < 0.2
            severity = "warning" if share >= self.t.leak_warn and not discrete else "info"
            self.add("data_leakage", severity, f"{same} of {len(other)} {split} rows ({share:.1%}) are identical to "
                     f"training rows; {split} scores overstate how the model does on new data",
                     {"split": split, "identical_rows": same, "rows": len(other), "share": share,
                      "threshold": self.t.leak_warn, "train_unique_share": unique_share},
                     ["duplicated rows or oversampling before the split", "the same file used for two splits"],
                     ["deduplicate before splitting (e.g. pandas drop_duplicates)",
                      "oversample only the training split, after splitting"])

    def check_near_copies(self, x: torch.Tensor) -> None:
        """Validation rows with a near-copy among the training rows: augmented copies (or overlapping windows) made
        before the split. A row's nearest training row is then far closer than its other neighbours (nearest / 10th
        nearest distance below the near_copy threshold); on real data without copies that ratio sits around 0.4-0.8.
        Identical rows are check_leakage's; only splits small enough to compare against every training row are
        checked."""
        if self.val is None or not x.is_floating_point() or len(x) < 20 or any(
                f.code == "data_leakage" for f in self.findings):
            return
        other = self.split(self.val)
        if other is None or other[0].shape[1:] != x.shape[1:] or not other[0].is_floating_point():
            return
        t = x.reshape(len(x), -1).float()
        if t.shape[1] < 4:
            return
        v = other[0][subsample(len(other[0]), 128).to(other[0].device)].to(t.device).float().reshape(-1, t.shape[1])
        if len(v) < 20 or len(v) * len(t) * t.shape[1] > self.t.near_copy_budget:
            return
        d = torch.cdist(v, t).topk(min(10, len(t)), largest=False).values
        d = d[d[:, 0] > 0]  # rows with an identical twin are check_leakage's business
        if len(d) < 20:
            return
        ratio = d[:, 0] / d[:, -1].clamp_min(1e-12)
        share = float((ratio < self.t.near_copy).float().mean())
        if share < self.t.near_copy_share:
            return
        self.add("data_leakage", "warning", f"{share:.0%} of the validation rows have a near-copy among the training "
                 f"rows (median distance to the nearest training row {float(ratio.median()):.2g} of that to the 10th "
                 "nearest): the validation score measures recall of rows the model trained on, not new data",
                 {"split": "val", "share_near_copies": share, "median_nearest_to_10th": float(ratio.median()),
                  "rows_checked": len(d), "threshold": self.t.near_copy, "threshold_share": self.t.near_copy_share},
                 ["augmentation (jitter, crops, noise) applied before the split, so copies of one example land in "
                  "both", "overlapping windows of one series split at random", "the same source recorded twice"],
                 ["split first, then augment the training split only", "split by source/group (sklearn "
                  "GroupShuffleSplit) or by time, not by row"])

    def check_label_column(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One input column that alone gives away the label (a field recorded after the outcome: a refund flag, a
        diagnosis code, the label itself plus noise). Judged on validation rows against class medians taken from
        the training rows, so a column must carry the label in both splits; tables of 3 or more columns only."""
        if x.ndim != 2 or not 3 <= x.shape[1] <= 1024 or not x.is_floating_point() or len(x) < 50 or any(
                f.code == "data_leakage" for f in self.findings):
            return  # (wider inputs are pixels or embeddings, not fields a table may have picked up)
        other = self.split(self.val)
        if other is None or other[0].ndim != 2 or other[0].shape[1] != x.shape[1] or len(other[0]) < 100:
            return
        ti = subsample(len(x), 5000).to(x.device)  # class medians and correlations settle long before 5000 rows
        vi = subsample(len(other[0]), 1000).to(other[0].device)
        xt, yt = x[ti].float().cpu(), y[ti].cpu()
        xv, yv = other[0][vi].float().cpu(), other[1][vi].cpu()
        if not (bool(torch.isfinite(xt).all()) and bool(torch.isfinite(xv).all())):
            return
        kind = self.facts.loss_kind
        # Random rows for the neighbour comparison, not the first ones: subsample keeps the stored order, and rows
        # sorted by label would leave the neighbours one class to choose from.
        gen = torch.Generator().manual_seed(11)
        pick_t = torch.randperm(len(xt), generator=gen)[:5000]
        pick_v = torch.randperm(len(xv), generator=gen)[:500]

        def nearest_without(col: int) -> torch.Tensor:
            """What the other columns tell: each picked validation row's nearest picked training row, `col` left out
            (standardized columns). A legitimately decisive column (well-separated clusters) is matched by the other
            columns; a leaked one beats them, because it also "predicts" the label noise no feature can."""
            keep = torch.arange(xt.shape[1]) != col
            a, b = xt[pick_t][:, keep], xv[pick_v][:, keep]
            mu, sd = a.mean(0), a.std(0).clamp_min(1e-8)
            return torch.cdist((b - mu) / sd, (a - mu) / sd).argmin(dim=1)

        evidence: dict[str, Any]
        if kind in (*_CE, "bce", "bce_prob"):  # class indices, or one 0/1 column
            ct, cv = _classes(yt), _classes(yv)
            if ct is None or cv is None:
                return
            labels = torch.unique(ct)
            if len(labels) < 2 or len(labels) > 100:
                return
            med = torch.stack([xt[ct == c].median(dim=0).values for c in labels])  # (classes, columns)
            # nearest class median per (row, column), one class at a time: no (classes, rows, columns) tensor
            best_d = torch.full_like(xv, math.inf)
            guess = torch.zeros(xv.shape, dtype=labels.dtype)
            for c, m in zip(labels, med, strict=True):
                d = (xv - m).abs_()
                closer = d < best_d
                best_d = torch.where(closer, d, best_d)
                guess[closer] = c
            acc = (guess == cv[:, None]).float().mean(dim=0)
            majority = float(torch.bincount(cv - int(cv.min())).max()) / len(cv)
            order = acc.argsort(descending=True)
            best, col = float(acc[order[0]]), int(order[0])
            second = float(acc[order[1]])
            bar = max(self.t.label_column_acc, majority + self.t.label_column_gap * (1 - majority))
            if best < bar or second >= bar:  # one column holds the answer, not several that separate the classes
                return
            nn_acc = float((ct[pick_t][nearest_without(col)] == cv[pick_v]).float().mean())
            if best < nn_acc + self.t.label_column_beat:
                return
            what = (f"column {col} alone predicts the class of {best:.1%} of the validation rows, where a row's "
                    f"nearest training row by the other columns gets {nn_acc:.1%}")
            evidence = {"column": col, "single_column_accuracy": best, "next_best_column_accuracy": second,
                        "nearest_row_accuracy": nn_acc, "majority_share": majority,
                        "threshold": self.t.label_column_acc}
        elif kind in ("mse", "mae", "huber") and yt.is_floating_point() and yt.ndim == 1 and yv.ndim == 1:
            def corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                """|correlation| of each column of `a` with `b` (0 for a constant column)."""
                return torch.corrcoef(torch.cat([a.T, b.float()[None]]))[-1, :-1].nan_to_num(0.0).abs()

            r = torch.minimum(corr(xt, yt), corr(xv, yv))
            order = r.argsort(descending=True)
            best, col, second = float(r[order[0]]), int(order[0]), float(r[order[1]])
            if best < self.t.label_column_r or second >= self.t.label_column_r:
                return
            nn_r = float(corr(yt[pick_t][nearest_without(col)].float()[:, None], yv[pick_v])[0])
            if best < nn_r + self.t.label_column_beat:
                return
            what = (f"column {col} alone correlates {best:.4f} with the target (training and validation rows), "
                    f"the target of a row's nearest training row by the other columns {nn_r:.2f}")
            evidence = {"column": col, "abs_correlation": best, "next_best_column": second,
                        "nearest_row_correlation": nn_r, "threshold": self.t.label_column_r}
        else:
            return
        # A regression column this close to the target can be legitimate (the previous value of a smooth series in
        # one-step forecasting): said as info there; a column that gives away the class is a warning.
        severity = "info" if "abs_correlation" in evidence else "warning"
        self.add("data_leakage", severity, f"{what}; the next best column reaches {second:.2g}. A column that holds "
                 "the answer is usually recorded after the outcome: the model leans on it, and the validation score "
                 "says nothing about data where it is not known yet", evidence,
                 ["a field filled in after the outcome (a refund, a diagnosis, a status) kept among the inputs",
                  "the target (or a transform of it) joined back into the features"],
                 [f"drop column {col} from the inputs if it is not known when the model must predict",
                  "if it is legitimately known (a lag of the target in forecasting), nothing is wrong; the task may "
                  "not need a network"])

    def check_split_scale(self, x: torch.Tensor) -> None:
        """Validation/test inputs on another scale than the training inputs: most features shifted by several
        training standard deviations, or spread several times wider or narrower. Random splits of one data set never
        do that; preprocessing applied to one split only (a scaler fitted and applied to train) does."""
        if not x.is_floating_point() or len(x) < self.t.split_min_rows:
            return
        t = x[subsample(len(x), 5000).to(x.device)].float()
        t = t.reshape(len(t), -1)
        mean, std = t.mean(0), t.std(0)
        # only columns that vary in training and take more than two values: a one-hot or binary column's spread
        # in a small split depends on which rare levels it happens to hold
        lo, hi = t.amin(0), t.amax(0)
        two_valued = ((t == lo) | (t == hi)).all(0)
        varies = (std > 0) & ~two_valued
        if int(varies.sum()) == 0:
            return
        for split, loader in (("val", self.val), ("test", self.test)):
            other = self.split(loader)
            if other is None or other[0].shape[1:] != x.shape[1:] or len(other[0]) < self.t.split_min_rows:
                continue
            o = other[0][subsample(len(other[0]), 5000).to(other[0].device)].to(t.device).float()
            o = o.reshape(len(o), -1)
            z = ((o.mean(0) - mean).abs() / std)[varies]
            vstd = o.std(0)[varies]
            ratio = vstd / std[varies]
            shift, scale = self.t.split_shift, self.t.split_scale
            off = (z > shift) | (ratio > scale) | ((ratio < 1 / scale) & (vstd > 0))
            share = float(off.float().mean())
            # most columns off, and the typical column too (not a few heavy tails in a small split)
            typical = float(z.median()) > self.t.split_shift or not 1 / scale < float(ratio.median()) < scale
            if share <= self.t.split_share or not typical:
                continue
            self.add("train_eval_mismatch", "warning", f"the {split} inputs are on another scale than the training "
                     f"inputs: {share:.0%} of the features are shifted by more than {self.t.split_shift:g} training "
                     f"standard deviations or spread {self.t.split_scale:g}x wider or narrower (median shift "
                     f"{float(z.median()):.3g} sd, median spread ratio {float(ratio.median()):.3g}); scores on "
                     f"{split} say little about the trained model",
                     {"split": split, "share_off": share, "median_shift_sd": float(z.median()),
                      "median_std_ratio": float(ratio.median()), "features": int(varies.sum()),
                      "threshold_shift": shift, "threshold_scale": scale, "threshold_share": self.t.split_share},
                     ["preprocessing (standardization, scaling) applied to the training split only",
                      "splits read from differently processed files"],
                     ["apply the same preprocessing to every split: fit the scaler on train, then transform train, "
                      "val and test with it", "data.scale=standard (does that for every split)"])

    def check_split_structure(self, x: torch.Tensor) -> None:
        """Validation/test columns whose correlations with each other differ from the training columns' far beyond
        sampling noise: the columns come in another order (a table built by position, not by name), or a transform
        reached one split only. Per-column scales can match (each split standardized on its own) and still the
        model reads feature j where it learned feature i. Tables of 3-512 columns; splits of 30 rows or more."""
        if x.ndim != 2 or not 3 <= x.shape[1] <= 512 or not x.is_floating_point() \
                or len(x) < self.t.structure_min_rows or any(
                f.code == "train_eval_mismatch" for f in self.findings):
            return

        def corr(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """The column correlation matrix and which columns vary (a constant column has no correlation)."""
            a = a.double()
            return torch.corrcoef(a.T), a.std(0) > 1e-12 * (1 + a.abs().amax(0))

        t = x[subsample(len(x), 20000).to(x.device)].cpu()
        if not bool(torch.isfinite(t).all()):
            return
        ct, live_t = corr(t)
        for split, loader in (("val", self.val), ("test", self.test)):
            other = self.split(loader)
            if other is None or other[0].shape[1:] != x.shape[1:] or len(other[0]) < self.t.structure_min_rows:
                continue
            o = other[0][subsample(len(other[0]), 20000).to(other[0].device)].cpu()
            if not bool(torch.isfinite(o).all()):
                continue
            co, live_o = corr(o)
            live = live_t & live_o
            pairs = torch.triu(live[:, None] & live[None, :], diagonal=1)
            if int(pairs.sum()) < 3:
                continue
            zt = torch.atanh(ct.clamp(-0.999999, 0.999999))
            zo = torch.atanh(co.clamp(-0.999999, 0.999999))
            se = (1 / (len(t) - 3) + 1 / (len(o) - 3)) ** 0.5
            dz = ((zo - zt).abs() / se)[pairs]
            moved = dz >= self.t.structure_z
            share = float(moved.float().mean())
            if share < self.t.structure_share or int(moved.sum()) < 3:
                continue
            ii, jj = torch.nonzero(pairs, as_tuple=True)
            k = int(dz.argmax())
            i, j = int(ii[k]), int(jj[k])
            self.add("train_eval_mismatch", "warning", f"the {split} columns relate to each other differently than "
                     f"the training columns: {int(moved.sum())} of {len(dz)} column pairs ({share:.0%}) changed their "
                     f"correlation far beyond sampling noise (columns {i} and {j}: {float(ct[i, j]):.2f} in training, "
                     f"{float(co[i, j]):.2f} in {split}); the model reads the {split} columns as features they are not",
                     {"split": split, "pairs_moved": int(moved.sum()), "pairs": len(dz), "share": share,
                      "example_columns": [i, j], "train_correlation": float(ct[i, j]),
                      f"{split}_correlation": float(co[i, j]), "threshold_z": self.t.structure_z,
                      "threshold_share": self.t.structure_share},
                     ["the columns of one split in another order (a table built by position, not by column name)",
                      "a transform or feature step applied to one split only", "splits read from different sources"],
                     ["build every split with the same pipeline and select columns by name "
                      "(pandas: df[train_columns])"])

    # -- model and loss ----------------------------------------------------------------------------------
    def check_wiring(self, trace: Trace, y: torch.Tensor) -> None:
        kind = self.facts.loss_kind
        out = trace.output.detach().float()
        final = trace.final_module
        final_type = type(final[1]).__name__ if final else None
        where = f"{final[0]} ({final_type})" if final else "the model's forward"
        n = out.numel()
        softmax = log_softmax = sigmoid = False
        if out.ndim == 2 and out.shape[1] >= 2 and n >= 16:
            softmax = bool(((out >= 0) & (out <= 1)).all()) and bool(((out.sum(1) - 1).abs() < 1e-3).all())
            log_softmax = bool((out <= 0).all()) and bool((out.logsumexp(1).abs() < 1e-3).all())
        if isinstance(final[1] if final else None, nn.Softmax):
            softmax = True
        if isinstance(final[1] if final else None, nn.LogSoftmax):
            log_softmax = True
        # A sigmoid is known by the op that made the output; values in (0, 1) alone are no evidence (a fresh
        # single-logit head on positive features often starts there). Only without a graph do values decide.
        op = last_op(trace.output) or ""
        sigmoid = isinstance(final[1] if final else None, nn.Sigmoid) or op.startswith("Sigmoid") or (
            not op.startswith(LOGIT_OPS) and not softmax and n >= 16 and bool(((out > 0) & (out < 1)).all()))
        ev = {"final_module": where, "loss": kind, "output_min": float(out.min()), "output_max": float(out.max())}
        if kind == "ce" and softmax:
            self.add("loss_output_mismatch", "warning", f"the model ends in a softmax ({where}) and cross-entropy "
                     "applies softmax again: outputs squashed into [0, 1] give tiny, flat gradients", ev,
                     ["nn.Softmax at the end of a model trained with CrossEntropyLoss"],
                     ["remove the final softmax: cross_entropy expects raw logits (apply softmax only at "
                      "prediction time)"])
        elif kind == "ce" and log_softmax:
            self.add("loss_output_mismatch", "info", f"the model ends in log-softmax ({where}) before cross-entropy; "
                     "harmless (log-softmax is idempotent) but redundant", ev, ["LogSoftmax + CrossEntropyLoss"],
                     ["remove the final log_softmax, or use loss=nll"])
        elif kind == "nll" and not log_softmax:
            self.add("loss_output_mismatch", "warning", f"nll expects log-probabilities but the outputs of {where} "
                     f"are {'probabilities' if softmax else 'raw scores'}: the loss can fall without bound", ev,
                     ["NLLLoss without a final LogSoftmax"], ["loss=cross_entropy on raw logits",
                                                              "end the model with nn.LogSoftmax(dim=1)"])
        elif kind in ("ce", "bce") and not softmax and not sigmoid and self._clipped_at_zero(final, out):
            # logits that cannot go below 0: a class whose logit is clipped gets no gradient through it (the
            # ReLU's zero side), and the model can only express "less likely" by driving other logits up
            self.add("loss_output_mismatch", "warning", f"the model's outputs pass through a ReLU-like activation "
                     f"({where}; {float((out == 0).float().mean()):.0%} of them exactly 0) before "
                     f"{'cross-entropy' if kind == 'ce' else 'BCE-with-logits'}, which expects raw logits of any "
                     "sign: clipped logits get no gradient", ev,
                     ["an activation left on the output layer (nn.ReLU after the last nn.Linear)"],
                     ["remove the final activation: the loss expects raw logits"])
        elif kind == "ce" and sigmoid and out.ndim == 2 and out.shape[1] >= 3:
            c = out.shape[1]
            floor = math.log(1 + (c - 1) / math.e)  # the target's logit at 1, every other at 0
            self.add("loss_output_mismatch", "warning", f"the model's outputs are squashed into (0, 1) by a sigmoid "
                     f"({where}) before cross-entropy, which expects raw logits: with {c} classes the loss cannot "
                     f"fall below {floor:.3g} and the gradients are weak", {**ev, "loss_floor": floor},
                     ["nn.Sigmoid left at the end of a multi-class model"],
                     ["remove the final sigmoid: cross_entropy expects raw logits"])
        elif kind == "bce" and sigmoid:
            self.add("loss_output_mismatch", "warning", f"the model ends in a sigmoid ({where}) and "
                     "BCEWithLogits applies sigmoid again: outputs stuck in (0.27, 0.73) and weak gradients", ev,
                     ["nn.Sigmoid at the end of a model trained with BCEWithLogitsLoss"],
                     ["remove the final sigmoid: bce_with_logits expects raw logits"])
        if kind in ("mse", "mae", "huber") and y.is_floating_point():
            self._check_range(final, out, y, ev, op)
            with contextlib.suppress(Exception):  # the broadcast check must not cost the wiring verdict above
                self._check_broadcast(out, y, ev)
        for a, b in trace.collapsed:
            self.add("underfitting", "warning", f"{a} feeds {b} with no nonlinearity between them: the two collapse "
                     "into one linear map, so the extra layer adds no capacity", {"layers": [a, b]},
                     ["an activation left out of nn.Sequential"],
                     [f"put an activation between {a} and {b}, e.g. nn.ReLU()", "model.activation=relu"])
            break

    def _check_broadcast(self, out: torch.Tensor, y: torch.Tensor, ev: dict[str, Any]) -> None:
        """(N, 1) outputs against (N,) targets (or the reverse) broadcast to an N x N comparison in torch's own
        regression losses: every output is pulled towards the mean target and the model learns nothing."""
        n = min(len(out), len(y), 64)
        o, t = out[:n].float(), y[:n].to(out.device).float()
        if o.shape == t.shape or o.numel() != t.numel():
            return
        with torch.no_grad():
            as_given = float(self.loss_fn(o, t))
            aligned = float(self.loss_fn(o.reshape(t.shape), t))
        if math.isfinite(as_given) and math.isfinite(aligned) and abs(as_given - aligned) > 1e-4 * max(aligned, 1e-8):
            self.add("loss_output_mismatch", "warning", f"the outputs have shape {tuple(out.shape[1:])} per row and "
                     f"the targets {tuple(y.shape[1:])}: the loss broadcasts them against each other (every output "
                     "compared with every target), so the model can only learn the mean",
                     {**ev, "output_shape": list(out.shape), "target_shape": list(y.shape)},
                     ["a (N, 1) output and (N,) targets given to nn.MSELoss / F.mse_loss"],
                     ["make the shapes equal: y = y.reshape(-1, 1), or out.squeeze(1) in forward()",
                      "or use loss='mse' (gradwise's loss aligns them)"])

    @staticmethod
    def _clipped_at_zero(final: tuple[str, nn.Module] | None, out: torch.Tensor) -> bool:
        """The output layer is a ReLU-like clip at 0 (by type, or: no negative output and many exact zeros)."""
        m = final[1] if final else None
        if isinstance(m, nn.ReLU | nn.ReLU6):
            return True
        return out.numel() >= 16 and bool((out >= 0).all()) and float((out == 0).float().mean()) > 0.1

    def _check_range(self, final: tuple[str, nn.Module] | None, out: torch.Tensor, y: torch.Tensor,
                     ev: dict[str, Any], op: str = "") -> None:
        """The output's activation (its module, or the op that made the output when a Flatten/view follows it)
        cannot reach the targets."""
        m = final[1] if final else None
        lo, hi = -math.inf, math.inf
        if isinstance(m, nn.Sigmoid | nn.Softmax) or op.startswith(("Sigmoid", "Softmax")):
            lo, hi = 0.0, 1.0
        elif isinstance(m, nn.Tanh | nn.Hardtanh | nn.Softsign) or op.startswith("Tanh"):
            lo, hi = -1.0, 1.0
        elif isinstance(m, nn.ReLU | nn.ReLU6 | nn.Softplus) or op.startswith(("Relu", "Softplus")) or (
                bool((out >= 0).all()) and float((out == 0).float().mean()) > 0.1):
            lo = 0.0
            if isinstance(m, nn.ReLU6):
                hi = 6.0
        if not (math.isfinite(lo) or math.isfinite(hi)):
            return
        yf = y.float()
        miss = float(((yf < lo - 1e-6) | (yf > hi + 1e-6)).float().mean())
        if miss > self.t.range_miss:
            ev = dict(ev, reachable=[lo, hi], target_min=float(yf.min()), target_max=float(yf.max()),
                      targets_out_of_range=miss)
            self.add("loss_output_mismatch", "warning", f"the final activation ({ev['final_module']}) outputs values "
                     f"in [{lo:g}, {hi:g}] but {miss:.0%} of the targets lie outside it", ev,
                     ["a ReLU/sigmoid/tanh left on the output layer of a regression model"],
                     ["remove the final activation: regression outputs should be linear",
                      "or scale the targets into the activation's range"])

    def initial_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        try:
            loss = self.loss_fn(out, y)
        except Exception:
            return None
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            return None
        value = float(loss.detach())
        if self._sum_rows:  # a summed loss: on the scale of one training batch, like the know-nothing loss
            value *= self._sum_rows / max(len(y), 1)
        self.facts.initial_loss = value if math.isfinite(value) else None
        return loss

    def check_init(self, trace: Trace, loss: torch.Tensor | None) -> None:
        facts = self.facts
        bad_layers: list[dict[str, Any]] = []
        named = dict(self.model.named_parameters())
        # embedding tables are looked up, not multiplied: N(0, 1) rows are torch's default and fan_in means nothing
        tables = {f"{n}.weight" if n else "weight" for n, m in self.model.named_modules()
                  if isinstance(m, nn.Embedding | nn.EmbeddingBag)}
        for name in facts.layer_order or [n for n, p in named.items() if p.ndim >= 2]:
            w = named[name].detach().float()
            if w.ndim < 2 or w.shape[0] < 2 or name in tables:
                continue
            gain = float(w.std()) * math.sqrt(_fan_in(w))
            symmetric = bool((w.std(0) == 0).all())
            if symmetric:
                # units: how many there are, all with one weight row (distinct_rows 1), so the layer acts as one
                bad_layers.append({"layer": name, "issue": "constant across units (every unit computes the same "
                                   "function, so they stay identical)", "std": float(w.std()),
                                   "units": int(w.shape[0]), "distinct_rows": 1})
            elif gain > self.t.init_gain_high:
                bad_layers.append({"layer": name, "issue": f"std·√fan_in = {gain:.3g} (He: 1.41)",
                                   "std": float(w.std())})
        tiny = self._tiny_init(trace, named)
        ratio = None
        if facts.initial_loss is not None and facts.zero_loss:
            ratio = facts.initial_loss / facts.zero_loss
        unnormalized = any(f.code == "unnormalized_inputs" and f.severity != "info" for f in self.findings)
        loss_off = ratio is not None and ratio > self.t.init_loss_ratio and not unnormalized
        ev: dict[str, Any] = {"initial_loss": facts.initial_loss, "expected_loss": facts.zero_loss,
                              "ratio": ratio, "threshold": self.t.init_loss_ratio}
        stats = ActivationStats(self.model, trace.unit_dims)
        with torch.no_grad():
            _, acts = stats.measure(self.model, self.probe_x, self.forward)
        dead = {k: float(v["dead"].float().mean()) for k, v in acts.items() if v["kind"] == "relu"}
        dead_layers = {k: v for k, v in dead.items() if v >= self.t.dead_at_init}
        if not bad_layers and not loss_off and not dead_layers and not tiny:
            return
        facts.init_abnormal = bool(bad_layers) or loss_off or bool(tiny)
        if bad_layers:
            ev["layers"] = bad_layers[:6]
        if tiny:
            ev["small_init"] = tiny
        if dead_layers:
            ev["dead_relu_share"] = dead_layers
        parts = []
        if bad_layers:
            parts.append(f"{bad_layers[0]['layer']} is {bad_layers[0]['issue']}")
        if loss_off:
            parts.append(f"the initial loss {facts.initial_loss:.4g} is {ratio:.3g}x that of an all-zero output "
                         f"({facts.zero_loss:.4g})")
        if dead_layers:
            k = next(iter(dead_layers))
            parts.append(f"{dead_layers[k]:.0%} of the units of {k} never fire at initialization")
        if tiny:
            parts.append(f"{tiny['small']} of {tiny['hidden']} hidden weight matrices have std·√fan_in < "
                         f"{self.t.init_gain_low} (smallest {tiny['min_gain']:.3g}; PyTorch's default is 0.58) and the "
                         f"signal reaching the output layer is {tiny['signal_ratio']:.2g} of the input's size")
        self.add("bad_initialization", "warning", "; ".join(parts), ev,
                 ["weights filled with a constant or zeros", "a hand-written init with the wrong std (e.g. normal "
                  "std 1 or 10, or 0.01 in a deep stack)", "a large negative bias"],
                 ["model.init=he_normal (ReLU)", "model.init=xavier_uniform (tanh/sigmoid)",
                  "fit(): drop the custom init (PyTorch's default is sane) or use nn.init.kaiming_normal_"])

    def _tiny_init(self, trace: Trace, named: dict[str, nn.Parameter]) -> dict[str, Any] | None:
        """Evidence of a too-small init (see self.t.init_gain_low), or None."""
        emb = {f"{n}.weight" if n else "weight" for n, m in self.model.named_modules()
               if isinstance(m, nn.Embedding | nn.EmbeddingBag)}
        weights = [n for n in self.facts.layer_order if n in named and named[n].ndim >= 2 and n not in emb]
        hidden = weights[:-1]
        if not hidden:
            return None
        gains = {n: float(named[n].detach().float().std()) * math.sqrt(_fan_in(named[n])) for n in hidden
                 if named[n].numel() > 1}
        small = [n for n, g in gains.items() if g < self.t.init_gain_low]
        if not gains:
            return None
        owner = [n.rsplit(".", 1)[0] if "." in n else "" for n in weights]
        first = next((trace.input_rms[o] for o in owner if o in trace.input_rms), None)
        last = trace.input_rms.get(owner[-1])
        if first is None or last is None or first <= 0:
            return None
        signal = last / first
        if signal >= self.t.signal_collapse:
            return None
        if 2 * len(small) <= len(gains):
            # the weights look fine one by one: only a signal gone altogether says otherwise -- a millionth of its
            # scale after the first layer reaching the last one (measured from the first layer's output: raw inputs
            # squashed by a tanh or a norm would otherwise look like a collapse)
            second = next((trace.input_rms[o] for o in owner[1:] if o in trace.input_rms), None)
            if second is None or second <= 0 or last / second >= self.t.signal_gone:
                return None
        return {"hidden": len(gains), "small": len(small), "min_gain": min(gains.values()),
                "gains": {n: gains[n] for n in small[:6]}, "signal_ratio": signal,
                "threshold_gain": self.t.init_gain_low, "threshold_signal": self.t.signal_collapse}

    def check_gradients(self, loss: torch.Tensor) -> None:
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        for _, p in params:
            p.grad = None
        try:
            loss.backward()
        except Exception:
            return
        total = sum(p.numel() for _, p in params)
        none = [n for n, p in params if p.grad is None]
        zero = [n for n, p in params if p.grad is not None and not bool(p.grad.any())]
        dead = sum(p.numel() for n, p in params if n in none or n in zero)
        share = dead / max(total, 1)
        if not none and not zero:
            return
        severity = "warning" if share >= self.t.no_grad_share else "info"
        self.add("no_learning", severity, f"{share:.0%} of the trainable parameters get no gradient at step 0 "
                 f"({len(none)} tensors unused, {len(zero)} with an all-zero gradient)",
                 {"unused": none[:8], "zero_gradient": zero[:8], "share_of_parameters": share,
                  "threshold": self.t.no_grad_share},
                 ["all-zero or constant initialization (ReLU units with zero input pass no gradient)",
                  "a layer defined but not used in forward()", ".detach() or torch.no_grad() inside forward()"],
                 ["model.init=he_normal (a random init)", "fit(): drop the zero init (PyTorch's default is random)",
                  "remove the unused layer or the detach"])

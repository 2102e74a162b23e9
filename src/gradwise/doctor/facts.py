"""What the doctor knows before training: the facts later checks judge by (`Facts`, kept in checkpoints), and the
small, pure helpers that read them off the data, the loss and the model (the loss kind, a split's tensors, a fixed
subsample, the class ids, the loss of a constant prediction).

The pre-flight's measuring step (doctor/preflight_facts.py) fills `Facts`; nothing here changes the model, the
optimizer or the RNG streams.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from gradwise.doctor.probes import TRAIN_EVAL_DIFFERENT
from gradwise.doctor.thresholds import DEFAULT
from gradwise.train.checkpoint import rng_state, set_rng_state

PROBE_ROWS = DEFAULT.probe_rows  # the fixed batch of training rows every probe runs on

CLASS_LOSSES = ("ce", "nll", "hinge")


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


def narrowest(model: nn.Module, layer_order: list[str]) -> tuple[str, int] | None:
    """The hidden Linear/Conv layer with the fewest output units (the output layer itself excluded)."""
    owners = {f"{m_name}.weight" if m_name else "weight": m for m_name, m in model.named_modules()}
    mods = [(name, owners.get(name)) for name in layer_order[:-1]]
    # only the Linear layers after the last convolution: a conv's channels are not the classifier's width (LeNet's
    # 6-channel conv1 is no bottleneck), and layers inside conv blocks (squeeze-and-excitation) are side paths
    last_conv = max((i for i, (_, m) in enumerate(mods) if isinstance(m, nn.modules.conv._ConvNd)), default=-1)
    widths = [(name.removesuffix(".weight"), m.out_features) for name, m in mods[last_conv + 1:]
              if isinstance(m, nn.Linear)]
    return min(widths, key=lambda w: w[1]) if widths else None


def classes_of(y: torch.Tensor) -> torch.Tensor | None:
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
    if kind in CLASS_LOSSES and out.ndim == 2:
        cls = classes_of(y)
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


def differs_in_eval(m: nn.Module) -> bool:
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


def fan_in(w: torch.Tensor) -> int:
    return int(w[0].numel()) if w.ndim >= 2 else 1


# --------------------------------------------------------------------------------------------- checks


def neighbour_agreement(x: torch.Tensor, y: torch.Tensor, ignore_index: Any, rows: int = 600, dims: int = 256
                        ) -> tuple[float, float] | None:
    """(1-nearest-neighbour label agreement on standardized inputs, chance agreement), for a later no_learning
    verdict: a model that learns nothing from data whose neighbours share labels no more often than chance is fed
    labels unrelated to the inputs. Wide inputs are randomly projected to `dims` features first."""
    cls = classes_of(y)
    if cls is None or len(cls) < 50 or not x.is_floating_point() or x.ndim < 2:
        return None
    keep = labelled(cls, ignore_index)
    idx = keep[subsample(len(keep), rows)]
    if len(idx) < 50:
        return None
    xs = x[idx.to(x.device)].reshape(len(idx), -1).float().cpu()
    ys = cls[idx.to(cls.device)].cpu()
    if not bool(torch.isfinite(xs).all()):
        return None
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
    return float((ys[other] == ys).double().mean()), float((p * p).sum())


def labelled(cls: torch.Tensor, ignore_index: Any) -> torch.Tensor:
    """Indices of the rows with a real class label (not negative, not the loss's ignore_index)."""
    ok = cls >= 0
    if ignore_index is not None:
        ok &= cls != ignore_index
    return ok.nonzero().flatten().cpu()

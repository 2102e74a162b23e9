"""`train.batch_size: auto`: the largest batch that fits on the GPU, and the learning rate scaled to match.

The search runs real training steps (forward, loss, backward) on real rows at growing batch sizes: doubling until
the GPU runs out of memory, then bisecting between the last size that fitted and the first that did not. Memory the
optimizer will need later (Adam keeps two tensors per parameter, SGD with momentum one) is held in reserve during
the search, plus a safety margin, so that the first real optimizer step does not run out. Nothing the search does
stays: gradients are dropped, BatchNorm statistics and RNG states are restored, no optimizer step is taken.

The LR rule: the configured LR is taken as right for the reference batch (`REFERENCE_BATCH`, the default batch
size of 128). SGD-like optimizers scale it linearly with the batch (Goyal et al. 2017, "Accurate, large minibatch
SGD"); adaptive ones (Adam family, RMSprop, Adagrad) with the square root (the noise scale of the gradient estimate
falls with sqrt(batch); Malladi et al. 2022, "On the SDEs and scaling rules for adaptive gradient algorithms").
The batch is capped so that an epoch keeps at least `MIN_STEPS_PER_EPOCH` steps: on a small dataset a batch as big
as memory allows would leave too few updates to learn anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradwise.config import REFERENCE_BATCH

MIN_STEPS_PER_EPOCH = 16
MAX_BATCH = 65536
SAFETY = 0.9  # use at most 90% of the largest batch that fitted: activations vary a little between batches
_LINEAR_RULE = ("sgd",)
_STATE_TENSORS = {"sgd": 1, "rmsprop": 2, "adagrad": 1, "adam": 2, "adamw": 2, "adamax": 2, "nadam": 2, "radam": 2}


@dataclass
class BatchSizeChoice:
    batch_size: int
    lr: float | None  # the scaled LR (None when the LR is 'auto' and the range test will pick it)
    largest_fit: int | None  # the largest batch that fitted in the search (None: no search, e.g. on CPU)
    tried: list[tuple[int, bool]]  # (batch size, fitted) in the order tried
    rule: str
    reason: str

    def describe(self) -> str:
        lr = f", optim.lr scaled by the {self.rule} rule to {self.lr:.3g}" if self.lr is not None else ""
        return f"train.batch_size=auto: {self.batch_size} ({self.reason}){lr}"


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def search(fits: Callable[[int], bool], start: int, cap: int) -> tuple[int | None, list[tuple[int, bool]]]:
    """The largest batch size in [1, cap] for which fits(size) is True: double from `start`, then bisect.

    Returns (None, tried) when not even `start` (nor anything below it down to 1) fits.
    """
    tried: list[tuple[int, bool]] = []

    def attempt(size: int) -> bool:
        ok = fits(size)
        tried.append((size, ok))
        return ok

    size = max(1, min(start, cap))
    while not attempt(size):  # not even the start fits: halve
        if size == 1:
            return None, tried
        size //= 2
    good, bad = size, None
    while bad is None and good < cap:
        nxt = min(good * 2, cap)
        if attempt(nxt):
            good = nxt
        else:
            bad = nxt
    if bad is not None:
        while bad - good > max(1, good // 16):  # bisect to within ~6%: finer steps only cost more tries
            mid = (good + bad) // 2
            if attempt(mid):
                good = mid
            else:
                bad = mid
    return good, tried


def scale_lr(lr: float, optimizer: str, batch_size: int, reference: int = REFERENCE_BATCH) -> tuple[float, str]:
    if optimizer in _LINEAR_RULE:
        return lr * batch_size / reference, "linear"
    return lr * math.sqrt(batch_size / reference), "square-root"


def choose_batch_size(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, n_train: int, *,
                      device: torch.device, optimizer: str, lr: float | str, autocast: Callable,
                      forward: Callable | None = None, fits: Callable[[int], bool] | None = None) -> BatchSizeChoice:
    """Pick the batch size for `train.batch_size: auto` (see the module docstring). `x, y` are training rows to
    build trial batches from (repeated when a trial batch is larger). `fits` replaces the GPU trial (tests)."""
    cap = max(1, min(MAX_BATCH, n_train // MIN_STEPS_PER_EPOCH))
    if fits is None and device.type != "cuda":
        size = min(REFERENCE_BATCH, max(cap, 1))
        return BatchSizeChoice(size, None, None, [], "none",
                               f"on {device.type} memory is not the limit: the well-tried default")
    reserve = None
    if fits is None:
        state_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        state_bytes *= _STATE_TENSORS.get(optimizer, 2)
        free, total = torch.cuda.mem_get_info(device)
        reserve_bytes = min(state_bytes + int(0.05 * total), max(free - (1 << 26), 0))
        reserve = torch.empty(reserve_bytes, dtype=torch.uint8, device=device)
        fits = _gpu_trial(model, loss_fn, x, y, device, autocast, forward)
    try:
        largest, tried = search(fits, start=32, cap=cap)
    finally:
        del reserve
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if largest is None:
        from gradwise.errors import ConfigError

        raise ConfigError("train.batch_size=auto: not even a batch of 1 fits in GPU memory with this model. Use a "
                          "smaller model, train.precision=bf16, or a GPU with more memory.")
    size = largest if largest >= cap else max(1, int(largest * SAFETY))
    if size >= 8:
        size -= size % 8  # multiples of 8 suit tensor cores
    reason = (f"largest that fitted {largest}, x{SAFETY} margin" if largest < cap
              else f"capped at {cap} = {n_train} rows / {MIN_STEPS_PER_EPOCH} steps per epoch")
    if isinstance(lr, str):
        return BatchSizeChoice(size, None, largest, tried, "none", reason)
    new_lr, rule = scale_lr(float(lr), optimizer, size)
    return BatchSizeChoice(size, new_lr, largest, tried, rule, reason)


def _gpu_trial(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, device: torch.device,
               autocast: Callable, forward: Callable | None) -> Callable[[int], bool]:
    from gradwise.train.preserve import preserved

    def fits(size: int) -> bool:
        reps = -(-size // len(x))
        xb = x.repeat(reps, *([1] * (x.ndim - 1)))[:size].to(device)
        yb = y.repeat(reps, *([1] * (y.ndim - 1)))[:size].to(device)
        try:
            with preserved(model, mode=True):
                with autocast():
                    out = forward(model, xb) if forward else model(xb)
                    loss = loss_fn(out, yb)
                loss.backward()
            return True
        except Exception as exc:
            if not is_oom(exc):
                raise
            return False
        finally:
            model.zero_grad(set_to_none=True)
            del xb, yb
            torch.cuda.empty_cache()

    return fits


def sample_rows(loader: Any, limit: int = 256) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Some training rows to build trial batches from: the loader's tensors, or its first batch."""
    if hasattr(loader, "x") and hasattr(loader, "y"):
        inputs = getattr(loader, "inputs", None)  # uint8 image splits: the model's float inputs
        x = loader.x[:limit]
        return (inputs(x) if callable(inputs) else x), loader.y[:limit]
    try:
        batch = next(iter(loader))
    except StopIteration:
        return None
    return (batch[0], batch[1]) if isinstance(batch[0], torch.Tensor) else None



__all__ = ["BatchSizeChoice", "choose_batch_size", "scale_lr", "search"]

"""Batch augmentation for the training split, applied by the training loop after a batch is on its device.

Only torch ops and the global torch RNG are used, so a run is reproducible under ``torch.manual_seed`` on CPU
and GPU alike, and nothing is copied back to the host. Augmentations never modify their input in place.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gradwise.config import DataConfig
from gradwise.errors import DataError

IMAGE_AUGMENTS = ("flip", "rotate", "translate", "noise")
SIGNAL_AUGMENTS = ("shift", "scale", "noise")
TABLE_AUGMENTS = ("noise",)
ALL_AUGMENTS = tuple(dict.fromkeys(IMAGE_AUGMENTS + SIGNAL_AUGMENTS))


def _flip(x: torch.Tensor, strength: float) -> torch.Tensor:
    # horizontal flip of a random half of the batch; strength only switches it on
    mask = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(mask.view(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)


def _affine(x: torch.Tensor, theta: torch.Tensor, mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _rotate(x: torch.Tensor, strength: float) -> torch.Tensor:
    n = x.shape[0]
    angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(15.0 * strength)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _affine(x, theta, "bilinear")


def _translate(x: torch.Tensor, strength: float) -> torch.Tensor:
    # whole-pixel shifts up to 10%·strength of each side; nearest sampling keeps pixel values exact
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    mh, mw = max(1, round(0.1 * strength * h)), max(1, round(0.1 * strength * w))
    dy = torch.randint(-mh, mh + 1, (n,), device=x.device).to(x.dtype)
    dx = torch.randint(-mw, mw + 1, (n,), device=x.device).to(x.dtype)
    one, zero = torch.ones_like(dx), torch.zeros_like(dx)
    # affine_grid works in [-1, 1] coordinates: one pixel is 2/side
    theta = torch.stack([torch.stack([one, zero, 2 * dx / w], 1), torch.stack([zero, one, 2 * dy / h], 1)], 1)
    return _affine(x, theta, "nearest")


def _noise(x: torch.Tensor, strength: float) -> torch.Tensor:
    return x + torch.randn_like(x) * (0.05 * strength)


def _shift(x: torch.Tensor, strength: float) -> torch.Tensor:
    # circular shift of each signal by up to 10%·strength of its length, along the last axis
    n, length = x.shape[0], x.shape[-1]
    m = max(1, round(0.1 * strength * length))
    s = torch.randint(-m, m + 1, (n,), device=x.device)
    idx = (torch.arange(length, device=x.device).unsqueeze(0) - s.unsqueeze(1)) % length  # (N, L)
    if x.ndim == 3:
        idx = idx.unsqueeze(1).expand(-1, x.shape[1], -1)
    return x.gather(-1, idx)


def _scale(x: torch.Tensor, strength: float) -> torch.Tensor:
    # amplitude × U(1 − 0.2·strength, 1 + 0.2·strength), one factor per sample
    f = 1 + (torch.rand(x.shape[0], device=x.device, dtype=x.dtype) * 2 - 1) * (0.2 * strength)
    return x * f.view(-1, *([1] * (x.ndim - 1)))


_OPS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "flip": _flip, "rotate": _rotate, "translate": _translate, "noise": _noise, "shift": _shift, "scale": _scale,
}


class BatchAugment:
    """A picklable chain of batch augmentations, applied in the order given."""

    def __init__(self, names: list[str], strength: float) -> None:
        self.names = list(names)
        self.strength = float(strength)
        self._ops = [functools.partial(_OPS[n], strength=self.strength) for n in self.names]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self._ops:
            x = op(x)
        return x

    def __repr__(self) -> str:
        return f"BatchAugment({self.names}, strength={self.strength})"


def data_kind(input_shape: tuple[int, ...], kind: str | None = None) -> str:
    """image for (C, H, W), signal for (L,) and (C, L), unless the bundle's kind says table."""
    if kind is not None:
        return kind
    return "image" if len(input_shape) == 3 else "signal"


def build_augment(cfg: DataConfig, input_shape: tuple[int, ...], kind: str | None = None
                  ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The training-batch augmentation for ``cfg.augment`` (None when there is none to do).

    Pass ``kind=bundle.kind`` so tables (whose shape (F,) looks like a signal) only allow noise.
    """
    names = [str(n).strip().lower() for n in cfg.augment]
    if not names:
        return None
    k = data_kind(tuple(input_shape), kind)
    valid = {"image": IMAGE_AUGMENTS, "signal": SIGNAL_AUGMENTS, "table": TABLE_AUGMENTS}.get(k, ())
    what = {"image": "images (C, H, W)", "signal": "signals (L,) or (C, L)", "table": "tables"}.get(k, k)
    for n in names:
        if n not in ALL_AUGMENTS:
            raise DataError(f"data.augment: unknown augmentation '{n}'. Valid for {what}: {', '.join(valid)} "
                            f"(all known: {', '.join(ALL_AUGMENTS)}).")
        if n not in valid:
            raise DataError(f"data.augment: '{n}' does not apply to {what} (input shape {tuple(input_shape)}). "
                            f"Valid here: {', '.join(valid)}.")
    if cfg.augment_strength == 0:
        return None  # strength 0 turns every augmentation into the identity
    return BatchAugment(names, cfg.augment_strength)

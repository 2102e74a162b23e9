"""Run code on a model and put everything back: buffers, train/eval flags, gradients and the RNG streams.

Used wherever a measurement must not change the run it measures (the doctor's probes, the auto batch size's trial
steps); it lives with the training loop's state helpers, below both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from gradwise.train.checkpoint import rng_state, set_rng_state


@contextlib.contextmanager
def preserved(model: nn.Module, mode: bool | None = None, all_rngs: bool = True) -> Iterator[None]:
    """Run code on the model and put back its buffers, train/eval flags, gradients and the RNG streams (torch's
    only with all_rngs=False: enough for an eval-mode forward, and much cheaper than Python's and numpy's)."""
    rng = rng_state() if all_rngs else None
    torch_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and not all_rngs else None
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    grads = [(p, p.grad) for p in model.parameters()]
    flags = [(m, m.training) for m in model.modules()]
    try:
        if mode is not None:
            model.train(mode)
        yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for p, g in grads:
            p.grad = g
        for m, was in flags:
            m.training = was
        if rng is not None:
            set_rng_state(rng)
        torch.set_rng_state(torch_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)

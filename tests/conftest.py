"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

# train.threads: auto picks fewer threads when other processes keep cores busy, and kernels with parallel reductions
# round differently with another count. Tests that compare two runs bit for bit must not depend on the machine's
# load, so the suite pins torch's own count (auto defers to OMP_NUM_THREADS; tests/test_threads.py removes it to
# test auto itself). Set after torch loaded: it changes no thread count here, only what auto and subprocesses see.
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


@pytest.fixture
def torch_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """torch's intra-op threads for one test (indirect parameter; default 1), the previous count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(getattr(request, "param", 1))
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def single_thread(torch_threads: None) -> None:
    """Tiny models: one intra-op thread is fastest and avoids spin-wait stalls on a busy machine."""

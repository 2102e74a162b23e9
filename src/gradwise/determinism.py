"""train.deterministic: torch's deterministic mode for the length of one run, restored afterwards.

Seeds alone make a CPU run repeat bit for bit (same thread count, same torch build); on a GPU several kernels
(atomic-add reductions in cuDNN/cuBLAS, scatter/index_add backward, cuDNN autotuning picking a different
algorithm) still differ from run to run. The switch turns those off at some speed cost.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import torch

from gradwise.errors import TrainingError

# cuBLAS reuses workspace buffers across streams nondeterministically unless given a fixed configuration; it reads
# the variable when its handle is created, so it must be set before the first CUDA matmul of the process
CUBLAS_WORKSPACE = ":4096:8"
_NO_DETERMINISTIC = re.compile(r"(\S+) does not have a deterministic implementation")


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Deterministic algorithms, cuDNN deterministic and benchmark off, and CUBLAS_WORKSPACE_CONFIG (when unset)
    inside the block; the caller's settings are back afterwards (another run in the same process is not affected).

    An op with no deterministic implementation raises torch's RuntimeError; it leaves as a TrainingError that names
    the op and the switch to turn off.
    """
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    set_env = "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # a user's own setting wins
    if set_env:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    except RuntimeError as exc:
        found = _NO_DETERMINISTIC.search(str(exc))
        if found is None or isinstance(exc, TrainingError):
            raise
        raise TrainingError(f"train.deterministic=true: the operation {found.group(1)} has no deterministic "
                            f"implementation on this device, so the run cannot be made bit-reproducible; set "
                            f"train.deterministic=false (or replace that operation in the model).") from exc
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
        if set_env:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)

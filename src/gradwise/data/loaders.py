"""Batches for the training loop.

Small in-memory datasets stay as tensors and are batched by indexing one permutation per epoch: per-item
collation through a DataLoader costs more than the model on small problems (fastai#3949 measured 20×).
Every loader draws its order from a generator seeded by (seed, epoch), so the order of any epoch can be rebuilt
exactly on resume, and a resumed epoch can skip the batches it already trained on.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from gradwise.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # A distinct, reproducible stream per epoch: large odd multiplier keeps (seed, epoch) pairs apart.
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + 17) % (2**63))


# Data-parallel sharding (train.strategy: ddp). A training epoch's order is the same (seed, epoch) permutation as in
# one process; global batch i is its rows [i*B, (i+1)*B) with B = batch_size x processes, and process r trains on
# the r-th of `world` near-equal parts of it. So the rows of a step are those of one process's step with batch B,
# every process takes the same number of steps, and the order does not depend on anything but (seed, epoch) and
# the process count. A last global batch with fewer rows than processes is left out of that epoch (a process
# cannot take a step on no rows). Evaluation splits are cut into `world` contiguous blocks instead: every row is
# evaluated exactly once, and the blocks in rank order are the split in its order.


def global_batches(n: int, batch: int, world: int, drop_last: bool = False) -> int:
    """Steps of an epoch of `n` rows in global batches of `batch` x `world` rows (see above)."""
    big = batch * world
    return n // big if drop_last else n // big + (1 if n % big >= world else 0)


def batch_part(n: int, batch: int, world: int, rank: int, i: int) -> tuple[int, int]:
    """Start and end (in the epoch's order) of process `rank`'s rows of global batch `i`."""
    big = batch * world
    q, r = divmod(min(big, n - i * big), world)
    start = i * big + rank * q + min(rank, r)
    return start, start + q + (1 if rank < r else 0)


def block(n: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [start, end) of process `rank`'s contiguous block of an evaluation split of `n` rows."""
    q, r = divmod(n, world)
    start = rank * q + min(rank, r)
    return start, start + q + (1 if rank < r else 0)


class PixelNormalize:
    """uint8 pixels -> the model's float32 inputs, per batch: x · scale, minus the channel centre, over the channel
    spread -- Preprocessor.array_matrix's float32 operations in its order, so a batch holds the values the whole
    set converted at preparation held, while the set stays uint8 in memory (a quarter of float32's bytes)."""

    def __init__(self, scale: float, center: np.ndarray | None, spread: np.ndarray | None) -> None:
        self.scale = torch.tensor(scale, dtype=torch.float32)  # the float32 factor, as np.float32(scale)
        self.center = None if center is None else torch.from_numpy(np.asarray(center, dtype=np.float32))
        self.spread = None if spread is None else torch.from_numpy(np.asarray(spread, dtype=np.float32))

    def to(self, device: torch.device) -> PixelNormalize:
        """A copy on `device`: the bundle's own object is shared by every run on the same prepared data (tuning
        trials), so it stays where it is (a trial on a GPU must not move it under the next trial's CPU rows)."""
        moved = copy.copy(self)
        moved.scale = self.scale.to(device)
        if self.center is not None and self.spread is not None:
            moved.center, moved.spread = self.center.to(device), self.spread.to(device)
        return moved

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = x.to(torch.float32)  # a new tensor: the in-place steps below never touch the stored pixels
        out *= self.scale
        if self.center is not None and self.spread is not None:
            out -= self.center
            out /= self.spread
        return out


class TensorLoader:
    """Mini-batches of in-memory tensors by index slicing; optionally weighted sampling with replacement.

    ``transform`` (PixelNormalize: image splits kept as uint8) turns each batch's inputs into the model's; `x`
    stays as stored."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_last: bool = False, weights: torch.Tensor | None = None,
                 transform: PixelNormalize | None = None, drop_single: bool = False) -> None:
        if len(x) != len(y):
            raise DataError(f"features have {len(x)} rows but targets have {len(y)}; give one target per row.")
        if len(x) == 0:
            raise DataError("a data split is empty; give it rows or change data.val_fraction/test_fraction.")
        self.x, self.y = x, y
        self.source = (x, y)  # the tensors as given, wherever `to()` moves x and y (what identifies the data)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last and len(x) > batch_size
        # A last training batch of ONE row is left out of the epoch: BatchNorm cannot normalize a single row (torch
        # raises) and its gradient is one row's noise; the rows are reshuffled every epoch, none is lost for good.
        self.drop_single = drop_single
        self.weights = weights
        self.epoch = 0
        self.skip = 0
        self.rank, self.world, self.by_block = 0, 1, False  # one process (see shard())
        self.transform = transform

    def shard(self, rank: int, world: int) -> TensorLoader:
        """Yield only process `rank`'s part of the data of a `world`-process run: its part of every global batch
        when training (shuffle or weights), its contiguous block of rows otherwise (an evaluation split). The
        tensors stay whole (the doctor's pre-flight reads the whole split)."""
        self.rank, self.world, self.by_block = rank, world, not self.shuffle and self.weights is None
        return self

    def global_rows(self, i: int) -> int:
        """Rows of global batch `i` over all processes (what one process's batch `i` has in a one-process run)."""
        big = self.batch_size * self.world
        return min(big, len(self.x) - i * big)

    @property
    def dataset_size(self) -> int:
        return len(self.x)

    def resize(self, batch_size: int) -> None:
        """Use another batch size from the next epoch on (train.batch_size: auto)."""
        self.batch_size = batch_size

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches

    def to(self, device: torch.device) -> TensorLoader:
        # Moving the whole (small) dataset once beats a host->device copy per batch.
        self.x, self.y = self.x.to(device), self.y.to(device)
        if self.weights is not None:
            self.weights = self.weights.to(device)
        if self.transform is not None:
            self.transform = self.transform.to(device)
        return self

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Stored rows -> the model's inputs (the identity unless a transform is set)."""
        return x if self.transform is None else self.transform(x)

    def __len__(self) -> int:
        n = len(self.x)
        if self.world > 1:
            if self.by_block:
                start, end = block(n, self.world, self.rank)
                return -(-(end - start) // self.batch_size)
            return global_batches(n, self.batch_size, self.world, self.drop_last)
        if self.drop_last or (self.drop_single and n > self.batch_size and n % self.batch_size == 1):
            return n // self.batch_size
        return -(-n // self.batch_size)

    def _order(self) -> torch.Tensor | None:
        g = epoch_generator(self.seed, self.epoch)
        n = len(self.x)
        if self.weights is not None:
            return torch.multinomial(self.weights.cpu().double(), n, replacement=True, generator=g)
        return torch.randperm(n, generator=g) if self.shuffle else None

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        if order is not None:
            order = order.to(self.x.device)
        bs = self.batch_size
        for i in range(self.skip, len(self)):
            if self.world > 1:  # data-parallel: this process's part (see shard())
                if self.by_block:
                    start = block(len(self.x), self.world, self.rank)[0] + i * bs
                    end = min(start + bs, block(len(self.x), self.world, self.rank)[1])
                else:
                    start, end = batch_part(len(self.x), bs, self.world, self.rank, i)
                idx = slice(start, end) if order is None else order[start:end]
                yield self.inputs(self.x[idx]), self.y[idx]
            elif order is None:
                yield self.inputs(self.x[i * bs:(i + 1) * bs]), self.y[i * bs:(i + 1) * bs]
            else:
                idx = order[i * bs:(i + 1) * bs]
                yield self.inputs(self.x[idx]), self.y[idx]
        self.skip = 0


class EpochSampler(Sampler[int]):
    """Random order for a map-style Dataset, rebuilt from (seed, epoch) and able to skip finished batches."""

    def __init__(self, n: int, seed: int, shuffle: bool, batch_size: int) -> None:
        self.n, self.seed, self.shuffle, self.batch_size = n, seed, shuffle, batch_size
        self.epoch = 0
        self.skip = 0
        self.rank, self.world = 0, 1  # data-parallel: see TensorLoader.shard

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches

    def _parts(self) -> list[tuple[int, int]]:
        """This process's [start, end) ranges of the epoch's order, one per batch (data-parallel only)."""
        if not self.shuffle:
            start, end = block(self.n, self.world, self.rank)
            return [(s, min(s + self.batch_size, end)) for s in range(start, end, self.batch_size)]
        count = global_batches(self.n, self.batch_size, self.world)
        return [batch_part(self.n, self.batch_size, self.world, self.rank, i) for i in range(count)]

    def __len__(self) -> int:
        if self.world > 1:
            return sum(end - start for start, end in self._parts()[self.skip:])
        return max(self.n - self.skip * self.batch_size, 0)

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch)) if self.shuffle \
            else torch.arange(self.n)
        if self.world > 1:  # each part is at most one batch and every full part is one: batches stay aligned
            parts, self.skip = self._parts()[self.skip:], 0
            return iter([i for start, end in parts for i in order[start:end].tolist()])
        start = self.skip * self.batch_size
        self.skip = 0
        return iter(order[start:].tolist())


class DatasetLoader:
    """A torch DataLoader over a map-style Dataset, with gradwise's reproducible per-epoch order."""

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0, num_workers: int = 0,
                 drop_last: bool = False) -> None:
        self.dataset = dataset
        self.sampler = EpochSampler(len(dataset), seed, shuffle, batch_size)  # type: ignore[arg-type]
        self._options = {"num_workers": num_workers, "drop_last": drop_last}
        self.resize(batch_size)

    def resize(self, batch_size: int) -> None:
        """Use another batch size from the next epoch on (train.batch_size: auto)."""
        self.batch_size = self.sampler.batch_size = batch_size
        workers = self._options["num_workers"]
        self.loader = DataLoader(self.dataset, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
                                 drop_last=self._options["drop_last"], persistent_workers=workers > 0,
                                 pin_memory=torch.cuda.is_available())
        self._len = len(self.loader)

    @property
    def dataset_size(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def shard(self, rank: int, world: int) -> DatasetLoader:
        """This process's part of the data of a `world`-process run (see TensorLoader.shard)."""
        self.sampler.rank, self.sampler.world = rank, world
        self._options["drop_last"] = False  # the sampler's parts decide the batches
        self.resize(self.batch_size)
        return self

    def global_rows(self, i: int) -> int:
        big = self.batch_size * self.sampler.world
        return min(big, self.sampler.n - i * big)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.sampler.set_epoch(epoch, skip_batches)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)


class UserLoader:
    """A DataLoader the user built: used as given. Its order is reproducible if it draws from torch's global RNG
    (which gradwise checkpoints) or from a generator; a resumed epoch skips finished batches by iterating."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.skip = 0
        self.batch_size = loader.batch_size or 1

    @property
    def dataset_size(self) -> int:
        try:
            return len(self.loader.dataset)  # type: ignore[arg-type]
        except TypeError:
            return len(self.loader) * self.batch_size

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # DistributedSampler
            sampler.set_epoch(epoch)  # type: ignore[union-attr]
        self.skip = skip_batches

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.loader)
        for _ in range(self.skip):
            next(it, None)
        self.skip = 0
        return it


def _as_tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a))
    if isinstance(a, Sequence):
        return torch.as_tensor(np.asarray(a))
    if hasattr(a, "to_numpy"):  # pandas
        return torch.from_numpy(np.ascontiguousarray(a.to_numpy()))
    raise DataError(f"{what}: expected a tensor, numpy array or list, got {type(a).__name__}.")


def pair_to_tensors(data: tuple[Any, Any], split: str, ids: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, y) arrays -> float features and int64 (classification) or float (regression) targets.

    ``ids``: the model starts with an embedding, so integer inputs are token/category ids and stay int64."""
    x = _as_tensor(data[0], f"{split} features")
    y = _as_tensor(data[1], f"{split} targets")
    if ids and not torch.is_floating_point(x) and x.dtype != torch.bool:
        x = x.long()
    elif not torch.is_floating_point(x) or x.dtype == torch.float64:
        x = x.float()
    if y.dtype == torch.float64:
        y = y.float()
    elif not torch.is_floating_point(y) and y.dtype != torch.int64 and y.dtype != torch.bool:
        y = y.long()
    return x, y


def eval_batch_size(batch_size: int, x: torch.Tensor | None = None) -> int:
    """Batch size for evaluation: the training batch. A training step at that size keeps every layer's activations
    (and their gradients) for the backward pass; evaluation frees each layer's as it goes, so it never needs more
    memory than training did, on any device. (Sizing by input bytes made 2,674-image batches for 28x28 inputs, a
    268 MB conv output, where training batches of 128 fit: out of memory on a GPU that trains fine.)
    ``x`` is not used; it is accepted for callers written for the older rule."""
    del x
    return max(int(batch_size), 1)


def make_loader(data: Any, batch_size: int, *, shuffle: bool, seed: int, num_workers: int = 0,
                drop_last: bool = False, weights: torch.Tensor | None = None, split: str = "train",
                ids: bool = False) -> Any:
    """Turn what a user passes (Dataset, DataLoader, (X, y)) into a gradwise loader. `batch_size` is the training
    batch; evaluation splits (split != "train") use `eval_batch_size` of it."""
    if isinstance(data, TensorLoader | DatasetLoader | UserLoader):
        return data
    if isinstance(data, DataLoader):
        return UserLoader(data)
    if isinstance(data, tuple | list) and len(data) == 2 and not isinstance(data, Dataset):
        x, y = pair_to_tensors((data[0], data[1]), split, ids=ids)
        if split != "train":
            batch_size = eval_batch_size(batch_size, x)
        return TensorLoader(x, y, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, weights=weights)
    if isinstance(data, Dataset):
        if weights is not None:
            return UserLoader(DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                                         sampler=WeightedRandomSampler(weights.double(), len(weights))))
        if split != "train":
            batch_size = eval_batch_size(batch_size)
        return DatasetLoader(data, batch_size, shuffle=shuffle, seed=seed, num_workers=num_workers,
                             drop_last=drop_last)
    raise DataError(f"{split} data: expected a torch Dataset, a DataLoader or an (X, y) pair of arrays/tensors, "
                    f"got {type(data).__name__}. Wrap your arrays as fit(model, (X, y)).")

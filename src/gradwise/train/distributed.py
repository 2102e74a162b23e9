"""Data-parallel training (train.strategy: ddp): one process per device, started by torchrun.

torch does the work: `torch.distributed.run` (torchrun) starts the processes and sets RANK, WORLD_SIZE and
LOCAL_RANK; `init_process_group` connects them (Gloo on CPUs, NCCL on GPUs); DistributedDataParallel averages the
gradients in buckets during the backward pass. What gradwise adds is what it promises in one process, kept when it
runs on many:

* the data: each process trains on its own part of every global batch of the epoch's (seed, epoch) order, and
  evaluates its own block of the validation/test rows; the outputs are gathered so the metrics are the whole
  split's (gradwise.data.loaders.shard);
* one step, one loss: a micro-batch's loss is weighted so that the averaged gradient is the gradient of the global
  batch's mean loss, and one small all-reduce per step makes the step's loss the global one, so every process sees
  the same loss (a NaN on any process is a NaN on all, and the doctor's guard fires on all at the same step);
* one decision: after each step and each epoch, one all-reduce of flags makes every process stop at the same step
  (a signal on any process, a callback's should_stop, a repair rank 0 asks for);
* one run directory: rank 0 alone writes (RunDir(is_main=False) elsewhere) and reads checkpoints (a resume, a
  rollback, early stopping's best weights), and sends what it read to the others, so the processes of another
  machine need no shared disk;
* exact resume: every process's random-number state goes into the checkpoint (`rng_ranks`), so a run resumed on
  the same number of processes repeats bit for bit on CPU.

Nothing here runs in a one-process fit: the loop and the API call into it only when `trainer.dist` is set.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gradwise.errors import CheckpointError, ConfigError, DataError, GradwiseError, TrainingError


def launched() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when this process was started by torchrun (or a user's own launcher that sets
    the same variables), else None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        return None


def rank() -> int:
    """This process's rank (0 in one process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    found = launched()
    return found[0] if found else 0


def world() -> int:
    """The number of processes of this run (1 unless a process group is up)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def resolve_strategy(strategy: str) -> str:
    """train.strategy -> "single" or "ddp", refusing the combinations that cannot work."""
    found = launched()
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else (found[1] if found else 1)
    if strategy == "auto":
        return "ddp" if world > 1 else "single"
    if strategy == "single" and world > 1:
        raise ConfigError(f"train.strategy = 'single' but this process is one of WORLD_SIZE={world} started by "
                          "torchrun: each would train alone and write the same run directory. Use "
                          "train.strategy=auto (or ddp) to train them together, or start one process.")
    if strategy == "ddp" and found is None and not (dist.is_available() and dist.is_initialized()):
        raise ConfigError("train.strategy = 'ddp' needs processes started by torchrun: run `gradwise train CONFIG "
                          "--nproc 2` (2 processes on this machine), or `torchrun --nproc-per-node 2 -m gradwise "
                          "train CONFIG`; in one process use train.strategy=auto or single.")
    return strategy


def setup(strategy: str, device: str, *, compile: bool = False, unfreeze_after: int | None = None
          ) -> Distributed | None:
    """The process group of a data-parallel run (None for one process): joined if the caller already made it (a
    user's torchrun script), else made here and closed by `Distributed.close`."""
    if resolve_strategy(strategy) == "single":
        return None
    if compile:
        raise ConfigError("train.compile = true with train.strategy = ddp is not supported yet; set "
                          "train.compile=false (or train in one process).")
    if unfreeze_after is not None:
        raise ConfigError("model.unfreeze_after with train.strategy = ddp is not supported: DistributedDataParallel "
                          "fixes the trained parameters when it starts. Train the frozen stage and the unfrozen one "
                          "as two runs (the second with model.pretrained=DIR/checkpoints/best.pt).")
    return Distributed.start(device)


def _device(name: str, local_rank: int) -> torch.device:
    """The device of this process: GPU `LOCAL_RANK` when training on GPUs (one process per GPU)."""
    from gradwise.train.loop import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


class Distributed:
    """This process's place in a data-parallel run, and the collective steps the loop and the API take through it."""

    def __init__(self, rank: int, world: int, local_rank: int, device: torch.device, created: bool) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device = device
        self.created = created  # gradwise made the process group, so it closes it
        self.ddp: DistributedDataParallel | None = None
        self.pending_signal: int | None = None  # a signal this process got, not yet agreed on
        self._window_rows: int | None = None  # rows of the current step over all processes (None: not known)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device_name: str) -> Distributed:
        found = launched()
        local_rank = found[2] if found else 0
        device = _device(device_name, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        created = False
        if not dist.is_initialized():
            # CPU tensors (flags, RNG states, gathered outputs) go through Gloo; GPU tensors through NCCL
            backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
            created = True
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, device, created)

    def close(self) -> None:
        if self.created and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
            self.created = False

    # ------------------------------------------------------------------------------------------ set-up
    def wrap(self, model: nn.Module, seed: int) -> DistributedDataParallel:
        """DistributedDataParallel around `model` (already on its device); rank 0's weights and buffers are sent to
        the others as it starts. Ranks > 0 then get random streams of their own (their dropout masks differ)."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        # find_unused_parameters off (it costs a graph traversal per step); bucket sizes at torch's defaults
        self.ddp = DistributedDataParallel(model, device_ids=ids)  # buffers: rank 0's, sent at each forward
        if self.rank > 0:
            from gradwise.train.checkpoint import seed_everything

            seed_everything(_rank_seed(seed, self.rank))
        return self.ddp

    def shard(self, loader: Any, split: str) -> Any:
        """This process's part of a loader's data (gradwise.data.loaders: TensorLoader.shard)."""
        if loader is None:
            return None
        if hasattr(loader, "shard"):
            return loader.shard(self.rank, self.world)
        sampler = getattr(getattr(loader, "loader", None), "sampler", None)
        if split == "train" and not isinstance(sampler, torch.utils.data.DistributedSampler):
            raise DataError("train data: a DataLoader of your own cannot be split between the processes of a "
                            "data-parallel run; pass the Dataset or an (X, y) pair instead (gradwise gives each "
                            "process its part), or build the DataLoader with a DistributedSampler.")
        return loader  # evaluated whole by every process: the metrics are the same on each

    def check_data(self, train_loader: Any) -> None:
        """Every process must take the same number of steps per epoch, or one waits for the others forever."""
        counts = self.all_gather_object(len(train_loader))
        if len(set(counts)) > 1:
            raise DataError(f"the processes of this data-parallel run would take different numbers of steps per "
                            f"epoch ({counts}): give every process the same data, or use a DistributedSampler.")
        if counts[0] == 0:
            raise DataError(f"the training split has fewer rows than the {self.world} processes have to share; "
                            "train on fewer processes or give more data.")

    def prepare(self, cfg: Any, train: Any, val: Any, test: Any, optimizer: torch.optim.Optimizer
                ) -> tuple[Any, Any, Any]:
        """Rank 0's choices for `auto` settings (batch size, LR: a GPU's memory or a float's last bit could make
        them differ between processes), then each process's part of the data."""
        batch, lr = self.broadcast_object((cfg.train.batch_size, cfg.optim.lr))
        if batch != cfg.train.batch_size and hasattr(train, "resize"):
            train.resize(batch)
        if lr != cfg.optim.lr:
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * lr / cfg.optim.lr
        cfg.train.batch_size, cfg.optim.lr = batch, lr
        train, val, test = self.shard(train, "train"), self.shard(val, "val"), self.shard(test, "test")
        self.check_data(train)
        return train, val, test

    # ------------------------------------------------------------------------------------------ the step
    def loss_share(self, trainer: Any, window: list[Any]) -> float:
        """The factor on this process's (window-weighted) loss that makes DDP's average of the processes'
        gradients the gradient of the global batch's mean loss: processes x local rows / global rows. It is 1.0
        when every process has the same number of rows; the last batch of an epoch can be uneven."""
        rows = getattr(trainer.train_loader, "global_rows", None)
        self._window_rows = None
        if rows is None:  # a loader of the user's: DDP's plain average
            return 1.0
        first = trainer.batch_in_epoch * trainer.accumulate
        self._window_rows = total = sum(rows(first + k) for k in range(len(window)))
        local = sum(len(b[1]) for b in window)
        return self.world * local / total

    def sync_context(self, last: bool) -> contextlib.AbstractContextManager:
        """no_sync() for all but the last micro-batch of an accumulated step: one all-reduce per optimizer step."""
        return contextlib.nullcontext() if last or self.ddp is None else self.ddp.no_sync()

    def step_loss(self, loss: torch.Tensor, rows: int) -> tuple[torch.Tensor, int]:
        """(the global batch's mean loss, its rows) from this process's weighted loss and rows: one all-reduce, on
        the loss's device and without waiting for it (the rows are known from the loader: no host sync on a GPU)."""
        if self._window_rows is not None:
            total = loss.detach().clone()
            self._all_reduce(total, dist.ReduceOp.SUM)
            return total / self.world, self._window_rows
        both = torch.stack([loss.detach().double().reshape(()), torch.tensor(float(rows), dtype=torch.float64,
                                                                             device=loss.device)])
        self._all_reduce(both, dist.ReduceOp.SUM)
        return (both[0] / self.world).to(loss.dtype), int(both[1].item())

    def agree(self, trainer: Any) -> None:
        """After a step or an epoch: every process stops if any got a signal or was told to stop, and rolls back if
        rank 0's callbacks requested it (trainer.request: its decision is everyone's). One all-reduce of three
        numbers."""
        # A signal delivered while the all-reduce below blocks runs its handler when the call returns: only the
        # signal this agreement sent is cleared, a later one waits for the next agreement (clearing it lost
        # SIGTERMs that torchrun passes on to processes waiting in this very all-reduce).
        sent = self.pending_signal
        flags = torch.tensor([float(sent or 0), float(bool(trainer.should_stop)),
                              float(self.is_main and trainer._request is not None)], dtype=torch.float64)
        self._all_reduce(flags, dist.ReduceOp.MAX)
        signum, stop, rollback = (int(v) for v in flags.tolist())
        if signum and trainer._signal is None:
            import signal

            trainer._signal = signum
            trainer.stop_reason = (f"received {signal.Signals(signum).name}: checkpoint saved, resume with "
                                   "--resume")
        if sent is not None:
            self.pending_signal = None
        if stop:
            # the stop's reason and status come from the first process that stopped (rare: once per run)
            states = self.all_gather_object((bool(trainer.should_stop), trainer.stop_reason, trainer.failure))
            stopped = next(s for s in states if s[0])
            trainer.should_stop = True
            if trainer._signal is None:
                if stopped[2]:  # that process's callback marked the run failed
                    trainer.fail(stopped[2])
                trainer.stop_reason = stopped[1]
        if rollback:
            trainer._request = self.broadcast_object(trainer._request if self.is_main else None)
        elif not self.is_main:
            trainer._request = None  # only rank 0 decides a repair

    # ------------------------------------------------------------------------------------------ evaluation
    def eval_gather(self, model: nn.Module, loader: Any) -> Callable | None:
        """Before an evaluation: rank 0's BatchNorm statistics everywhere (what its checkpoint holds), and the
        function `evaluate` calls to combine the processes' blocks (None: every process evaluated it all)."""
        for buffer in model.buffers():
            self._broadcast(buffer)
        if getattr(loader, "world", getattr(getattr(loader, "sampler", None), "world", 1)) <= 1:
            return None
        return self._gather

    def _gather(self, total: torch.Tensor, count: int, outs: list[torch.Tensor], tgts: list[torch.Tensor]
                ) -> tuple[torch.Tensor, int, list[torch.Tensor], list[torch.Tensor]]:
        sums = torch.tensor([float(total.item()), float(count)], dtype=torch.float64)
        self._all_reduce(sums, dist.ReduceOp.SUM)
        local = (torch.cat(outs).cpu() if outs else None, torch.cat(tgts).cpu() if tgts else None)
        parts = [p for p in self.all_gather_object(local) if p[0] is not None]
        device = total.device
        return (sums[0].to(device), int(sums[1].item()), [p[0].to(device) for p in parts],
                [p[1].to(device) for p in parts])

    # ------------------------------------------------------------------------------------------ checkpoints
    def rng_states(self) -> list[dict[str, Any]]:
        """Every process's random-number state (a checkpoint holds them all: dropout masks differ per process)."""
        from gradwise.train.checkpoint import rng_state

        return self.all_gather_object(rng_state())

    def own_rng(self, state: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint state with this process's random-number state in "rng" (a resume or a rollback): its own
        when the checkpoint has as many processes, else streams seeded from the run's step (another process count
        cannot repeat the old run bit for bit anyway). Rank 0 keeps "rng", which is rank 0's (and what one process
        resumes from)."""
        states = state.get("rng_ranks")
        if isinstance(states, list) and len(states) == self.world:
            return {**state, "rng": states[self.rank]}
        if self.rank == 0:
            return state
        from gradwise.train.checkpoint import rng_state, seed_everything, set_rng_state

        keep = rng_state()
        seed_everything(_rank_seed(int(state.get("step", 0)), self.rank))
        fresh = rng_state()
        set_rng_state(keep)
        return {**state, "rng": fresh}

    def read_on_main(self, read: Callable[[], Any]) -> Any:
        """`read()` on rank 0 only (the run directory is on its machine), its result sent to every process; an
        error there is raised on every process."""
        result: Any = None
        if self.is_main:
            try:
                result = read()
            except BaseException as exc:  # sent on, so that the others do not wait for a state that never comes
                self.broadcast_object(("error", str(exc)))
                raise
        sent = self.broadcast_object(("ok", result) if self.is_main else None)
        if sent[0] == "error":
            raise PeerError(sent[1], 0)
        return sent[1]

    def load_weights(self, trainer: Any, which: str) -> int | None:
        """Early stopping's restore on every process: rank 0 reads checkpoints/<which>.pt, the others take its
        weights. Returns the restored epoch (None: no such checkpoint, nothing changed)."""
        from gradwise.train.checkpoint import load_checkpoint, load_weights_into
        from gradwise.train.loop import _epoch_of

        def read() -> tuple[bool, int | None]:
            trainer.checkpoints.flush()
            path = trainer.run_dir.checkpoints / f"{which}.pt"
            if not path.exists():
                return False, None
            state = load_checkpoint(path)
            load_weights_into(trainer.model, state, path)
            return True, _epoch_of(state)

        found, epoch = self.read_on_main(read)
        if found:
            for tensor in trainer.model.state_dict().values():
                self._broadcast(tensor)
        return epoch if found else trainer.restored_epoch

    # ------------------------------------------------------------------------------------------ collectives
    def broadcast_object(self, obj: Any) -> Any:
        box = [obj]
        self._call(dist.broadcast_object_list, box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        self._call(dist.all_gather_object, out, obj)
        return out

    def barrier(self) -> None:
        self._call(dist.barrier)

    def _all_reduce(self, tensor: torch.Tensor, op: Any) -> None:
        self._call(dist.all_reduce, tensor, op=op)

    def _broadcast(self, tensor: torch.Tensor) -> None:
        self._call(dist.broadcast, tensor, src=0)

    def _call(self, fn: Callable, *args: Any, **kwargs: Any) -> None:
        """A collective; a process that died or failed breaks it on the others, which then stop with one line that
        says so (its own error, named by its rank, is printed by that process)."""
        try:
            fn(*args, **kwargs)
        except (RuntimeError, ConnectionError, pickle.UnpicklingError) as exc:
            if isinstance(exc, GradwiseError):
                raise
            raise PeerError(f"another process of this data-parallel run stopped or failed ({_short(exc)}); its own "
                            "error, named by its rank, says why", None) from exc


class PeerError(TrainingError):
    """Another process of the run failed (or a collective broke): this process stops too. `peer` is the rank whose
    error it is, when known; the CLI of a rank > 0 does not print it again (rank 0 or the peer itself does)."""

    def __init__(self, message: str, peer: int | None) -> None:
        super().__init__(f"rank {peer}: {message}" if peer is not None else message)
        self.peer = peer


def open_on_main(dist_: Distributed, cfg: Any, open_run: Callable[[], Any], make: Callable[..., Any]) -> Any:
    """api._open_run of a data-parallel run: rank 0 claims or opens the directory as one process does (`open_run`),
    the others get the fields of what it found (`make(**fields)` builds theirs); each takes its own random streams
    from a resumed state."""
    fields = ("path", "resumed", "state", "finished", "note", "lr_factor", "created")
    opened: Any = None

    def claim() -> dict[str, Any]:
        nonlocal opened
        opened = open_run()
        return {k: getattr(opened, k) for k in fields}

    try:
        found = dist_.read_on_main(claim)
    except BaseException:
        dist_.close()
        raise
    if not dist_.is_main:
        opened = make(**found)
    cfg.out = str(opened.path)
    opened.dist = dist_
    if opened.state is not None:
        opened.state = dist_.own_rng(opened.state)
    return opened


def _rank_seed(seed: int, rank: int) -> int:
    return (seed * 1_000_003 + rank * 7_919_317) % (2**63)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else f"{text[:157]}..."


def check_resume_world(state: dict[str, Any] | None, world: int, path: Any) -> None:
    """A checkpoint taken in the middle of an epoch counts that epoch's rows in steps of its own global batch: it
    resumes on the same number of processes only. One from an epoch's end resumes on any number (the steps of the
    epochs to come, and so the LR schedule, follow the new global batch)."""
    if state is None:
        return
    saved = state.get("world_size", 1)
    if not isinstance(saved, int) or saved < 1:
        raise CheckpointError(f"checkpoint '{path}' cannot be resumed: its 'world_size' is {saved!r}, not a number "
                              "of processes.")
    ranks = state.get("rng_ranks")
    if ranks is not None:  # the processes' random streams: each tried on the generators, as the "rng" one is
        from gradwise.train.checkpoint import rng_state, set_rng_state

        current = rng_state()
        try:
            if not isinstance(ranks, list) or len(ranks) != saved:
                raise TypeError("not one per process")
            for one in ranks:
                set_rng_state(one)
        except Exception as exc:
            raise CheckpointError(f"checkpoint '{path}' cannot be resumed: its processes' random-number states "
                                  f"('rng_ranks') are damaged ({type(exc).__name__}). Resume from the run directory "
                                  "that wrote it, or start the run again in a new directory.") from None
        finally:
            set_rng_state(current)
    if saved != world and int(state.get("batch_in_epoch", 0)) > 0:
        how = "in one process" if saved == 1 else f"on {saved} processes (`--nproc {saved}`)"
        raise ConfigError(f"--resume '{path}': the checkpoint was taken in the middle of epoch "
                          f"{int(state['epoch']) + 1} by {saved} process(es), and this run has {world}: the rows "
                          f"that epoch has seen are counted in steps of {saved} process(es). Resume it {how}; at an "
                          "epoch boundary a run can go on with any number of processes.")


__all__ = ["Distributed", "PeerError", "check_resume_world", "launched", "open_on_main", "rank", "resolve_strategy",
           "setup", "world"]

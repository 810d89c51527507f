"""Where a training run executes: this process's rank among its peers, and its device.

One process on the CPU is ``Runtime()``. A run spread over several processes
(``torchrun``: :meth:`Runtime.from_env`) draws the same shuffled batches in
every process; each process trains on its slice of every batch (``split``)
through DistributedDataParallel (``wrap``), which averages the gradients, so
N processes follow the loss curve of one process with the same global batch.
Only rank 0 writes the run directory (``writer``), so peers never race on a
file.

When one process dies, torchrun sends the others SIGTERM; under
:func:`stop_on_sigterm` that signal raises :class:`Stopped` in the process, so
it ends through its error handling (one line, the checkpoint of the last
finished epoch kept: checkpoints are only ever renamed into place) instead of
vanishing without a word. A process that is not signalled sees its peer's
death as a RuntimeError from its next collective (gloo: "Connection reset by
peer").
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = ""  # torch.distributed's backend (gloo, nccl) when world_size > 1

    def __post_init__(self) -> None:
        if not (isinstance(self.world_size, int) and self.world_size >= 1):
            raise ValueError(f"world_size must be an int >= 1, got {self.world_size!r}")
        if not (isinstance(self.rank, int) and 0 <= self.rank < self.world_size):
            raise ValueError(f"rank must be an int in [0, world_size={self.world_size}), got {self.rank!r}")

    @property
    def writer(self) -> bool:
        """Whether this process writes the run directory (rank 0 only)."""
        return self.rank == 0

    def shard(self, batches: Sequence[T]) -> list[T]:
        """This process's share of a list: every world_size-th item, from its rank."""
        return list(batches)[self.rank :: self.world_size]

    def split(self, batch: Any) -> Any:
        """This process's slice of a batch: every tensor or array in it (in tuples, lists, dicts)
        cut along its first dimension into world_size nearly equal parts."""
        if self.world_size == 1:
            return batch
        if isinstance(batch, (torch.Tensor, np.ndarray)):
            n = len(batch)
            if n < self.world_size:
                raise ValueError(f"a batch of {n} cannot be split over {self.world_size} processes: raise --batch-size")
            lo, hi = (n * self.rank) // self.world_size, (n * (self.rank + 1)) // self.world_size
            return batch[lo:hi]
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.split(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self.split(v) for k, v in batch.items()}
        return batch

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model to train: DistributedDataParallel over the processes, or the model itself
        (also where no process group is running)."""
        import torch.distributed as dist

        if self.world_size == 1 or not dist.is_initialized():
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=None if self.device.type == "cpu" else [self.device])

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the processes."""
        import torch.distributed as dist

        if self.world_size == 1 or not dist.is_initialized():
            return value

        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    @classmethod
    def from_env(cls) -> Runtime:
        """The runtime ``torchrun`` describes (WORLD_SIZE, RANK, LOCAL_RANK), joining its process group
        (gloo on the CPU, nccl where CUDA is present); one plain process otherwise."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return SINGLE
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        device = (
            torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if backend == "nccl" else torch.device("cpu")
        )
        return cls(dist.get_rank(), dist.get_world_size(), device, backend)


SINGLE = Runtime()


class Stopped(RuntimeError):
    """torchrun stopped this process (SIGTERM): another process failed, or the job was cancelled."""


@contextmanager
def stop_on_sigterm(runtime: Runtime) -> Iterator[None]:
    """While the block runs in one of several processes, the first SIGTERM raises :class:`Stopped` (in the
    main thread, where Python runs signal handlers), and once the block has raised, SIGTERM is ignored while
    the process reports and ends; a single process keeps the default (end at once)."""
    if runtime.world_size == 1 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # once: a second SIGTERM ends the process at once
        raise Stopped("stopped by torchrun (SIGTERM): another process failed or the job was cancelled")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except BaseException:  # the process is ending: let it say why without a SIGTERM cutting it short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (torchrun sends SIGKILL 30 s after its SIGTERM)
        raise
    signal.signal(signal.SIGTERM, previous)

"""Where a training run executes: this process's rank among its peers, and its device.

One process on the CPU is ``Runtime()``. A run spread over several processes
(each its own ``Runtime(rank, world_size)``) draws the same shuffled batches in
every process, and each process takes its share (``shard``); only rank 0
writes the run directory (``writer``), so peers never race on a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

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
        """This process's share of an epoch's batches: every world_size-th, from its rank."""
        return list(batches)[self.rank :: self.world_size]


SINGLE = Runtime()

"""Bit-for-bit reproducible runs: ``grukit.use_deterministic(True)`` or ``--deterministic``.

grukit's native kernels are deterministic by construction: each thread owns a
fixed slice of the batch or of the hidden units (the split depends only on the
shapes and the thread count), and every sum runs in a fixed order, with no
atomics and no dynamic scheduling. So the same command with the same thread
count gives the same bits. Deterministic mode adds torch's own guarantee
(``torch.use_deterministic_algorithms``: an op without a deterministic
implementation raises instead of silently varying) and a fixed cuBLAS
workspace where CUDA is used. Runs are seeded in either mode.

Results differ between thread counts (the sums split differently), so a run
is reproducible for a given ``--threads``.
"""

from __future__ import annotations

import contextlib
import os

import torch


def use_deterministic(on: bool = True) -> None:
    """Turn deterministic mode on or off for this process."""
    if not isinstance(on, bool):
        raise TypeError(f"use_deterministic takes True or False, got {on!r}")
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)


def is_deterministic() -> bool:
    return torch.are_deterministic_algorithms_enabled()


@contextlib.contextmanager
def deterministic(on: bool):
    """Deterministic mode inside the block when ``on`` (the previous setting restored after)."""
    before = is_deterministic()
    if on:
        use_deterministic(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)

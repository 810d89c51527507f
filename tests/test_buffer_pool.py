"""The native kernel's pool of large buffers (kernels/fresh.h, ``recycled``): results that come
back free are handed out again instead of faulting fresh pages in every call. Seen through the
minGRU scan, whose output comes from the pool, and the pool's count of buffers it took fresh."""

from __future__ import annotations

import torch
from conftest import require_native

from grukit import kernels


def _scan(H: int) -> None:
    """One scan whose output (10, 1, H) comes from the pool; the output is dropped on return."""
    torch.ops.grukit.mingru_scan(torch.randn(10, 1, 2 * H), torch.zeros(1, H), None)


def test_two_sizes_in_turn_keep_their_buffers_after_the_pool_filled_with_others():
    """Two results of different sizes in turn (two models trained alternately) each get a buffer
    back from the pool every call, even when the pool was full of other sizes: the entry replaced
    is the one unused longest, not one of the two in use (which would fault fresh pages every call:
    a LayerNorm-GRU's 66 MB workspace made its training step 2.2x slower that way)."""
    require_native()
    misses = kernels.loaded_function("pool_misses")
    for H in (100, 300, 900, 2700):  # fill the pool (4 entries) with sizes that fit neither below
        _scan(H)
    _scan(8100)
    _scan(24300)
    before = misses()
    for _ in range(4):
        _scan(8100)
        _scan(24300)
    assert misses() == before
    _scan(100_000)  # a new size is a miss, and the count sees it
    assert misses() == before + 1

"""The native kernel's pool of large buffers (kernels/fresh.h, ``recycled``): results that come
back free are handed out again instead of faulting fresh pages in every call. Seen through the
minGRU scan, whose output comes from the pool, and the pool's count of buffers it took fresh."""

from __future__ import annotations

import torch
from conftest import require_native

from grukit import kernels


def _scan(n: int) -> None:
    """One scan whose output (1, 1, n) comes from the pool; the output is dropped on return."""
    torch.ops.grukit.mingru_scan(torch.randn(1, 1, 2 * n), torch.zeros(1, n), None)


def test_two_sizes_in_turn_keep_their_buffers_after_the_pool_filled_with_others():
    """Two results of different sizes in turn (two models trained alternately) each get a buffer
    back from the pool every call, even when the pool was full of other sizes: the entry replaced
    is the one unused longest, not one of the two in use (which would fault fresh pages every call:
    a LayerNorm-GRU's 66 MB workspace made its training step 2.2x slower that way)."""
    require_native()
    misses, capacity = kernels.loaded_function("pool_misses"), kernels.loaded_function("pool_capacity")
    sizes = [int(1000 * 2.5**k) for k in range(capacity() + 2)]  # 2.5x apart: no size fits another's buffer
    for n in sizes[:-2]:  # fill the pool with sizes that fit neither of the two below
        _scan(n)
    a, b = sizes[-2:]
    _scan(a)
    _scan(b)
    before = misses()
    for _ in range(4):
        _scan(a)
        _scan(b)
    assert misses() == before
    _scan(int(sizes[-1] * 2.5))  # a new size is a miss, and the count sees it
    assert misses() == before + 1

"""grukit's native GRU kernels (C++, compiled on first use).

Public surface:
    available() -> bool      build/load the kernels once; False (one warning) if impossible
    supports(*tensors)       whether the kernels handle these tensors (CPU; float32/64, bfloat16)
    gru_layer, gru_cell      drop-in twins of grukit.functional.gru_layer / gru_cell

The C++ lives in gru.cpp (time loops, GEMMs, op registration) and gates.h (the
fused elementwise passes, with the equations and derivatives written out).
"""

from __future__ import annotations

import torch

from . import _build

__all__ = ["available", "supports", "gru_layer", "gru_cell", "DTYPES"]

DTYPES = (torch.float32, torch.float64, torch.bfloat16)


_ready = False


def available() -> bool:
    """Build (first call) and load the native ops; False if they cannot be built."""
    global _ready
    if _ready:
        return True
    if not _build.load():
        return False
    from . import ops

    ops.register()
    _ready = True
    return True


def supports(*tensors) -> bool:
    """True if the native kernels can run on these tensors."""
    return all(t is None or (t.device.type == "cpu" and t.dtype in DTYPES) for t in tensors)


def gru_layer(*args, **kwargs):
    from .ops import gru_layer as f

    return f(*args, **kwargs)


def gru_cell(*args, **kwargs):
    from .ops import gru_cell as f

    return f(*args, **kwargs)

"""grukit's native GRU kernels (C++, compiled on first use).

Public surface:
    available() -> bool      build/load the kernels once; False (one warning) if impossible
    loaded_function(name)    one of stream.cpp's plain functions if the kernels are loaded, else None
    supports(*tensors)       whether the kernels handle these tensors (CPU; float32/64, bfloat16)
    gru_layer, gru_cell      drop-in twins of grukit.functional.gru_layer / gru_cell
    ops.gru_directions       the native layer_fn of grukit.functional.gru

The C++ lives in driver.cpp (the time loops, GEMMs and op registration,
written once for every cell), cells/ (each cell's fused passes, with the
equations and derivatives written out: gru.h, layernorm.h), common.h (vector
helpers), matvec.h (the hand-tiled products inside the time loop) and
stream.cpp (the no-grad step as a plain Python function, for GRUCell streams),
masks.cpp (zoneout's masks from a counter-based hash);
scan.cpp is minGRU's scan over time (its Python side: scan.py).
"""

from __future__ import annotations

import torch

from . import _build, ops, scan

__all__ = ["DTYPES", "available", "gru_cell", "gru_layer", "supports"]

DTYPES = (torch.float32, torch.float64, torch.bfloat16)


_ready = False


def available() -> bool:
    """Build (first call) and load the native ops; False if they cannot be built."""
    global _ready
    if _ready:
        return True
    if not _build.load():
        return False
    ops.register()
    scan.register()
    _ready = True
    return True


def loaded_function(name: str):
    """A plain function of the loaded native module (stream.cpp's bindings), or None if the
    kernels are not loaded yet: never builds."""
    return getattr(_build.module(), name) if _ready else None


def supports(*tensors) -> bool:
    """True if the native kernels can run on these tensors."""
    return all(t is None or (t.dtype in DTYPES and t.device.type == "cpu") for t in tensors)


def gru_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, **options):
    """Native twin of :func:`grukit.functional.gru_layer`, same arguments (call :func:`available` first)."""
    return ops.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, **options)


gru_cell = ops.gru_cell  # no wrapper: the streaming step is latency-bound

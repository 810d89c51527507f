"""The one place that chooses how a GRU layer is computed.

``reference``: the readable code in :mod:`grukit.functional` (always works).
Set ``GRUKIT_BACKEND=reference`` or call :func:`set_backend` to force it.
"""

from __future__ import annotations

import os
from typing import Callable

from . import functional

_CHOICES = ("auto", "reference")
_forced: str | None = None


def set_backend(name: str | None) -> None:
    """Force a backend for this process (``None`` returns to the default)."""
    global _forced
    if name is not None and name not in _CHOICES:
        raise ValueError(f"backend must be one of {_CHOICES}, got {name!r}")
    _forced = name


def requested() -> str:
    name = _forced or os.environ.get("GRUKIT_BACKEND", "auto")
    if name not in _CHOICES:
        raise ValueError(f"GRUKIT_BACKEND must be one of {_CHOICES}, got {name!r}")
    return name


def layer_fn(*_tensors) -> Callable:
    """The function that runs one layer in one direction for these tensors."""
    return functional.gru_layer


def cell_fn(*_tensors) -> Callable:
    """The function that runs one GRU step for these tensors."""
    return functional.gru_cell

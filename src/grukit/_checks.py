"""Argument and input validation with errors that name the problem."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor


def check_constructor(input_size, hidden_size, num_layers=1, dropout=0.0) -> None:
    for name, value, low in (("input_size", input_size, 1), ("hidden_size", hidden_size, 1), ("num_layers", num_layers, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise TypeError(f"dropout must be a float in [0, 1), got {type(dropout).__name__} ({dropout!r})")
    if not (0.0 <= dropout < 1.0) or math.isnan(dropout):
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def check_probability(name: str, value, *, upper_open: bool = True) -> float:
    """A float in [0, 1) (or [0, 1] with upper_open=False), by name."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__} ({value!r})")
    value = float(value)
    if math.isnan(value) or value < 0 or (value >= 1 if upper_open else value > 1):
        raise ValueError(f"{name} must be in [0, {'1)' if upper_open else '1]'}, got {value}")
    return value


def check_parameters(named: list[tuple[str, Optional[Tensor], tuple[int, ...]]], dtype: torch.dtype, device: torch.device) -> None:
    """Every (name, tensor, expected shape) has that shape, and the input's dtype and device.

    Run before any kernel reads them: a wrong-size bias would otherwise be
    read past its end (the kernel trusts the shapes it is given).
    """
    for name, t, shape in named:
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        if t.dtype != dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but the input has dtype {dtype}; convert one with .to()")
        if t.device != device:
            raise ValueError(f"{name} is on device {t.device} but the input is on {device}; move one with .to()")


def check_tensor(name: str, value) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_input(x: Tensor, input_size: int, weight: Tensor, batched_ndim: int, layout: str) -> None:
    """x must have rank batched_ndim (batched) or batched_ndim - 1, the right
    feature size, a floating dtype and the weights' dtype and device."""
    check_tensor("input", x)
    if x.dim() not in (batched_ndim, batched_ndim - 1):
        raise ValueError(
            f"input must be {batched_ndim}-D {layout} or {batched_ndim - 1}-D (unbatched), "
            f"got {x.dim()}-D with shape {tuple(x.shape)}"
        )
    if x.shape[-1] != input_size:
        raise ValueError(f"input.size(-1) must equal input_size={input_size}, got {x.shape[-1]} (shape {tuple(x.shape)})")
    check_same(x, "input", weight)


def check_same(t: Tensor, name: str, weight: Tensor) -> None:
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.dtype != weight.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but the weights have dtype {weight.dtype}; convert one with .to()")
    if t.device != weight.device:
        raise ValueError(f"{name} is on device {t.device} but the weights are on {weight.device}; move one with .to()")


def check_hidden(hx: Tensor, expected: tuple[int, ...], weight: Tensor, name: str = "hx") -> None:
    check_tensor(name, hx)
    if tuple(hx.shape) != expected:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(hx.shape)}")
    check_same(hx, name, weight)


def check_lengths(lengths, batch: int, steps: int, device: torch.device) -> Tensor:
    """lengths: a 1-D integer tensor (or list) of B values in [1, T]."""
    if isinstance(lengths, (list, tuple)):
        lengths = torch.tensor(lengths)
    check_tensor("lengths", lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D with one entry per sequence, got shape {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if lengths.numel() != batch:
        raise ValueError(f"lengths has {lengths.numel()} entries but the batch has {batch} sequences")
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > steps:
        raise ValueError(f"lengths must lie in [1, {steps}] (the number of time steps), got values in [{lo}, {hi}]")
    return lengths.to(device=device, dtype=torch.int64)


def time_major(input: Tensor, input_size: int, weight: Tensor, batch_first: bool) -> tuple[Tensor, bool]:
    """A sequence layer's input checked and laid out as (T, B, I), and whether it was batched.

    input: (T, B, I), (B, T, I) with batch_first, or unbatched (T, I); at least one step and one sequence.
    """
    layout = "(B, T, I) with batch_first=True" if batch_first else "(T, B, I)"
    check_input(input, input_size, weight, 3, layout)
    batched = input.dim() == 3
    x = input if batched else input.unsqueeze(1)  # (T, B, I)
    if batched and batch_first:
        x = x.transpose(0, 1)
    check_nonempty(x.shape[0], x.shape[1])
    return x, batched


def check_nonempty(steps: int, batch: Optional[int] = None) -> None:
    if steps == 0:
        raise ValueError("input has zero time steps; a GRU needs at least one step")
    if batch == 0:
        raise ValueError("input has a batch of zero sequences")

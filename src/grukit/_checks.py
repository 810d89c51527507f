"""Argument and input validation with errors that name the problem.

Every message that has a torch.nn.GRU / GRUCell counterpart starts with torch's
wording and goes on, after "; ", with grukit's expected and actual values; the
exception classes (grukit.errors) are both torch's class and grukit's.
"""

from __future__ import annotations

import math
import numbers
import sys

import torch
from torch import Tensor

from .errors import DeviceError, DTypeError, OptionTypeError, ShapeError

# torch.export is tracing the model (torch 2.6 added the question; before it, the answer is no)
is_exporting = getattr(torch.compiler, "is_exporting", None) or (lambda: False)


def onnx_exporting() -> bool:
    """Whether torch.onnx is exporting the model (either exporter): the 0.04 and 0.15 us checks
    first, grukit.onnx_export's 1.1 us one (and its import) only while a graph is captured."""
    if not (is_exporting() or torch.jit.is_tracing()):
        return False
    from .onnx_export import exporting

    return exporting()


def check_constructor(input_size, hidden_size, num_layers=1, dropout=0.0, *, cell: bool = False) -> None:
    """Sizes are ints, >= 1 for a sequence layer (as torch.nn.GRU), >= 0 for a cell (torch.nn.GRUCell
    builds zero-width cells); dropout is a number in [0, 1]."""
    low = 0 if cell else 1
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            kind = type(value).__name__
            raise TypeError(f"{name} should be of type int, got: {kind}; {name} must be an int, got {kind} ({value!r})")
        if value < low:
            torch_words = "" if cell else f"{name} must be greater than zero; "
            raise ValueError(f"{torch_words}{name} must be >= {low}, got {value}")
    if isinstance(num_layers, bool) or not isinstance(num_layers, int):
        raise TypeError(f"num_layers must be an int, got {type(num_layers).__name__} ({num_layers!r})")
    if num_layers < 1:
        raise ValueError(f"num_layers must be greater than zero; num_layers must be >= 1, got {num_layers}")
    torch_words = "dropout should be a number in range [0, 1] representing the probability of an element being zeroed"
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise OptionTypeError(
            f"{torch_words}; dropout must be a float in [0, 1], got {type(dropout).__name__} ({dropout!r})"
        )
    # typeshed's numbers.Real declares no comparison with a float (python/mypy#3186)
    if math.isnan(dropout) or not 0.0 <= dropout <= 1.0:  # type: ignore[operator]
        raise ValueError(f"{torch_words}; dropout must be in [0, 1], got {dropout}")


def check_flag(name: str, value) -> bool:
    """A constructor flag that torch.nn.GRU requires to be a bool (bias, batch_first): "False" is not False."""
    if not isinstance(value, bool):
        raise TypeError(
            f"{name} should be of type bool, got: {type(value).__name__}; {name} must be True or False, got {value!r}"
        )
    return value


def check_probability(name: str, value, *, upper_open: bool = True) -> float:
    """A float in [0, 1) (or [0, 1] with upper_open=False), by name."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__} ({value!r})")
    value = float(value)
    if math.isnan(value) or value < 0 or (value >= 1 if upper_open else value > 1):
        raise ValueError(f"{name} must be in [0, {'1)' if upper_open else '1]'}, got {value}")
    return value


def check_parameters(
    named: list[tuple[str, Tensor | None, tuple[int, ...]]], dtype: torch.dtype, device: torch.device
) -> None:
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
            raise ShapeError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        if t.dtype != dtype:
            raise DTypeError(f"{name} has dtype {t.dtype} but the input has dtype {dtype}; convert one with .to()")
        if t.device != device:
            raise DeviceError(f"{name} is on device {t.device} but the input is on {device}; move one with .to()")


def check_tensor(name: str, value) -> Tensor:
    if not isinstance(value, Tensor):
        fx = sys.modules.get("torch.fx")  # (loaded wherever a Proxy exists)
        if fx is not None and isinstance(value, fx.Proxy):
            raise TypeError(
                f"{name} is a torch.fx Proxy: torch.fx.symbolic_trace cannot trace inside grukit's layers "
                "(it leaves only torch.nn's own modules whole); trace with a torch.fx.Tracer whose "
                "is_leaf_module also returns True for grukit's modules, or use torch.export"
            )
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_input(
    x: Tensor, input_size: int, weight: Tensor, batched_ndim: int, layout: str, module: str = "GRU", dtype: bool = True
) -> None:
    """x must have rank batched_ndim (batched) or batched_ndim - 1, the right
    feature size, and (unless ``dtype=False``) a floating dtype and the weights' dtype and device.

    ``batched_ndim`` 2 is a cell (torch.nn.GRUCell's wording), 3 a sequence layer."""
    check_tensor("input", x)
    cell = batched_ndim == 2
    if x.dim() not in (batched_ndim, batched_ndim - 1):
        ranks = "1D or 2D" if cell else "2D or 3D"
        raise ShapeError(
            f"{module}: Expected input to be {ranks}, got {x.dim()}D instead; "
            f"input must be {batched_ndim}-D {layout} or {batched_ndim - 1}-D (unbatched), "
            f"got {x.dim()}-D with shape {tuple(x.shape)}"
        )
    if x.shape[-1] != input_size:
        torch_words = (
            f"input has inconsistent input_size: got {x.shape[-1]} expected {input_size}"
            if cell
            else f"input.size(-1) must be equal to input_size. Expected {input_size}, got {x.shape[-1]}"
        )
        raise ShapeError(
            f"{torch_words}; input.size(-1) must equal input_size={input_size}, got {x.shape[-1]} (shape {tuple(x.shape)})"
        )
    if dtype:
        check_same(x, "input", weight, rnn_words=not cell)


def check_same(t: Tensor, name: str, weight: Tensor, *, rnn_words: bool = False) -> None:
    """t is floating point, with the weights' dtype and device. ``rnn_words``: torch.nn.GRU's
    message for an input of the wrong dtype comes first."""
    wrong_dtype = not t.is_floating_point() or t.dtype != weight.dtype
    if wrong_dtype:
        prefix = ""
        if rnn_words:
            prefix = (
                f"RNN input dtype ({t.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: model.to({t.dtype}); "
            )
        if not t.is_floating_point():
            raise DTypeError(f"{prefix}{name} must be a floating-point tensor, got dtype {t.dtype}")
        raise DTypeError(
            f"{prefix}{name} has dtype {t.dtype} but the weights have dtype {weight.dtype}; convert one with .to()"
        )
    if t.device != weight.device:
        raise DeviceError(f"{name} is on device {t.device} but the weights are on {weight.device}; move one with .to()")


def check_hidden(hx: Tensor, expected: tuple[int, ...], weight: Tensor, name: str = "hx") -> None:
    """hx of a sequence layer: (L*D, B, H), or (L*D, H) for unbatched input (torch.nn.GRU's wording)."""
    check_tensor(name, hx)
    if tuple(hx.shape) != expected:
        ours = f"{name} must have shape {expected}, got {tuple(hx.shape)}"
        if hx.dim() != len(expected):
            kind = "batched 3-D" if len(expected) == 3 else "unbatched 2-D"
            raise ShapeError(
                f"For {kind} input, hx should also be {len(expected)}-D but got {hx.dim()}-D tensor; {ours}"
            )
        raise ShapeError(f"Expected hidden size {expected}, got {list(hx.shape)}; {ours}")
    check_same(hx, name, weight)


def check_cell_hidden(hx: Tensor, batch: int | None, hidden_size: int) -> None:
    """hx of a cell: (B, H), or (H,) when batch is None (unbatched input); torch.nn.GRUCell's wording.
    Its dtype and device are the caller's to check (after the input's, in torch's order)."""
    check_tensor("hx", hx)
    expected = (hidden_size,) if batch is None else (batch, hidden_size)
    if tuple(hx.shape) != expected:
        ours = f"hx must have shape {expected}, got {tuple(hx.shape)}"
        if hx.dim() not in (1, 2):
            raise ShapeError(f"GRUCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead; {ours}")
        if hx.shape[-1] != hidden_size:
            raise ShapeError(
                f"hidden0 has inconsistent hidden_size: got {hx.shape[-1]}, expected {hidden_size}; {ours}"
            )
        if batch is not None and hx.dim() == 2:
            raise ShapeError(f"Input batch size {batch} doesn't match hidden0 batch size {hx.shape[0]}; {ours}")
        raise ShapeError(f"GRUCell: hx must have the input's rank; {ours}")


def check_lengths(lengths, batch: int, steps: int, device: torch.device) -> Tensor:
    """lengths: a 1-D integer tensor (or list) of B values in [1, T]."""
    if isinstance(lengths, (list, tuple)):
        lengths = torch.tensor(lengths, dtype=torch.int64)
    check_tensor("lengths", lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D with one entry per sequence, got shape {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if lengths.numel() != batch:
        raise ValueError(f"lengths has {lengths.numel()} entries but the batch has {batch} sequences")
    if batch > 0 and not is_exporting():  # export traces without values to check
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > steps:
            raise ValueError(f"lengths must lie in [1, {steps}] (the number of time steps), got values in [{lo}, {hi}]")
    return lengths.to(device=device, dtype=torch.int64)


def time_major(
    input: Tensor, input_size: int, weight: Tensor, batch_first: bool, module: str = "GRU"
) -> tuple[Tensor, bool]:
    """A sequence layer's input checked and laid out as (T, B, I), and whether it was batched.

    input: (T, B, I), (B, T, I) with batch_first, or unbatched (T, I); at least one step
    (an empty batch, B = 0, is allowed, as torch.nn.GRU allows it).
    """
    layout = "(B, T, I) with batch_first=True" if batch_first else "(T, B, I)"
    check_input(input, input_size, weight, 3, layout, module)
    batched = input.dim() == 3
    x = input if batched else input.unsqueeze(1)  # (T, B, I)
    if batched and batch_first:
        x = x.transpose(0, 1)
    check_nonempty(x.shape[0])
    return x, batched


def check_nonempty(steps: int, batch: int | None = None) -> None:
    """At least one step (torch.nn.GRU's rule); ``batch`` given: at least one sequence too."""
    if steps == 0:
        raise ShapeError(
            "Expected sequence length to be larger than 0 in RNN; input has zero time steps; a GRU needs at least one step"
        )
    if batch == 0:
        raise ShapeError("input has a batch of zero sequences")

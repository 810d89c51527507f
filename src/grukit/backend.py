"""The one place that chooses how a GRU layer is computed.

``native``: the compiled kernels in :mod:`grukit.kernels` (CPU; float32,
float64, bfloat16), built on first use.
``reference``: the readable code in :mod:`grukit.functional` (always works).
``auto`` (default): native where it supports the tensors and could be built,
otherwise the reference (with one warning if the build failed).
Choose with the ``GRUKIT_BACKEND`` environment variable or :func:`set_backend`.

Whatever the choice, the reference runs where the native ops cannot follow
(:func:`reference_only`): under torch.func transforms (grad, vmap, jacrev,
jvp, ...) and forward-mode AD, for weights that are tensor subclasses such as
ExpandedWeight (per-sample gradients), and for empty tensors (a batch of 0,
a zero-width cell).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch
from torch.autograd import forward_ad

from . import functional, kernels

_CHOICES = ("auto", "reference", "native")
_forced: str | None = None


def set_backend(name: str | None) -> None:
    """Force a backend for this process (``None`` returns to the default)."""
    global _forced
    if name is not None and name not in _CHOICES:
        raise ValueError(f"backend must be one of {_CHOICES}, got {name!r}")
    _forced = name


def forced() -> str | None:
    """The backend chosen with :func:`set_backend`, if any."""
    return _forced


# os.environ.get costs about 2 us where the variable is unset (it raises and catches a KeyError
# inside), a tenth of a small model's whole call; os.environ's own store answers the same
# question in 0.1 us and is the one os.environ.get reads (CPython; elsewhere, the plain lookup).
_ENV_STORE = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey("GRUKIT_BACKEND") if hasattr(os.environ, "encodekey") else None


def _env_choice() -> str:
    """The GRUKIT_BACKEND environment variable as it is now, or "auto" where unset."""
    if _ENV_STORE is not None and _ENV_KEY not in _ENV_STORE:
        return "auto"
    return os.environ.get("GRUKIT_BACKEND", "auto")


def requested() -> str:
    name = _forced or _env_choice()
    if name not in _CHOICES:
        raise ValueError(f"GRUKIT_BACKEND must be one of {_CHOICES}, got {name!r}")
    return name


def _native_ready() -> bool:
    """Build or load the native kernels once; True if they can run."""
    return kernels.available()


def prepare() -> None:
    """Build or load the native kernels now, if this backend may use them.

    Called before anything is timed (every task's ``train``), so the one-time
    build is announced on its own and never counted as training time."""
    if requested() != "reference":
        _native_ready()


# Under torch.compile, run _native_ready for real and use its result as a
# constant instead of tracing the build (a lock, files). This attribute is all
# torch.compiler.assume_constant_result sets; setting it here avoids importing
# torch._dynamo (over a second) whenever grukit is imported.
_native_ready._dynamo_marked_constant = True  # type: ignore[attr-defined]


def transforms_active() -> bool:
    """True inside a torch.func transform or a forward-mode AD level: the native ops have
    no batching rule and no forward derivative, and their autograd is torch.library's,
    which functorch cannot see through."""
    return torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0


def reference_only(tensors) -> bool:
    """Whether only the reference can compute with these tensors, whatever the backend choice."""
    if transforms_active():
        return True
    for t in tensors:
        if t is None:
            continue
        if type(t) not in _PLAIN and _expanded_weight(t):
            return True
        if t.numel() == 0:  # an empty batch, a zero-width cell
            return True
    return False


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _expanded_weight(t) -> bool:
    """Whether t is torch's ExpandedWeight (per-sample gradients); its module is only looked
    up if loaded, as no ExpandedWeight exists before (importing it costs time at every import)."""
    impl = sys.modules.get("torch.nn.utils._expanded_weights.expanded_weights_impl")
    return impl is not None and isinstance(t, impl.ExpandedWeight)


def _use_native(tensors) -> bool:
    name = _forced or _env_choice()
    if name == "reference" or reference_only(tensors):
        return False
    if name == "auto":
        return kernels.supports(*tensors) and _native_ready()
    if name != "native":
        raise ValueError(f"GRUKIT_BACKEND must be one of {_CHOICES}, got {name!r}")
    if not kernels.supports(*tensors):
        raise ValueError(
            f"GRUKIT_BACKEND=native supports CPU tensors of dtype {kernels.DTYPES}, "
            f"got {[(t.device.type, t.dtype) for t in tensors if t is not None]}"
        )
    if not _native_ready():
        raise RuntimeError(f"GRUKIT_BACKEND=native but the native kernel could not be built: {kernels._build.error()}")
    return True


def active(*tensors) -> str:
    """The backend that would run for these tensors: 'native' or 'reference'."""
    return "native" if _use_native(tensors) else "reference"


def layer_fn(*tensors) -> Callable:
    """The function that runs the D directions of one layer for these tensors
    (signature of :func:`grukit.functional.gru_directions`); the stack around
    it is :func:`grukit.functional.gru` for every backend."""
    if _use_native(tensors):
        return kernels.ops.gru_directions
    return functional.gru_directions


def cell_fn(*tensors) -> Callable:
    """The function that runs one GRU step for these tensors."""
    if _use_native(tensors):
        return kernels.gru_cell
    return functional.gru_cell


def stream_fn(*tensors) -> Callable:
    """The step of a no-grad GRUCell stream, ``(x, h, w_ih, w_hh, b_ih, b_hh, reset_after) -> h'``
    (positional): the native op's code as a plain function (no dispatcher), or the reference."""
    if _use_native(tensors):
        return kernels.ops.cell_op()

    def step(x, h, w_ih, w_hh, b_ih, b_hh, reset_after):
        return functional.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=reset_after)

    return step


def stack_fn(x: torch.Tensor, train: bool = False) -> Callable | None:
    """The native one-call stack if the native backend would run for a plain CPU tensor ``x``,
    else None: without autograd ``kernels.ops.stack_op()``, with it (``train``)
    ``kernels.ops.train_stack``. A lean form of :func:`layer_fn`'s choice for grukit.GRU's
    forward: the caller has ruled out transforms and tensor subclasses."""
    if requested() == "reference" or not x.is_cpu or x.dtype not in kernels.DTYPES or not _native_ready():
        return None
    return kernels.ops.train_stack if train else kernels.ops.stack_op()


def mingru_scan_fn(*tensors):
    """The sequential minGRU scan for these tensors: the native op, or None for
    the reference loop (:func:`grukit.functional.mingru_sequential`)."""
    if _use_native(tensors):
        return kernels.scan.mingru_scan
    return None

"""minGRU's native scan as PyTorch sees it: fake kernels, autograd, the wrapper.

``torch.ops.grukit.mingru_scan`` (C++, scan.cpp) runs the recurrence
h_t = (1 - z_t) h_{t-1} + z_t g(h~_t) of one layer over T from the input
projections proj (T, B, 2H) = [k | h~]; ``mingru_scan_backward`` is its
hand-written backward (derivatives written out in scan.cpp). Here they get
fake kernels (torch.compile / torch.export trace them without running them)
and an autograd formula; :func:`mingru_scan` has the signature of
:func:`grukit.functional.mingru_sequential`, its readable twin.

Double backward (``create_graph=True``) differentiates the reference instead,
as the GRU op does (:mod:`.ops`), so higher derivatives stay exact.

Shapes legend: T steps, B batch, H hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import functional

__all__ = ["mingru_scan", "register"]

_registered = False


def register() -> None:
    """Attach fake kernels and autograd to the loaded C++ ops (once per process)."""
    global _registered
    if _registered:
        return

    @torch.library.register_fake("grukit::mingru_scan")
    def _(proj, h0, lengths):
        T, B, H = proj.shape[0], proj.shape[1], h0.shape[1]
        return proj.new_empty((T, B, H)), proj.new_empty((B, H))

    @torch.library.register_fake("grukit::mingru_scan_backward")
    def _(dout, dh_n, proj, out, h0, lengths):
        return proj.new_empty(proj.shape), h0.new_empty(h0.shape)

    torch.library.register_autograd("grukit::mingru_scan", _backward, setup_context=_setup_context)
    _registered = True


def _setup_context(ctx, inputs, output) -> None:
    proj, h0, lengths = inputs
    out, _ = output
    ctx.save_for_backward(proj, h0, lengths, out)  # the outputs are the states h_t


def _backward(ctx, dout: Tensor, dh_n: Tensor):
    proj, h0, lengths, out = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: differentiate the readable twin, on the saved inputs themselves
        need = ctx.needs_input_grad[:2]
        wanted = [t for t, n in zip((proj, h0), need) if n]
        with torch.enable_grad():
            ref = functional.mingru_sequential(proj, h0, lengths)
            grads = iter(torch.autograd.grad(ref, wanted, (dout, dh_n), create_graph=True, allow_unused=True))
        return next(grads) if need[0] else None, next(grads) if need[1] else None, None
    dproj, dh0 = torch.ops.grukit.mingru_scan_backward(dout, dh_n, proj, out, h0, lengths)
    return dproj, dh0, None


def mingru_scan(proj: Tensor, h0: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Native twin of :func:`grukit.functional.mingru_sequential`: proj (T, B, 2H), h0 (B, H) -> (T, B, H), (B, H).

    bfloat16 (and float16) are scanned in float32 and rounded back, as the reference does.
    """
    dtype = proj.dtype
    if dtype not in (torch.float32, torch.float64):
        proj, h0 = proj.float(), h0.float()
    lengths = None if lengths is None else lengths.to(device=proj.device, dtype=torch.int64).contiguous()
    out, h_n = torch.ops.grukit.mingru_scan(proj.contiguous(), h0.contiguous(), lengths)
    return out.to(dtype), h_n.to(dtype)

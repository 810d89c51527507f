"""The native ops as PyTorch sees them: fake (meta) kernels, autograd, wrappers.

``torch.ops.grukit.gru_layer`` (C++, gru.cpp) runs one layer over the whole
sequence, its D directions stacked on a leading dimension (weights (D, 3H, .),
h0 (D, B, H)); ``gru_layer_backward`` is its hand-written BPTT and
``gru_cell`` one step without autograd. Here they get fake kernels (so
torch.compile and torch.export trace them without running them) and an
autograd formula, and :func:`gru`, :func:`gru_layer` and :func:`gru_cell` wrap
them with the signatures of :mod:`grukit.functional`.

Double backward (``create_graph=True``) is not hand-written: the backward then
recomputes the layer with the differentiable reference and lets autograd
differentiate that, so higher derivatives stay exact.

Shapes legend: T steps, B batch, I input, H hidden, D directions, L layers.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import functional
from . import _build

_registered = False


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def register() -> None:
    """Attach fake kernels and autograd to the loaded C++ ops (once per process)."""
    global _registered
    if _registered:
        return
    lib = "grukit::"

    @torch.library.register_fake(lib + "gru_layer")
    def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reset_after, reverse, train):
        D, T, B, H = w_ih.shape[0], x.shape[0], x.shape[1], w_hh.shape[2]
        ws_shape = (D, T, B, 4 * H) if train else (0,)
        out, h_n, hs = x.new_empty((T, B, D * H)), x.new_empty((D, B, H)), x.new_empty((D, T + 1 if train else 2, B, H))
        return out, h_n, hs, x.new_empty(ws_shape, dtype=_acc_dtype(x.dtype))

    @torch.library.register_fake(lib + "gru_layer_backward")
    def _(dout, dh_n, x, hs, ws, w_ih, w_hh, lengths, reset_after, reverse, need_dx, need_bias):
        D, H = w_hh.shape[0], w_hh.shape[2]
        dx = x.new_empty(x.shape) if need_dx else x.new_empty((0,))
        db_shape = (D, 3 * H) if need_bias else (0,)
        dh0 = x.new_empty((D, hs.shape[2], H))
        return dx, dh0, w_ih.new_empty(w_ih.shape), w_hh.new_empty(w_hh.shape), x.new_empty(db_shape), x.new_empty(db_shape)

    @torch.library.register_fake(lib + "gru_cell")
    def _(x, h, w_ih, w_hh, b_ih, b_hh, reset_after):
        return h.new_empty(h.shape)

    torch.library.register_autograd(lib + "gru_layer", _backward, setup_context=_setup_context)
    _registered = True


def _setup_context(ctx, inputs, output) -> None:
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reset_after, reverse, train = inputs
    _, _, hs, ws = output
    ctx.mark_non_differentiable(hs, ws)
    # No zero gradients for outputs nobody differentiated: hs and ws are large
    # (ws is (D, T, B, 4H) in fp32), and zeros for them cost a full memory pass.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, hs, ws)
    ctx.flags = (reset_after, reverse, train)


def _backward(ctx, dout: Optional[Tensor], dh_n: Optional[Tensor], _dhs, _dws):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, hs, ws = ctx.saved_tensors
    reset_after, reverse, train = ctx.flags
    need = ctx.needs_input_grad[:6]  # x, h0, w_ih, w_hh, b_ih, b_hh
    D, T, B, H = w_ih.shape[0], x.shape[0], x.shape[1], w_hh.shape[2]
    if dout is None:
        dout = x.new_zeros((T, B, D * H))
    if dh_n is None:
        dh_n = x.new_zeros((D, B, H))
    if torch.is_grad_enabled():  # create_graph=True: differentiate the reference instead
        grads = _reference_grads((dout, dh_n), need, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reset_after, reverse)
        return (*grads, None, None, None, None)
    if not train:
        raise RuntimeError("grukit: gru_layer was run with train=False, so it kept nothing for backward")
    need_bias = b_ih is not None and (need[4] or need[5])
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = torch.ops.grukit.gru_layer_backward(
        dout, dh_n, x, hs, ws, w_ih, w_hh, lengths, reset_after, reverse, need[0], need_bias
    )
    return (
        dx if need[0] else None,
        dh0 if need[1] else None,
        dw_ih if need[2] else None,
        dw_hh if need[3] else None,
        db_ih if need_bias and need[4] else None,
        db_hh if need_bias and need[5] else None,
        None, None, None, None,
    )


def _reference(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reset_after: bool, reverse: bool) -> tuple[Tensor, Tensor]:
    """The op's differentiable outputs by the reference: out (T, B, D*H), h_n (D, B, H)."""
    outs, h_n = [], []
    for d in range(w_ih.shape[0]):
        b = (None, None) if b_ih is None else (b_ih[d], b_hh[d])
        out, h = functional.gru_layer(x, h0[d], w_ih[d], w_hh[d], *b, reset_after=reset_after, reverse=reverse or d == 1, lengths=lengths)
        outs.append(out)
        h_n.append(h)
    return torch.cat(outs, dim=-1), torch.stack(h_n)


def _reference_grads(douts, need, *inputs):
    tensors = inputs[:6]
    wanted = [t for t, n in zip(tensors, need) if n and t is not None]
    with torch.enable_grad():
        outs = _reference(*inputs)
        grads = iter(torch.autograd.grad(outs, wanted, douts, create_graph=True, allow_unused=True))
    return tuple(next(grads) if n and t is not None else None for t, n in zip(tensors, need))


def gru_layer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    *,
    reset_after: bool = True,
    reverse: bool = False,
    lengths: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """Native twin of :func:`grukit.functional.gru_layer` (same arguments and results)."""
    train = _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh)
    one = [None if t is None else t.unsqueeze(0) for t in (h0, w_ih, w_hh, b_ih, b_hh)]  # D = 1
    out, h_n, _, _ = torch.ops.grukit.gru_layer(x, *one, _int64(lengths, x), reset_after, reverse, train)  # (T, B, H), (1, B, H)
    return out, h_n[0]


def _needs_grad(*tensors: Optional[Tensor]) -> bool:
    """Whether autograd will want gradients of any of these (so the op must keep its workspace)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _int64(lengths: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    """lengths as the kernel reads them: contiguous int64 on x's device, (B,)."""
    return None if lengths is None else lengths.to(device=x.device, dtype=torch.int64).contiguous()


def _stack(ts: list[Optional[Tensor]]) -> Optional[Tensor]:
    if ts[0] is None:
        return None
    return ts[0].unsqueeze(0) if len(ts) == 1 else torch.stack(ts)  # (D, ...)


def gru_directions(x: Tensor, h0: Tensor, weights, *, reset_after: bool = True, lengths: Optional[Tensor] = None,
                   norms=None, zoneout_keep=None, h_mask=None) -> tuple[Tensor, Tensor]:
    """Native twin of :func:`grukit.functional.gru_directions`: the D directions of one layer in one op.

    Both directions go to the kernel together (weights stacked to (D, ...)),
    so on two or more threads they run at the same time.
    x: (T, B, I), h0: (D, B, H) -> output (T, B, D*H), h_n (D, B, H).
    """
    if norms is not None or zoneout_keep is not None or h_mask is not None:
        return functional.gru_directions(x, h0, weights, reset_after=reset_after, lengths=lengths, norms=norms,
                                         zoneout_keep=zoneout_keep, h_mask=h_mask)
    w_ih, w_hh, b_ih, b_hh = (_stack([w[k] for w in weights]) for k in range(4))  # (D, 3H, ...) each
    train = _needs_grad(x, h0, *(p for w in weights for p in w))
    out, h, _, _ = torch.ops.grukit.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, _int64(lengths, x), reset_after, False, train)
    return out, h  # (T, B, D*H), (D, B, H)


def gru_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    *,
    reset_after: bool = True,
) -> Tensor:
    """Native twin of :func:`grukit.functional.gru_cell`: x (B, I), h (B, H) -> (B, H)."""
    if _needs_grad(x, h, w_ih, w_hh, b_ih, b_hh):  # a one-step layer, which has autograd
        return gru_layer(x.unsqueeze(0), h, w_ih, w_hh, b_ih, b_hh, reset_after=reset_after)[0][0]  # (B, H)
    return torch.ops.grukit.gru_cell.default(x, h, w_ih, w_hh, b_ih, b_hh, reset_after)  # one native call


_cell = None


def cell_op():
    """The no-grad step, ``(x, h, w_ih, w_hh, b_ih, b_hh, reset_after) -> h'`` (positional).

    The gru_cell op's own code, called as a plain function (not through the
    dispatcher: no autograd, no tracing) for GRUCell's streaming path.
    """
    global _cell
    if _cell is None:
        _cell = _build.module().gru_cell
    return _cell

"""The native ops as PyTorch sees them: fake (meta) kernels, autograd, wrappers.

``torch.ops.grukit.gru_layer`` (C++, driver.cpp) runs one layer over the whole
sequence for inference, its D directions stacked on a leading dimension
(weights (D, 3H, .), h0 (D, B, H)); ``gru_layer_train`` does the same and also
returns the saved states and workspace that its hand-written BPTT,
``gru_layer_backward``, reads; ``gru_cell`` is one step without autograd. The
cell is chosen by the arguments: ``norms`` (D, 4, 3H) for LayerNorm-GRU,
``zoneout`` (D, T, B, H) masks or ``zoneout_p`` (eval), ``h_mask`` (D, B, H)
for recurrent dropout. Here they get fake kernels (so torch.compile and
torch.export trace them without running them) and an autograd formula, and
:func:`gru_directions`, :func:`gru_layer` and :func:`gru_cell` wrap them with
the signatures of :mod:`grukit.functional`.

grukit.GRU itself reaches the same C++ without the dispatcher where it can:
:func:`stack_op` (no autograd) and :func:`train_stack` (one autograd function
for the whole stack, whose backward runs every layer's BPTT in one call).

Double backward (``create_graph=True``) is not hand-written: the backward then
recomputes the layer with the differentiable reference and lets autograd
differentiate that, so higher derivatives stay exact.

Shapes legend: T steps, B batch, I input, H hidden, D directions, L layers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import functional
from . import _build

_registered = False


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _ws_width(H: int, norms: Tensor | None) -> int:
    """Workspace floats per row and step (driver.cpp, CellArgs::ws_width)."""
    return (10 * H + 2 + 15) // 16 * 16 if norms is not None else 4 * H


def register() -> None:
    """Attach fake kernels and autograd to the loaded C++ ops (once per process)."""
    global _registered
    if _registered:
        return
    lib = "grukit::"

    @torch.library.register_fake(lib + "gru_layer")
    def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, norms, zoneout, h_mask, zoneout_p, reset_after, reverse):
        D, T, B, H = w_ih.shape[0], x.shape[0], x.shape[1], w_hh.shape[2]
        return x.new_empty((T, B, D * H)), x.new_empty((D, B, H))

    @torch.library.register_fake(lib + "gru_layer_train")
    def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, norms, zoneout, h_mask, zoneout_p, reset_after, reverse):
        D, T, B, H = w_ih.shape[0], x.shape[0], x.shape[1], w_hh.shape[2]
        ws = x.new_empty((D, T, B, _ws_width(H, norms)), dtype=_acc_dtype(x.dtype))
        return x.new_empty((T, B, D * H)), x.new_empty((D, B, H)), x.new_empty((D, T + 1, B, H)), ws

    @torch.library.register_fake(lib + "gru_layer_backward")
    def _(
        dout,
        dh_n,
        x,
        hs,
        ws,
        w_ih,
        w_hh,
        lengths,
        norms,
        zoneout,
        h_mask,
        zoneout_p,
        reset_after,
        reverse,
        need_dx,
        need_bias,
    ):
        D, H = w_hh.shape[0], w_hh.shape[2]
        dx = x.new_empty(x.shape) if need_dx else x.new_empty((0,))
        db_shape = (D, 3 * H) if need_bias else (0,)
        dnorms = x.new_empty((D, 4, 3 * H)) if norms is not None else x.new_empty((0,))
        dh0 = x.new_empty((D, hs.shape[2], H))
        return (
            dx,
            dh0,
            w_ih.new_empty(w_ih.shape),
            w_hh.new_empty(w_hh.shape),
            x.new_empty(db_shape),
            x.new_empty(db_shape),
            dnorms,
        )

    @torch.library.register_fake(lib + "gru_cell")
    def _(x, h, w_ih, w_hh, b_ih, b_hh, reset_after):
        return h.new_empty(h.shape)

    torch.library.register_autograd(lib + "gru_layer_train", _backward, setup_context=_setup_context)
    _build.module().set_double_backward(_stack_double_backward)
    _registered = True


# the differentiable inputs of gru_layer_train, in order
_DIFF = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "lengths", "norms")


def _setup_context(ctx, inputs, output) -> None:
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, norms, zoneout, h_mask, zoneout_p, reset_after, reverse = inputs
    _, _, hs, ws = output
    ctx.mark_non_differentiable(hs, ws)
    # No zero gradients for outputs nobody differentiated: hs and ws are large
    # (ws is (D, T, B, W) in fp32), and zeros for them cost a full memory pass.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, norms, zoneout, h_mask, hs, ws)
    ctx.flags = (zoneout_p, reset_after, reverse)


def _backward(ctx, dout: Tensor | None, dh_n: Tensor | None, _dhs, _dws):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, norms, zoneout, h_mask, hs, ws = ctx.saved_tensors
    zoneout_p, reset_after, reverse = ctx.flags
    need = ctx.needs_input_grad  # x, h0, w_ih, w_hh, b_ih, b_hh, lengths, norms, ...
    D, T, B, H = w_ih.shape[0], x.shape[0], x.shape[1], w_hh.shape[2]
    if dout is None:
        dout = x.new_zeros((T, B, D * H))
    if dh_n is None:
        dh_n = x.new_zeros((D, B, H))
    none6 = (None,) * 5  # zoneout, h_mask, zoneout_p, reset_after, reverse
    if torch.is_grad_enabled():  # create_graph=True: differentiate the reference instead
        grads = _reference_grads(
            (dout, dh_n),
            need,
            x,
            h0,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            lengths,
            norms,
            zoneout,
            h_mask,
            zoneout_p,
            reset_after,
            reverse,
        )
        return (*grads, *none6)
    need_bias = b_ih is not None and (need[4] or need[5])
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dnorms = torch.ops.grukit.gru_layer_backward(
        dout,
        dh_n,
        x,
        hs,
        ws,
        w_ih,
        w_hh,
        lengths,
        norms,
        zoneout,
        h_mask,
        zoneout_p,
        reset_after,
        reverse,
        need[0],
        need_bias,
    )
    return (
        dx if need[0] else None,
        dh0 if need[1] else None,
        dw_ih if need[2] else None,
        dw_hh if need[3] else None,
        db_ih if need_bias and need[4] else None,
        db_hh if need_bias and need[5] else None,
        None,
        dnorms if norms is not None and need[7] else None,
        *none6,
    )


def _reference(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, norms, zoneout, h_mask, zoneout_p, reset_after, reverse):
    """The op's differentiable outputs by the reference: out (T, B, D*H), h_n (D, B, H)."""
    outs, h_n = [], []
    for d in range(w_ih.shape[0]):
        b = (None, None) if b_ih is None else (b_ih[d], b_hh[d])
        keep = zoneout[d] if zoneout is not None else (float(zoneout_p) if zoneout_p > 0 else None)
        out, h = functional.gru_layer(
            x,
            h0[d],
            w_ih[d],
            w_hh[d],
            *b,
            reset_after=reset_after,
            reverse=reverse or d == 1,
            lengths=lengths,
            norms=None if norms is None else tuple(norms[d].unbind(0)),
            zoneout_keep=keep,
            h_mask=None if h_mask is None else h_mask[d],
        )
        outs.append(out)
        h_n.append(h)
    return torch.cat(outs, dim=-1), torch.stack(h_n)


def _reference_grads(douts, need, *inputs):
    tensors = inputs[:8]
    wanted = [t for t, n in zip(tensors, need) if n and t is not None]
    with torch.enable_grad():
        outs = _reference(*inputs)
        grads = iter(torch.autograd.grad(outs, wanted, douts, create_graph=True, allow_unused=True))
    return tuple(next(grads) if n and t is not None else None for t, n in zip(tensors, need))


def _needs_grad(*tensors: Tensor | None) -> bool:
    """Whether autograd will want gradients of any of these (so the op must keep its workspace).

    Always while torch.jit.trace records: a trace must not depend on the grad mode (torch checks
    a trace by recording it again under no_grad, where tensors made on the way require no grad),
    and the op it records must be the differentiable one, whatever the traced module is later
    called with, as torch.nn.GRU's aten::gru is."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return True
    return torch.jit.is_tracing()


def _int64(lengths: Tensor | None, x: Tensor) -> Tensor | None:
    """lengths as the kernel reads them: contiguous int64 on x's device, (B,)."""
    return None if lengths is None else lengths.to(device=x.device, dtype=torch.int64).contiguous()


def _stack(ts: list[Any]) -> Tensor | None:
    """The directions' tensors stacked (D, ...), or None when they are None (all are, or none)."""
    if ts[0] is None:
        return None
    return ts[0].unsqueeze(0) if len(ts) == 1 else torch.stack(ts)  # (D, ...)


def _run(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, norms, keep, h_mask, reset_after: bool, reverse: bool):
    """One call of the training or the inference op, whichever autograd needs."""
    zoneout, zoneout_p = (keep, 0.0) if isinstance(keep, Tensor) else (None, float(keep or 0.0))
    args = (x, h0, w_ih, w_hh, b_ih, b_hh, _int64(lengths, x), norms, zoneout, h_mask, zoneout_p, reset_after, reverse)
    if _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh, norms):
        out, h_n, _, _ = torch.ops.grukit.gru_layer_train(*args)
        return out, h_n
    return torch.ops.grukit.gru_layer(*args)


def gru_layer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    *,
    reset_after: bool = True,
    reverse: bool = False,
    lengths: Tensor | None = None,
    norms=None,
    zoneout_keep: Tensor | float | None = None,
    h_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Native twin of :func:`grukit.functional.gru_layer` (same arguments and results)."""
    one = [None if t is None else t.unsqueeze(0) for t in (h0, w_ih, w_hh, b_ih, b_hh, h_mask)]  # D = 1
    norms = None if norms is None else torch.stack(tuple(norms)).unsqueeze(0)  # (1, 4, 3H)
    keep = zoneout_keep.unsqueeze(0) if isinstance(zoneout_keep, Tensor) else zoneout_keep
    h, wi, wh, bi, bh, mask = one
    out, h_n = _run(x, h, wi, wh, bi, bh, lengths, norms, keep, mask, reset_after, reverse)  # (T, B, H), (1, B, H)
    return out, h_n[0]


def gru_directions(
    x: Tensor,
    h0: Tensor,
    weights,
    *,
    reset_after: bool = True,
    lengths: Tensor | None = None,
    norms=None,
    zoneout_keep=None,
    h_mask=None,
) -> tuple[Tensor, Tensor]:
    """Native twin of :func:`grukit.functional.gru_directions`: the D directions of one layer in one op.

    Both directions go to the kernel together (weights stacked to (D, ...)),
    so on two or more threads they run at the same time.
    x: (T, B, I), h0: (D, B, H) -> output (T, B, D*H), h_n (D, B, H).
    """
    w_ih, w_hh, b_ih, b_hh = (_stack([w[k] for w in weights]) for k in range(4))  # (D, 3H, ...) each
    if norms is not None:
        norms = torch.stack([torch.stack(tuple(n)) for n in norms])  # (D, 4, 3H)
    return _run(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, norms, zoneout_keep, h_mask, reset_after, False)


def gru_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
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


_stack_op = None


def stack_op():
    """The no-grad stack, ``(x, h0 or None, flat parameters, num_layers, bidirectional, bias,
    reset_after, layer-norm parameters (flat, 4 per layer and direction, or []), eval zoneout p,
    compute_bf16) -> (out, h_n)`` (positional): every layer through the gru_layer op's code,
    called as one plain function (no dispatcher, no autograd, no tracing) for grukit.GRU's
    forward under torch.no_grad. With compute_bf16 it computes in bfloat16 from inputs in
    another dtype and returns in theirs, as ``compute_dtype=torch.bfloat16``'s casts around
    the stack would."""
    global _stack_op
    if _stack_op is None:
        _stack_op = _build.module().gru_stack
    return _stack_op


def _stack_double_backward(
    layers, bidirectional, bias, reset_after, zoneout_p, n, dout, dh_n, need, x, h0, params, zones=(), h_masks=()
):
    """The training stack's backward under ``create_graph=True`` (autograd.cpp calls it): the gradients
    [dx, dh0, *dparams] (None where ``need`` is False) as differentiable functions of the inputs,
    by recomputing the stack through the per-layer ops, whose own double backward differentiates
    the reference. ``params``: the flat weights, then the layer-norm parameters; ``zones`` and
    ``h_masks``: the forward's masks of zoneout and recurrent dropout (one per layer), or none."""
    spec = (layers, bidirectional, bias, reset_after, zoneout_p, n)
    need = (need[0], need[1], False, *need[2:])
    return _stack_grads_by_ops(spec, (dout, dh_n), need, x, h0, params, zones, h_masks)


def _stack_grads_by_ops(spec, douts, need, x, h0, params, zones=(), h_masks=()) -> list:
    """The gradients of x, h0 and every parameter (None where not needed) by the differentiable per-layer ops
    (``zones``, ``h_masks``: the masks of zoneout (D, T, B, H) and recurrent dropout (D, B, H), one per
    layer, or none)."""
    layers, bidirectional, bias, reset_after, zoneout_p, n = spec
    D, per = (2 if bidirectional else 1), (4 if bias else 2)
    weights = [tuple(params[i : i + per]) + ((None, None) if not bias else ()) for i in range(0, n, per)]
    norm_list = params[n:]
    norms = [tuple(norm_list[i : i + 4]) for i in range(0, len(norm_list), 4)] or None
    inputs, wants = [x, h0, *params], (need[0], need[1], *need[3:])  # need[2] is the spec's
    wanted = [t for t, w in zip(inputs, wants) if w and t is not None]
    with torch.enable_grad():
        h = h0 if h0 is not None else x.new_zeros((layers * D, x.shape[1], params[1].shape[1]))
        if zones or h_masks:  # the masks the forward drew, layer by layer (functional.gru would draw new ones)
            out, h_n = x, []
            for k in range(layers):
                out, h_k = gru_directions(
                    out,
                    h[k * D : (k + 1) * D],
                    weights[k * D : (k + 1) * D],
                    reset_after=reset_after,
                    norms=None if norms is None else norms[k * D : (k + 1) * D],
                    zoneout_keep=zones[k] if zones else None,
                    h_mask=h_masks[k] if h_masks else None,
                )
                h_n.append(h_k)
            outs = (out, torch.cat(h_n))
        else:
            outs = functional.gru(
                x,
                h,
                weights,
                num_layers=layers,
                bidirectional=bidirectional,
                reset_after=reset_after,
                norms=norms,
                zoneout=zoneout_p,
                layer_fn=gru_directions,
            )
        pairs = [(o, g) for o, g in zip(outs, douts) if g is not None]
        grads = iter(
            torch.autograd.grad(
                [o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True, allow_unused=True
            )
        )
    return [next(grads) if w and t is not None else None for t, w in zip(inputs, wants)]


def train_stack(x, h0, params, num_layers, bidirectional, bias, reset_after, norms, zoneout_p, zones=(), h_masks=()):
    """The stack with autograd, same positional arguments as :func:`stack_op`'s function -> (out, h_n);
    ``zones``: zoneout's training masks, one (D, T, B, H) per layer (``zoneout_p`` then 0), or none;
    ``h_masks``: recurrent dropout's, one (D, B, H) per layer, or none.

    The whole stack in two native calls: ``gru_stack_train`` forward and ``gru_stack_backward``
    (every layer's hand-written BPTT, the last layer first), joined by an autograd node written in
    C++ (autograd.cpp). The per-layer op path computes the same numbers; this one skips its
    dispatcher calls, the torch.library autograd wrapper and the views per layer, which at T20 B1
    H64 cost more than the arithmetic. Double backward recomputes the stack through the per-layer
    ops (:func:`_stack_double_backward`), so higher derivatives stay exact."""
    return _build.module().gru_stack_autograd(
        x, h0, params, num_layers, bidirectional, bias, reset_after, norms, zoneout_p, list(zones), list(h_masks)
    )


GEMM_POLICIES = ("auto", "own", "library")


def set_gemm_policy(policy: str) -> None:
    """Where the native layer's float products too large for its small-product kernel run
    (the input projection, the weight gradients, dx): ``"auto"`` (the default: grukit's own
    blocked GEMM on AMD CPUs, where it outruns torch's BLAS, and torch's GEMM elsewhere),
    ``"own"`` or ``"library"``. The choice depends on the CPU only, never on timing, so a
    machine always gets the same bits; tests pin one to check the other."""
    if policy not in GEMM_POLICIES:
        raise ValueError(f"gemm policy must be one of {GEMM_POLICIES}, got {policy!r}")
    if not _build.load():
        raise RuntimeError(f"the native kernel is not available: {_build.error()}")
    _build.module().set_gemm_policy(GEMM_POLICIES.index(policy))


TEAM_POLICIES = ("measured", "team", "alone")


def set_team_policy(policy: str) -> None:
    """How the native layer decides to use its threads where it can: a batch-1 time loop (or
    GRUCell step) big enough to split its hidden units between threads, and the directions
    and batch blocks of a layer that can run their time loops side by side. ``"measured"``
    (the default: whichever of the threads together and one thread alone has been faster
    lately on this thread; see driver.cpp, TeamChoice), ``"team"`` (always together, as on a
    quiet machine) or ``"alone"`` (one thread). Every way gives bit-identical results; tests
    and benchmarks pin one."""
    if policy not in TEAM_POLICIES:
        raise ValueError(f"team policy must be one of {TEAM_POLICIES}, got {policy!r}")
    if not _build.load():  # builds on first use, like every native call
        raise RuntimeError(f"the native kernel is not available: {_build.error()}")
    _build.module().set_team_policy(TEAM_POLICIES.index(policy))

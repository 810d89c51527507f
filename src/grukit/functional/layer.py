"""The time loop of one layer, and the stack of layers: written once for every cell.

A layer runs one direction over a whole sequence with the input projection
hoisted out of the loop; :func:`gru_directions` runs the D directions of one
layer; :func:`gru` stacks L layers as torch.nn.GRU does and draws the masks
of the dropout variants (:mod:`.dropout`, :mod:`.zoneout`) in one fixed
order, so that every backend that takes the place of
:func:`gru_directions` (``layer_fn``) sees the same masks from the same RNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .dropout import dropout_mask
from .gru import gru_step
from .layernorm import layer_norm
from .zoneout import zoneout, zoneout_masks

__all__ = ["gru", "gru_directions", "gru_layer", "layer_masks"]

Weights = tuple[Tensor, Tensor, Tensor | None, Tensor | None]  # w_ih, w_hh, b_ih, b_hh
Norms = tuple[Tensor, Tensor, Tensor, Tensor]  # gain_ih, bias_ih, gain_hh, bias_hh of the two layer norms


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
    norms: Norms | None = None,
    zoneout_keep: Tensor | float | None = None,
    h_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run one layer in one direction over a whole sequence.

    x: (T, B, I), h0: (B, H), lengths: (B,) int or None.
    Returns output (T, B, H) and the final state h_n (B, H).

    With ``lengths``, sequence b only has steps 0 .. lengths[b]-1: its state
    stops changing after its last step, outputs past it are zero, and the
    reverse direction starts at its own last step.

    Cell options: ``norms`` makes it the LayerNorm-GRU (:mod:`.layernorm`);
    ``zoneout_keep`` is zoneout's m (T, B, H) in training or p (a float) in
    eval (:mod:`.zoneout`); ``h_mask`` (B, H) is recurrent dropout's mask
    on h_{t-1} where it enters the gates (:mod:`.dropout`).
    """
    _check_layer(x, h0, w_ih, w_hh, b_ih, b_hh, norms)
    T = x.shape[0]
    # The input projection, hoisted out of the loop; computed batch first, as
    # per-sample-gradient tools (ExpandedWeight) expect of every F.linear.
    x_b = x.transpose(0, 1)  # (B, T, I)
    norm_h = None
    if norms is None:
        gi = F.linear(x_b, w_ih, b_ih).transpose(0, 1)  # (T, B, 3H) W x + b_i
    else:
        g_ih, c_ih, g_hh, c_hh = norms
        gi = layer_norm(F.linear(x_b, w_ih).transpose(0, 1), g_ih, c_ih)  # (T, B, 3H) LN(W x), before the bias
        gi = gi if b_ih is None else gi + b_ih
        norm_h = lambda gh: layer_norm(gh, g_hh, c_hh)  # noqa: E731  LN(U h), per step
    if lengths is not None:
        steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
        valid = (steps < lengths.to(x.device).unsqueeze(0)).unsqueeze(-1)  # (T, B, 1)
    h = h0
    outputs: list[Tensor] = [h0] * T
    for t in reversed(range(T)) if reverse else range(T):
        h_in = h if h_mask is None else h * h_mask  # (B, H) what the recurrent products see
        h_new = gru_step(gi[t], h, w_hh, b_hh, reset_after=reset_after, h_in=h_in, norm_h=norm_h)  # (B, H)
        if zoneout_keep is not None:
            h_new = zoneout(h, h_new, zoneout_keep if isinstance(zoneout_keep, float) else zoneout_keep[t])
        if lengths is None:
            h = h_new
            outputs[t] = h
        else:
            h = torch.where(valid[t], h_new, h)  # padded steps keep the state
            outputs[t] = h * valid[t]  # and output zero
    return torch.stack(outputs), h  # (T, B, H), (B, H)


def _check_layer(x, h0, w_ih, w_hh, b_ih, b_hh, norms) -> None:
    """Each weight's shape and dtype against x and h0, by name (a wrong size is never broadcast)."""
    if x.dim() != 3 or h0.dim() != 2 or h0.shape[0] != x.shape[1]:
        raise ValueError(
            f"x must be (T, B, I) and h0 (B, H) with the same B, got {tuple(x.shape)} and {tuple(h0.shape)}"
        )
    H, I = h0.shape[1], x.shape[2]
    named = [("w_ih", w_ih, (3 * H, I)), ("w_hh", w_hh, (3 * H, H)), ("b_ih", b_ih, (3 * H,)), ("b_hh", b_hh, (3 * H,))]
    named += [] if norms is None else [(f"norms[{k}]", t, (3 * H,)) for k, t in enumerate(norms)]
    for name, t, shape in named:
        if t is None:
            continue
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} (H={H}, I={I}), got {tuple(t.shape)}")
        if t.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but x has dtype {x.dtype}")


def gru_directions(
    x: Tensor,
    h0: Tensor,
    weights: Sequence[Weights],
    *,
    reset_after: bool = True,
    lengths: Tensor | None = None,
    norms: Sequence[Norms] | None = None,
    zoneout_keep: Tensor | float | None = None,
    h_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The D directions of one layer (direction 1 runs backwards in time).

    x: (T, B, I), h0: (D, B, H), weights: D tuples (w_ih, w_hh, b_ih, b_hh),
    norms: D tuples or None, zoneout_keep: (D, T, B, H), a float or None,
    h_mask: (D, B, H) or None. Returns output (T, B, D*H) and h_n (D, B, H).
    """
    outs, h_n = [], []
    for d, w in enumerate(weights):
        out, h = gru_layer(
            x,
            h0[d],
            *w,
            reset_after=reset_after,
            reverse=d == 1,
            lengths=lengths,
            norms=None if norms is None else norms[d],
            zoneout_keep=zoneout_keep[d] if isinstance(zoneout_keep, Tensor) else zoneout_keep,
            h_mask=None if h_mask is None else h_mask[d],
        )
        outs.append(out)  # (T, B, H)
        h_n.append(h)  # (B, H)
    return (outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)), torch.stack(h_n)  # (T, B, D*H), (D, B, H)


def layer_masks(
    layer_input: Tensor,
    x: Tensor,
    w_hhs: Sequence[Tensor],
    *,
    hidden_size: int,
    input_dropout: float = 0.0,
    weight_dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor | None, list[Tensor | None], Tensor | None, Tensor | None]:
    """One layer's training masks, drawn in the one fixed order every path shares (so that a
    seed gives the same masks whichever path runs): input dropout's (B, I_l), DropConnect's per
    direction (the shape of each ``w_hhs`` entry), recurrent dropout's (D, B, H), zoneout's
    (D, T, B, H); None where an option is off. x (T, B, I) is the stack's input."""
    D, T, B, H = len(w_hhs), x.shape[0], x.shape[1], hidden_size
    in_mask = (
        dropout_mask(input_dropout, (B, layer_input.shape[-1]), layer_input, generator) if input_dropout > 0 else None
    )
    w_masks = [
        dropout_mask(weight_dropout, tuple(w.shape), w, generator) if weight_dropout > 0 else None for w in w_hhs
    ]
    h_mask = dropout_mask(recurrent_dropout, (D, B, H), x, generator) if recurrent_dropout > 0 else None
    keep = zoneout_masks(zoneout, (D, T, B, H), x, generator) if zoneout > 0 else None
    return in_mask, w_masks, h_mask, keep


def gru(
    x: Tensor,
    hx: Tensor,
    weights: Sequence[Weights],
    *,
    num_layers: int,
    bidirectional: bool = False,
    reset_after: bool = True,
    dropout: float = 0.0,
    training: bool = False,
    lengths: Tensor | None = None,
    norms: Sequence[Norms] | None = None,
    zoneout: float = 0.0,
    recurrent_dropout: float = 0.0,
    input_dropout: float = 0.0,
    weight_dropout: float = 0.0,
    generator: torch.Generator | None = None,
    layer_fn=gru_directions,
) -> tuple[Tensor, Tensor]:
    """A stack of GRU layers, as torch.nn.GRU computes it, with the cell options.

    x: (T, B, I), hx: (L*D, B, H).
    weights: one (w_ih, w_hh, b_ih, b_hh) tuple per layer and direction, in
    torch.nn.GRU order (layer 0 forward, layer 0 reverse, layer 1 forward, ...);
    ``norms`` likewise (gain_ih, bias_ih, gain_hh, bias_hh) for layer_norm.
    ``dropout`` is applied to each layer's output except the last one.
    In training, per layer and in this order: the input dropout mask (B, I_l),
    the weight dropout masks of U (D, 3H, H), the recurrent dropout masks
    (D, B, H), the zoneout masks (D, T, B, H), from ``generator`` or torch's
    global RNG. ``layer_fn`` runs the D directions of one layer (signature of
    :func:`gru_directions`): the native kernel takes the reference's place there.
    Returns output (T, B, D*H) and h_n (L*D, B, H).
    """
    D = 2 if bidirectional else 1
    H = hx.shape[-1]
    h_n: list[Tensor] = []
    layer_input = x  # (T, B, I) then (T, B, D*H)
    for layer in range(num_layers):
        per = [(w_ih, w_hh, b_ih, b_hh) for w_ih, w_hh, b_ih, b_hh in weights[layer * D : (layer + 1) * D]]
        h_mask: Tensor | None = None
        keep: Tensor | float | None = float(zoneout) if zoneout > 0 and not training else None
        if training:
            in_mask, w_masks, h_mask, keep = layer_masks(
                layer_input,
                x,
                [w_hh for _, w_hh, _, _ in per],
                hidden_size=H,
                input_dropout=input_dropout,
                weight_dropout=weight_dropout,
                recurrent_dropout=recurrent_dropout,
                zoneout=zoneout,
                generator=generator,
            )
            if in_mask is not None:
                layer_input = layer_input * in_mask
            # DropConnect: U masked once for this forward
            per = [
                (w_ih, w_hh if m is None else w_hh * m, b_ih, b_hh) for (w_ih, w_hh, b_ih, b_hh), m in zip(per, w_masks)
            ]
        out, h = layer_fn(
            layer_input,
            hx[layer * D : (layer + 1) * D],
            per,
            reset_after=reset_after,
            lengths=lengths,
            norms=None if norms is None else norms[layer * D : (layer + 1) * D],
            zoneout_keep=keep,
            h_mask=h_mask,
        )
        h_n.append(h)  # (D, B, H)
        layer_input = out  # (T, B, D*H)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = torch.nn.functional.dropout(layer_input, p=dropout, training=True)
    return layer_input, torch.cat(h_n)  # (T, B, D*H), (L*D, B, H)

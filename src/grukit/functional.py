"""The readable reference GRU: the definition of correct for every fast path.

Shapes legend (used in every file of grukit):
    T time steps, B batch, I input features, H hidden units,
    D directions (1 or 2), L layers.

Equations (Cho et al. 2014, "Learning Phrase Representations using RNN
Encoder-Decoder for Statistical Machine Translation", section 2.3; the
reset-after variant is the one cuDNN and torch.nn.GRU implement):

    z_t = sigmoid(W_z x_t + b_iz + U_z h_{t-1} + b_hz)        update gate
    r_t = sigmoid(W_r x_t + b_ir + U_r h_{t-1} + b_hr)        reset gate
    reset_after=True  (PyTorch, cuDNN, Keras 3 default):
        n_t = tanh(W_n x_t + b_in + r_t * (U_n h_{t-1} + b_hn))
    reset_after=False (Cho 2014 original):
        n_t = tanh(W_n x_t + b_in + U_n (r_t * h_{t-1}) + b_hn)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Weights are stored as torch.nn.GRU stores them: ``w_ih`` (3H, I) and
``w_hh`` (3H, H), biases (3H,), gates stacked r | z | n.

Everything here is plain differentiable torch code: autograd provides the
backward pass. Fast kernels (``grukit.kernels``) must agree with it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["gru_cell", "gru_layer", "gru"]


def _split3(t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split the last dimension of a gate-stacked tensor into r, z, n."""
    return t.chunk(3, dim=-1)


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
    """One GRU step. x: (B, I), h: (B, H) -> h': (B, H)."""
    gi = x @ w_ih.T  # (B, 3H)
    if b_ih is not None:
        gi = gi + b_ih
    return _step(gi, h, w_hh, b_hh, reset_after)


def _step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Optional[Tensor], reset_after: bool) -> Tensor:
    """One GRU step from the precomputed input projection gi = W x + b_i: (B, 3H)."""
    i_r, i_z, i_n = _split3(gi)  # (B, H) each
    w_hr, w_hz, w_hn = w_hh.chunk(3, dim=0)  # (H, H) each
    b_hr, b_hz, b_hn = _split3(b_hh) if b_hh is not None else (0.0, 0.0, 0.0)
    r = torch.sigmoid(i_r + h @ w_hr.T + b_hr)  # (B, H) reset gate
    z = torch.sigmoid(i_z + h @ w_hz.T + b_hz)  # (B, H) update gate
    if reset_after:
        n = torch.tanh(i_n + r * (h @ w_hn.T + b_hn))  # (B, H) candidate
    else:
        n = torch.tanh(i_n + (r * h) @ w_hn.T + b_hn)  # (B, H) candidate
    return (1 - z) * n + z * h  # (B, H)


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
    """Run one layer in one direction over a whole sequence.

    x: (T, B, I), h0: (B, H), lengths: (B,) int or None.
    Returns output (T, B, H) and the final state h_n (B, H).

    With ``lengths``, sequence b only has steps 0 .. lengths[b]-1: its state
    stops changing after its last step, outputs past it are zero, and the
    reverse direction starts at its own last step.
    """
    T = x.shape[0]
    gi = x @ w_ih.T  # (T, B, 3H): the input projection, hoisted out of the loop
    if b_ih is not None:
        gi = gi + b_ih
    if lengths is not None:
        steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
        valid = (steps < lengths.to(x.device).unsqueeze(0)).unsqueeze(-1)  # (T, B, 1)
    h = h0
    outputs: list[Tensor] = [h0] * T
    for t in reversed(range(T)) if reverse else range(T):
        h_new = _step(gi[t], h, w_hh, b_hh, reset_after)  # (B, H)
        if lengths is None:
            h = h_new
            outputs[t] = h
        else:
            h = torch.where(valid[t], h_new, h)  # padded steps keep the state
            outputs[t] = h * valid[t]  # and output zero
    return torch.stack(outputs), h  # (T, B, H), (B, H)


def gru(
    x: Tensor,
    hx: Tensor,
    weights: Sequence[Sequence[Optional[Tensor]]],
    *,
    num_layers: int,
    bidirectional: bool = False,
    reset_after: bool = True,
    dropout: float = 0.0,
    training: bool = False,
    lengths: Optional[Tensor] = None,
    layer_fn=gru_layer,
) -> tuple[Tensor, Tensor]:
    """A stack of GRU layers, as torch.nn.GRU computes it.

    x: (T, B, I), hx: (L*D, B, H).
    weights: one (w_ih, w_hh, b_ih, b_hh) tuple per layer and direction, in
    torch.nn.GRU order (layer 0 forward, layer 0 reverse, layer 1 forward, ...).
    Dropout is applied to each layer's output except the last one.
    ``layer_fn`` runs one layer in one direction; a fast kernel with the
    signature of :func:`gru_layer` can take the reference's place.
    Returns output (T, B, D*H) and h_n (L*D, B, H).
    """
    D = 2 if bidirectional else 1
    h_n: list[Tensor] = []
    layer_input = x  # (T, B, I) then (T, B, D*H)
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            out, h = layer_fn(
                layer_input, hx[k], *weights[k], reset_after=reset_after, reverse=d == 1, lengths=lengths
            )
            outs.append(out)  # (T, B, H)
            h_n.append(h)  # (B, H)
        layer_input = outs[0] if D == 1 else torch.cat(outs, dim=-1)  # (T, B, D*H)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = torch.nn.functional.dropout(layer_input, p=dropout, training=True)
    return layer_input, torch.stack(h_n)  # (T, B, D*H), (L*D, B, H)

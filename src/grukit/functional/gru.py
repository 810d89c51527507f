"""The GRU step: the equations every other cell builds on.

Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder
for Statistical Machine Translation", section 2.3 (the reset-before form);
the reset-after form is the one cuDNN and torch.nn.GRU implement::

    r_t = sigmoid(W_r x_t + b_ir + U_r h_{t-1} + b_hr)        reset gate
    z_t = sigmoid(W_z x_t + b_iz + U_z h_{t-1} + b_hz)        update gate
    reset_after=True  (PyTorch, cuDNN, Keras 3 default):
        n_t = tanh(W_n x_t + b_in + r_t * (U_n h_{t-1} + b_hn))
    reset_after=False (Cho 2014 original):
        n_t = tanh(W_n x_t + b_in + U_n (r_t * h_{t-1}) + b_hn)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Weights as torch.nn.GRU stores them: ``w_ih`` (3H, I), ``w_hh`` (3H, H),
biases (3H,), gates stacked r | z | n.

Every product with a weight is ``F.linear`` (weight and bias together, batch
first), so per-sample-gradient tools that wrap the parameters (torch's
ExpandedWeight, as ``call_for_per_sample_grads`` and Opacus-style DP use)
can follow the reset-after cell.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gru_cell", "gru_step"]


def split3(t: Tensor) -> tuple[Tensor, ...]:
    """Split the last dimension of a gate-stacked tensor into r, z, n."""
    return t.chunk(3, dim=-1)


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
    """One GRU step. x: (B, I), h: (B, H) -> h': (B, H)."""
    gi = F.linear(x, w_ih, b_ih)  # (B, 3H) W x + b_i
    return gru_step(gi, h, w_hh, b_hh, reset_after=reset_after)


def gru_step(
    gi: Tensor,
    h: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None = None,
    *,
    reset_after: bool = True,
    h_in: Tensor | None = None,
    norm_h: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """One step from the input projection gi = W x + b_i: (B, 3H) -> h' (B, H).

    ``h_in`` is what enters the recurrent products (default ``h``; recurrent
    dropout passes ``h * mask``, see :mod:`.dropout`); the carried state in
    ``z * h`` is always ``h``. ``norm_h`` maps U h_in (B, 3H) before its bias
    is added (layer normalisation, see :mod:`.layernorm`).
    """
    h_in = h if h_in is None else h_in
    i_r, i_z, i_n = split3(gi)  # (B, H) each
    if reset_after:
        if norm_h is None:
            gh = F.linear(h_in, w_hh, b_hh)  # (B, 3H) U h + b_h
        else:  # the norm of U h comes before its bias
            gh = norm_h(F.linear(h_in, w_hh))
            gh = gh if b_hh is None else gh + b_hh
        h_r, h_z, h_n = split3(gh)  # (B, H) each, biases included
        r = torch.sigmoid(i_r + h_r)  # (B, H) reset gate
        z = torch.sigmoid(i_z + h_z)  # (B, H) update gate
        n = torch.tanh(i_n + r * h_n)  # (B, H) candidate: r * (U_n h + b_hn)
    else:
        b_hr, b_hz, b_hn = split3(b_hh) if b_hh is not None else (0.0, 0.0, 0.0)
        if norm_h is not None:
            raise ValueError("layer_norm needs reset_after=True: U_n (r * h) has no place for the norm")
        w_hr, w_hz, w_hn = w_hh.chunk(3, dim=0)  # (H, H) each
        r = torch.sigmoid(i_r + h_in @ w_hr.T + b_hr)  # (B, H) reset gate
        z = torch.sigmoid(i_z + h_in @ w_hz.T + b_hz)  # (B, H) update gate
        n = torch.tanh(i_n + (r * h_in) @ w_hn.T + b_hn)  # (B, H) candidate
    return (1 - z) * n + z * h  # (B, H)

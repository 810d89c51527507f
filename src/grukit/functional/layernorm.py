"""The layer-normalised GRU (LayerNorm-GRU).

Ba, Kiros & Hinton 2016, "Layer Normalization", section 3.1 (recurrent
networks; the appendix writes it out for an LSTM), applied to the GRU as
Haste's LayerNormGRU applies it: the input projection W x_t and the recurrent
projection U h_{t-1} are each normalised over their 3H gate-stacked features,
with their own gain and bias (3H each, so every gate block r | z | n has its
own), before the gate equations of :mod:`.gru` combine them::

    LN(v; g, b) = g * (v - mean(v)) / sqrt(var(v) + eps) + b      over the 3H features of v
    gi_t = LN(W x_t;     g_ih, b_ih_ln) + b_ih                      (B, 3H)
    gh_t = LN(U h_{t-1}; g_hh, b_hh_ln) + b_hh                      (B, 3H)
    r_t = sigmoid(gi_r + gh_r)    z_t = sigmoid(gi_z + gh_z)
    n_t = tanh(gi_n + r_t * gh_n)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

So the norms sit on the two matrix products, before any bias of the GRU and
before r multiplies gh_n; the state h_t itself is not normalised. Only the
reset-after form exists (reset-before would need the norm inside U_n (r h)).
var is the biased variance (divide by 3H) and eps = 1e-5, as torch.nn.LayerNorm.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["EPS", "layer_norm"]

EPS = 1e-5


def layer_norm(v: Tensor, gain: Tensor, bias: Tensor, eps: float = EPS) -> Tensor:
    """LN over the last dimension: (..., 3H) -> (..., 3H)."""
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)  # biased, as Ba et al. and torch.nn.LayerNorm
    return (v - mean) * torch.rsqrt(var + eps) * gain + bias

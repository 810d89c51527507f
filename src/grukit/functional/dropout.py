"""Dropout inside a GRU: recurrent (variational), input and weight (DropConnect).

- Recurrent dropout, Gal & Ghahramani 2016, "A Theoretically Grounded
  Application of Dropout in Recurrent Neural Networks", section 4 (eq. 7-8 for
  the GRU): one mask per sequence on h_{t-1} where it enters the gates, the
  same at every step; the carried state in z_t * h_{t-1} is not masked::

      r_t = sigmoid(W_r x_t + b_ir + U_r (m_h * h_{t-1}) + b_hr), and so on for z_t, n_t

- Input dropout, the same paper: one mask per sequence on x_t, the same at
  every step, on the input of every layer.
- Weight dropout, DropConnect (Wan et al. 2013, section 2) on the recurrent
  weights as AWD-LSTM uses it (Merity et al. 2018, section 2): U is masked once
  per forward pass, the same mask at every step and for every sequence.

All three scale what they keep by 1 / (1 - p) (inverted dropout), so eval
uses the weights and states as they are.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["dropout_mask"]


def dropout_mask(p: float, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A mask of ``shape``: 0 with probability p, else 1 / (1 - p); ``like``'s dtype and device.
    Drawn in float32, so a seed gives the same mask in every dtype."""
    u = torch.rand(shape, generator=generator, dtype=torch.float32, device=like.device)
    return u.ge_(p).div_(1.0 - p).to(like.dtype)

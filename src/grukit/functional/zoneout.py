"""Zoneout: each hidden unit keeps its previous value at random.

Krueger et al. 2017, "Zoneout: Regularizing RNNs by Randomly Preserving
Hidden Activations", section 3 (eq. 4 for the GRU's state)::

    training:  h_t = m_t * h_{t-1} + (1 - m_t) * h'_t,  m_t ~ Bernoulli(p) per unit and step
    eval:      h_t = p * h_{t-1} + (1 - p) * h'_t       (the expectation over m_t)

where h'_t is the cell's new state (:func:`.gru.gru_step`). No rescaling:
the eval formula is the training formula's expected value.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["zoneout", "zoneout_masks"]


def zoneout(h: Tensor, h_new: Tensor, keep: Tensor | float) -> Tensor:
    """Mix the previous state h and the cell's h_new with keep = m_t (training) or p (eval)."""
    return keep * h + (1 - keep) * h_new


def zoneout_masks(p: float, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """m ~ Bernoulli(p) of ``shape`` (..., T, B, H), in ``like``'s dtype and device: 1 keeps the old value.
    Drawn in float32, so a seed gives the same mask in every dtype."""
    u = torch.rand(shape, generator=generator, dtype=torch.float32, device=like.device)
    return u.lt_(p).to(like.dtype)  # in place: one pass after the draw (bernoulli_ measured 2x slower here)

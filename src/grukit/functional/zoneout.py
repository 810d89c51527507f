"""Zoneout: each hidden unit keeps its previous value at random.

Krueger et al. 2017, "Zoneout: Regularizing RNNs by Randomly Preserving
Hidden Activations", section 3 (eq. 4 for the GRU's state)::

    training:  h_t = m_t * h_{t-1} + (1 - m_t) * h'_t,  m_t ~ Bernoulli(p) per unit and step
    eval:      h_t = p * h_{t-1} + (1 - p) * h'_t       (the expectation over m_t)

where h'_t is the cell's new state (:func:`.gru.gru_step`). No rescaling:
the eval formula is the training formula's expected value.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["hash_uniform32", "zoneout", "zoneout_masks"]


def zoneout(h: Tensor, h_new: Tensor, keep: Tensor | float) -> Tensor:
    """Mix the previous state h and the cell's h_new with keep = m_t (training) or p (eval)."""
    return keep * h + (1 - keep) * h_new


# SplitMix64's constants (Steele, Lea & Flood 2014) as signed int64, the dtype torch computes in
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)


def _shr(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic: it copies the sign bit)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def hash_uniform32(seed: int, n: int, device: torch.device | str = "cpu") -> Tensor:
    """u_i in [0, 2^32) for i < n, int64 (n,): the top 32 bits of SplitMix64's finaliser of
    seed + (i + 1) * golden, modulo 2^64 (int64 products wrap). Counter-based: u_i depends only
    on (seed, i). The native twin (kernels/masks.cpp) gives the same bits."""
    if n < 0 or not -(1 << 63) <= seed < (1 << 63):
        raise ValueError(f"hash_uniform32 needs n >= 0 and a 64-bit signed seed, got n={n}, seed={seed}")
    z = torch.arange(1, n + 1, dtype=torch.int64, device=device) * _GOLDEN + seed
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    z = z ^ _shr(z, 31)
    return _shr(z, 32)


def zoneout_masks(p: float, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """m ~ Bernoulli(p) of ``shape`` (..., T, B, H), in ``like``'s dtype and device: 1 keeps the old value.

    One 64-bit seed is drawn from ``generator`` (or torch's global RNG), so seeding and
    resuming work as for any torch draw; element i of the mask is u_i < round(p * 2^32) with
    u_i from :func:`hash_uniform32`, so a seed gives the same mask in every dtype. A mask
    holds one draw per unit and step (409,600 at T100 B32 H128): torch.rand's Mersenne
    Twister took 1.2 ms for them, 15% of a training step; the native twin of the hash takes a
    tenth of that, and where the native kernels are loaded it fills the mask (the same bits)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"zoneout p must be in [0, 1), got {p}")
    seed_device = generator.device if generator is not None else torch.device("cpu")
    seed = int(torch.randint(-(1 << 63), (1 << 63) - 1, (), generator=generator, device=seed_device))
    threshold = round(p * (1 << 32))
    from .. import kernels  # the native filler, where it is already loaded (never builds from here)

    fill = kernels.loaded_function("bernoulli_mask_") if like.device.type == "cpu" else None
    if fill is not None and like.dtype in kernels.DTYPES:
        out = torch.empty(shape, dtype=like.dtype)
        fill(out, seed, threshold)
        return out
    return (hash_uniform32(seed, math.prod(shape), like.device) < threshold).to(like.dtype).view(shape)

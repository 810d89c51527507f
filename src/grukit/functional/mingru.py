"""minGRU: a GRU whose gates see only the input, so its recurrence is a linear scan.

Feng et al. 2024, "Were RNNs All We Needed?", section 3.1 (the minimal GRU)::

    z_t  = sigmoid(Lin_z(x_t))                      update gate, from x_t only
    h~_t = Lin_h(x_t)                               candidate, from x_t only
    h_t  = (1 - z_t) * h_{t-1} + z_t * g(h~_t)

and their appendix (the log-space minGRU, "log-space version"), which keeps
every term positive so that the scan runs on logarithms::

    g(x)     = x + 0.5 if x >= 0 else sigmoid(x)    (> 0 everywhere, continuous at 0)
    log z_t     = -softplus(-k_t)                   k_t = Lin_z(x_t)
    log(1 - z_t) = -softplus(k_t)
    log g(x) = log(x + 0.5) if x >= 0 else -softplus(-x)

grukit applies g to h~ in BOTH modes (the paper's plain sequential minGRU
uses h~ itself): the two modes below compute one function, and tests assert
it. Weights stack the two projections as rows [z | h~]: ``weight`` (2H, I),
``bias`` (2H,), so ``proj = x @ weight.T + bias`` holds [k | h~].

Two ways to run the recurrence h_t = a_t * h_{t-1} + b_t, a_t = 1 - z_t,
b_t = z_t * g(h~_t) (section 3.2):

* :func:`mingru_sequential`: a Python loop of :func:`mingru_step` (the
  streaming step); the readable twin of the native scan (grukit.kernels.scan).
* :func:`mingru_parallel`: Heinsen 2023, "Efficient Parallelization of a
  Ubiquitous Sequential Computation", section 2: with A_t = prod_{k<=t} a_k,

      h_t = A_t * h0 + sum_{s<=t} (A_t / A_s) * b_s
          = exp(a*_t) * h0 + exp(a*_t + logcumsumexp_s(log b_s - a*_s)),   a*_t = cumsum log a_t

  The h0 term is kept out of the logarithms, so h0 of any sign works
  (lucidrains/minGRU-pytorch issue #9: the log-space mode disagreed with the
  sequential one when h0 was given). No clamping: -inf and large |a*| are
  exact in logcumsumexp, so nothing overflows at any T. But a*_t - a*_s is
  formed from two numbers of size |a*| ~ T * E[softplus(k)], so it loses
  |a*| * eps, and autograd through cumsum/logcumsumexp cancels terms of that
  size: measured in float32 (B=2, H=16, default init, against the sequential
  scan), outputs 1e-4 and bias gradients 1.6e-1 off (relative to their
  largest entry) at T = 4096, parameter gradients off by several times their
  size at T = 65536 (float64: 1e-7). So the scan runs in chunks of CHUNK = 64 steps
  (as the chunked scan of Mamba-2, Dao & Gu 2024): Heinsen's formula inside
  every chunk at once, then the chunk-start states by the recurrence itself,
  T / 64 steps of (B, H). |a*| then stays below 64 * max softplus(k), and
  float32 agrees with the sequential scan to ~1e-5 at every T (float64 1e-13).

``lengths`` (right-padded batches): past a sequence's end z = 0 (log z =
-inf, log(1 - z) = 0), so the state is kept; outputs there are zero and h_n is
each sequence's last valid state. bfloat16 (and float16) scans run in float32.

Shapes legend: T steps, B batch, I input, H hidden, L layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["mingru", "mingru_g", "mingru_layer", "mingru_log_g", "mingru_parallel", "mingru_sequential", "mingru_step"]

CHUNK = 64  # steps per chunk of the parallel scan: bounds |log A| within a chunk, hence its rounding

Scan = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]  # (proj, h0, lengths) -> (out, h_n)


def mingru_g(x: Tensor) -> Tensor:
    """g(x) = x + 0.5 for x >= 0, sigmoid(x) below (Feng et al. 2024, appendix)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def mingru_log_g(x: Tensor) -> Tensor:
    """log g(x), stably: log(relu(x) + 0.5) for x >= 0, -softplus(-x) below (appendix)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def _acc(t: Tensor) -> Tensor:
    """The scan's dtype: float32 for bfloat16/float16, else the tensor's own."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def mingru_step(proj: Tensor, h: Tensor) -> Tensor:
    """One step from the projected input proj_t = [k_t | h~_t] (B, 2H) and h_{t-1} (B, H) -> h_t (B, H).

    The streaming step, and the body of :func:`mingru_sequential` (section 3.1).
    """
    k, h_tilde = proj.chunk(2, dim=-1)  # (B, H) each
    z = torch.sigmoid(k)  # (B, H) update gate
    return (1 - z) * h + z * mingru_g(h_tilde)  # (B, H)


def _valid(lengths: Tensor, T: int, device) -> Tensor:
    return (torch.arange(T, device=device)[:, None] < lengths[None, :])[..., None]  # (T, B, 1)


def mingru_sequential(proj: Tensor, h0: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The recurrence as a loop over t. proj (T, B, 2H), h0 (B, H) -> out (T, B, H), h_n (B, H)."""
    dtype, proj, h = proj.dtype, _acc(proj), _acc(h0)
    outs = []
    for t in range(proj.shape[0]):
        h_new = mingru_step(proj[t], h)  # (B, H)
        if lengths is not None:  # past a sequence's end: keep the state, output zero
            valid = (t < lengths)[:, None]  # (B, 1)
            h, h_new = torch.where(valid, h_new, h), h_new * valid
        else:
            h = h_new
        outs.append(h_new)
    return torch.stack(outs).to(dtype), h.to(dtype)  # (T, B, H), (B, H)


def mingru_parallel(
    proj: Tensor, h0: Tensor, lengths: Tensor | None = None, *, chunk: int | None = CHUNK
) -> tuple[Tensor, Tensor]:
    """The recurrence as a log-space scan (Heinsen 2023), in chunks of ``chunk`` steps.

    Same arguments and results as :func:`mingru_sequential`. Within a chunk,
    Heinsen's formula from a zero start (every chunk at once); across chunks,
    the chunk-start states by the same recurrence, one chunk per step::

        h_start_0 = h0,   h_start_{n+1} = A_n * h_start_n + h_local_n[-1]

    ``chunk=None``: one chunk, Heinsen's scan over all of T.
    """
    dtype, proj, h0 = proj.dtype, _acc(proj), _acc(h0)
    T, B, H = proj.shape[0], proj.shape[1], h0.shape[-1]
    k, h_tilde = proj.chunk(2, dim=-1)  # (T, B, H) each
    log_a = -F.softplus(k)  # (T, B, H) log(1 - z_t)
    log_b = -F.softplus(-k) + mingru_log_g(h_tilde)  # (T, B, H) log z_t + log g(h~_t)
    if lengths is not None:  # past the end: 1 - z = 1, z = 0
        valid = _valid(lengths, T, proj.device)  # (T, B, 1)
        log_a = torch.where(valid, log_a, 0.0)
        log_b = torch.where(valid, log_b, float("-inf"))
    C = T if chunk is None else min(chunk, T)
    pad = -T % C  # steps appended to fill the last chunk: they keep the state
    if pad:
        log_a = torch.cat([log_a, log_a.new_zeros(pad, B, H)])
        log_b = torch.cat([log_b, log_b.new_full((pad, B, H), float("-inf"))])
    N = (T + pad) // C
    log_a, log_b = log_a.view(N, C, B, H), log_b.view(N, C, B, H)
    a_star = torch.cumsum(log_a, dim=1)  # (N, C, B, H) log of the decay since the chunk's start
    decay = torch.exp(a_star)  # (N, C, B, H)
    local = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))  # (N, C, B, H) the state from a zero start
    starts = [h0]  # (B, H) each: the state before each chunk, any sign, never in a logarithm
    for A_n, end_n in zip(decay[:-1, -1].unbind(0), local[:-1, -1].unbind(0)):  # (B, H) each
        starts.append(A_n * starts[-1] + end_n)
    h = (decay * torch.stack(starts)[:, None] + local).view(N * C, B, H)[:T]  # (T, B, H)
    h_n = h[-1]  # (B, H): states are kept past each end, so the last row is the last valid state
    out = h if lengths is None else h * valid
    return out.to(dtype), h_n.to(dtype)


def mingru_layer(
    x: Tensor,
    h0: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    mode: str = "sequential",
    lengths: Tensor | None = None,
    scan: Scan | None = None,
) -> tuple[Tensor, Tensor]:
    """One layer: x (T, B, I), h0 (B, H), weight (2H, I) rows [z | h~] -> out (T, B, H), h_n (B, H).

    ``scan`` replaces the sequential loop (a native kernel with the
    signature of :func:`mingru_sequential`); the parallel mode ignores it.
    """
    proj = F.linear(x, weight, bias)  # (T, B, 2H): both projections of every step, one product
    if mode == "parallel":
        return mingru_parallel(proj, h0, lengths)
    if mode != "sequential":
        raise ValueError(f"mode must be 'parallel' or 'sequential', got {mode!r}")
    return (scan or mingru_sequential)(proj, h0, lengths)


def mingru(
    x: Tensor,
    h0: Tensor,
    weights: Sequence[tuple[Tensor, Tensor | None]],
    *,
    mode: str = "sequential",
    lengths: Tensor | None = None,
    scan: Scan | None = None,
) -> tuple[Tensor, Tensor]:
    """The stack: layer k > 0 reads layer k - 1's output.

    x (T, B, I), h0 (L, B, H), weights [(weight_l{k}, bias_l{k})] -> out (T, B, H), h_n (L, B, H).
    """
    h_n = []
    for k, (w, b) in enumerate(weights):
        x, h = mingru_layer(x, h0[k], w, b, mode=mode, lengths=lengths, scan=scan)  # (T, B, H), (B, H)
        h_n.append(h)
    return x, torch.stack(h_n)

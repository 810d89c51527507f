"""grukit.MinGRU: the minimal GRU of Feng et al. 2024, a scan over time."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import _checks, backend, functional

MODES = ("parallel", "sequential")


class MinGRU(nn.Module):
    r"""A multi-layer minGRU (Feng et al. 2024, "Were RNNs All We Needed?", sections 3.1-3.2).

    Each layer computes, for every step of its input::

        z_t  = sigmoid(Lin_z(x_t))            k_t  = Lin_z(x_t)
        h~_t = Lin_h(x_t)
        h_t  = (1 - z_t) * h_{t-1} + z_t * g(h~_t)
        g(x) = x + 0.5 if x >= 0 else sigmoid(x)     (the paper's appendix)

    The gates read only x_t, so both projections of all steps are one matrix
    product and the recurrence is linear in h. g keeps the candidate
    positive, as the log-space form needs; grukit applies it in both modes so
    that they compute the same function (equations and derivation in
    :mod:`grukit.functional.mingru`). Layer k > 0 reads layer k - 1's output.

    Args:
        input_size: I. hidden_size: H. num_layers: L (default 1).
        bias: if False, no ``bias_l{k}``. Default True.
        batch_first: input and output are (B, T, feature). Default False.
        mode: keyword only. ``"sequential"`` (default): the recurrence step by
            step, by the native fused scan (grukit.kernels.scan) or, under the
            reference backend, a Python loop. ``"parallel"``: Heinsen 2023's
            log-space scan (cumsum and logcumsumexp), in chunks of 64 steps
            so that its rounding does not grow with T (see
            :func:`grukit.functional.mingru_parallel`). Same function: the
            modes agree to ~1e-5 in float32 and 1e-10 in float64, with any h0.
        compute_dtype: keyword only. If set (e.g. ``torch.bfloat16``), compute
            in that dtype while the parameters keep theirs (mixed precision);
            output and h_n come back in the input's dtype. Scans of bfloat16
            run in float32.

    Inputs: ``input, h0=None, *, lengths=None``
        input: (T, B, I), (B, T, I) if batch_first, or (T, I) unbatched.
        h0: (L, B, H) ((L, H) unbatched), any sign. Zeros if omitted.
        lengths: optional 1-D integer tensor of B lengths in [1, T] for a
            right-padded batch.

    Outputs: ``output, h_n``
        output: (T, B, H) ((B, T, H) if batch_first, (T, H) unbatched), zero
            past each sequence's length.
        h_n: (L, B, H): each sequence's last valid state.

    Attributes:
        weight_l{k}: (2H, I) for k = 0 else (2H, H), rows [z | h~].
        bias_l{k}: (2H,), rows [z | h~].
        Initialised as torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Speed (``python benchmarks/mingru.py``: T=4096, B=8, I=H=256, float32,
    2 cores at load ~4.6; medians of interleaved rounds), training / inference:
        input projections alone   338 / 156 ms
        sequential (the default)  411 / 198 ms (1.22x / 1.31x the projections)
        parallel                  4199 / 1781 ms (10x / 8x the sequential mode)
        grukit.GRU                1116 / 449 ms (2.7x / 2.3x the sequential mode)
        torch.nn.GRU              15634 / 2685 ms
    A longer paired run (projections, sequential, grukit.GRU only): 1.17x /
    1.20x the projections. The sequential mode is the default: on CPU it is
    the faster one.
    """

    weight_l0: Tensor  # registered in __init__ (the other parameters are read through their names)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        device=None,
        dtype=None,
        *,
        mode: str = "sequential",
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _checks.check_constructor(input_size, hidden_size, num_layers)
        if not isinstance(mode, str):
            raise TypeError(f"mode must be a str, one of {MODES}, got {type(mode).__name__} ({mode!r})")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if compute_dtype is not None and not (
            isinstance(compute_dtype, torch.dtype) and compute_dtype.is_floating_point
        ):
            raise TypeError(f"compute_dtype must be a floating-point torch.dtype or None, got {compute_dtype!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.mode, self.compute_dtype = bool(bias), bool(batch_first), mode, compute_dtype
        factory = {"device": device, "dtype": dtype}
        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_l{k}", nn.Parameter(torch.empty(2 * hidden_size, fan_in, **factory)))
            bias_k = nn.Parameter(torch.empty(2 * hidden_size, **factory)) if self.bias else None
            self.register_parameter(f"bias_l{k}", bias_k)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As torch.nn.Linear.reset_parameters, layer by layer."""
        for w, b in self._weights():
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            if b is not None:
                bound = 1.0 / math.sqrt(w.shape[1])
                nn.init.uniform_(b, -bound, bound)

    def _weights(self) -> list[tuple[Tensor, Tensor | None]]:
        return [(getattr(self, f"weight_l{k}"), getattr(self, f"bias_l{k}")) for k in range(self.num_layers)]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (
            ("num_layers", 1),
            ("bias", True),
            ("batch_first", False),
            ("mode", "sequential"),
            ("compute_dtype", None),
        ):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    def _check_parameters(self, w0: Tensor) -> None:
        H = self.hidden_size
        named = []
        for k, (w, b) in enumerate(self._weights()):
            named += [(f"weight_l{k}", w, (2 * H, self.input_size if k == 0 else H)), (f"bias_l{k}", b, (2 * H,))]
        _checks.check_parameters(named, w0.dtype, w0.device)

    def forward(
        self, input: Tensor, h0: Tensor | None = None, *, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if _checks.onnx_exporting():
            from .onnx_export import UnexportableError

            raise UnexportableError(
                "ONNX has no minGRU operator, and a traced scan would fix the sequence length: "
                "grukit exports --cell gru (ONNX's GRU operator) only"
            )
        w0 = self.weight_l0
        x, batched = _checks.time_major(input, self.input_size, w0, self.batch_first, "MinGRU")  # (T, B, I)
        T, B = x.shape[0], x.shape[1]
        _checks.check_nonempty(T, B)
        L, H = self.num_layers, self.hidden_size
        if h0 is None:
            h = torch.zeros(L, B, H, dtype=x.dtype, device=x.device)
        else:
            _checks.check_hidden(h0, (L, B, H) if batched else (L, H), w0, name="h0")
            h = h0 if batched else h0.unsqueeze(1)  # (L, B, H)
        if lengths is not None:
            lengths = _checks.check_lengths(lengths, B, T, x.device)
        self._check_parameters(w0)
        out, h_n = self._run(x, h, lengths)  # (T, B, H), (L, B, H)
        if not batched:
            return out.squeeze(1), h_n.squeeze(1)
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def _run(self, x: Tensor, h0: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        weights, low = self._weights(), self.compute_dtype
        dtype = x.dtype
        if low is not None and low != dtype:  # mixed precision: compute in `low`, return in x's dtype
            weights = [(w.to(low), None if b is None else b.to(low)) for w, b in weights]
            x, h0 = x.to(low), h0.to(low)
        scan = backend.mingru_scan_fn(x, h0, weights[0][0]) if self.mode == "sequential" else None
        out, h_n = functional.mingru(x, h0, weights, mode=self.mode, lengths=lengths, scan=scan)
        return out.to(dtype), h_n.to(dtype)

    def step(self, x_t: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step of a stream: x_t (B, I) or (I,), h (L, B, H) or (L, H) -> (y_t (B, H), h (L, B, H)).

        Carrying h from call to call gives what one call over the whole
        sequence gives (the sequential mode with T = 1; both modes are one function).
        """
        _checks.check_input(x_t, self.input_size, self.weight_l0, 2, "(B, I)", "MinGRU")
        batched = x_t.dim() == 2
        out, h_n = self.forward(x_t.unsqueeze(0 if not self.batch_first or not batched else 1), h)
        y = out.squeeze(1 if self.batch_first and batched else 0)
        return y, h_n

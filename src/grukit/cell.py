"""grukit.GRUCell: a drop-in replacement for torch.nn.GRUCell (one step of grukit.GRU's equations)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from . import _checks, backend, functional


class GRUCell(nn.Module):
    r"""One GRU step, a drop-in for torch.nn.GRUCell (plus ``reset_after``).

    Computes h' from x (B, I) and h (B, H) by the equations of :class:`GRU`.
    ``input`` may be (B, I) or unbatched (I,); ``hx`` (B, H) / (H,) defaults to
    zeros. Parameters ``weight_ih`` (3H, I), ``weight_hh`` (3H, H),
    ``bias_ih``, ``bias_hh`` (3H,), gates r|z|n, init U(-1/sqrt(H), 1/sqrt(H)).
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *, reset_after: bool = True
    ) -> None:
        super().__init__()
        _checks.check_constructor(input_size, hidden_size, cell=True)  # zero widths allowed, as torch.nn.GRUCell
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias, self.reset_after = (
            bool(bias),
            bool(reset_after),
        )  # as torch.nn.GRUCell: any truthy bias (unlike GRU's)
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size, **factory))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if not self.reset_after:
            s += ", reset_after=False"
        return s

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        streaming = (
            not torch.is_grad_enabled()
            and isinstance(input, Tensor)
            and isinstance(hx, Tensor)
            and input.is_cpu
            and hx.is_cpu
            and not torch.compiler.is_compiling()
            and not backend.transforms_active()
            and not torch._C._is_tracing()  # the stream's step is no op a trace would see (torch.jit.is_tracing's test)
        )
        if streaming and hx is not None:  # a no-grad stream of steps on the CPU: skip the checks already passed
            # for these inputs (streaming implies hx is not None: that test only narrows hx's type)
            p: dict[str, Any] = self._parameters  # (not self.weight_ih: nn.Module's lookup costs more than the check)
            try:
                w, u, b_ih, b_hh = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
            except KeyError:  # one is computed elsewhere (a parametrization, e.g. weight_norm): the checked path
                streaming = False
            else:
                key = (input.shape, hx.shape, input.dtype, hx.dtype, w.dtype, w.is_cpu, backend.forced())
                if key == self._streaming_key:
                    return self._streaming_step(input, hx, w, u, b_ih, b_hh, self.reset_after)
        h_new = self._checked_forward(input, hx)
        if streaming and input.dim() == 2:  # checks passed: remember them, and the step function to call
            self._streaming_key, self._streaming_step = key, backend.stream_fn(input, hx, w)
        return h_new

    # The last (shapes, dtypes, weights on the CPU, set_backend choice) of a
    # batched no-grad CPU call whose checks passed, and the step function chosen
    # for it: a stream of single steps pays for validation and the backend
    # choice once, not at every step. (GRUKIT_BACKEND is read when the stream
    # starts, not at every step.)
    _streaming_key: tuple | None = None
    _streaming_step: Any = None  # the step function chosen with _streaming_key

    def __getstate__(self) -> dict:
        """Pickle, deepcopy and torch.save without the stream's step function (a handle into the
        compiled kernel): the copy chooses it again on its first streamed step."""
        state = self.__dict__.copy()
        state.pop("_streaming_key", None)
        state.pop("_streaming_step", None)
        return state

    def _checked_forward(self, input: Tensor, hx: Tensor | None) -> Tensor:
        _checks.check_input(input, self.input_size, self.weight_ih, 2, "(B, I)", "GRUCell", dtype=False)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, I); B may be 0, as torch.nn.GRUCell allows
        B, H = x.shape[0], self.hidden_size
        if hx is None:
            h = torch.zeros(B, H, dtype=x.dtype, device=x.device)
        else:
            _checks.check_cell_hidden(hx, B if batched else None, H)
            h = hx if batched else hx.unsqueeze(0)
        _checks.check_same(input, "input", self.weight_ih)  # dtypes after hx's shape, in torch.nn.GRUCell's order
        _checks.check_same(h, "hx", self.weight_ih)
        I = self.input_size
        _checks.check_parameters(
            [
                ("weight_ih", self.weight_ih, (3 * H, I)),
                ("weight_hh", self.weight_hh, (3 * H, H)),
                ("bias_ih", self.bias_ih, (3 * H,)),
                ("bias_hh", self.bias_hh, (3 * H,)),
            ],
            x.dtype,
            x.device,
        )
        # ONNX has no GRU cell operator: exported, the step is the reference's plain operators
        cell = functional.gru_cell if _checks.onnx_exporting() else backend.cell_fn(x, h, self.weight_ih)
        h_new = cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, reset_after=self.reset_after)
        return h_new if batched else h_new.squeeze(0)

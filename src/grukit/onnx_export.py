"""ONNX export: every layer of a grukit.GRU becomes one ONNX ``GRU`` operator.

``torch.onnx.export(model, args, path, dynamo=False)`` on a model that holds a
grukit.GRU emits, per layer, ``GRU(X, W, R, B, sequence_lens, initial_h)``
(opset 14 or later) instead of an unrolled loop:

- ``linear_before_reset`` = 1 for ``reset_after=True`` (torch.nn.GRU's
  convention: r multiplies U_n h + b_hn) and 0 for ``reset_after=False``
  (Cho et al.: U_n (r * h)); the flag is never left to its default.
- Gates are reordered from torch's r|z|n to ONNX's z|r|h; ``B`` is
  [Wb_z, Wb_r, Wb_h, Rb_z, Rb_r, Rb_h] (zeros when ``bias=False``).
- ``direction`` is "forward" or "bidirectional"; the output Y (T, D, B, H) is
  transposed and reshaped to grukit's (T, B, D*H) for the next layer.
- ``lengths=`` becomes ``sequence_lens`` (int32): ONNX's GRU, like grukit,
  zeroes the output past each sequence's end and returns its last valid state.

The reordering is traced as Slice/Concat on the parameters, which the
exporter's constant folding turns into initializers. Options the ONNX
operator cannot express (layer norm, zoneout, recurrent or weight dropout,
a bfloat16 compute dtype) raise a ValueError naming the option; the dropout
between layers is inactive in eval mode, the mode exported. The exporter torch
2.x uses by default (``dynamo=True``) does not know grukit's operator: pass
``dynamo=False`` (:func:`export` does).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from . import functional

OPSET = 17  # a recent opset every current ONNX Runtime reads; GRU is unchanged since opset 14


def _onnx_gates(t: Tensor) -> Tensor:
    """Rows r|z|n (torch) -> z|r|h (ONNX); the same swap maps ONNX back to torch."""
    H = t.shape[0] // 3
    return torch.cat([t[H : 2 * H], t[:H], t[2 * H :]])


def _missing(g):
    """An omitted optional input of an ONNX node."""
    n = g.op("prim::Constant")
    n.setType(torch._C.OptionalType.ofTensor())
    return n


class _ONNXGRULayer(torch.autograd.Function):
    """One layer, all directions. Runs the reference when traced; exports as ONNX GRU."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        h0: Tensor,
        w: Tensor,
        r: Tensor,
        b: Tensor,
        seq_lens: Tensor | None,
        hidden_size: int,
        reset_after: bool,
    ) -> tuple[Tensor, Tensor]:
        H = hidden_size
        weights = [
            (_onnx_gates(w[d]), _onnx_gates(r[d]), _onnx_gates(b[d, : 3 * H]), _onnx_gates(b[d, 3 * H :]))
            for d in range(w.shape[0])
        ]
        lengths = None if seq_lens is None else seq_lens.long()
        return functional.gru_directions(x, h0, weights, reset_after=reset_after, lengths=lengths)

    @staticmethod
    def symbolic(g, x, h0, w, r, b, seq_lens, hidden_size: int, reset_after: bool):
        directions = w.type().sizes()[0] if w.type().sizes() else 1
        y, y_h = g.op(
            "GRU",
            x,
            w,
            r,
            b,
            seq_lens if seq_lens is not None and not seq_lens.node().mustBeNone() else _missing(g),
            h0,
            hidden_size_i=hidden_size,
            direction_s="bidirectional" if directions == 2 else "forward",
            linear_before_reset_i=int(reset_after),
            outputs=2,
        )
        y = g.op("Transpose", y, perm_i=[0, 2, 1, 3])  # (T, D, B, H) -> (T, B, D, H)
        y = g.op("Reshape", y, g.op("Constant", value_t=torch.tensor([0, 0, -1], dtype=torch.int64)))  # (T, B, D*H)
        return y, y_h


UNEXPORTABLE = ("layer_norm", "zoneout", "recurrent_dropout", "weight_dropout", "input_dropout")


def check_exportable(gru) -> None:
    """Raise ValueError naming the first option ONNX's GRU operator cannot express."""
    for name in UNEXPORTABLE:
        if getattr(gru, name, 0):
            raise ValueError(
                f"ONNX's GRU operator cannot express {name}={getattr(gru, name)!r}; export a model without it"
            )
    if gru.compute_dtype not in (None, torch.float32):
        raise ValueError(
            f"ONNX export runs in float32; this GRU has compute_dtype={gru.compute_dtype} (set it to None to export)"
        )


def gru_stack(gru, x: Tensor, h0: Tensor, weights: Sequence[tuple], lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """grukit.GRU's layers as ONNX GRU nodes (called by GRU.forward while torch.onnx exports)."""
    check_exportable(gru)
    D, H = gru.num_directions, gru.hidden_size
    seq_lens = None if lengths is None else lengths.to(torch.int32)
    inp, h_n = x, []
    for layer in range(gru.num_layers):
        ws = weights[layer * D : (layer + 1) * D]
        w = torch.stack([_onnx_gates(wi) for wi, _, _, _ in ws])  # (D, 3H, I)
        r = torch.stack([_onnx_gates(wh) for _, wh, _, _ in ws])  # (D, 3H, H)
        zeros = torch.zeros(3 * H, dtype=x.dtype, device=x.device)
        b = torch.stack(
            [
                torch.cat([_onnx_gates(bi if bi is not None else zeros), _onnx_gates(bh if bh is not None else zeros)])
                for _, _, bi, bh in ws
            ]
        )  # (D, 6H)
        inp, h = _ONNXGRULayer.apply(inp, h0[layer * D : (layer + 1) * D], w, r, b, seq_lens, H, gru.reset_after)
        h_n.append(h)
    return inp, torch.cat(h_n)


def export(
    model: torch.nn.Module, args: tuple, path: str | Path, *, input_names=None, output_names=None, dynamic_axes=None
) -> Path:
    """``torch.onnx.export`` with the exporter that knows grukit's layers (dynamo=False), in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the Python shape checks run once, on the example
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter announces its retirement
            torch.onnx.export(
                model,
                args,
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    return Path(path)


def export_run(run: str | Path, to: str | Path | None = None, *, tolerance: float = 1e-4) -> tuple[Path, float]:
    """Export a saved run's model to ONNX (RUN/model.onnx by default) and check it in ONNX Runtime:
    returns (path, the largest difference from PyTorch's outputs on the task's example inputs)."""
    import numpy as np

    try:
        import onnxruntime
    except ImportError:
        raise ValueError("checking the exported model needs onnxruntime: pip install 'grukit[onnx]'") from None
    from .tasks import get_task
    from .tasks.rundir import run_task_name

    task = get_task(run_task_name(Path(run)))
    cfg, state, model = task.load(Path(run))
    args, names, axes = task.export_example(cfg, state)
    with torch.no_grad():
        want = model(*args)
    want = [want] if isinstance(want, Tensor) else [w for w in want if isinstance(w, Tensor)]
    path = Path(to) if to is not None else Path(run) / "model.onnx"
    export(
        model, args, path, input_names=names, output_names=[f"output{i}" for i in range(len(want))], dynamic_axes=axes
    )
    got = onnxruntime.InferenceSession(str(path)).run(None, {n: a.numpy() for n, a in zip(names, args)})
    worst = max(float(np.abs(g - w.float().numpy()).max()) for g, w in zip(got, want))
    if not worst <= tolerance:
        raise ArithmeticError(f"{path}: ONNX Runtime differs from PyTorch by {worst:.3g} (more than {tolerance})")
    return path, worst

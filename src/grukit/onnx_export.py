"""ONNX export: every layer of a grukit.GRU becomes one ONNX ``GRU`` operator.

``torch.onnx.export(model, args, path)`` on a model that holds a grukit.GRU
emits, per layer, ``GRU(X, W, R, B, sequence_lens, initial_h)`` instead of an
unrolled loop, with either of torch's exporters:

- the default one (``dynamo=True``, torch >= 2.8, needs onnxscript): while it
  captures the model, :meth:`grukit.GRU.forward` puts each layer in the graph
  as ``torch.onnx.ops.symbolic_multi_out("GRU", ...)``, which the exporter
  writes as that ONNX node; nothing needs registering.
- the TorchScript one (``dynamo=False``, opset 14 or later): each layer is an
  autograd.Function whose ``symbolic`` writes the node.

In both:

- ``linear_before_reset`` = 1 for ``reset_after=True`` (torch.nn.GRU's
  convention: r multiplies U_n h + b_hn) and 0 for ``reset_after=False``
  (Cho et al.: U_n (r * h)); the flag is never left to its default.
- Gates are reordered from torch's r|z|n to ONNX's z|r|h; ``B`` is
  [Wb_z, Wb_r, Wb_h, Rb_z, Rb_r, Rb_h] (omitted when ``bias=False``).
- ``direction`` is "forward" or "bidirectional"; the output Y (T, D, B, H) is
  transposed and reshaped to grukit's (T, B, D*H) for the next layer.
- ``lengths=`` becomes ``sequence_lens`` (int32): ONNX's GRU, like grukit,
  zeroes the output past each sequence's end and returns its last valid state.

The reordering is traced as Slice/Concat on the parameters, which the
exporters' constant folding turns into initializers. Options the ONNX
operator cannot express (layer norm, zoneout, recurrent, input or weight
dropout, a bfloat16 compute dtype) raise :class:`UnexportableError` (a ValueError)
naming the option; the dropout between layers is inactive in eval mode, the
mode exported. grukit.MinGRU has no ONNX operator and refuses both exporters.
:func:`export` uses the default exporter, or the TorchScript one with
``dynamo=False``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from . import functional
from .functional.layer import Weights

OPSET = 17  # the TorchScript exporter's opset: every current ONNX Runtime reads it; GRU is unchanged since opset 14
# the default exporter writes its own opset (18 or later in torch 2.8+), which ONNX Runtime 1.17+ reads


class UnexportableError(ValueError):
    """The model holds something ONNX's GRU operator cannot express (the message names it)."""


def _onnx_gates(t: Tensor) -> Tensor:
    """Rows r|z|n (torch) -> z|r|h (ONNX); the same swap maps ONNX back to torch."""
    H = t.shape[0] // 3
    return torch.cat([t[H : 2 * H], t[:H], t[2 * H :]])


def exporting() -> bool:
    """Whether torch.onnx is exporting the model, with either exporter and either of torch.export's captures.

    torch.onnx.is_in_onnx_export() answers that, except inside torch.export's strict (dynamo) capture, the
    default exporter's fallback, where dynamo answers False for it; there the exporter's own flag is read.
    """
    if torch.onnx.is_in_onnx_export():
        return True
    try:
        from torch.onnx._internal.exporter import _flags
    except ImportError:  # a torch without the default exporter
        return False
    return bool(getattr(_flags, "_is_onnx_exporting", False))


def _given(g, value):
    """An optional input of an ONNX node: the value, or a marker that it is omitted."""
    if value is not None and not value.node().mustBeNone():
        return value
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
        b: Tensor | None,
        seq_lens: Tensor | None,
        hidden_size: int,
        reset_after: bool,
    ) -> tuple[Tensor, Tensor]:
        H = hidden_size
        weights: list[Weights] = [
            (
                _onnx_gates(w[d]),
                _onnx_gates(r[d]),
                None if b is None else _onnx_gates(b[d, : 3 * H]),
                None if b is None else _onnx_gates(b[d, 3 * H :]),
            )
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
            _given(g, b),
            _given(g, seq_lens),
            h0,
            hidden_size_i=hidden_size,
            direction_s="bidirectional" if directions == 2 else "forward",
            linear_before_reset_i=int(reset_after),
            outputs=2,
        )
        y = g.op("Transpose", y, perm_i=[0, 2, 1, 3])  # (T, D, B, H) -> (T, B, D, H)
        y = g.op("Reshape", y, g.op("Constant", value_t=torch.tensor([0, 0, -1], dtype=torch.int64)))  # (T, B, D*H)
        return y, y_h


def _symbolic_layer(
    x: Tensor, h0: Tensor, w: Tensor, r: Tensor, b: Tensor | None, seq_lens: Tensor | None, H: int, reset_after: bool
) -> tuple[Tensor, Tensor]:
    """One layer, all directions, as an ONNX GRU node in the graph the default exporter captures."""
    try:
        from torch.onnx import ops
    except ImportError:
        ops = None  # type: ignore[assignment]  # a torch before 2.8: said below
    if not hasattr(ops, "symbolic_multi_out"):
        raise UnexportableError(
            f"torch {torch.__version__} has no torch.onnx.ops (torch 2.8 added it), which grukit's export with "
            "the default exporter needs: upgrade torch, or pass dynamo=False"
        )
    T, B, D = x.shape[0], x.shape[1], w.shape[0]
    y, y_h = ops.symbolic_multi_out(
        "GRU",
        [x, w, r, b, seq_lens, h0],
        {
            "hidden_size": H,
            "direction": "bidirectional" if D == 2 else "forward",
            "linear_before_reset": int(reset_after),
        },
        dtypes=[x.dtype, x.dtype],
        shapes=[[T, D, B, H], [D, B, H]],
    )
    return y.transpose(1, 2).reshape(T, B, D * H), y_h  # (T, D, B, H) -> (T, B, D*H)


UNEXPORTABLE = ("layer_norm", "zoneout", "recurrent_dropout", "weight_dropout", "input_dropout")


def check_exportable(gru) -> None:
    """Raise UnexportableError naming the first option ONNX's GRU operator cannot express."""
    for name in UNEXPORTABLE:
        if getattr(gru, name, 0):
            raise UnexportableError(
                f"ONNX's GRU operator cannot express {name}={getattr(gru, name)!r}; export a model without it"
            )
    if gru.compute_dtype not in (None, torch.float32):
        raise UnexportableError(
            f"ONNX export runs in float32; this GRU has compute_dtype={gru.compute_dtype} (set it to None to export)"
        )


def gru_stack(gru, x: Tensor, h0: Tensor, weights: Sequence[tuple], lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """grukit.GRU's layers as ONNX GRU nodes (called by GRU.forward while torch.onnx exports)."""
    check_exportable(gru)
    layer_fn = _ONNXGRULayer.apply if torch.jit.is_tracing() else _symbolic_layer  # TorchScript or default exporter
    D, H = gru.num_directions, gru.hidden_size
    seq_lens = None if lengths is None else lengths.to(torch.int32)
    inp, h_n = x, []
    for layer in range(gru.num_layers):
        ws = weights[layer * D : (layer + 1) * D]
        w = torch.stack([_onnx_gates(wi) for wi, _, _, _ in ws])  # (D, 3H, I)
        r = torch.stack([_onnx_gates(wh) for _, wh, _, _ in ws])  # (D, 3H, H)
        b = torch.stack([torch.cat([_onnx_gates(bi), _onnx_gates(bh)]) for _, _, bi, bh in ws]) if gru.bias else None
        inp, h = layer_fn(inp, h0[layer * D : (layer + 1) * D], w, r, b, seq_lens, H, gru.reset_after)  # b: (D, 6H)
        h_n.append(h)
    return inp, torch.cat(h_n)


def export(
    model: torch.nn.Module,
    args: tuple,
    path: str | Path,
    *,
    input_names=None,
    output_names=None,
    dynamic_axes=None,
    dynamo: bool = True,
) -> Path:
    """``torch.onnx.export`` of ``model`` in eval mode to one file: with torch's default exporter, or with
    ``dynamo=False`` its TorchScript one. ``dynamic_axes`` ({input name: {axis: name}}) serves both."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the Python shape checks run once, on the example
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter announces its retirement
            if dynamo:
                _export_dynamo(model, args, path, input_names, output_names, dynamic_axes)
            else:
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


def _export_dynamo(model, args, path, input_names, output_names, dynamic_axes) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's default exporter builds the graph with it)
    except ImportError:
        raise ValueError(
            "torch's default ONNX exporter needs onnxscript: pip install 'grukit[onnx]' (or export with dynamo=False)"
        ) from None
    dynamic_shapes = None
    if dynamic_axes:  # the same axes as dynamic_shapes, one entry per argument; named axes keep their names
        names = list(input_names or ())
        if len(names) != len(args) or not set(dynamic_axes) <= set(names):
            raise ValueError("dynamic_axes needs input_names: one name per argument, each key one of them")
        dynamic_shapes = tuple(_axes(dynamic_axes.get(n), n) for n in names)
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # not the exporter's notes on optional packages (torchvision) it skips
    try:
        warnings.filterwarnings("ignore", module=r"torch\.onnx|copyreg")  # notes on renamed axes, deprecations
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            external_data=False,  # one file (the exporter still splits a model over 2 GB)
            verbose=False,
        )
    except torch.onnx.errors.OnnxExporterError as e:
        refusal = _unexportable(e)
        if refusal is None:
            raise
        raise refusal from None  # the option grukit names, not the exporter's report around it
    finally:
        logger.setLevel(level)


def _axes(axes, name: str) -> dict | None:
    """One input's dynamic axes as torch.onnx.export's dynamic_shapes reads them: {axis: name}."""
    if not axes:
        return None
    return dict(axes) if isinstance(axes, dict) else {int(a): f"{name}_{a}" for a in axes}


def _unexportable(error: BaseException) -> UnexportableError | None:
    """The UnexportableError behind an exporter's error, if one is."""
    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        if isinstance(e, UnexportableError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


EXPORTERS = ("auto", "dynamo", "torchscript")


def default_exporter_available() -> bool:
    """Whether torch's default (dynamo) exporter can run here: torch.onnx.ops (torch 2.8+) and onnxscript."""
    import importlib.util

    return importlib.util.find_spec("torch.onnx.ops") is not None and importlib.util.find_spec("onnxscript") is not None


def export_run(
    run: str | Path, to: str | Path | None = None, *, tolerance: float = 1e-4, exporter: str = "auto"
) -> tuple[Path, float, str]:
    """Export a saved run's model to ONNX (RUN/model.onnx by default) and check it in ONNX Runtime: returns
    (path, the largest difference from PyTorch's outputs on the task's example inputs, the exporter used).

    ``exporter``: "dynamo" (torch's default exporter), "torchscript" (``dynamo=False``), or "auto": dynamo
    where it can run (:func:`default_exporter_available`), else torchscript."""
    import numpy as np

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if exporter == "auto":
        exporter = "dynamo" if default_exporter_available() else "torchscript"

    try:
        import onnxruntime
    except ImportError:
        raise ValueError("checking the exported model needs onnxruntime: pip install 'grukit[onnx]'") from None
    from .tasks import get_task
    from .tasks.rundir import run_task_name

    task = get_task(run_task_name(Path(run)))
    cfg, state, model = task.load(Path(run))
    model = task.export_model(cfg, state, model)
    args, names, axes = task.export_example(cfg, state)
    with torch.no_grad():
        want = model(*args)
    want = [want] if isinstance(want, Tensor) else [w for w in want if isinstance(w, Tensor)]
    path = Path(to) if to is not None else Path(run) / "model.onnx"
    export(
        model,
        args,
        path,
        input_names=names,
        output_names=[f"output{i}" for i in range(len(want))],
        dynamic_axes=axes,
        dynamo=exporter == "dynamo",
    )
    got = onnxruntime.InferenceSession(str(path)).run(None, {n: a.numpy() for n, a in zip(names, args)})
    worst = max(float(np.abs(g - w.float().numpy()).max()) for g, w in zip(got, want))
    if not worst <= tolerance:
        raise ArithmeticError(f"{path}: ONNX Runtime differs from PyTorch by {worst:.3g} (more than {tolerance})")
    return path, worst, exporter

"""ONNX Runtime and OpenVINO, both running torch.nn.GRU exported to ONNX.

The export is torch's TorchScript exporter (``dynamo=False``), which writes
one ONNX ``GRU`` node per layer with ``linear_before_reset=1`` (torch's
reset-after convention); :func:`gru_nodes` lists them so a test can hold the
graph to that. h0 is an input of the graph (zeros), so no shape arithmetic
precedes the GRU nodes. OpenVINO reads the same ONNX model.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import torch

from .engines import BENCH_EXTRA, Case, Engine, Missing


def export_onnx(case: Case) -> bytes:
    """The ONNX model of case.ref with inputs x (T, B, I), h0 (L*D, B, H) and outputs y (T, B, D*H), h_n."""
    try:
        import onnx  # noqa: F401  (the TorchScript exporter needs it)
    except ImportError:
        raise Missing(f"onnx is not installed (it exports the model): {BENCH_EXTRA}") from None
    f = io.BytesIO()
    # the TorchScript exporter is deprecated in favour of dynamo, which writes no GRU node
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            case.ref,
            (case.x, _h0(case)),
            f,  # type: ignore[arg-type]  # torch annotates f as a path; the TorchScript exporter writes to a file too
            dynamo=False,
            input_names=["x", "h0"],
            output_names=["y", "h_n"],
        )
    return f.getvalue()


def gru_nodes(model: bytes) -> tuple[list[str], list[dict]]:
    """The op types of the graph, and the attributes of each GRU node."""
    import onnx

    graph = onnx.load_from_string(model).graph
    attrs = [
        {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in graph.node if n.op_type == "GRU"
    ]
    return [n.op_type for n in graph.node], attrs


def _h0(case: Case) -> torch.Tensor:
    D = 2 if case.cfg.bidirectional else 1
    return torch.zeros(case.cfg.L * D, case.cfg.B, case.cfg.H)  # (L*D, B, H)


def _feeds(case: Case) -> dict[str, np.ndarray]:
    return {"x": case.x.numpy(), "h0": _h0(case).numpy()}


def onnxruntime_engine(case: Case, model: Callable[[], bytes]) -> Engine:
    """ONNX Runtime, CPU provider, ``intra_op_num_threads`` = threads, one inter-op thread.

    Spinning is off: ORT's pool otherwise keeps spinning after a call returns
    and takes the cores from the engine timed next in the round."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise Missing(f"onnxruntime is not installed: {BENCH_EXTRA}") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = case.threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model(), so, providers=["CPUExecutionProvider"])
    feeds = _feeds(case)

    def infer():
        return sess.run(None, feeds)

    def outputs():
        y, h = infer()
        return y, h

    return Engine(
        "onnxruntime",
        "fp32",
        infer,
        outputs,
        version=ort.__version__,
        note="intra_op_num_threads = threads, spinning off",
    )


def openvino_engine(case: Case, model: Callable[[], bytes], precision: str) -> Engine:
    """OpenVINO CPU, ``INFERENCE_PRECISION_HINT`` f32 or bf16 set explicitly, ``INFERENCE_NUM_THREADS`` = threads.

    On a CPU without bf16 the bf16 hint runs in f32; the note says which precision the compiled model reports."""
    try:
        import openvino as ov
    except ImportError:
        raise Missing(f"openvino is not installed: {BENCH_EXTRA}") from None
    core = ov.Core()
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise Missing("this CPU has no bf16 support in OpenVINO, so its bf16 hint would run f32")
    compiled = core.compile_model(
        core.read_model(model=model()),
        "CPU",
        {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": case.threads, "PERFORMANCE_HINT": "LATENCY"},
    )
    runs_as = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    request = compiled.create_infer_request()
    feeds = _feeds(case)

    def infer():
        return request.infer(feeds)

    def outputs():
        r = infer()
        return np.array(r[compiled.output(0)]), np.array(r[compiled.output(1)])

    name = "openvino" if precision == "fp32" else "openvino-bf16"
    note = f"INFERENCE_PRECISION_HINT={hint} (compiled model: {runs_as}), INFERENCE_NUM_THREADS = threads, PERFORMANCE_HINT=LATENCY"
    return Engine(name, precision, infer, outputs, version=ov.__version__.split("-")[0], note=note)

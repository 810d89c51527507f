"""``grukit bench --peers``: grukit against the other GRU engines a user could pick.

torch.nn.GRU, ONNX Runtime and OpenVINO (on torch.nn.GRU exported to ONNX),
JAX (a jitted lax.scan GRU) and Keras 3 (torch backend), same shapes and
weights, outputs and gradients checked against torch.nn.GRU before anything
is timed. ONNX Runtime, OpenVINO and JAX are optional (``pip install
'grukit[bench]'``); an engine that is not installed is reported as skipped.

    res = run(PEERS_GRID)       # or QUICK_PEERS for a smoke run
    print(format_table(res))
"""

from .engines import BENCH_EXTRA, Missing
from .report import format_table, plot
from .runner import ENGINES, PEERS_GRID, QUICK_PEERS, RTOL, PeerMismatch, check, run

__all__ = [
    "BENCH_EXTRA",
    "ENGINES",
    "PEERS_GRID",
    "QUICK_PEERS",
    "RTOL",
    "Missing",
    "PeerMismatch",
    "check",
    "format_table",
    "plot",
    "run",
]

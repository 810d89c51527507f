"""Run the peers benchmark: every engine on every shape, checked against torch.nn.GRU, then timed.

For each thread count: the fp32 matmul peak (torch.mm, this process, before
and after the shapes; the higher of the two, since load only lowers it), then
for each shape every engine is built from the same torch.nn.GRU, its outputs
(and, where it trains, its gradients) are compared with torch's, and only
then are the engines timed, in interleaved rounds (:func:`grukit.bench.rounds`),
inference and training separately. Ratio = torch's median time / the
engine's median time (above 1: faster than torch.nn.GRU).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable

import numpy as np
import torch

from ..bench import GRID, Config, _loadavg, _summary, geomean, machine, matmul_peak, rounds
from . import engines as E
from .jax_engine import JaxWorker, jax_engine
from .onnx_engines import export_onnx, onnxruntime_engine, openvino_engine

ENGINES = ("torch", "grukit", "grukit-bf16", "onnxruntime", "openvino", "openvino-bf16", "jax", "keras")
PEERS_GRID = GRID + (Config(20, 1, 32, 64), Config(200, 8, 40, 64), Config(64, 128, 512, 1024))
QUICK_PEERS = (Config(12, 4, 8, 16), Config(6, 2, 4, 8, L=2, bidirectional=True))
RTOL = {"fp32": 1e-5, "bf16": 5e-2}  # max |engine - torch| / max |torch|, per output and per gradient
MODES = ("infer", "train")


class PeerMismatch(AssertionError):
    """An engine does not compute torch.nn.GRU's function: timing it would compare different things."""


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max |ref|; infinite if the shapes differ."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    if a.shape != ref.shape:
        return float("inf")
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30)) if ref.size else 0.0


def check(engine: E.Engine, ref_out: tuple, ref_grads: dict | None, cfg: Config) -> dict[str, float]:
    """The engine's relative errors against torch's; raises PeerMismatch past RTOL[engine.precision]."""
    y, h = engine.outputs()
    errs = {"output": rel_err(y, ref_out[0])}
    if h is not None:
        errs["h_n"] = rel_err(h, ref_out[1])
    if engine.grads is not None and ref_grads is not None:
        grads = engine.grads()
        errs["grads"] = max(rel_err(grads[n], r) if n in grads else float("inf") for n, r in ref_grads.items())
    tol = RTOL[engine.precision]
    worst = max(errs, key=errs.__getitem__)
    if not errs[worst] <= tol:
        raise PeerMismatch(
            f"{engine.name} does not compute torch.nn.GRU at {cfg.name}: max relative |difference| in {worst} is {errs[worst]:.2e} (tolerance {tol:.0e})"
        )
    return errs


def build(case: E.Case, names: Iterable[str], jax: JaxWorker | None, skipped: dict[str, str]) -> list[E.Engine]:
    """The engines asked for that can run here (torch first); the others go to ``skipped`` with their reason."""
    makers: dict[str, Callable[[], E.Engine]] = {
        "torch": lambda: E.torch_engine(case),
        "grukit": lambda: E.grukit_engine(case),
        "grukit-bf16": lambda: E.grukit_bf16_engine(case),
        "keras": lambda: E.keras_engine(case),
    }
    model: list = []

    def onnx_model() -> bytes:
        if not model:
            model.append(export_onnx(case))
        return model[0]

    makers["onnxruntime"] = lambda: onnxruntime_engine(case, onnx_model)  # the engine's own package is looked for first
    makers["openvino"] = lambda: openvino_engine(case, onnx_model, "fp32")
    makers["openvino-bf16"] = lambda: openvino_engine(case, onnx_model, "bf16")
    if jax is not None:
        makers["jax"] = lambda: jax_engine(jax, case)
    out = [makers["torch"]()]
    for name in names:
        if name == "torch" or name in skipped:
            continue
        if name not in makers:
            raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
        try:
            out.append(makers[name]())
        except E.Missing as e:
            skipped[name] = str(e)
    return out


def run(
    grid: Iterable[Config] = PEERS_GRID,
    *,
    threads: Iterable[int] = (1, 2),
    engines: Iterable[str] = ENGINES,
    min_time: float = 0.5,
    peak_sizes: tuple[int, ...] = (1024, 2048),
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The whole peers benchmark; see the module docstring. Returns a JSON-ready dict."""
    say = progress or (lambda _msg: None)
    names, grid, threads, load_before = list(engines), list(grid), list(threads), _loadavg()
    skipped: dict[str, str] = {}
    info: dict[str, dict] = {}
    rows: list[dict] = []
    peaks, peaks_seen = {}, {}
    saved = torch.get_num_threads()
    try:
        for n in threads:
            torch.set_num_threads(n)
            say(f"{n} thread(s): fp32 matmul peak")
            before = matmul_peak(sizes=peak_sizes, min_time=min_time)
            first = len(rows)
            jax = None
            if "jax" in names and "jax" not in skipped:
                try:
                    jax = JaxWorker(n)
                except E.Missing as e:
                    skipped["jax"] = str(e)
            try:
                for cfg in grid:
                    say(f"{n} thread(s): {cfg.name}")
                    rows += _time_case(E.make_case(cfg, n), names, jax, skipped, info, min_time)
            finally:
                if jax is not None:
                    jax.close()
            say(f"{n} thread(s): fp32 matmul peak again")
            after = matmul_peak(sizes=peak_sizes, min_time=min_time)
            peaks[str(n)], peaks_seen[str(n)] = max(before, after), [before / 1e9, after / 1e9]
            for r in rows[first:]:
                r["peak_frac"] = {e: r["flops"] / (t / 1e3) / peaks[str(n)] for e, t in r["best_ms"].items()}
    finally:
        torch.set_num_threads(saved)
    return {
        "machine": {**machine(load_before), "threads": list(threads)},
        "engines": info,
        "skipped": skipped,
        "fp32_matmul_peak_gflops": {k: v / 1e9 for k, v in peaks.items()},
        "fp32_matmul_peak_gflops_before_after": peaks_seen,
        "rows": rows,
        "summary": summary(rows),
    }


def _time_case(case: E.Case, names, jax, skipped, info, min_time: float) -> list[dict]:
    built = build(case, names, jax, skipped)
    ref, cfg = built[0], case.cfg
    assert ref.grads is not None  # torch's engine trains
    ref_out, ref_grads = ref.outputs(), ref.grads()
    errs = {e.name: check(e, ref_out, ref_grads, cfg) for e in built[1:]}  # every engine, before any timing
    for e in built:
        info[e.name] = {"version": e.version, "precision": e.precision, "trains": e.train is not None, "note": e.note}
    rows = []
    for mode in MODES:
        engines = [e for e in built if mode == "infer" or e.train is not None]
        # every engine kept for training has a train step
        steps = [e.train if mode == "train" and e.train is not None else e.infer for e in engines]
        times = rounds(steps, min_time=min_time)
        medians, paired = _summary(times)
        flops = cfg.flops(
            mode == "train"
        )  # GEMM FLOPs: 2*T*B*3H*(I+H) per layer and direction forward, about 3x training
        row = {
            "config": cfg.name,
            "T": cfg.T,
            "B": cfg.B,
            "I": cfg.I,
            "H": cfg.H,
            "L": cfg.L,
            "bidirectional": cfg.bidirectional,
        }
        row.update(mode=mode, threads=case.threads, large=cfg.B * cfg.H >= 65536, rounds=len(times[0]))
        row["ms"] = {e.name: 1e3 * t for e, t in zip(engines, medians)}
        row["ratio"] = {e.name: medians[0] / t for e, t in zip(engines[1:], medians[1:])}
        row["paired_ratio"] = {
            e.name: r for e, r in zip(engines[1:], paired)
        }  # median over rounds of the per-round ratio
        row["flops"] = flops
        row["best_ms"] = {
            e.name: 1e3 * min(ts) for e, ts in zip(engines, times)
        }  # best repeat: the ceiling, for peak_frac
        row["max_rel_err"] = {e.name: errs[e.name] for e in engines[1:]}
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    """Geometric mean of each engine's ratios, per mode and thread count; peak fractions on the large shapes."""
    out: dict = {"geomean_ratio": {}, "large_peak_frac": {}}
    for mode in MODES:
        for n in sorted({r["threads"] for r in rows}):
            sel = [r for r in rows if r["mode"] == mode and r["threads"] == n]
            engines = sorted({e for r in sel for e in r["ratio"]})
            key = f"{mode} {n}t"
            out["geomean_ratio"][key] = {e: geomean(r["ratio"][e] for r in sel if e in r["ratio"]) for e in engines}
            large = [r for r in sel if r["large"]]
            out["large_peak_frac"][key] = {
                e: statistics.median(r["peak_frac"][e] for r in large if e in r["peak_frac"])
                for e in {e for r in large for e in r["peak_frac"]}
            }
    return out

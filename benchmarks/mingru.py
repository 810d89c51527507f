"""minGRU against its own input projections, grukit.GRU and torch.nn.GRU, in one process.

    python benchmarks/mingru.py [--T 4096 --B 8 --I 256 --H 256] [--stability-T 65536] [--threads N]

Training is zero grads, forward, ``out.backward(g)`` (x needs no gradient, as
in ``grukit bench``); inference is the forward under ``torch.no_grad()``.
"projections" is minGRU's unavoidable work: ``F.linear(x, W (2H, I), b)``
and its backward, nothing else. Times are medians of interleaved rounds
(:func:`grukit.bench.rounds`); each ratio is the median over rounds of the
two sides measured back to back. Then a stability check at a long T: both
modes' outputs and gradients finite, and how far parallel is from sequential.
Shapes legend: T steps, B batch, I input, H hidden.
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

import grukit
from grukit import kernels
from grukit.bench import rounds


def _train(model, x, g):
    params = list(model.parameters())

    def run():
        for p in params:
            p.grad = None
        out = model(x)[0]
        out.backward(g)

    return run


def _infer(model, x):
    def run():
        with torch.no_grad():
            model(x)

    return run


class _Projections(torch.nn.Module):
    """minGRU's input projections alone: both of every step, one product."""

    def __init__(self, I: int, H: int):
        super().__init__()
        self.lin = torch.nn.Linear(I, 2 * H)

    def forward(self, x):
        return (self.lin(x),)


def _ratio(ts_a, ts_b) -> float:
    return statistics.median(a / b for a, b in zip(ts_a, ts_b))


def speed(T: int, B: int, I: int, H: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(T, B, I)  # (T, B, I)
    models = {
        "projections": _Projections(I, H),
        "MinGRU parallel": grukit.MinGRU(I, H, mode="parallel"),
        "MinGRU sequential": grukit.MinGRU(I, H, mode="sequential"),
        "grukit.GRU": grukit.GRU(I, H),
        "torch.nn.GRU": torch.nn.GRU(I, H),
    }
    seq, par = models["MinGRU sequential"], models["MinGRU parallel"]
    par.load_state_dict(seq.state_dict())
    models["grukit.GRU"].load_state_dict(models["torch.nn.GRU"].state_dict())
    with torch.no_grad():  # the same function: check before timing
        a, b = seq(x)[0], par(x)[0]
        print(f"check: |parallel - sequential| max {float((a - b).abs().max()):.2e}")
    for kind in ("training", "inference"):
        fns = []
        for name, m in models.items():
            out_features = 2 * H if name == "projections" else H
            g = torch.randn(T, B, out_features)
            fns.append(_train(m, x, g) if kind == "training" else _infer(m, x))
        ts = dict(zip(models, rounds(fns, min_time=5.0, min_reps=5, warmup=1)))
        print(
            f"\n{kind}, T={T} B={B} I={I} H={H}, float32, {torch.get_num_threads()} threads, {len(ts['projections'])} rounds"
        )
        print(f"{'':<20}{'median ms':>10}")
        for name, t in ts.items():
            print(f"{name:<20}{1e3 * statistics.median(t):>10.1f}")
        s = ts["MinGRU sequential"]
        print(f"MinGRU sequential / projections      {_ratio(s, ts['projections']):.2f}x  (target <= 1.2x)")
        print(f"MinGRU parallel / MinGRU sequential  {_ratio(ts['MinGRU parallel'], s):.2f}x")
        print(f"grukit.GRU / MinGRU sequential       {_ratio(ts['grukit.GRU'], s):.2f}x")
        print(f"torch.nn.GRU / MinGRU sequential     {_ratio(ts['torch.nn.GRU'], s):.2f}x")
        print(
            f"grukit.GRU / projections             {_ratio(ts['grukit.GRU'], ts['projections']):.2f}x  (bound on minGRU's speed-up over the GRU)"
        )


def stability(T: int, B: int, H: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(T, B, H)  # (T, B, I = H)
    h0 = torch.randn(1, B, H)  # any sign
    results = {}
    seq = grukit.MinGRU(H, H, mode="sequential")
    par = grukit.MinGRU(H, H, mode="parallel")
    par.load_state_dict(seq.state_dict())
    for name, m in (("sequential", seq), ("parallel", par)):
        h = h0.clone().requires_grad_()
        out, h_n = m(x, h)
        (out.mean() + h_n.mean()).backward()
        results[name] = [out.detach(), h.grad] + [p.grad for p in m.parameters()]
    print(f"\nstability, T={T} B={B} I=H={H}, float32, random h0")
    for name, ts in results.items():
        print(f"  {name:<10} outputs and gradients finite: {all(bool(torch.isfinite(t).all()) for t in ts)}")
    labels = ["output", "dh0", "dweight", "dbias"]
    for label, a, b in zip(labels, results["parallel"], results["sequential"]):
        rel = float((a - b).abs().max() / b.abs().max())
        print(f"  parallel vs sequential {label:<8} max |diff| / max |seq| = {rel:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--I", type=int, default=256)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--stability-T", type=int, default=65536)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"native kernels: {kernels.available()}; load average before: {os.getloadavg()}")
    speed(args.T, args.B, args.I, args.H)
    stability(args.stability_T, 2, 32)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Where a small model's call goes: grukit.GRU's fixed cost per call, piece by piece, beside torch's own.

    python benchmarks/fixed_cost.py                       # T20 B1 I32 H64, one thread
    python benchmarks/fixed_cost.py --shape 50 4 32 64 --rounds 40

Each line is a loop of --calls calls, hot in cache; the loops take turns, one
of each per round, so a change in the host's load falls on all of them alike.
Printed per call: the best round and the median (microseconds).

- the module, training step: zero the grads, ``model(x)``, ``out.backward(g)``;
- ``torch.nn.Linear(I, H)``, the same step on the same x and g: what torch's
  autograd costs for a module with one weight and one bias and nothing else;
- the module's forward with autograd recording, and the native call beneath it
  (``gru_stack_autograd``: the forward and its C++ autograd node);
- the module's inference under ``torch.no_grad()``, and its native call (``gru_stack``);
- the backward alone, as ``Tensor.backward`` and as the autograd engine's own
  call (``run_backward``; the difference is torch.autograd.backward's Python),
  on graphs made beforehand.

Then the cost of a cold cache: the median of single calls, hot, and each right
after a torch.nn.GRU training step (which is what interleaved benchmarks such as
``grukit bench --peers`` measure), for the module and for the Linear step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import grukit
from grukit.kernels import _build, ops


def per_call(fn: Callable[[], object], calls: int) -> Callable[[], float]:
    def loop() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) / calls

    return loop


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse names the flag in its error)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {n}")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", nargs=4, type=positive, default=[20, 1, 32, 64], metavar=("T", "B", "I", "H"))
    ap.add_argument("--threads", type=positive, default=1)
    ap.add_argument("--calls", type=positive, default=200, help="calls per loop")
    ap.add_argument("--rounds", type=positive, default=30)
    a = ap.parse_args()
    T, B, I, H = a.shape
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, linear, ref = grukit.GRU(I, H), torch.nn.Linear(I, H), torch.nn.GRU(I, H)
    x, g = torch.randn(T, B, I), torch.randn(T, B, H)
    params, lin_params, ref_params = list(model.parameters()), list(linear.parameters()), list(ref.parameters())
    with torch.no_grad():
        model(x)  # builds or loads the kernel
    native = _build.module()
    if native is None:
        raise SystemExit(f"the native kernel is not available: {_build.error()}")
    stack = ops.stack_op()
    engine = torch.autograd.Variable._execution_engine

    def step() -> None:
        for p in params:
            p.grad = None
        model(x)[0].backward(g)

    def linear_step() -> None:
        for p in lin_params:
            p.grad = None
        linear(x).backward(g)

    def ref_step() -> None:
        for p in ref_params:
            p.grad = None
        ref(x)[0].backward(g)

    def infer() -> None:
        with torch.no_grad():
            model(x)

    def backward_loop(engine_only: bool) -> Callable[[], float]:
        def loop() -> float:
            outs = [model(x)[0] for _ in range(a.calls)]
            t0 = time.perf_counter()
            for out in outs:
                if engine_only:
                    engine.run_backward((out,), (g,), False, False, (), allow_unreachable=True, accumulate_grad=True)
                else:
                    out.backward(g)
            return (time.perf_counter() - t0) / a.calls

        return loop

    loops = {
        "module, training step": per_call(step, a.calls),
        f"torch.nn.Linear({I}, {H}), training step": per_call(linear_step, a.calls),
        "module forward, autograd recording": per_call(lambda: model(x), a.calls),
        "  native call (gru_stack_autograd)": per_call(
            lambda: native.gru_stack_autograd(x, None, params, 1, False, True, True, [], 0.0, [], []), a.calls
        ),
        "module inference, no_grad": per_call(infer, a.calls),
        "  native call (gru_stack)": per_call(
            lambda: stack(x, None, params, 1, False, True, True, [], 0.0, False), a.calls
        ),
        "backward: Tensor.backward": backward_loop(False),
        "backward: the engine's call only": backward_loop(True),
    }
    for loop in loops.values():
        loop()
    seen: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(a.rounds):
        for name, loop in loops.items():
            seen[name].append(loop() * 1e6)
    print(f"T{T} B{B} I{I} H{H}, {a.threads} thread(s), {a.calls} calls a loop, {a.rounds} rounds; us per call")
    width = max(map(len, loops))
    for name, us in seen.items():
        print(f"  {name:{width}s}  best {min(us):8.1f}  median {statistics.median(us):8.1f}")

    print("single calls, median us: hot / right after a torch.nn.GRU training step")
    for name, fn in (("module, training step", step), ("module inference", infer), ("Linear step", linear_step)):
        hot, cold = [], []
        for _ in range(a.rounds * 5):
            t0 = time.perf_counter()
            fn()
            hot.append(time.perf_counter() - t0)
            ref_step()
            t0 = time.perf_counter()
            fn()
            cold.append(time.perf_counter() - t0)
        print(f"  {name:{width}s}  {statistics.median(hot) * 1e6:8.1f} / {statistics.median(cold) * 1e6:8.1f}")


if __name__ == "__main__":
    main()

"""Threads under contention: grukit at 2 threads against its own 1 thread, with another process busy.

A second process spinning on one core is the normal case (DDP ranks on one
machine, data-loader workers, a busy laptop). Here one is started beside the
benchmark, and every config of :data:`grukit.bench.GRID` (plus batch-1 shapes and the
batch-1 GRUCell step) is timed with grukit at 1 thread, grukit at 2 threads
and torch.nn.GRU at 2 threads, in alternating rounds (:func:`grukit.bench.rounds`)
so that all three see the same load. Reported per config and mode:

    slowdown = time(grukit, 2 threads) / time(grukit, 1 thread)   (goal: at most 1.25)
    vs_torch = time(torch, 2 threads) / time(grukit, 2 threads)   (goal: above 1)

Shapes legend as in :mod:`grukit.bench`.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator

import torch

from .bench import GRID, QUICK, Config, _infer, _loadavg, _models, _train, machine, rounds, stream
from .cell import GRUCell

CONTENTION_GRID = (Config(20, 1, 32, 64), Config(200, 8, 40, 64), *GRID)
QUICK_CONTENTION = QUICK
STEP_SHAPES = ((64, 256),)  # (I, H) of the batch-1 GRUCell step
SLOWDOWN_GOAL = 1.25

_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextlib.contextmanager
def busy_process(seconds: float = 3600.0) -> Iterator[subprocess.Popen]:
    """Another process spinning on one core for as long as the block runs (at most ``seconds``)."""
    proc = subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=seconds)])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _at(threads: int, fn: Callable[[], object]) -> Callable[[], object]:
    """fn run with torch's intra-op threads set to ``threads`` (and set back)."""

    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


def _ratios(times: list[list[float]]) -> dict:
    """times: rounds of [grukit 1 thread, grukit 2 threads, torch 2 threads]."""
    one, two, ref = times
    return {
        "grukit_1t_ms": 1e3 * statistics.median(one),
        "grukit_2t_ms": 1e3 * statistics.median(two),
        "torch_2t_ms": 1e3 * statistics.median(ref),
        "slowdown": statistics.median(b / a for a, b in zip(one, two)),
        "vs_torch": statistics.median(r / b for b, r in zip(two, ref)),
    }


def time_config(cfg: Config, *, min_time: float) -> dict:
    ref, ours = _models(cfg, torch.float32)
    D = 2 if cfg.bidirectional else 1
    x = torch.randn(cfg.T, cfg.B, cfg.I)  # (T, B, I)
    g = torch.randn(cfg.T, cfg.B, D * cfg.H)  # (T, B, D*H)
    row: dict = {"config": cfg.name}
    for mode, make in (("infer", lambda m: _infer(m, x)), ("train", lambda m: _train(m, x, g))):
        fns = [_at(1, make(ours)), _at(2, make(ours)), _at(2, make(ref))]
        row[mode] = _ratios(rounds(fns, min_time=min_time))
    return row


def time_step(I: int, H: int, *, min_time: float, steps: int = 100) -> dict:
    """The batch-1 GRUCell step under torch.no_grad, as a stream of ``steps`` calls."""
    torch.manual_seed(0)
    ref, ours = torch.nn.GRUCell(I, H), GRUCell(I, H)
    ours.load_state_dict(ref.state_dict())
    x, h = torch.randn(1, I), torch.randn(1, H)
    ours_steps, ref_steps = stream(ours, x, h, steps), stream(ref, x, h, steps)
    times = rounds([_at(1, ours_steps), _at(2, ours_steps), _at(2, ref_steps)], min_time=min_time)
    return {"config": f"cell step B1 I{I} H{H}", "infer": _ratios([[t / steps for t in ts] for ts in times])}


def run(
    grid: Iterable[Config] = CONTENTION_GRID,
    *,
    steps: Iterable[tuple[int, int]] = STEP_SHAPES,
    min_time: float = 0.5,
    busy: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Every config and step timed at 1 and 2 threads with a busy process beside (``busy=False``: without)."""
    say = progress or (lambda _msg: None)
    load_before = _loadavg()
    rows = []
    with busy_process() if busy else contextlib.nullcontext():
        for cfg in grid:
            say(cfg.name)
            rows.append(time_config(cfg, min_time=min_time))
        for I, H in steps:
            say(f"cell step I{I} H{H}")
            rows.append(time_step(I, H, min_time=min_time))
    cases = [r[m] for r in rows for m in ("infer", "train") if m in r]
    return {
        "machine": {**machine(load_before), "busy_process": busy},
        "rows": rows,
        "summary": {
            "worst_slowdown": max(c["slowdown"] for c in cases),
            "over_goal": [
                f"{r['config']} {m}"
                for r in rows
                for m in ("infer", "train")
                if r.get(m, {}).get("slowdown", 0) > SLOWDOWN_GOAL
            ],
            "slower_than_torch": [
                f"{r['config']} {m}" for r in rows for m in ("infer", "train") if r.get(m, {}).get("vs_torch", 2) < 1.0
            ],
        },
    }


def format_table(res: dict) -> str:
    beside = "with one busy process beside" if res["machine"]["busy_process"] else "no busy process"
    lines = [
        f"grukit 2 threads / grukit 1 thread (slowdown; goal <= {SLOWDOWN_GOAL:.2f}) and "
        f"torch 2 threads / grukit 2 threads (vs torch), {beside}",
        f"{'config':28s} {'mode':6s} {'1 thread ms':>12s} {'2 threads ms':>13s} {'slowdown':>9s} {'torch 2t ms':>12s} {'vs torch':>9s}",
    ]
    for r in res["rows"]:
        for mode in ("infer", "train"):
            if mode not in r:
                continue
            c = r[mode]
            lines.append(
                f"{r['config']:28s} {mode:6s} {c['grukit_1t_ms']:12.4f} {c['grukit_2t_ms']:13.4f} "
                f"{c['slowdown']:8.2f}x {c['torch_2t_ms']:12.4f} {c['vs_torch']:8.2f}x"
            )
    s = res["summary"]
    lines.append(f"worst slowdown {s['worst_slowdown']:.2f}x; over the goal: {', '.join(s['over_goal']) or 'none'}")
    lines.append(f"slower than torch at 2 threads: {', '.join(s['slower_than_torch']) or 'none'}")
    lines.append(
        f"load average before/after: {res['machine']['loadavg_1min_before_after']} (the busy process adds about 1)"
    )
    return "\n".join(lines)


def plot(res: dict, path: str) -> None:
    """Slowdown (2 threads / 1 thread) per config and mode, with the goal line."""
    from .figures import new_figure, save_figure

    labels, values = [], []
    for r in res["rows"]:
        for mode in ("infer", "train"):
            if mode in r:
                labels.append(f"{r['config']} {mode}")
                values.append(r[mode]["slowdown"])
    fig, ax = new_figure((8, 0.3 * len(labels) + 1.5))
    ax.barh(range(len(values)), values, color=["tab:red" if v > SLOWDOWN_GOAL else "tab:blue" for v in values])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.axvline(SLOWDOWN_GOAL, color="tab:red", linestyle="--", linewidth=0.8, label=f"goal {SLOWDOWN_GOAL}")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time at 2 threads / time at 1 thread (lower is better)")
    busy = "one busy process beside" if res["machine"]["busy_process"] else "no busy process"
    ax.set_title(f"grukit threads under contention ({busy})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)

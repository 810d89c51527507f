"""Time grukit against torch.nn.GRU in one process, same shapes, same weights.

Times are medians of repeated runs after warm-up. Ratios are torch time /
grukit time (above 1: grukit is faster), the median over rounds in which the
two run back to back, so that load from other processes hits both sides of
each ratio. GFLOP/s and the matmul peak use the best repeat: the hardware
ceiling, not the load. Shapes legend: T steps, B batch, I input, H hidden,
L layers, D directions.

    results = run(GRID)            # or QUICK for a smoke run
    print(format_table(results))
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from . import backend
from .cell import GRUCell
from .modules import GRU


@dataclass(frozen=True)
class Config:
    """One benchmark shape."""

    T: int  # time steps
    B: int  # batch
    I: int  # input features
    H: int  # hidden units
    L: int = 1  # layers
    bidirectional: bool = False  # D = 2 if True

    @property
    def name(self) -> str:
        s = f"T{self.T} B{self.B} I{self.I} H{self.H}"
        return s + (f" L{self.L}" if self.L > 1 else "") + (" bi" if self.bidirectional else "")

    def flops(self, training: bool) -> float:
        """FLOPs of the GEMMs (2 per multiply-add).

        Forward: the input projection and the recurrent product. Training adds
        their gradients: dW and dh for the recurrent part (x 3 in all), dW and
        dx for the input part, except in the first layer, whose input (the
        benchmark's x) needs no gradient (x 2 there).
        """
        D = 2 if self.bidirectional else 1
        total = 0.0
        for layer in range(self.L):
            i = self.I if layer == 0 else D * self.H
            per = D * 2.0 * self.T * self.B * 3 * self.H  # FLOPs per unit of GEMM depth
            if training:
                total += per * (3 * self.H + (2 if layer == 0 else 3) * i)
            else:
                total += per * (self.H + i)
        return total


GRID = (
    Config(100, 32, 32, 128),
    Config(100, 64, 128, 256),
    Config(512, 16, 64, 256),
    Config(50, 256, 256, 512),
    Config(1000, 1, 64, 256),
    Config(100, 32, 64, 128, L=2, bidirectional=True),
    Config(100, 64, 128, 256, L=2, bidirectional=True),
)
QUICK = (Config(20, 8, 16, 32), Config(20, 4, 8, 16, L=2, bidirectional=True))
CELL_SHAPES = ((64, 128), (64, 256))  # (I, H) of the batch-1 step latency


class Measured(float):
    """Seconds a call measured itself (in another process): :func:`rounds` records this, not the round trip."""


def median_time(
    fn: Callable[[], object], *, min_time: float = 0.5, min_reps: int = 5, max_reps: int = 10_000, warmup: int = 2
) -> float:
    """Median seconds per call of fn (enough calls to fill min_time)."""
    return statistics.median(rounds([fn], min_time=min_time, min_reps=min_reps, max_reps=max_reps, warmup=warmup)[0])


def paired_times(fns: list[Callable[[], object]], **kwargs) -> list[float]:
    """Median seconds per call of each fn, measured in alternation (see :func:`rounds`)."""
    return [statistics.median(ts) for ts in rounds(fns, **kwargs)]


def rounds(
    fns: list[Callable[[], object]],
    *,
    min_time: float = 0.5,
    min_reps: int = 5,
    max_reps: int = 10_000,
    warmup: int = 2,
) -> list[list[float]]:
    """Seconds of each call of each fn, measured in rounds (fn0, fn1, ...; fn0, fn1, ...).

    Alternating makes the ratios fair on a machine whose load changes while it
    runs: both sides see the same conditions. Slow calls (over 1 s) get 3 rounds.
    A fn that returns a :class:`Measured` (a call timed in a worker process)
    is recorded at that time.
    """
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        for _ in range(warmup):
            fn()
    start = time.perf_counter()
    while True:
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            r = fn()
            dt = time.perf_counter() - t0
            ts.append(float(r) if isinstance(r, Measured) else dt)
        n, elapsed = len(times[0]), time.perf_counter() - start
        # the medians only when they can decide: sorting thousands of times between two calls
        # would evict the next call's data from the caches (small shapes run up to max_reps rounds)
        if n >= max_reps or (
            elapsed >= min_time and (n >= min_reps or (n >= 3 and max(statistics.median(ts) for ts in times) > 1.0))
        ):
            return times


def matmul_peak(
    dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] = (512, 1024, 2048), min_time: float = 0.5
) -> float:
    """Measured GEMM throughput (FLOP/s) of torch.mm on n x n matrices, the best of a few n: the ceiling we compare to."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        out = torch.empty(n, n, dtype=dtype)

        def mm(a: torch.Tensor = a, b: torch.Tensor = b, out: torch.Tensor = out) -> torch.Tensor:
            return torch.mm(a, b, out=out)

        t = min(rounds([mm], min_time=min_time)[0])  # the ceiling: best repeat
        best = max(best, 2.0 * n**3 / t)
    return best


def _models(cfg: Config, dtype: torch.dtype, seed: int = 0) -> tuple[nn.GRU, GRU]:
    torch.manual_seed(seed)
    ref = nn.GRU(cfg.I, cfg.H, cfg.L, bidirectional=cfg.bidirectional)
    ours = GRU.from_torch(ref).to(dtype)
    return ref, ours


def _infer(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def step():
        with torch.no_grad():
            return model(x)

    return step


def _train(model: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> Callable[[], object]:
    def step():
        for p in model.parameters():
            p.grad = None
        out, _ = model(x)
        out.backward(grad_out.to(out.dtype))

    return step


def time_config(cfg: Config, *, min_time: float = 0.5) -> dict:
    """Inference and training medians of torch.nn.GRU and grukit (fp32), and grukit bf16 training."""
    ref, ours = _models(cfg, torch.float32)
    _, ours16 = _models(cfg, torch.bfloat16)
    D = 2 if cfg.bidirectional else 1
    x = torch.randn(cfg.T, cfg.B, cfg.I)  # (T, B, I)
    g = torch.randn(cfg.T, cfg.B, D * cfg.H)  # (T, B, D*H)
    x16 = x.to(torch.bfloat16)
    row = {"config": cfg.name, **asdict(cfg), "backend": backend.active(x, ours.weight_ih_l0)}
    times = rounds([_infer(ref, x), _infer(ours, x)], min_time=min_time)
    (t_ref, t_ours), (ratio,) = _summary(times)
    row.update(
        infer_torch_ms=1e3 * t_ref,
        infer_grukit_ms=1e3 * t_ours,
        infer_ratio=ratio,
        infer_gflops=cfg.flops(False) / min(times[1]) / 1e9,
    )
    times = rounds([_train(ref, x, g), _train(ours, x, g), _train(ours16, x16, g)], min_time=min_time)
    (t_ref, t_ours, t_16), (ratio, ratio16) = _summary(times)
    row.update(
        train_torch_ms=1e3 * t_ref,
        train_grukit_ms=1e3 * t_ours,
        train_ratio=ratio,
        train_gflops=cfg.flops(True) / min(times[1]) / 1e9,
    )
    row.update(bf16_train_grukit_ms=1e3 * t_16, bf16_train_ratio=ratio16)
    return row


def time_cell(I: int, H: int, *, min_time: float = 0.5, steps: int = 100) -> dict:
    """Batch-1 single-step latency, grukit.GRUCell vs torch.nn.GRUCell, no grad (streaming)."""
    torch.manual_seed(0)
    ref = nn.GRUCell(I, H)
    ours = GRUCell(I, H)
    ours.load_state_dict(ref.state_dict())
    x, h = torch.randn(1, I), torch.randn(1, H)
    (t_ref, t_ours), (ratio,) = _summary(
        rounds([stream(ref, x, h, steps), stream(ours, x, h, steps)], min_time=min_time)
    )
    return {
        "config": f"cell B1 I{I} H{H}",
        "I": I,
        "H": H,
        "torch_us": 1e6 * t_ref / steps,
        "grukit_us": 1e6 * t_ours / steps,
        "ratio": ratio,
    }


def stream(cell: nn.Module, x: torch.Tensor, h: torch.Tensor, steps: int) -> Callable[[], object]:
    """A stream of ``steps`` no-grad steps of ``cell`` from state h on input x (the batch-1 step latency)."""

    def run():
        with torch.no_grad():
            s = h
            for _ in range(steps):
                s = cell(x, s)
        return s

    return run


def _summary(times: list[list[float]]) -> tuple[list[float], list[float]]:
    """Median time of each fn; median over rounds of time(fn0) / time(fn) for the others."""
    ratios = [statistics.median(a / b for a, b in zip(times[0], ts)) for ts in times[1:]]
    return [statistics.median(ts) for ts in times], ratios


def geomean(values: Iterable[float]) -> float:
    v = list(values)
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else float("nan")


def run(
    grid: Iterable[Config] = GRID,
    *,
    cells: Iterable[tuple[int, int]] = CELL_SHAPES,
    min_time: float = 0.5,
    peak_sizes: tuple[int, ...] = (512, 1024, 2048),
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The whole benchmark: fp32 matmul peak, the grid (fp32 and bf16), batch-1 step latency."""
    say = progress or (lambda _msg: None)
    load_before = _loadavg()
    say("measuring fp32 matmul peak")
    peak = matmul_peak(sizes=peak_sizes, min_time=min_time)
    rows, cell_rows = [], []
    for cfg in grid:
        say(f"{cfg.name}")
        row = time_config(cfg, min_time=min_time)
        for mode in ("infer", "train"):
            row[f"{mode}_peak_frac"] = row[f"{mode}_gflops"] * 1e9 / peak
        rows.append(row)
    for I, H in cells:
        say(f"cell I{I} H{H}")
        cell_rows.append(time_cell(I, H, min_time=min_time))
    large = [r for r in rows if r["B"] * r["H"] >= 65536]
    return {
        "machine": machine(load_before),
        "fp32_matmul_peak_gflops": peak / 1e9,
        "fp32": rows,
        "cell": cell_rows,
        "summary": {
            "train_geomean": geomean(r["train_ratio"] for r in rows),
            "train_min": min((r["train_ratio"] for r in rows), default=float("nan")),
            "infer_geomean": geomean(r["infer_ratio"] for r in rows),
            "infer_min": min((r["infer_ratio"] for r in rows), default=float("nan")),
            "cell_ratio_min": min((r["ratio"] for r in cell_rows), default=float("nan")),
            "bf16_train_geomean": geomean(r["bf16_train_ratio"] for r in rows),
            "large_train_peak_frac": [r["train_peak_frac"] for r in large],
            "large_infer_peak_frac": [r["infer_peak_frac"] for r in large],
        },
    }


def machine(load_before: float | None) -> dict:
    """What the times were measured on, with the load average before the run (from :func:`_loadavg`) and now."""
    return {
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "loadavg_1min_before_after": [load_before, _loadavg()],  # other processes competing for the cores
    }


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_table(res: dict) -> str:
    """The results as fixed-width text: medians, ratios (torch / grukit) and % of fp32 peak."""
    lines = [machine_line(res["machine"])]
    lines += [f"fp32 matmul peak (best torch.mm n x n): {res['fp32_matmul_peak_gflops']:.0f} GFLOP/s", ""]
    head = f"{'config (fp32)':<28}{'infer torch':>12}{'grukit':>9}{'ratio':>7}{'%peak':>7}{'train torch':>13}{'grukit':>9}{'ratio':>7}{'%peak':>7}"
    lines += [head, "-" * len(head)]
    for r in res["fp32"]:
        lines.append(
            f"{r['config']:<28}{r['infer_torch_ms']:>10.2f}ms{r['infer_grukit_ms']:>7.2f}ms{r['infer_ratio']:>6.2f}x{100 * r['infer_peak_frac']:>6.0f}%"
            f"{r['train_torch_ms']:>11.2f}ms{r['train_grukit_ms']:>7.2f}ms{r['train_ratio']:>6.2f}x{100 * r['train_peak_frac']:>6.0f}%"
        )
    s = res["summary"]
    lines.append(f"{'geometric mean':<28}{'':>21}{s['infer_geomean']:>6.2f}x{'':>27}{s['train_geomean']:>6.2f}x")
    lines.append(f"{'minimum':<28}{'':>21}{s['infer_min']:>6.2f}x{'':>27}{s['train_min']:>6.2f}x")
    if res["cell"]:
        lines += ["", f"{'batch-1 step (no grad)':<28}{'torch.nn.GRUCell':>18}{'grukit':>10}{'ratio':>8}"]
        for r in res["cell"]:
            lines.append(f"{r['config']:<28}{r['torch_us']:>16.1f}us{r['grukit_us']:>8.1f}us{r['ratio']:>7.2f}x")
    lines += ["", f"{'training: grukit bf16 vs torch fp32':<38}{'torch':>10}{'grukit':>10}{'ratio':>8}"]
    for r in res["fp32"]:
        lines.append(
            f"{r['config']:<38}{r['train_torch_ms']:>8.2f}ms{r['bf16_train_grukit_ms']:>8.2f}ms{r['bf16_train_ratio']:>7.2f}x"
        )
    lines.append(f"{'geometric mean':<38}{'':>20}{s['bf16_train_geomean']:>7.2f}x")
    return "\n".join(lines)


def machine_line(m: dict) -> str:
    """The first line of a table: CPU, threads, torch, load average."""
    return f"{m['cpu']}, {m['threads']} threads, torch {m['torch']}; 1-min load average before/after: {[round(v, 2) for v in m['loadavg_1min_before_after'] if v is not None]}"


RATIO_TICKS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)  # the labelled speed-ups of the plots' x axes


def ratio_axis(ax) -> None:
    """A log-scale x axis of speed-ups labelled at round ratios (0.5x, 1x, 2x, ...): log scale's
    own labels are powers of ten (10^0, 10^1), and its minor labels overlap on narrow panels."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(RATIO_TICKS))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}x"))
    ax.xaxis.set_minor_locator(NullLocator())


def plot(res: dict, path: str) -> None:
    """Bar chart of the torch / grukit ratios per config (PNG)."""
    from .figures import new_figure, save_figure

    rows = res["fp32"]
    names = [r["config"] for r in rows] + [r["config"] for r in res["cell"]]
    nan = [float("nan")] * len(res["cell"])
    infer = [r["infer_ratio"] for r in rows] + [r["ratio"] for r in res["cell"]]
    train = [r["train_ratio"] for r in rows] + nan
    train16 = [r["bf16_train_ratio"] for r in rows] + nan
    fig, ax = new_figure((10, 0.55 * len(names) + 1.5))
    y = range(len(names))
    ax.barh([i - 0.27 for i in y], infer, height=0.27, label="fp32 inference / batch-1 step")
    ax.barh(list(y), train, height=0.27, label="fp32 training (fwd+bwd)")
    ax.barh([i + 0.27 for i in y], train16, height=0.27, label="bf16 training vs torch fp32")
    ratio_axis(ax)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over torch.nn.GRU / GRUCell (torch time / grukit time)")
    ax.set_title(
        f"grukit vs torch.nn.GRU: {res['machine']['cpu']}, {res['machine']['threads']} threads, torch {res['machine']['torch']}",
        fontsize=9,
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)

"""Time grukit against torch.nn.GRU in one process, same shapes, same weights.

Every number is a median of repeated runs after warm-up; ratios are
torch time / grukit time (above 1: grukit is faster). Shapes legend: T steps,
B batch, I input, H hidden, L layers, D directions.

    results = run(GRID)            # or QUICK for a smoke run
    print(format_table(results))
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from . import backend
from .modules import GRU, GRUCell


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
        """Multiply-add FLOPs of the GEMMs (x 3 for forward + backward)."""
        D = 2 if self.bidirectional else 1
        total = 0.0
        for layer in range(self.L):
            i = self.I if layer == 0 else D * self.H
            total += D * 2.0 * self.T * self.B * 3 * self.H * (i + self.H)
        return total * (3 if training else 1)


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
BF16_GRID = (Config(100, 64, 128, 256), Config(50, 256, 256, 512), Config(512, 16, 64, 256))
CELL_SHAPES = ((64, 128), (64, 256))  # (I, H) of the batch-1 step latency


def median_time(fn: Callable[[], object], *, min_time: float = 0.5, min_reps: int = 5, max_reps: int = 10_000, warmup: int = 2) -> float:
    """Median seconds per call of fn (enough calls to fill min_time)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, min_time: float = 1.0) -> float:
    """Measured GEMM throughput (FLOP/s) of torch.mm on n x n matrices: the ceiling we compare to."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
    t = median_time(lambda: torch.mm(a, b, out=out), min_time=min_time)
    return 2.0 * n**3 / t


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


def time_config(cfg: Config, *, min_time: float = 0.5, bf16: bool = False) -> dict:
    """Inference and training medians of torch.nn.GRU (fp32) and grukit (fp32, or bf16)."""
    ref, ours = _models(cfg, torch.bfloat16 if bf16 else torch.float32)
    D = 2 if cfg.bidirectional else 1
    x = torch.randn(cfg.T, cfg.B, cfg.I)  # (T, B, I)
    g = torch.randn(cfg.T, cfg.B, D * cfg.H)  # (T, B, D*H)
    xo = x.to(torch.bfloat16) if bf16 else x
    row = {"config": cfg.name, **asdict(cfg), "dtype": "bfloat16" if bf16 else "float32", "backend": backend.active(xo, ours.weight_ih_l0)}
    for mode in ("infer", "train"):
        if bf16 and mode == "infer":
            continue
        fns = (_infer(ref, x), _infer(ours, xo)) if mode == "infer" else (_train(ref, x, g), _train(ours, xo, g))
        t_ref, t_ours = (median_time(f, min_time=min_time) for f in fns)
        row[f"{mode}_torch_ms"], row[f"{mode}_grukit_ms"] = 1e3 * t_ref, 1e3 * t_ours
        row[f"{mode}_ratio"] = t_ref / t_ours
        row[f"{mode}_gflops"] = cfg.flops(mode == "train") / t_ours / 1e9
    return row


def time_cell(I: int, H: int, *, min_time: float = 0.5, steps: int = 100) -> dict:
    """Batch-1 single-step latency, grukit.GRUCell vs torch.nn.GRUCell, no grad (streaming)."""
    torch.manual_seed(0)
    ref = nn.GRUCell(I, H)
    ours = GRUCell(I, H)
    ours.load_state_dict(ref.state_dict())
    x, h = torch.randn(1, I), torch.randn(1, H)

    def loop(cell):
        def run():
            with torch.no_grad():
                s = h
                for _ in range(steps):
                    s = cell(x, s)
            return s

        return run

    t_ref, t_ours = (median_time(loop(c), min_time=min_time) / steps for c in (ref, ours))
    return {"config": f"cell B1 I{I} H{H}", "I": I, "H": H, "torch_us": 1e6 * t_ref, "grukit_us": 1e6 * t_ours, "ratio": t_ref / t_ours}


def geomean(values: Iterable[float]) -> float:
    v = list(values)
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else float("nan")


def run(
    grid: Iterable[Config] = GRID,
    *,
    bf16_grid: Iterable[Config] = BF16_GRID,
    cells: Iterable[tuple[int, int]] = CELL_SHAPES,
    min_time: float = 0.5,
    progress: Optional[Callable[[str], None]] = None,
) -> dict:
    """The whole benchmark: fp32 grid, batch-1 step latency, bf16 training, matmul peak."""
    say = progress or (lambda _msg: None)
    say("measuring fp32 matmul peak")
    peak = matmul_peak(min_time=min_time)
    rows, cell_rows, bf16_rows = [], [], []
    for cfg in grid:
        say(f"fp32 {cfg.name}")
        row = time_config(cfg, min_time=min_time)
        for mode in ("infer", "train"):
            row[f"{mode}_peak_frac"] = row[f"{mode}_gflops"] * 1e9 / peak
        rows.append(row)
    for I, H in cells:
        say(f"cell I{I} H{H}")
        cell_rows.append(time_cell(I, H, min_time=min_time))
    for cfg in bf16_grid:
        say(f"bf16 {cfg.name}")
        bf16_rows.append(time_config(cfg, min_time=min_time, bf16=True))
    return {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "fp32_matmul_peak_gflops": peak / 1e9,
        "fp32": rows,
        "cell": cell_rows,
        "bf16_train_vs_torch_fp32": bf16_rows,
        "summary": {
            "train_geomean": geomean(r["train_ratio"] for r in rows),
            "train_min": min((r["train_ratio"] for r in rows), default=float("nan")),
            "infer_geomean": geomean(r["infer_ratio"] for r in rows),
            "infer_min": min((r["infer_ratio"] for r in rows), default=float("nan")),
            "cell_ratio_min": min((r["ratio"] for r in cell_rows), default=float("nan")),
            "bf16_train_geomean": geomean(r["train_ratio"] for r in bf16_rows),
        },
    }


def format_table(res: dict) -> str:
    """The results as fixed-width text: medians, ratios (torch / grukit) and % of fp32 peak."""
    lines = [f"fp32 matmul peak (torch.mm 2048^3, {res['machine']['threads']} threads): {res['fp32_matmul_peak_gflops']:.0f} GFLOP/s", ""]
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
    if res["bf16_train_vs_torch_fp32"]:
        lines += ["", f"{'training: grukit bf16 vs torch fp32':<38}{'torch':>10}{'grukit':>10}{'ratio':>8}"]
        for r in res["bf16_train_vs_torch_fp32"]:
            lines.append(f"{r['config']:<38}{r['train_torch_ms']:>8.2f}ms{r['train_grukit_ms']:>8.2f}ms{r['train_ratio']:>7.2f}x")
        lines.append(f"{'geometric mean':<38}{'':>20}{s['bf16_train_geomean']:>7.2f}x")
    return "\n".join(lines)


def plot(res: dict, path: str) -> None:
    """Bar chart of the torch / grukit ratios per config (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["fp32"]
    names = [r["config"] for r in rows] + [r["config"] for r in res["cell"]] + [r["config"] + " bf16" for r in res["bf16_train_vs_torch_fp32"]]
    infer = [r["infer_ratio"] for r in rows] + [r["ratio"] for r in res["cell"]] + [float("nan")] * len(res["bf16_train_vs_torch_fp32"])
    train = [r["train_ratio"] for r in rows] + [float("nan")] * len(res["cell"]) + [r["train_ratio"] for r in res["bf16_train_vs_torch_fp32"]]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(names) + 1.5))
    y = range(len(names))
    ax.barh([i - 0.2 for i in y], infer, height=0.4, label="inference / step latency")
    ax.barh([i + 0.2 for i in y], train, height=0.4, label="training (fwd+bwd)")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over torch.nn.GRU / GRUCell (torch time / grukit time)")
    ax.set_title(f"grukit vs torch.nn.GRU, {res['machine']['threads']} CPU threads, torch {res['machine']['torch']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""``grukit bench``: time grukit against torch.nn.GRU on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from .main import main


@main.command("bench")
@click.option("--quick", is_flag=True, help="a small smoke grid (seconds), not the full benchmark")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="write all results to this JSON file")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="draw the speed-up ratios to this PNG")
@click.option("--min-time", type=click.FloatRange(min=0.0, min_open=True), default=0.5, show_default=True, help="seconds of repeats per measurement")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads (default: torch's)")
def bench_cmd(quick: bool, json_path: str | None, plot_path: str | None, min_time: float, threads: int | None) -> None:
    """Medians and torch/grukit ratios: inference, training, batch-1 step, bf16."""
    from .. import bench

    if threads is not None:
        torch.set_num_threads(threads)
    if quick:
        res = bench.run(bench.QUICK, cells=((8, 16),), min_time=min(min_time, 0.05), peak_sizes=(256, 512), progress=_say)
    else:
        res = bench.run(bench.GRID, min_time=min_time, progress=_say)
    click.echo(bench.format_table(res))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(res, indent=2) + "\n")
        click.echo(f"results written to {json_path}")
    if plot_path:
        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        bench.plot(res, plot_path)
        click.echo(f"plot written to {plot_path}")


def _say(msg: str) -> None:
    click.echo(f"  {msg} ...", err=True)

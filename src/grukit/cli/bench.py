"""``grukit bench``: time grukit against torch.nn.GRU on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from ..training.checkpoint import atomic_write_bytes
from .main import main


@main.command("bench", short_help="Time grukit against torch.nn.GRU (ratios, plots).")
@click.option("--quick", is_flag=True, help="a small smoke grid (seconds), not the full benchmark")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), default=None, help="write all results to this JSON file"
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="draw the speed-up ratios to this PNG"
)
@click.option(
    "--min-time",
    type=click.FloatRange(min=0.0, min_open=True),
    default=0.5,
    show_default=True,
    help="seconds of repeats per measurement",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads (default: torch's)")
@click.option(
    "--cells",
    is_flag=True,
    help="only the cell options: LayerNorm-GRU, a user-style LayerNorm-GRU, zoneout and dropouts",
)
@click.option(
    "--peers",
    is_flag=True,
    help="grukit against torch.nn.GRU, ONNX Runtime, OpenVINO, JAX and Keras, at 1 and 2 threads (or --threads)",
)
@click.option(
    "--contention",
    is_flag=True,
    help="grukit at 2 threads against its own 1 thread (and torch) with another process busy beside",
)
def bench_cmd(
    quick: bool,
    json_path: str | None,
    plot_path: str | None,
    min_time: float,
    threads: int | None,
    cells: bool,
    peers: bool,
    contention: bool,
) -> None:
    """Medians and torch/grukit ratios: inference, training, batch-1 step, bf16 (--cells: the cell options; --peers: other engines; --contention: threads beside a busy process)."""
    from .. import bench

    if cells + peers + contention > 1:
        raise click.UsageError("--cells, --peers and --contention are separate benchmarks: choose one")
    if contention:
        if threads is not None:
            raise click.UsageError("--contention compares 1 and 2 threads itself: drop --threads")
        from .. import bench_contention

        res = bench_contention.run(
            bench_contention.QUICK_CONTENTION if quick else bench_contention.CONTENTION_GRID,
            steps=((8, 16),) if quick else bench_contention.STEP_SHAPES,
            min_time=min(min_time, 0.05) if quick else min_time,
            progress=_say,
        )
        _report(res, bench_contention.format_table, bench_contention.plot, res, json_path, plot_path)
        return
    if peers:
        from .. import bench_peers

        grid = bench_peers.QUICK_PEERS if quick else bench_peers.PEERS_GRID
        res = bench_peers.run(
            grid,
            threads=(threads,) if threads else (1, 2),
            engines=bench_peers.ENGINES,
            min_time=min(min_time, 0.05) if quick else min_time,
            peak_sizes=(256, 512) if quick else (1024, 2048),
            progress=_say,
        )
        _report(res, bench_peers.format_table, bench_peers.plot, res, json_path, plot_path)
        return
    if threads is not None:
        torch.set_num_threads(threads)
    if cells:
        from .. import bench_cells

        res = bench_cells.run(
            bench_cells.QUICK_CELLS if quick else bench_cells.CELLS,
            min_time=min(min_time, 0.05) if quick else min_time,
            progress=_say,
        )
        _report(res, bench_cells.format_table, bench_cells.plot, {"cells": res}, json_path, plot_path)
        return
    if quick:
        res = bench.run(
            bench.QUICK, cells=((8, 16),), min_time=min(min_time, 0.05), peak_sizes=(256, 512), progress=_say
        )
    else:
        res = bench.run(bench.GRID, min_time=min_time, progress=_say)
    _report(res, bench.format_table, bench.plot, res, json_path, plot_path)


def _report(res: dict, table, plot, data: dict, json_path: str | None, plot_path: str | None) -> None:
    """Print the table; write data as JSON and the plot where asked."""
    click.echo(table(res))
    if json_path:  # each file whole or not at all (a temporary name, then renamed)
        atomic_write_bytes(json_path, (json.dumps(data, indent=2) + "\n").encode())
        click.echo(f"results written to {json_path}")
    if plot_path:
        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        plot(res, plot_path)
        click.echo(f"plot written to {plot_path}")


def _say(msg: str) -> None:
    click.echo(f"  {msg} ...", err=True)

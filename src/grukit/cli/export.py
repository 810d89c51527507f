"""``grukit export DIR --format onnx``: a trained run's model as an ONNX file, checked in ONNX Runtime."""

from __future__ import annotations

import click

from .main import main


@main.command("export", short_help="Export a run's model to ONNX, checked in ONNX Runtime.")
@click.argument("run", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True, help="the file format")
@click.option("--to", type=click.Path(dir_okay=False), default=None, help="write here instead of RUN/model.onnx")
@click.option(
    "--exporter",
    type=click.Choice(["auto", "dynamo", "torchscript"]),
    default="auto",
    show_default=True,
    help="torch's default exporter (dynamo, needs onnxscript) or its TorchScript one; auto: dynamo where installed",
)
def export_cmd(run: str, fmt: str, to: str | None, exporter: str) -> None:
    """Export a run's model (each GRU layer as ONNX's GRU operator) and check its outputs in ONNX Runtime."""
    from ..onnx_export import export_run

    path, worst, used = export_run(run, to, exporter=exporter)
    click.echo(
        f"exported to {path} ({used} exporter); ONNX Runtime matches PyTorch within {worst:.2g} on example inputs"
    )

"""``grukit report DIR``: one self-contained HTML page about a run."""

from __future__ import annotations

from pathlib import Path

import click

from .main import main


@main.command("report", short_help="Write a run's report as one HTML page.")
@click.argument("run", type=click.Path())
@click.option(
    "--to", type=click.Path(dir_okay=False), default=None, help="write the page here instead of RUN/report.html"
)
def report_cmd(run: str, to: str | None) -> None:
    """Write a run's task, config, metrics beside their baselines, history and plots as one HTML page."""
    from ..report import write_report

    click.echo(f"report written to {write_report(Path(run), to)}")

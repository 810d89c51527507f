"""``grukit build``: build the native GRU kernel ahead of time (``make setup`` runs it)."""

from __future__ import annotations

import os
import sys

import click

from .main import main


@main.command("build", short_help="Build the native GRU kernel now (about 2 minutes on 2 cores, once).")
@click.option("--force", is_flag=True, help="rebuild from scratch even if a cached build exists")
def build_cmd(force: bool) -> None:
    """Build the native GRU kernel now (about 2 minutes on 2 cores, once), or confirm it is cached."""
    from ..kernels import _build

    try:
        res = _build.build(force=force)
    except _build.BuildError as e:
        if os.environ.get("GRUKIT_DEBUG"):
            click.echo(e.log, err=True)
        click.echo(
            f"Error: the native GRU kernel cannot be built: {e} (grukit will use its reference implementation)",
            err=True,
        )
        sys.exit(1)
    how = f"built in {res.seconds:.1f} s" if res.built else f"cached, loaded in {res.seconds:.2f} s"
    click.echo(f"native GRU kernel: {res.library} ({how})")

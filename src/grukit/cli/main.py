"""``grukit`` entry point: one click group; each command lives in its own module."""

from __future__ import annotations

import os
import sys

import click

from .. import __version__


class _Group(click.Group):
    """Turns expected errors (bad data, paths, values) into one clear line and exit code 1.

    Set GRUKIT_DEBUG=1 to see the full traceback instead.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # the reader went away (`grukit predict ... | head`): end quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
            sys.exit(0)
        except (ValueError, TypeError, OSError, KeyError, ArithmeticError, NotImplementedError) as e:
            if os.environ.get("GRUKIT_DEBUG"):
                raise
            msg = str(e) if not isinstance(e, KeyError) else f"missing key {e}"
            click.echo(f"Error: {msg}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grukit")
def main() -> None:
    """grukit: train and use gated recurrent units from the command line."""


def _register() -> None:
    from . import commands  # noqa: F401  (defines the commands on `main`)


_register()

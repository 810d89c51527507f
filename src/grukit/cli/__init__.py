"""The grukit command line: a thin typed layer over library functions."""

from .main import main

__all__ = ["main"]

"""Figures made without pyplot, for the PNGs grukit writes.

``matplotlib.figure.Figure`` draws and saves on its own (Agg for a PNG): no
backend is chosen for the process and no global list of open figures is kept.
So importing grukit, fitting an estimator or writing a plot leaves the user's
matplotlib as it was: a notebook's inline backend, an interactive window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from matplotlib.figure import Figure


def new_figure(
    figsize: tuple[float, float], *, layout: Literal["constrained", "tight"] | None = None, **subplots: Any
) -> tuple[Figure, Any]:
    """A figure of ``figsize`` inches and its axes: ``subplots`` are ``Figure.subplots``'s
    arguments (nrows, ncols, sharex, squeeze, ...), as ``pyplot.subplots`` takes them."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(**subplots)


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> None:
    """Save to a temporary name then rename, so a reader never sees half a PNG: where drawing
    or writing fails, the file at ``path`` is left as it was and the temporary one removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""Results as data: tables and generated files that the CLI prints or writes, never the tasks.

A :class:`Table` is what ``predict`` returns (one row per prediction) and what a
task's ``summary`` makes of its metrics (one row per metric, one column per
model or baseline). The CLI shows it aligned (``render``) or tab-separated
(``tsv``), or writes it as CSV (``write_csv``); programs read ``rows``. A :class:`Generated` is what a task's ``generate``
returns when it makes files (music): the CLI picks the paths and calls the
writers.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.checkpoint import atomic_write_bytes


def cell_text(value: Any, digits: int = 4) -> str:
    """A cell as shown: floats to ``digits`` significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    return str(value)


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    title: str = ""  # a line shown above the rows
    notes: tuple[str, ...] = ()  # lines shown below the aligned table
    text: str = ""  # when set, what the CLI prints instead of the rows (e.g. "1 + 2 = 3  (correct)")

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"a row of {len(row)} cells in a table of {len(self.columns)} columns")

    def render(self) -> str:
        """The title, the rows aligned under their column names, then the notes."""
        cells = [list(self.columns)] + [[cell_text(v) for v in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = [self.title] if self.title else []
        for k, r in enumerate(cells):
            left = r[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
            lines.append("  ".join([left, *rest]).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines + list(self.notes))

    def tsv(self) -> list[str]:
        """The rows as tab-separated lines (no header), full precision."""
        return ["\t".join(cell_text(v, 6) for v in row) for row in self.rows]

    def write_csv(self, path: str | Path) -> None:
        """The columns and rows as a CSV file, written atomically."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        w.writerows(["" if v is None else v for v in row] for row in self.rows)
        atomic_write_bytes(path, buf.getvalue().encode())


@dataclass(frozen=True)
class Generated:
    """What ``generate`` returns when it makes files: a line to print, and one writer per file suffix.

    Each writer takes the path the CLI chose (``OUT`` with that suffix), writes the
    file atomically and returns one line saying what it wrote."""

    text: str
    files: dict[str, Callable[[Path], str]] = field(default_factory=dict)  # ".mid" -> write(path) -> line

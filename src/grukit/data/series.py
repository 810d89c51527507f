"""Time series from CSV files and from the real series other packages ship.

A :class:`Series` is a (N, C) float64 array, its column names (the first is
the target, the rest are covariates) and, when the file has one, the time
stamp of every row as written in the file. Missing cells (empty, NA, NaN)
are filled by linear interpolation between their neighbours; a column with
no numbers at all is an error.

Built-in series are read straight from the CSV files bundled with
statsmodels and vega_datasets (``pip install 'grukit[data]'``), located
without importing those packages.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}


@dataclass(frozen=True)
class Series:
    values: np.ndarray  # (N, C) float64, column 0 is the target
    columns: tuple[str, ...]  # C names
    dates: tuple[str, ...] | None  # N time stamps as written, or None
    source: str  # file path or "dataset NAME", for messages
    date_column: str = ""  # the column the time stamps came from


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


BUILTIN: dict[str, BuiltinSeries] = {
    "sunspots": BuiltinSeries("statsmodels", "datasets/sunspots/sunspots.csv", "YEAR", ("SUNACTIVITY",), 11, 5, 40,
                              "yearly sunspot numbers 1700-2008, 309 points (statsmodels; season 11, the solar cycle)"),
    "co2": BuiltinSeries("statsmodels", "datasets/co2/co2.csv", "date", ("co2",), 52, 26, 52,
                         "weekly Mauna Loa CO2 ppm 1958-2001, 2284 points (statsmodels; season 52)"),
    "seattle_weather": BuiltinSeries("vega_datasets", "_data/seattle-weather.csv", "date", ("temp_max",), 365, 7, 60,
                                     "daily Seattle max temperature 2012-2015, 1461 points (vega_datasets; season 365)"),
}


def package_file(package: str, relative: str, what: str) -> Path:
    """A data file shipped inside an installed package, found without importing it.

    Raises ValueError saying how to install the package when it is missing.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ValueError(f"{what} needs the {package!r} package: pip install 'grukit[data]' (or pip install {package})")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise ValueError(f"{what}: {package} is installed but has no {relative}; reinstall it with pip install 'grukit[data]'")
    return path


def builtin_series(name: str, columns: tuple[str, ...] = ()) -> Series:
    """The built-in series ``name`` (its default columns unless ``columns`` are given)."""
    if name not in BUILTIN:
        raise ValueError(f"unknown --dataset {name!r}; built-in series: {', '.join(BUILTIN)}")
    b = BUILTIN[name]
    path = package_file(b.package, b.path, f"--dataset {name}")
    s = read_csv_series(path, columns or b.columns, b.date_column)
    return Series(s.values, s.columns, s.dates, f"dataset {name}", s.date_column)


def parse_columns(text: str) -> tuple[str, ...]:
    """'a,b' or 'a, b' -> ('a', 'b'); '' -> ()."""
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _number(cell: str) -> float | None:
    """The float in a cell, nan for a missing cell, None for text."""
    cell = cell.strip()
    if cell.lower() in MISSING:
        return float("nan")
    try:
        return float(cell)
    except ValueError:
        return None


def _interpolate(col: np.ndarray, name: str, path) -> np.ndarray:
    ok = ~np.isnan(col)
    if not ok.any():
        raise ValueError(f"{path}: column {name!r} has no numbers")
    if ok.all():
        return col
    idx = np.arange(len(col))
    return np.interp(idx, idx[ok], col[ok])


def read_csv_series(path: str | Path, columns: tuple[str, ...] = (), date_column: str = "") -> Series:
    """Read columns of a CSV file with a header row.

    ``columns``: names, the first is the target; none given means the first
    numeric column. ``date_column``: the time stamps; none given means the
    first column when its cells are not numbers.
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
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [r for r in csv.reader(text.splitlines(), dialect) if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if not body:
        raise ValueError(f"{path}: has a header but no data rows")
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise ValueError(f"{path}: line {i} has {len(r)} fields, the header has {len(header)}")

    def index(name: str, flag: str) -> int:
        if name not in header:
            raise ValueError(f"{path}: no column {name!r} ({flag}); columns are: {', '.join(header)}")
        return header.index(name)

    def numeric(j: int) -> bool:
        return all(_number(r[j]) is not None for r in body)

    if date_column:
        date_j = index(date_column, "--date-column")
    else:
        date_j = 0 if not numeric(0) and len(header) > 1 else None
    if columns:
        picked = [index(c, "--column") for c in columns]
    else:
        picked = [j for j in range(len(header)) if j != date_j and numeric(j)][:1]
        if not picked:
            raise ValueError(f"{path}: no numeric column found; columns are: {', '.join(header)}")
    if date_j is not None and date_j in picked:
        raise ValueError(f"{path}: column {header[date_j]!r} is the date column and cannot also be a --column")
    values = np.empty((len(body), len(picked)))
    for k, j in enumerate(picked):
        for i, r in enumerate(body):
            v = _number(r[j])
            if v is None:
                raise ValueError(f"{path}: line {i + 2}, column {header[j]!r}: {r[j].strip()!r} is not a number")
            values[i, k] = v
        values[:, k] = _interpolate(values[:, k], header[j], path)
    dates = tuple(r[date_j].strip() for r in body) if date_j is not None else None
    return Series(values, tuple(header[j] for j in picked), dates, str(path), header[date_j] if date_j is not None else "")


# ---- time stamps -----------------------------------------------------------

_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M",
            "%Y/%m/%d %H:%M", "%Y-%m", "%Y")


def _date_format(samples: tuple[str, ...]) -> str | None:
    for fmt in _FORMATS:
        try:
            for s in samples:
                datetime.strptime(s, fmt)
            return fmt
        except ValueError:
            continue
    return None


def parse_dates(dates: tuple[str, ...]) -> tuple[list[datetime], str] | None:
    """Time stamps -> (datetimes, their format), or None when not in a known format."""
    if not dates:
        return None
    fmt = _date_format(dates[:3] + dates[-3:])
    if fmt is None:
        return None
    try:
        return [datetime.strptime(d, fmt) for d in dates], fmt
    except ValueError:
        return None


def _step(parsed: list[datetime]) -> tuple[str, int]:
    """The sampling step of the last few time stamps: ('months', k) or ('seconds', s)."""
    a, b = parsed[-2], parsed[-1]
    months = (b.year - a.year) * 12 + b.month - a.month
    if months > 0 and a.day == b.day and a.time() == b.time():
        return "months", months
    return "seconds", int((b - a).total_seconds())


def next_dates(dates: tuple[str, ...] | None, n: int) -> list[str] | None:
    """The ``n`` time stamps after the last one, in the file's format (None if unknown)."""
    got = parse_dates(dates[-3:]) if dates and len(dates) >= 2 else None
    if got is None:
        return None
    parsed, fmt = got
    kind, k = _step(parsed)
    if k <= 0:
        return None
    out, last = [], parsed[-1]
    for i in range(1, n + 1):
        if kind == "months":
            m = last.month - 1 + k * i
            nxt = last.replace(year=last.year + m // 12, month=m % 12 + 1)
        else:
            nxt = last + timedelta(seconds=k * i)
        out.append(nxt.strftime(fmt))
    return out


def infer_season(dates: tuple[str, ...] | None) -> int:
    """A season from the sampling step: hourly 24, daily 7, weekly 52, monthly 12, quarterly 4; else 1."""
    got = parse_dates(dates[-3:]) if dates and len(dates) >= 2 else None
    if got is None:
        return 1
    kind, k = _step(got[0])
    if kind == "months":
        return {1: 12, 3: 4}.get(k, 1)
    return {3600: 24, 86400: 7, 7 * 86400: 52}.get(k, 1)


def day_of_year(dates: tuple[str, ...] | None) -> np.ndarray | None:
    """(N,) fraction of the year in [0, 1) for each time stamp, or None when not dates."""
    got = parse_dates(dates) if dates else None
    if got is None or got[1] == "%Y":
        return None
    parsed = got[0]
    return np.array([(d - datetime(d.year, 1, 1)).total_seconds() / (366 * 86400 if _leap(d.year) else 365 * 86400) for d in parsed])


def _leap(y: int) -> bool:
    return date(y, 12, 31).timetuple().tm_yday == 366

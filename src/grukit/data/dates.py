"""Time stamps: the format a column of them is written in, gaps in their calendar, what comes next.

Formats read (strptime):
    ISO       2024-03-05, 2024-03-05T10:00(:00), 2024-03-05 10:00(:00), 2024/03/05 (10:00),
              20240305, 2024-03, 2024
    US        03/05/2024 (month first)
    European  05/03/2024, 05.03.2024, 05-03-2024 (day first)
    (the day-month forms also with a time: 03/05/2024 10:00)

Day-first or month-first is decided from the data: a first field over 12 on
any row means day first, a second field over 12 means month first. When
every date reads both ways (no field over 12: e.g. monthly data on the 1st),
dotted dates (05.03.2024) are read day first, the only convention that writes
them; slashed or dashed ones are an error asking for --date-format, because a
wrong guess silently turns monthly data into daily data.

A column is read with one format: a cell that does not match it (a typo, an
empty cell, a 30th of February) is an error naming its line.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime, timedelta

import numpy as np

ISO_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y%m%d",
    "%Y-%m",
    "%Y",
)
_ISO_START = re.compile(r"\d{4}(\D|\d{4}$|$)")  # four-digit year first: '1', '12' or '123456' are not years
_DAY_MONTH = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})([ T]\d{1,2}:\d{2}(?::\d{2})?)?")


class Dates(tuple):
    """Time stamps as written in the file (a tuple of str) and ``format``, the strptime
    format they were read with ('' when they are not dates: labels or step numbers)."""

    format: str

    def __new__(cls, stamps, fmt: str = "") -> Dates:
        self = super().__new__(cls, stamps)
        self.format = fmt
        return self


def detect_format(cells: tuple[str, ...] | list[str], what: str = "the dates") -> str:
    """The strptime format of a column of time stamps, judged from its first cell (and, for
    day-month dates, from every cell); '' when the first cell is in no known format.

    Raises ValueError when day and month cannot be told apart."""
    first = next((c.strip() for c in cells if c.strip()), "")
    if _ISO_START.match(first):
        for fmt in ISO_FORMATS:
            if _parses(first, fmt):
                return fmt
        return ""
    m = _DAY_MONTH.fullmatch(first)
    if m is None:
        return ""
    sep, clock = m.group(2), m.group(5) or ""
    fields = [f for f in (_DAY_MONTH.fullmatch(c.strip()) for c in cells) if f is not None and f.group(2) == sep]
    day_first = any(int(f.group(1)) > 12 for f in fields)
    month_first = any(int(f.group(3)) > 12 for f in fields)
    if day_first and month_first:
        raise ValueError(
            f"{what}: some dates have the day first ({_example(fields, 1)}), others the month first "
            f"({_example(fields, 3)}); give --date-format"
        )
    if not day_first and not month_first and sep != ".":
        raise ValueError(
            f"{what}: every date (e.g. {first!r}) reads both as day{sep}month and month{sep}day; "
            f"give --date-format %d{sep}%m{sep}%Y or %m{sep}%d{sep}%Y"
        )
    order = f"%m{sep}%d" if month_first else f"%d{sep}%m"
    time_part = "" if not clock else clock[0] + ("%H:%M:%S" if clock.count(":") == 2 else "%H:%M")
    return f"{order}{sep}%Y{time_part}"


def _example(fields, group: int) -> str:
    return repr(next(f.group(0) for f in fields if int(f.group(group)) > 12))


def _parses(cell: str, fmt: str) -> bool:
    try:
        datetime.strptime(cell, fmt)
        return True
    except ValueError:
        return False


def parse(cells, fmt: str, lines, what: str) -> list[datetime]:
    """Every cell read with ``fmt``; ValueError naming the first line (``lines[i]``) that does not read
    or is not after the one before it (the rows must be in time order)."""
    out: list[datetime] = []
    for cell, line in zip(cells, lines):
        try:
            t = datetime.strptime(cell.strip(), fmt)
        except ValueError:
            raise ValueError(
                f"{what}, line {line}: {cell.strip()!r} is not a date in the format {fmt}"
                f"{'' if not out else f' (like line {lines[0]} {cells[0].strip()!r})'}"
            ) from None
        if out and t <= out[-1]:
            raise ValueError(
                f"{what}, line {line}: {cell.strip()!r} is not after the date before it; the rows must be in time order"
            )
        out.append(t)
    return out


def to_datetimes(dates) -> list[datetime] | None:
    """Time stamps -> datetimes, or None when they are not dates (or not all readable)."""
    if not dates:
        return None
    fmt = getattr(dates, "format", None)
    if fmt is None:
        try:
            fmt = detect_format(dates)
        except ValueError:
            return None
    if not fmt:
        return None
    try:
        return [datetime.strptime(d.strip(), fmt) for d in dates]
    except ValueError:
        return None


def step(a: datetime, b: datetime) -> tuple[str, int]:
    """The step from ``a`` to ``b``: ('months', k) when a whole number of calendar months apart, else ('seconds', s)."""
    months = (b.year - a.year) * 12 + b.month - a.month
    if months > 0 and a.day == b.day and a.time() == b.time():
        return "months", months
    return "seconds", int((b - a).total_seconds())


_NAMES = {
    ("months", 1): "monthly",
    ("months", 3): "quarterly",
    ("months", 12): "yearly",
    ("seconds", 3600): "hourly",
    ("seconds", 86400): "daily",
    ("seconds", 7 * 86400): "weekly",
}


def gaps(times: list[datetime]) -> tuple[int, str, int | None]:
    """Dates missing from the series' regular calendar: (how many, the calendar's name, the row before the first gap).

    The calendar's step is the most common step between neighbours. Daily data
    with no Saturday or Sunday is a weekday calendar: weekends are not missing."""
    if len(times) < 3:
        return 0, "", None
    steps = [step(a, b) for a, b in zip(times, times[1:])]
    kind, k = Counter(steps).most_common(1)[0][0]
    weekdays = (kind, k) == ("seconds", 86400) and all(t.weekday() < 5 for t in times)
    missing, first = 0, None
    for i, ((a, b), (skind, s)) in enumerate(zip(zip(times, times[1:]), steps)):
        if weekdays:
            n = sum((a + timedelta(days=d)).weekday() < 5 for d in range(1, (b - a).days))
        elif skind == kind:
            n = max(0, round(s / k) - 1)
        else:
            months = (b.year - a.year) * 12 + b.month - a.month
            n = max(0, round((b - a).total_seconds() / k) - 1) if kind == "seconds" else max(0, months // k - 1)
        if n and first is None:
            first = i
        missing += n
    name = "weekday" if weekdays else _NAMES.get((kind, k), f"every-{k}-{kind}")
    return missing, name, first


def _tail(dates, k: int = 3) -> tuple[list[datetime], str] | None:
    """The last ``k`` time stamps as datetimes and their format (None when not dates or fewer than 2)."""
    if not dates or len(dates) < 2:
        return None
    fmt = getattr(dates, "format", None)
    parsed = to_datetimes(dates[-k:] if fmt is None else Dates(dates[-k:], fmt))
    return None if parsed is None else (parsed, fmt if fmt is not None else detect_format(dates[-k:]))


def _weekdays_only(dates) -> bool:
    """Trading days: at least 10 recent daily stamps, none on a Saturday or Sunday, some a weekend apart."""
    got = _tail(dates, 15)
    if got is None or len(got[0]) < 10:
        return False
    days = got[0]
    gaps = {(b - a).days for a, b in zip(days, days[1:])}
    return all(d.weekday() < 5 for d in days) and 1 in gaps and 3 in gaps and max(gaps) <= 4


def next_dates(dates, n: int) -> list[str] | None:
    """The ``n`` time stamps after the last one, in the file's format (None if unknown).

    Daily stamps that skip every weekend (trading days) continue on weekdays; a
    market's holidays are not known, so a holiday may appear among them."""
    got = _tail(dates)
    if got is None:
        return None
    parsed, fmt = got
    kind, k = step(parsed[-2], parsed[-1])
    if k <= 0:
        return None
    out: list[str] = []
    last = parsed[-1]
    if _weekdays_only(dates):
        while len(out) < n:
            last += timedelta(days=1)
            if last.weekday() < 5:
                out.append(last.strftime(fmt))
        return out
    for i in range(1, n + 1):
        if kind == "months":
            m = last.month - 1 + k * i
            nxt = last.replace(year=last.year + m // 12, month=m % 12 + 1)
        else:
            nxt = last + timedelta(seconds=k * i)
        out.append(nxt.strftime(fmt))
    return out


def infer_season(dates) -> int:
    """A season from the sampling step: hourly 24, daily 7, weekly 52, monthly 12, quarterly 4; else 1."""
    got = _tail(dates)
    if got is None:
        return 1
    kind, k = step(*got[0][-2:])
    if kind == "months":
        return {1: 12, 3: 4}.get(k, 1)
    return {3600: 24, 86400: 7, 7 * 86400: 52}.get(k, 1)


def day_of_year(dates):
    """(N,) fraction of the year in [0, 1) for each time stamp, or None when not dates (or only years)."""
    parsed = to_datetimes(dates)
    if parsed is None or (getattr(dates, "format", None) or detect_format(dates)) == "%Y":
        return None
    return np.array(
        [(d - datetime(d.year, 1, 1)).total_seconds() / (366 * 86400 if _leap(d.year) else 365 * 86400) for d in parsed]
    )


def _leap(y: int) -> bool:
    return date(y, 12, 31).timetuple().tm_yday == 366

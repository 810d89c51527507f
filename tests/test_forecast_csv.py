"""`grukit train forecast --data FILE.csv` on the CSV files people bring: date forms,
separators and decimal commas, blanks and gaps reported, bad cells named in one line."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
from click.testing import CliRunner

from grukit.cli import main

TINY = [
    "--epochs",
    "1",
    "--steps",
    "2",
    "--batch-size",
    "8",
    "--hidden-size",
    "4",
    "--lookback",
    "12",
    "--horizon",
    "4",
    "--no-progress",
]


def make_csv(path, n=70, stamp=lambda d: d.isoformat(), sep=",", decimal=".", step=timedelta(days=1), cells=None):
    """A weekly sine, one row a ``step``; ``cells`` {row: text} replaces values."""
    cells = cells or {}
    lines = [f"date{sep}value"]
    for i in range(n):
        v = cells.get(i, f"{10 + 3 * np.sin(2 * np.pi * i / 7):.3f}".replace(".", decimal))
        lines.append(f"{stamp(date(2023, 1, 1) + i * step)}{sep}{v}")
    path.write_text("\n".join(lines) + "\n")
    return path


def train(tmp_path, csv, *args):
    r = CliRunner().invoke(
        main, ["train", "forecast", "--data", str(csv), "--out", str(tmp_path / "run"), *TINY, *args]
    )
    assert "Traceback" not in r.output
    return r


def state(tmp_path) -> dict:
    return json.loads((tmp_path / "run" / "config.json").read_text())["state"]


@pytest.mark.parametrize(
    "stamp, fmt, after",
    [
        (lambda d: d.strftime("%m/%d/%Y"), "%m/%d/%Y", "03/12/2023"),  # US: today these gave no calendar
        (lambda d: d.strftime("%d.%m.%Y"), "%d.%m.%Y", "12.03.2023"),
        (lambda d: d.strftime("%Y-%m-%dT10:00"), "%Y-%m-%dT%H:%M", "2023-03-12T10:00"),
    ],
)
def test_date_forms_give_a_calendar(tmp_path, stamp, fmt, after):
    r = train(tmp_path, make_csv(tmp_path / "s.csv", stamp=stamp))
    assert r.exit_code == 0, r.output
    st = state(tmp_path)
    assert st["calendar"] and st["date_format"] == fmt and st["season"] == 7
    r = CliRunner().invoke(main, ["predict", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1].startswith(after + "\t")  # 70 days after 2023-01-01, in the file's own form


def test_ambiguous_dates_need_date_format(tmp_path):
    csv = tmp_path / "s.csv"
    monthly = [date(2010 + i // 12, i % 12 + 1, 1).strftime("%d/%m/%Y") for i in range(80)]
    csv.write_text("date,value\n" + "".join(f"{d},{np.sin(i):.3f}\n" for i, d in enumerate(monthly)))
    r = train(tmp_path, csv)
    assert r.exit_code == 1
    assert (
        "s.csv: column 'date': every date (e.g. '01/01/2010') reads both as day/month and month/day; give --date-format"
        in r.output
    )
    r = train(tmp_path, csv, "--date-format", "%d/%m/%Y")
    assert r.exit_code == 0, r.output
    assert state(tmp_path)["season"] == 12  # monthly, not daily
    r = CliRunner().invoke(
        main, ["predict", str(tmp_path / "run"), "--data", str(csv)]
    )  # the run's format, no flag again
    assert r.exit_code == 0 and r.output.splitlines()[1].startswith("01/09/2016\t"), r.output


def test_date_format_flag_names_the_cell_that_does_not_match(tmp_path):
    csv = make_csv(tmp_path / "s.csv", stamp=lambda d: d.strftime("%d/%m/%Y"))
    r = train(tmp_path, csv, "--date-format", "%m/%d/%Y")
    assert (
        r.exit_code == 1
        and f"{csv}: column 'date', line 14: '13/01/2023' is not a date in the format %m/%d/%Y" in r.output
    )


@pytest.mark.parametrize(
    "sep, decimal, flags",
    [
        (";", ",", []),
        ("\t", ",", []),
        (";", ".", []),
        (";", ",", ["--sep", ";", "--decimal", ","]),
        ("\t", ".", ["--sep", "tab"]),
    ],
)
def test_separators_and_decimal_commas(tmp_path, sep, decimal, flags):
    r = train(tmp_path, make_csv(tmp_path / "s.csv", sep=sep, decimal=decimal), *flags)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["target"] == "value" and m["naive"]["mae"] > 1  # the sine's values, not its integer parts


def test_wrong_separator_flag_is_named(tmp_path):
    r = train(tmp_path, make_csv(tmp_path / "s.csv", sep=";", decimal=","), "--decimal", ".")
    assert r.exit_code == 1 and "(decimal commas? give --decimal ,)" in r.output
    r = train(tmp_path, make_csv(tmp_path / "s.csv"), "--sep", "|")
    assert r.exit_code == 2 and "Invalid value for '--sep'" in r.output


def test_blanks_and_missing_dates_are_one_line_on_stderr(tmp_path):
    csv = make_csv(tmp_path / "s.csv", n=73, cells={5: "", 6: "NA", 40: "nan"})
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(ln for i, ln in enumerate(lines) if i not in (21, 22, 50)) + "\n")  # three days gone
    r = train(tmp_path, csv)
    assert r.exit_code == 0, r.output
    note = [ln for ln in r.stderr.splitlines() if ln.startswith(str(csv))]
    assert note == [
        f"{csv}: filled 3 blank/NA cells by linear interpolation (value 3); 3 dates missing from the daily "
        "calendar (the first after 2023-01-20, line 21): no rows inserted, the series is read as consecutive steps"
    ]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["points"] == 70
    r = CliRunner().invoke(main, ["eval", "--json", str(tmp_path / "run")])
    assert r.exit_code == 0 and json.loads(r.stdout)["points"] == 70 and r.stderr.count("filled 3") == 1


@pytest.mark.parametrize(
    "cell, message",
    [
        ("inf", "line 32, column 'value': 'inf' is infinite"),
        ("-inf", "line 32, column 'value': '-inf' is infinite"),
        ("1e309", "line 32, column 'value': '1e309' overflows to infinity"),
        ("5e30", "line 32, column 'value': '5e30' is larger in magnitude than 1e+30"),
        ("12,5", "line 32, column 'value': '12,5' is not a number (a decimal comma? give --decimal ,)"),
        ("n/a?", "line 32, column 'value': 'n/a?' is not a number"),
        ("9" * 140_000, "line 32 has a field over 128 KiB (the CSV reader's limit)"),
    ],
)
def test_bad_cells_are_one_line_naming_file_line_column_and_value(tmp_path, cell, message):
    csv = make_csv(tmp_path / "s.csv", cells={30: f'"{cell}"' if "," in cell else cell})
    r = train(tmp_path, csv)
    assert r.exit_code == 1
    assert r.output == f"Error: {csv}: {message}" + r.output.split(message, 1)[1]
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "run" / "model.safetensors").exists()

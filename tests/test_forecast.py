"""Forecast task: metrics and baselines on hand-computed examples, and the CLI end to end on small CSVs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from datetime import date, timedelta

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from grukit.cli import main
from grukit.evaluation import forecasting as fc
from grukit.tasks import forecast
from grukit.tasks.forecast_model import ForecastState

TINY = [
    "--epochs",
    "2",
    "--steps",
    "3",
    "--batch-size",
    "8",
    "--hidden-size",
    "8",
    "--lookback",
    "12",
    "--horizon",
    "4",
    "--no-progress",
]


def test_metrics_by_hand():
    f, y = np.array([2.0, 2.0]), np.array([3.0, 1.0])
    assert fc.mae(f, y) == 1.0
    assert fc.rmse(f, y) == 1.0
    assert fc.smape(f, y) == pytest.approx(100 * (2 / 5 + 2 / 3) / 2)
    assert fc.smape(np.zeros(2), np.zeros(2)) == 0.0  # 0/0 counts as a perfect forecast
    train = np.array([1.0, 3.0, 2.0, 5.0])
    assert fc.mase_scale(train, 1) == 2.0  # |2|, |1|, |3|
    assert fc.mase_scale(train, 2) == 1.5  # |2-1|, |5-3|
    assert fc.mase_scale(train, 9) == 2.0  # a season longer than the part falls back to m = 1
    assert fc.mase(f, y, 2.0) == 0.5
    assert fc.mase(f, y, 0.0) is None
    assert fc.score(f, y, 2.0) == {"mae": 1.0, "rmse": 1.0, "smape": pytest.approx(53.3333, abs=1e-4), "mase": 0.5}


def test_windows_and_baselines():
    y = np.arange(10.0)
    np.testing.assert_array_equal(fc.origins(10, 3, 2, 0, 6), [2, 3])  # targets inside [0, 6)
    np.testing.assert_array_equal(fc.origins(10, 3, 2, 6, 10), [5, 6, 7])  # inputs may reach back
    assert len(fc.origins(10, 8, 4, 0, 10)) == 0
    at = np.array([5])
    np.testing.assert_array_equal(fc.targets(y, at, 3), [[6, 7, 8]])
    np.testing.assert_array_equal(fc.naive(y, at, 3), [[5, 5, 5]])
    np.testing.assert_array_equal(fc.seasonal_naive(y, at, 3, 2), [[4, 5, 4]])
    np.testing.assert_array_equal(fc.seasonal_naive(y, at, 2, 1), [[5, 5]])
    np.testing.assert_array_equal(fc.seasonal_naive(y, np.array([0]), 2, 4), [[0, 0]])  # too early: naive


@pytest.mark.parametrize(
    "y, season, base",
    [
        (np.tile([0.0, 5.0, 1.0, 7.0], 30), 4, "seasonal"),  # periodic
        (np.cumsum(np.random.default_rng(0).standard_normal(120)), 4, "naive"),  # random walk
        (np.tile([0.0, 5.0, 1.0, 7.0], 30), 1, "naive"),  # no season
    ],
)
def test_choose_base(y, season, base):
    assert forecast.choose_base(y, lookback=8, season=season, horizon=3, n_train=80) == base


def test_gru_corrects_its_base():
    """An untrained-looking model that outputs 0 forecasts exactly its base."""
    y = np.tile([0.0, 5.0, 1.0, 7.0], 10)
    state = ForecastState(
        lookback=4,
        horizon=3,
        season=4,
        mean=[0.0],
        std=[2.0],
        dstd=1.0,
        columns=["y"],
        date_column="",
        calendar=False,
        points=len(y),
        split=[20, 30],
        mase_scale=1.0,
        base="seasonal",
    )
    model = forecast.Forecaster(1, 4, 1, 3, 0.0)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    x = np.zeros((len(y), 1), dtype=np.float32)
    at = np.array([10, 20])
    np.testing.assert_allclose(forecast.forecast(model, x, y, at, state), fc.seasonal_naive(y, at, 3, 4))
    with torch.no_grad():
        model.head.bias.fill_(0.5)  # +0.5 std on every step
    np.testing.assert_allclose(
        forecast.forecast(model, x, y, at, dataclasses.replace(state, base="naive")), fc.naive(y, at, 3) + 1.0
    )


def test_prepare_without_holdout_keeps_no_test_part():
    """holdout=False (an estimator's fit): train, then validation to the series' end; the CLI split is unchanged."""
    from grukit.data.series import Series

    s = Series(np.sin(np.arange(200.0))[:, None], ("y",), None, "sine")
    cfg = forecast.ForecastConfig(data="sine", lookback=12, horizon=4, val_fraction=0.15, test_fraction=0.15)
    held, _ = forecast.ForecastTask().prepare(cfg, s)
    assert held.split == [140, 170]
    whole, _ = forecast.ForecastTask().prepare(cfg, s, holdout=False)
    assert whole.split == [170, 200] and whole.points == 200
    with pytest.raises(ValueError, match="validation part"):
        forecast.ForecastTask().prepare(dataclasses.replace(cfg, horizon=40, lookback=40), s, holdout=False)


def sine_csv(path, n=160, dates=True, extra=False):
    rng = np.random.default_rng(0)
    start = date(2020, 1, 1)
    lines = ["day,value,temp" if extra else ("day,value" if dates else "value")]
    for i in range(n):
        v = 10 + 3 * np.sin(2 * np.pi * i / 7) + 0.1 * rng.standard_normal()
        cells = ([str(start + timedelta(days=i))] if dates else []) + [f"{v:.4f}"] + ([f"{i % 5}"] if extra else [])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_eval_predict_end_to_end(tmp_path):
    csv = sine_csv(tmp_path / "s.csv", extra=True)
    out = tmp_path / "run"
    r = run("train", "forecast", "--data", csv, "--column", "value,temp", "--out", out, *TINY)
    assert r.exit_code == 0, r.output
    for name in ("config.json", "model.safetensors", "metrics.json", "history.jsonl", "loss.png", "forecast.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["gru"]) == {"mae", "rmse", "smape", "mase"}
    assert metrics["season"] == 7 and metrics["horizon"] == 4 and metrics["target"] == "value"
    assert metrics["base"] == "seasonal"  # a weekly sine: nearly periodic
    assert metrics["naive"]["mae"] > 0 and metrics["seasonal_naive"]["mae"] < metrics["naive"]["mae"]
    state = json.loads((out / "config.json").read_text())["state"]
    assert state["calendar"] and state["columns"] == ["value", "temp"] and state["split"] == [112, 136]

    r = run("eval", "--json", out)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["gru"] == pytest.approx(metrics["gru"], rel=1e-4)
    r = run("eval", "--json", out, "--data", sine_csv(tmp_path / "new.csv", n=40, extra=True))
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["test_origins"] == 40 - 12 - 4 + 1
    r = run("eval", "--json", out, "--data", sine_csv(tmp_path / "short.csv", n=15, extra=True))
    assert (
        r.exit_code == 1
        and "15 points, too short to score this run's --lookback 12 + --horizon 4: need at least 16" in r.output
    )
    r = run("eval", "--json", out, "--data", sine_csv(tmp_path / "one.csv", n=40))
    assert r.exit_code == 1 and "no column 'temp' (--column)" in r.output

    r = run("predict", out, "--data", csv)
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 5 and lines[1].startswith("2020-06-09\t")  # 160 days after 2020-01-01
    for line in lines[1:]:  # date, forecast, and the 80% interval around it
        _, value, low, high = line.split("\t")
        assert float(low) < float(value) < float(high)
    r = run("predict", out, "--data", csv, "--to", tmp_path / "next.csv")
    assert r.exit_code == 0 and (tmp_path / "next.csv").read_text().splitlines()[0] == "day,value,lower_80%,upper_80%"
    r = run("predict", out)  # no data: past the end of the training series
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 5

    r = run("train", "forecast", "--resume", out, "--epochs", "3")
    assert r.exit_code == 0, r.output
    assert len((out / "history.jsonl").read_text().splitlines()) == 3


def test_predict_from_values_without_dates(tmp_path):
    csv = sine_csv(tmp_path / "s.csv", dates=False)
    out = tmp_path / "run"
    r = run("train", "forecast", "--data", csv, "--out", out, *TINY)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["season"] == 1 and m["base"] == "naive"  # no dates, no season
    r = run("predict", out, *[str(v) for v in range(12)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1].startswith("t+1\t")
    r = run("predict", out, "1", "2")
    assert r.exit_code == 1 and "2 points given" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "{tmp}/missing.csv"], "no such file"),
        (["--data", "{tmp}/s.csv", "--column", "nope"], "no column 'nope' (--column); columns are: day, value"),
        (["--data", "{tmp}/s.csv", "--lookback", "200"], "too short for --lookback 200 + --horizon 4"),
        (["--data", "{tmp}/empty.csv"], "the file is empty"),
        (["--data", "{tmp}/s.csv", "--val-fraction", "0.7"], "--val-fraction must be in (0, 0.5)"),
        (["--dataset", "nope"], "Invalid value for '--dataset'"),
        (["--bogus"], "No such option '--bogus'"),
    ],
)
def test_bad_inputs_give_one_clear_line(tmp_path, args, message):
    sine_csv(tmp_path / "s.csv", n=60)
    (tmp_path / "empty.csv").write_text("")
    r = run(
        "train",
        "forecast",
        "--out",
        tmp_path / "run",
        *[a.replace("{tmp}", str(tmp_path)) for a in args],
        "--horizon",
        "4",
        "--no-progress",
    )
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output


def test_predict_needs_dates_for_calendar_runs(tmp_path):
    csv = sine_csv(tmp_path / "s.csv")
    out = tmp_path / "run"
    assert run("train", "forecast", "--data", csv, "--out", out, *TINY).exit_code == 0
    r = run("predict", out, "1", "2")
    assert r.exit_code == 1 and "--data FILE.csv" in r.output
    r = run("predict", out, "--data", sine_csv(tmp_path / "nodates.csv", dates=False))
    assert r.exit_code == 1 and "no column 'day' (--date-column)" in r.output


def test_bfloat16_train_eval(tmp_path):
    csv = sine_csv(tmp_path / "s.csv", dates=False)
    out = tmp_path / "run"
    r = run("train", "forecast", "--data", csv, "--out", out, *TINY, "--dtype", "bfloat16")
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    r = run("eval", "--json", out)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["gru"]["mae"] == pytest.approx(m["gru"]["mae"])


def test_residual_interval_and_its_coverage_by_hand():
    truth = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])
    f = np.zeros_like(truth)  # residuals are the truths: step 1 quantiles of 1..5, step 2 of 10..50
    iv = fc.residual_interval(f, truth, level=0.5)
    assert iv == {"level": 0.5, "lower": [2.0, 20.0], "upper": [4.0, 40.0], "origins": 5}
    lo, hi = fc.interval_bounds(np.ones((2, 2)), iv)
    np.testing.assert_array_equal(lo, [[3, 21], [3, 21]])
    np.testing.assert_array_equal(hi, [[5, 41], [5, 41]])
    got = fc.interval_score(lo, hi, np.array([[3.0, 50.0], [6.0, 30.0]]), 0.5)
    assert got == {"level": 0.5, "coverage": 0.5, "coverage_by_step": [0.5, 0.5], "mean_width": 11.0}
    with pytest.raises(ValueError, match="interval level must be in"):
        fc.residual_interval(f, truth, level=1.0)


def test_interval_coverage_on_a_noisy_sine(tmp_path):
    """Stationary noise: the validation errors describe the test errors, so an 80% interval covers about 80%."""
    rng = np.random.default_rng(1)
    y = 10 + 3 * np.sin(2 * np.pi * np.arange(400) / 7) + rng.standard_normal(400)
    csv = tmp_path / "s.csv"
    csv.write_text("value\n" + "\n".join(f"{v:.4f}" for v in y) + "\n")
    out = tmp_path / "run"
    r = run("train", "forecast", "--data", csv, "--out", out, *TINY, "--season", "7")
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    iv = json.loads((out / "config.json").read_text())["state"]["interval"]
    assert iv["level"] == 0.8 and len(iv["lower"]) == len(iv["upper"]) == 4 and iv["origins"] == 60 - 4 + 1
    assert all(lo < 0 < hi for lo, hi in zip(iv["lower"], iv["upper"]))
    assert 0.5 <= m["gru_interval"]["coverage"] <= 1.0 and len(m["gru_interval"]["coverage_by_step"]) == 4
    assert m["gru_interval"]["mean_width"] == pytest.approx(np.mean(np.array(iv["upper"]) - iv["lower"]), abs=1e-5)
    r = run("eval", "--json", out)
    assert r.exit_code == 0 and json.loads(r.output)["gru_interval"] == m["gru_interval"]


def captured_plot(monkeypatch, *args, **kwargs):
    figs = []
    monkeypatch.setattr(fc, "save_figure", lambda fig, path: figs.append(fig))
    fc.plot_forecast("unused.png", *args, **kwargs)
    return figs[0].axes[0]


def test_plot_has_dates_labels_a_readable_window_and_the_interval(monkeypatch):
    import matplotlib.dates as mdates
    from matplotlib.collections import PolyCollection

    from grukit.data.series import Dates

    n, h = 1000, 7
    y = np.sin(np.arange(n) / 5.0)
    stamps = Dates(
        [(date(1958, 3, 29) + timedelta(days=i)).strftime("%Y%m%d") for i in range(n)], "%Y%m%d"
    )  # co2's form
    split = 850
    blocks = np.arange(split - 1, n - h, h)  # 21 blocks: more than the plot draws
    preds = {"gru": y[blocks[:, None] + np.arange(1, h + 1)], "naive": np.repeat(y[blocks][:, None], h, axis=1)}
    band = (preds["gru"] - 0.1, preds["gru"] + 0.1)
    ax = captured_plot(monkeypatch, y, split, blocks, preds, stamps, ylabel="co2 (ppm)", interval=band)
    assert ax.get_xlabel() == "date" and ax.get_ylabel() == "co2 (ppm)"
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    history = next(line for line in ax.get_lines() if line.get_label() == "history")
    first = mdates.num2date(mdates.date2num(history.get_xdata()[0]))
    assert first.date() == date(1958, 3, 29) + timedelta(days=split - 2 * 17 * h)  # twice the 17 blocks drawn
    drawn = fc.MAX_FORECAST_STEPS // h
    assert sum(line.get_color() == "tab:red" for line in ax.get_lines()) == drawn  # whole blocks, not all 21
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == drawn
    assert "gru 80% interval" in [t.get_text() for t in ax.get_legend().get_texts()]

    ax = captured_plot(monkeypatch, y, split, blocks, preds, None, ylabel="value")
    assert ax.get_xlabel() == "time step" and not ax.collections
    history = next(line for line in ax.get_lines() if line.get_label() == "history")
    assert history.get_xdata()[0] == split - 2 * 17 * h and history.get_xdata().size <= 2 * fc.MAX_FORECAST_STEPS


def test_builtin_units_on_the_axis():
    from grukit.data import series as S

    if importlib.util.find_spec("statsmodels") is None:
        pytest.skip("statsmodels not installed (grukit[data])")
    assert S.builtin_series("co2").label == "co2 (ppm)"
    assert S.builtin_series("co2").dates.format == "%Y%m%d"

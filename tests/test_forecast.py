"""Forecast task: metrics and baselines on hand-computed examples, and the CLI end to end on small CSVs."""

from __future__ import annotations

import dataclasses

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

TINY = ["--epochs", "2", "--steps", "3", "--batch-size", "8", "--hidden-size", "8", "--lookback", "12", "--horizon", "4", "--no-progress"]


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
    state = ForecastState(lookback=4, horizon=3, season=4, mean=[0.0], std=[2.0], dstd=1.0, columns=["y"], date_column="",
                          calendar=False, points=len(y), split=[20, 30], mase_scale=1.0, base="seasonal")
    model = forecast.Forecaster(1, 4, 1, 3, 0.0)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    x = np.zeros((len(y), 1), dtype=np.float32)
    at = np.array([10, 20])
    np.testing.assert_allclose(forecast.forecast(model, x, y, at, state), fc.seasonal_naive(y, at, 3, 4))
    with torch.no_grad():
        model.head.bias.fill_(0.5)  # +0.5 std on every step
    np.testing.assert_allclose(forecast.forecast(model, x, y, at, dataclasses.replace(state, base="naive")), fc.naive(y, at, 3) + 1.0)


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
    assert r.exit_code == 1 and "15 points, too short to score this run's --lookback 12 + --horizon 4: need at least 16" in r.output
    r = run("eval", "--json", out, "--data", sine_csv(tmp_path / "one.csv", n=40))
    assert r.exit_code == 1 and "no column 'temp' (--column)" in r.output

    r = run("predict", out, "--data", csv)
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 5 and lines[1].startswith("2020-06-09\t")  # 160 days after 2020-01-01
    float(lines[-1].split("\t")[1])
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
    r = run("train", "forecast", "--out", tmp_path / "run", *[a.replace("{tmp}", str(tmp_path)) for a in args], "--horizon", "4", "--no-progress")
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

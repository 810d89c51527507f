"""Time-series forecasting: a GRU reads ``lookback`` steps and outputs the next ``horizon``.

Design (direct multi-horizon, residual over a baseline): the GRU runs over the
window; one linear head reads its last state, plus the base forecast, and
emits all h future values at once as corrections to that base forecast, in
units of the training std. The base is the naive or the seasonal-naive
forecast (--base; auto picks seasonal for a nearly periodic series, see
choose_base), so the model starts near a baseline and learns what it misses. Inputs
per step: every column z-scored, the target's first difference, and, when
the time stamps are dates, the day of the year as (sin, cos), which lets the
model learn a yearly cycle longer than its window.

Data: the target is the first --column; the series is cut in time order into
train / validation / test parts; the scaling is fitted on the train part
only. Every origin whose targets fall in a part is scored (rolling origin),
against the naive (last value), seasonal-naive (same point a season ago),
drift and mean (fpp3 5.2, on all history up to the origin) forecasts, with
MAE, RMSE, sMAPE and MASE (see grukit.evaluation.forecasting).

Prices (gafa_stock) are forecast as price levels over the naive base: the
GRU's output is the change from the last close, in units of the training
part's price std, so it predicts (dollar) returns, and a zero output is the
random walk. The test part is fpp3 5.8's: January 2016 from the last 2015 close.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..data.series import (
    BUILTIN,
    Series,
    builtin_series,
    day_of_year,
    infer_season,
    next_dates,
    parse_columns,
    read_csv_series,
)
from ..evaluation import forecasting as fc
from .base import Scored, Task, TaskConfig, option
from .forecast_model import (
    Forecaster,
    ForecastState,
    _Objective,
    check_length,
    choose_base,
    features,
    fit_scaling,
    forecast,
    split_points,
)
from .results import Table

LOSSES = ("mse", "mae", "huber")
BASES = ("auto", "naive", "seasonal")
BASELINES = ("naive", "seasonal_naive", "drift", "mean")  # scored beside the GRU (grukit.evaluation.forecasting)


def _defaults(field: str) -> str:
    return ", ".join(f"{name} {getattr(b, field)}" for name, b in BUILTIN.items())


@dataclass(frozen=True)
class ForecastConfig(TaskConfig):
    epochs: int = option(30, "epochs of --steps batches each")
    lr: float = option(3e-3, "Adam learning rate")
    patience: int = option(10, "early stop after this many epochs without a better validation MAE (0 = never)")
    data: str = option("", "CSV file with a header row (overrides --dataset)")
    dataset: str = option("sunspots", "built-in series, used when --data is not given", choices=tuple(BUILTIN))
    column: str = option(
        "",
        "column(s), comma-separated, the first is forecast (default: the data set's, or the CSV's first numeric column)",
    )
    date_format: str = option(
        "", "strptime format of the time stamps, e.g. %d/%m/%Y (default: detected; see grukit.data.dates)"
    )
    sep: str = option(
        "auto",
        "CSV field separator (auto: the one that splits the header line into the most fields)",
        choices=("auto", ",", ";", "tab"),
    )
    decimal: str = option(
        "auto",
        "decimal mark of the CSV's numbers (auto: a comma when the separator is not and cells look like 1,5)",
        choices=("auto", ".", ","),
    )
    date_column: str = option("", "column of time stamps (default: the CSV's first column if it is not numeric)")
    lookback: int = option(
        0, f"past steps the GRU reads (0 = auto: {_defaults('lookback')}; a CSV: 2 x max(season, horizon), at least 24)"
    )
    horizon: int = option(0, f"steps forecast at once (0 = auto: {_defaults('horizon')}; a CSV: 12)")
    season: int = option(
        0,
        f"season for seasonal-naive and MASE (0 = auto: {_defaults('season')}; a CSV: from the date step, hourly 24, daily 7, weekly 52, monthly 12, quarterly 4, else 1 = none)",
    )
    calendar: bool = option(True, "add day-of-year (sin, cos) inputs when the time stamps are dates")
    val_fraction: float = option(0.15, "share of the series, just before the test part, used for validation")
    test_fraction: float = option(0.15, "share at the end of the series used for testing")
    test_points: int = option(
        0, "points at the end used for testing (0 = auto: gafa_stock 19, fpp3's January 2016; else --test-fraction)"
    )
    hidden_size: int = option(64, "GRU hidden units")
    num_layers: int = option(1, "stacked GRU layers")
    dropout: float = option(0.0, "dropout between GRU layers and before the head")
    loss: str = option("huber", "training loss on the scaled corrections", choices=LOSSES)
    base: str = option(
        "auto",
        "forecast the GRU corrects: naive, seasonal (naive), or auto: seasonal when on the training part its MAE is under half the naive's",
        choices=BASES,
    )
    steps: int = option(50, "training batches per epoch (drawn at random from the training windows)")
    batch_size: int = option(64, "windows per batch")

    def validate(self) -> None:
        super().validate()
        for name in ("lookback", "horizon", "season", "test_points"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0 (0 = automatic), got {getattr(self, name)}")
        self.at_least(1, "hidden_size", "num_layers", "steps", "batch_size")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 0.5:
                raise ValueError(f"--{name.replace('_', '-')} must be in (0, 0.5), got {getattr(self, name)}")
        self.within(0, 1, "dropout", closed_low=True)


def load_series(cfg: ForecastConfig, data: str | None = None) -> Series:
    """The series a config names (or the file ``data`` read with the config's columns).
    Filled cells and missing dates are reported in one line on stderr."""
    columns = parse_columns(cfg.column)
    path = data or cfg.data
    s = (
        read_csv_series(path, columns, cfg.date_column, date_format=cfg.date_format, sep=cfg.sep, decimal=cfg.decimal)
        if path
        else builtin_series(cfg.dataset, columns)
    )
    if s.note:
        print(s.note, file=sys.stderr)
    return s


def resolve(cfg: ForecastConfig, s: Series) -> dict:
    """Lookback, horizon and season: the explicit flags, else the data set's or derived defaults."""
    b = BUILTIN.get(cfg.dataset) if not cfg.data else None
    season = cfg.season or (b.season if b else infer_season(s.dates))
    horizon = cfg.horizon or (b.horizon if b else 12)
    lookback = cfg.lookback or (
        b.lookback if b else max(24, 2 * max(season if season <= 100 else 1, horizon))
    )  # no year-long windows
    return {"lookback": lookback, "horizon": horizon, "season": season}


class ForecastTask(Task[ForecastConfig, ForecastState, Forecaster]):
    name = "forecast"
    summary = (
        "time-series forecasting: GRU vs naive, seasonal-naive, drift and mean (MAE, RMSE, sMAPE, MASE), forecast.png"
    )
    Config = ForecastConfig
    State = ForecastState
    datasets: ClassVar[dict[str, str]] = {name: b.description for name, b in BUILTIN.items()}
    monitor_label = "validation MAE (target's units)"

    def load_data(self, cfg: ForecastConfig) -> Series:
        return load_series(cfg)

    def prepare(self, cfg: ForecastConfig, s: Series, *, holdout: bool = True) -> tuple[ForecastState, dict]:
        r = resolve(cfg, s)
        n = len(s.values)
        b = BUILTIN.get(cfg.dataset) if not cfg.data else None
        n_train, n_val = split_points(
            n, cfg, holdout, cfg.test_points or (b.test_points if b else 0)
        )  # without holdout: n_val == n
        check_length(n, r["lookback"], r["horizon"], n_train, s.source)
        if not holdout and n_val - n_train < r["horizon"]:
            raise ValueError(
                f"{s.source}: the validation part ({n_val - n_train} points) must hold --horizon {r['horizon']} "
                "points; give a longer series or raise --val-fraction"
            )
        if holdout and min(n_val - n_train, n - n_val) < r["horizon"]:
            raise ValueError(
                f"{s.source}: the validation and test parts ({n_val - n_train} and {n - n_val} points) must each hold "
                f"--horizon {r['horizon']} points; give a longer series or raise --val-fraction/--test-fraction"
            )
        calendar = cfg.calendar and day_of_year(s.dates) is not None
        y = s.values[:, 0]
        base = cfg.base if cfg.base != "auto" else choose_base(y, r["lookback"], r["season"], r["horizon"], n_train)
        state = ForecastState(
            **r,
            **fit_scaling(s.values, n_train),
            columns=list(s.columns),
            date_column=s.date_column,
            calendar=calendar,
            points=n,
            split=[n_train, n_val],
            mase_scale=fc.mase_scale(y[:n_train], r["season"]),
            base=base,
            date_format=getattr(s.dates, "format", ""),
        )
        state = ForecastState.from_json(state.to_json(), "forecast")  # exactly as it reads back from config.json
        return state, {"series": s, "x": features(s, state)}

    def build(self, cfg: ForecastConfig, state: ForecastState) -> Forecaster:
        n_inputs = len(state.columns) + 1 + 2 * bool(state.calendar)
        return Forecaster(n_inputs, cfg.hidden_size, cfg.num_layers, state.horizon, cfg.dropout, cfg.recurrent_cell())

    def objective(self, cfg: ForecastConfig, state: ForecastState, data: dict) -> _Objective:
        return _Objective(cfg, data["x"], data["series"].values[:, 0], state)

    def calibrate(self, model: Forecaster, cfg: ForecastConfig, state: ForecastState, data: dict) -> ForecastState:
        """The prediction interval: quantiles of the trained GRU's errors on the validation part."""
        y = data["series"].values[:, 0]
        val_at = fc.origins(len(y), state.lookback, state.horizon, *state.split)
        interval = fc.residual_interval(
            forecast(model, data["x"], y, val_at, state), fc.targets(y, val_at, state.horizon)
        )
        return dataclasses.replace(state, interval=interval)

    def score(self, model: Forecaster, cfg: ForecastConfig, state: ForecastState, data: dict) -> Scored:
        return self._score(model, data["series"], state, plot=True)

    def _score(
        self, model: Forecaster, s: Series, state: ForecastState, *, whole: bool = False, plot: bool = False
    ) -> Scored:
        """Test metrics of the GRU and the baselines (``whole``: every origin of a new series)."""
        y, n, h = s.values[:, 0], len(s.values), state.horizon
        lo = 0 if whole else state.split[1]
        at = fc.origins(n, state.lookback, h, lo, n)
        if len(at) == 0:
            raise ValueError(
                f"{s.source}: {n} points leave no forecast to score with --lookback {state.lookback} + --horizon {h}"
            )
        scale = fc.mase_scale(y, state.season) if whole else state.mase_scale
        preds = {
            "gru": forecast(model, features(s, state), y, at, state),
            "naive": fc.naive(y, at, h),
            "seasonal_naive": fc.seasonal_naive(y, at, h, state.season),
            "drift": fc.drift(y, at, h),
            "mean": fc.historical_mean(y, at, h),
        }
        truth = fc.targets(y, at, h)
        metrics: dict = {name: fc.score(f, truth, scale) for name, f in preds.items()}
        metrics["gru_beats"] = {b: metrics["gru"]["mae"] < metrics[b]["mae"] for b in BASELINES}
        metrics["gru_mae_by_step"] = [round(float(v), 6) for v in np.abs(preds["gru"] - truth).mean(axis=0)]
        band = fc.interval_bounds(preds["gru"], state.interval) if state.interval else None  # older runs have none
        if band is not None and state.interval:  # (band is None without an interval)
            metrics["gru_interval"] = fc.interval_score(*band, truth, state.interval["level"])
        metrics.update(
            target=state.columns[0],
            lookback=state.lookback,
            horizon=h,
            season=state.season,
            base=state.base,
            test_origins=len(at),
            points=n,
        )
        plots = {}
        if plot:
            blocks = np.arange(len(at))[::h][: max(3, 240 // h)]  # about 240 test steps: readable
            plots["forecast.png"] = functools.partial(
                fc.plot_forecast,
                y=y,
                split=int(at[0]) + 1,
                blocks=at[blocks],
                forecasts={
                    k: v[blocks] for k, v in preds.items() if k != "mean"
                },  # a trend's mean lies far off the axis
                dates=s.dates,
                title=f"{s.source}: {state.columns[0]}, {h}-step forecasts on the test part",
                ylabel=s.label,
                interval=None if band is None else (band[0][blocks], band[1][blocks]),
            )
        return Scored(metrics, plots)

    def summarize(self, metrics: dict) -> Table:
        names = [k for k in ("gru", *BASELINES) if k in metrics]
        rows = tuple((m, *(metrics[k].get(m) for k in names)) for m in ("mae", "rmse", "smape", "mase"))
        notes = (f"trained in {metrics['train_seconds']} s",) if "train_seconds" in metrics else ()
        return Table(
            ("test", *("grukit" if k == "gru" else k for k in names)),
            rows,
            notes=notes,
            title=f"forecast {metrics['target']!r}, {metrics['horizon']} steps ahead from {metrics['test_origins']} test origins",
        )

    def _series(self, cfg: ForecastConfig, state: ForecastState, data: str | None) -> Series:
        cfg = dataclasses.replace(
            cfg,
            column=",".join(state.columns),
            date_column=state.date_column,
            date_format=state.date_format or cfg.date_format,
        )
        return load_series(cfg, data)

    def evaluate_file(self, cfg: ForecastConfig, state: ForecastState, model: Forecaster, data: str) -> dict:
        """Every origin of the file ``data`` (MASE scaled on that file)."""
        s = self._series(cfg, state, data)
        need = state.lookback + state.horizon
        if len(s.values) < need:
            raise ValueError(
                f"{s.source}: {len(s.values)} points, too short to score this run's --lookback {state.lookback} "
                f"+ --horizon {state.horizon}: need at least {need}"
            )
        return self._score(model, s, state, whole=True).metrics

    def predictions(
        self, cfg: ForecastConfig, state: ForecastState, model: Forecaster, args: tuple[str, ...], data: str | None
    ) -> Table:
        if args and data:
            raise ValueError("give either values or --data, not both")
        if args:
            if len(state.columns) > 1 or state.calendar:
                raise ValueError("this run reads several columns or dates: give the history as --data FILE.csv")
            try:
                v = np.array([float(a) for a in args])[:, None]
            except ValueError:
                raise ValueError(f"predict values must be numbers, got {' '.join(args)!r}") from None
            s = Series(v, tuple(state.columns), None, "the values given")
        else:
            s = self._series(cfg, state, data)
        L, h = state.lookback, state.horizon
        need = max(L, state.season if state.base == "seasonal" else 1)
        if len(s.values) < need:
            raise ValueError(
                f"{s.source}: {len(s.values)} points given, the model needs the last {need} "
                f"(--lookback {L}{', and a whole --season for its seasonal base' if need > L else ''})"
            )
        at = np.array([len(s.values) - 1])
        f = forecast(model, features(s, state), s.values[:, 0], at, state)[0]
        stamps = next_dates(s.dates, h) or [f"t+{i}" for i in range(1, h + 1)]
        after = s.dates[-1] if s.dates else f"{len(s.values)} points"
        title = f"{s.source}: next {h} values of {state.columns[0]!r} after {after}"
        if not state.interval:  # a run from before intervals
            return Table(
                (s.date_column or "step", state.columns[0]),
                tuple((t, float(v)) for t, v in zip(stamps, f)),
                title=title,
            )
        lo, hi = fc.interval_bounds(f[None, :], state.interval)
        level = f"{round(100 * state.interval['level'])}%"
        return Table(
            (s.date_column or "step", state.columns[0], f"lower_{level}", f"upper_{level}"),
            tuple((t, float(v), float(a), float(b)) for t, v, a, b in zip(stamps, f, lo[0], hi[0])),
            title=f"{title} (with the {level} interval)",
        )

    def export_example(self, cfg: ForecastConfig, state: ForecastState) -> tuple[tuple, list[str], dict]:
        n_inputs = len(state.columns) + 1 + 2 * bool(state.calendar)
        window, base = torch.randn(2, state.lookback, n_inputs), torch.randn(2, state.horizon)
        return (window, base), ["window", "base"], {"window": {0: "batch"}, "base": {0: "batch"}}

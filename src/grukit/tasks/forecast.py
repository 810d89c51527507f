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
against the naive (last value) and seasonal-naive (same point a season ago)
forecasts, with MAE, RMSE, sMAPE and MASE (see grukit.evaluation.forecasting).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..data.series import BUILTIN, Series, builtin_series, day_of_year, infer_season, next_dates, parse_columns, read_csv_series
from ..evaluation import forecasting as fc
from ..training import fit, write_json
from .base import Task, TaskConfig, load_run, load_weights, option, save_run, torch_threads, with_dtype
from .cells import Cell

LOSSES = ("mse", "mae", "huber")
BASES = ("auto", "naive", "seasonal")


def _defaults(field: str) -> str:
    return ", ".join(f"{name} {getattr(b, field)}" for name, b in BUILTIN.items())


@dataclass(frozen=True)
class ForecastConfig(TaskConfig):
    epochs: int = option(30, "epochs of --steps batches each")
    lr: float = option(3e-3, "Adam learning rate")
    patience: int = option(10, "early stop after this many epochs without a better validation MAE (0 = never)")
    data: str = option("", "CSV file with a header row (overrides --dataset)")
    dataset: str = option("sunspots", "built-in series, used when --data is not given", choices=tuple(BUILTIN))
    column: str = option("", "column(s), comma-separated, the first is forecast (default: the data set's, or the CSV's first numeric column)")
    date_column: str = option("", "column of time stamps (default: the CSV's first column if it is not numeric)")
    lookback: int = option(0, f"past steps the GRU reads (0 = auto: {_defaults('lookback')}; a CSV: 2 x max(season, horizon), at least 24)")
    horizon: int = option(0, f"steps forecast at once (0 = auto: {_defaults('horizon')}; a CSV: 12)")
    season: int = option(0, f"season for seasonal-naive and MASE (0 = auto: {_defaults('season')}; a CSV: from the date step, hourly 24, daily 7, weekly 52, monthly 12, quarterly 4, else 1 = none)")
    calendar: bool = option(True, "add day-of-year (sin, cos) inputs when the time stamps are dates")
    val_fraction: float = option(0.15, "share of the series, just before the test part, used for validation")
    test_fraction: float = option(0.15, "share at the end of the series used for testing")
    hidden_size: int = option(64, "GRU hidden units")
    num_layers: int = option(1, "stacked GRU layers")
    dropout: float = option(0.0, "dropout between GRU layers and before the head")
    loss: str = option("huber", "training loss on the scaled corrections", choices=LOSSES)
    base: str = option("auto", "forecast the GRU corrects: naive, seasonal (naive), or auto: seasonal when on the training part its MAE is under half the naive's", choices=BASES)
    steps: int = option(50, "training batches per epoch (drawn at random from the training windows)")
    batch_size: int = option(64, "windows per batch")

    def validate(self) -> None:
        super().validate()
        for name in ("lookback", "horizon", "season"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0 (0 = automatic), got {getattr(self, name)}")
        self.at_least(1, "hidden_size", "num_layers", "steps", "batch_size")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 0.5:
                raise ValueError(f"--{name.replace('_', '-')} must be in (0, 0.5), got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")


class Forecaster(nn.Module):
    """Recurrent layer over the window + a linear head: (last state, base forecast) -> all horizon steps."""

    def __init__(self, n_inputs: int, hidden_size: int, num_layers: int, horizon: int, dropout: float, cell: Cell = Cell()) -> None:
        super().__init__()
        self.gru = cell.layer(n_inputs, hidden_size, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size + horizon, horizon)

    def forward(self, x: Tensor, base: Tensor) -> Tensor:  # (B, L, C'), (B, h) -> (B, h) scaled corrections
        out, _ = self.gru(x)  # (B, L, H)
        return self.head(torch.cat([self.drop(out[:, -1]), base], dim=1))  # (B, h)


# ---- data -------------------------------------------------------------------

def load_series(cfg: ForecastConfig, data: str | None = None) -> Series:
    """The series a config names (or the file ``data`` read with the config's columns)."""
    columns = parse_columns(cfg.column)
    path = data or cfg.data
    if path:
        return read_csv_series(path, columns, cfg.date_column)
    return builtin_series(cfg.dataset, columns)


def resolve(cfg: ForecastConfig, s: Series) -> dict:
    """Lookback, horizon and season: the explicit flags, else the data set's or derived defaults."""
    b = BUILTIN.get(cfg.dataset) if not cfg.data else None
    season = cfg.season or (b.season if b else infer_season(s.dates))
    horizon = cfg.horizon or (b.horizon if b else 12)
    lookback = cfg.lookback or (b.lookback if b else max(24, 2 * max(season if season <= 100 else 1, horizon)))  # no year-long windows
    return {"lookback": lookback, "horizon": horizon, "season": season}


def split_points(n: int, cfg: ForecastConfig) -> tuple[int, int]:
    """Ends of the train and validation parts (the test part runs to n)."""
    n_test = max(1, round(n * cfg.test_fraction))
    n_val = max(1, round(n * cfg.val_fraction))
    return n - n_test - n_val, n - n_test


def check_length(n: int, lookback: int, horizon: int, n_train: int, source: str) -> None:
    need = lookback + horizon
    if n_train < need:
        total = int(np.ceil(need * n / max(n_train, 1)))
        raise ValueError(f"{source}: the series has {n} points, too short for --lookback {lookback} + --horizon {horizon} "
                         f"(its training part has {n_train} points, needs at least {need}; about {total} points in all, "
                         f"or lower --lookback/--horizon)")


def fit_scaling(values: np.ndarray, n_train: int) -> dict:
    """Mean and std of every column and of the target's differences, on the training part only."""
    part = values[:n_train]
    std = part.std(axis=0)
    dstd = np.diff(part[:, 0]).std() if n_train > 1 else 0.0
    return {"mean": part.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist(), "dstd": float(dstd) if dstd > 0 else 1.0}


def features(s: Series, state: dict) -> np.ndarray:
    """(N, C') float32 inputs: z-scores, the target's scaled difference, optional (sin, cos) of the day of year."""
    v = s.values
    z = (v - np.array(state["mean"])) / np.array(state["std"])  # (N, C)
    d = np.diff(v[:, 0], prepend=v[0, 0]) / state["dstd"]  # (N,)
    cols = [z, d[:, None]]
    if state["calendar"]:
        doy = day_of_year(s.dates)
        if doy is None:
            raise ValueError(f"{s.source}: this run uses calendar inputs, so it needs the time stamps in column {state['date_column']!r}")
        cols += [np.sin(2 * np.pi * doy)[:, None], np.cos(2 * np.pi * doy)[:, None]]
    return np.concatenate(cols, axis=1).astype(np.float32)


def windows(x: np.ndarray, at: np.ndarray, lookback: int) -> Tensor:
    """(K, lookback, C') the inputs that end at each origin."""
    return torch.from_numpy(x[at[:, None] + np.arange(-lookback + 1, 1)])


def base_forecast(y: np.ndarray, at: np.ndarray, state: dict) -> np.ndarray:
    """(K, h) the forecast the model corrects: naive or seasonal naive."""
    if state["base"] == "seasonal":
        return fc.seasonal_naive(y, at, state["horizon"], state["season"])
    return fc.naive(y, at, state["horizon"])


def choose_base(y: np.ndarray, state: dict, ratio: float = 0.5) -> str:
    """'seasonal' for a nearly periodic series, else 'naive'.

    Nearly periodic: on the training part the seasonal naive's h-step MAE is
    under ``ratio`` times the naive's. Below that the GRU does better
    correcting the naive forecast (on sunspots, whose cycle drifts between 9
    and 14 years, and on co2 the naive base gave the lower validation MAE;
    on hourly temperatures, ratio 0.03, only the seasonal base beat the
    seasonal naive).
    """
    at = fc.origins(len(y), max(state["lookback"], state["season"]), state["horizon"], 0, state["split"][0])
    if state["season"] <= 1 or len(at) == 0:
        return "naive"
    truth = fc.targets(y, at, state["horizon"])
    seasonal = fc.mae(fc.seasonal_naive(y, at, state["horizon"], state["season"]), truth)
    return "seasonal" if seasonal < ratio * fc.mae(fc.naive(y, at, state["horizon"]), truth) else "naive"


def _inputs(x: np.ndarray, y: np.ndarray, at: np.ndarray, state: dict) -> tuple[Tensor, Tensor, np.ndarray]:
    """Model inputs at the origins: windows (K, L, C'), the base as a scaled change from the last value (K, h); the base (K, h)."""
    base = base_forecast(y, at, state)
    rel = torch.from_numpy(((base - y[at][:, None]) / state["std"][0]).astype(np.float32))
    return windows(x, at, state["lookback"]), rel, base


@torch.no_grad()
def forecast(model: Forecaster, x: np.ndarray, y: np.ndarray, at: np.ndarray, state: dict, batch: int = 512) -> np.ndarray:
    """(K, h) forecasts in the target's units at the origins ``at``."""
    model.eval()
    outs = []
    for i in range(0, len(at), batch):
        win, rel, base = _inputs(x, y, at[i:i + batch], state)
        outs.append(base + state["std"][0] * model(win, rel).double().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, state["horizon"]))


class _Objective:
    monitor, mode = "val_mae", "min"

    def __init__(self, cfg: ForecastConfig, x: np.ndarray, y: np.ndarray, state: dict) -> None:
        self.cfg, self.x, self.y, self.state = cfg, x, y, state
        n_train, n_val = state["split"]
        L, h = state["lookback"], state["horizon"]
        self.train_at = fc.origins(len(y), L, h, 0, n_train)
        self.val_at = fc.origins(len(y), L, h, n_train, n_val)
        self.loss_fn = {"mse": nn.MSELoss(), "mae": nn.L1Loss(), "huber": nn.HuberLoss(delta=1.0)}[cfg.loss]

    def batches(self, epoch: int, gen: torch.Generator):
        picks = torch.randint(0, len(self.train_at), (self.cfg.steps, self.cfg.batch_size), generator=gen).numpy()
        return [self.train_at[p] for p in picks]

    def loss(self, model: Forecaster, at: np.ndarray) -> Tensor:
        win, rel, base = _inputs(self.x, self.y, at, self.state)
        target = (fc.targets(self.y, at, self.state["horizon"]) - base) / self.state["std"][0]  # (B, h) scaled corrections
        return self.loss_fn(model(win, rel), torch.from_numpy(target.astype(np.float32)))

    def validate(self, model: Forecaster) -> dict[str, float]:
        f = forecast(model, self.x, self.y, self.val_at, self.state)
        truth = fc.targets(self.y, self.val_at, self.state["horizon"])
        err = torch.from_numpy(((f - truth) / self.state["std"][0]).astype(np.float32))
        return {"val_loss": self.loss_fn(err, torch.zeros_like(err)).item(), "val_mae": fc.mae(f, truth)}


class ForecastTask(Task):
    name = "forecast"
    summary = "time-series forecasting: GRU vs naive and seasonal-naive (MAE, RMSE, sMAPE, MASE), forecast.png"
    Config = ForecastConfig
    datasets = {name: b.description for name, b in BUILTIN.items()}

    def train(self, cfg: TaskConfig, out: Path, *, resume: bool = False) -> dict:
        cfg.validate()
        with torch_threads(cfg.threads):
            return self._train(cfg, out, resume=resume)

    def _train(self, cfg: ForecastConfig, out: Path, *, resume: bool = False) -> dict:
        s = load_series(cfg)
        state = self._state(cfg, s)
        torch.manual_seed(cfg.seed)
        x = features(s, state)
        model = with_dtype(Forecaster(x.shape[1], cfg.hidden_size, cfg.num_layers, state["horizon"], cfg.dropout, cfg.recurrent_cell()), cfg)
        save_run(out, self, cfg, state)
        start = time.perf_counter()
        fit(model, _Objective(cfg, x, s.values[:, 0], state), cfg.loop(), out, resume=resume)
        metrics = self._score(model, s, state, plot=out / "forecast.png")
        metrics["train_seconds"] = round(time.perf_counter() - start, 2)
        write_json(out / "metrics.json", metrics)
        return metrics

    def _state(self, cfg: ForecastConfig, s: Series) -> dict:
        r = resolve(cfg, s)
        n = len(s.values)
        n_train, n_val = split_points(n, cfg)
        check_length(n, r["lookback"], r["horizon"], n_train, s.source)
        if min(n_val - n_train, n - n_val) < r["horizon"]:
            raise ValueError(f"{s.source}: the validation and test parts ({n_val - n_train} and {n - n_val} points) must each hold "
                             f"--horizon {r['horizon']} points; give a longer series or raise --val-fraction/--test-fraction")
        calendar = cfg.calendar and day_of_year(s.dates) is not None
        state = {**r, **fit_scaling(s.values, n_train), "columns": list(s.columns), "date_column": s.date_column,
                 "calendar": calendar, "points": n, "split": [n_train, n_val],
                 "mase_scale": fc.mase_scale(s.values[:n_train, 0], r["season"])}
        state["base"] = choose_base(s.values[:, 0], state) if cfg.base == "auto" else cfg.base
        return state

    def _score(self, model: Forecaster, s: Series, state: dict, *, whole: bool = False, plot: Path | None = None) -> dict:
        """Test metrics of the GRU and the baselines (``whole``: every origin of a new series)."""
        y, n, h = s.values[:, 0], len(s.values), state["horizon"]
        lo = 0 if whole else state["split"][1]
        at = fc.origins(n, state["lookback"], h, lo, n)
        if len(at) == 0:
            raise ValueError(f"{s.source}: {n} points leave no forecast to score with --lookback {state['lookback']} + --horizon {h}")
        scale = fc.mase_scale(y, state["season"]) if whole else state["mase_scale"]
        preds = {"gru": forecast(model, features(s, state), y, at, state), "naive": fc.naive(y, at, h),
                 "seasonal_naive": fc.seasonal_naive(y, at, h, state["season"])}
        truth = fc.targets(y, at, h)
        metrics: dict = {name: fc.score(f, truth, scale) for name, f in preds.items()}
        metrics["gru_beats"] = {b: metrics["gru"]["mae"] < metrics[b]["mae"] for b in ("naive", "seasonal_naive")}
        metrics["gru_mae_by_step"] = [round(float(v), 6) for v in np.abs(preds["gru"] - truth).mean(axis=0)]
        metrics.update(target=state["columns"][0], lookback=state["lookback"], horizon=h, season=state["season"],
                       base=state["base"], test_origins=len(at), points=n)
        if plot is not None:
            blocks = np.arange(len(at))[::h][: max(3, 240 // h)]  # about 240 test steps: readable
            fc.plot_forecast(plot, y, int(at[0]) + 1, at[blocks], {k: v[blocks] for k, v in preds.items()}, s.dates,
                             title=f"{s.source}: {state['columns'][0]}, {h}-step forecasts on the test part")
        return metrics

    def _model(self, run: Path) -> tuple[ForecastConfig, dict, Forecaster]:
        cfg, state = load_run(run, self)
        n_inputs = len(state["columns"]) + 1 + 2 * bool(state["calendar"])
        model = with_dtype(Forecaster(n_inputs, cfg.hidden_size, cfg.num_layers, state["horizon"], cfg.dropout, cfg.recurrent_cell()), cfg)
        return cfg, state, load_weights(run, model)

    def _series(self, cfg: ForecastConfig, state: dict, data: str | None) -> Series:
        cfg = dataclasses.replace(cfg, column=",".join(state["columns"]), date_column=state["date_column"])
        return load_series(cfg, data)

    def evaluate(self, run: Path, data: str | None = None) -> dict:
        with torch_threads(load_run(run, self)[0].threads):
            return self._evaluate(run, data)

    def _evaluate(self, run: Path, data: str | None = None) -> dict:
        """The run's test metrics; with ``data``, over every origin of that file (MASE scaled on that file)."""
        cfg, state, model = self._model(run)
        s = self._series(cfg, state, data)
        need = state["lookback"] + state["horizon"]
        if data is not None and len(s.values) < need:
            raise ValueError(f"{s.source}: {len(s.values)} points, too short to score this run's --lookback {state['lookback']} "
                             f"+ --horizon {state['horizon']}: need at least {need}")
        return self._score(model, s, state, whole=data is not None)

    def predict(self, run: Path, args: tuple[str, ...], data: str | None = None) -> None:
        cfg, state, model = self._model(run)
        if args and data:
            raise ValueError("give either values or --data, not both")
        if args:
            if len(state["columns"]) > 1 or state["calendar"]:
                raise ValueError("this run reads several columns or dates: give the history as --data FILE.csv")
            try:
                v = np.array([float(a) for a in args])[:, None]
            except ValueError:
                raise ValueError(f"predict values must be numbers, got {' '.join(args)!r}") from None
            s = Series(v, tuple(state["columns"]), None, "the values given")
        else:
            s = self._series(cfg, state, data)
        L, h = state["lookback"], state["horizon"]
        need = max(L, state["season"] if state["base"] == "seasonal" else 1)
        if len(s.values) < need:
            raise ValueError(f"{s.source}: {len(s.values)} points given, the model needs the last {need} "
                             f"(--lookback {L}{', and a whole --season for its seasonal base' if need > L else ''})")
        at = np.array([len(s.values) - 1])
        f = forecast(model, features(s, state), s.values[:, 0], at, state)[0]
        stamps = next_dates(s.dates, h) or [f"t+{i}" for i in range(1, h + 1)]
        print(f"{s.source}: next {h} values of {state['columns'][0]!r} after {s.dates[-1] if s.dates else f'{len(s.values)} points'}")
        for stamp, value in zip(stamps, f):
            print(f"{stamp}\t{value:.6g}")

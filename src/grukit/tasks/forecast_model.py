"""The forecast task's model, inputs and objective (see grukit.tasks.forecast for the design)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..data.series import Series, day_of_year
from ..evaluation import forecasting as fc
from .base import TaskState
from .cells import Cell


@dataclass(frozen=True)
class ForecastState(TaskState):
    lookback: int  # past steps the GRU reads
    horizon: int  # steps forecast at once
    season: int  # for the seasonal naive and MASE
    mean: list  # per column, training part
    std: list
    dstd: float  # std of the target's first differences, training part
    columns: list  # the columns read, the target first
    date_column: str
    calendar: bool  # day-of-year inputs
    points: int  # length of the training series
    split: list  # ends of the train and validation parts
    mase_scale: float  # MASE's denominator on the training part
    base: str  # naive | seasonal: the forecast the GRU corrects
    date_format: str = ""  # the time stamps' format, detected or --date-format ("" when they are not dates)
    interval: dict | None = (
        None  # {level, lower, upper, origins}: offsets of the prediction interval, set after training
    )

    after_fit: ClassVar[tuple[str, ...]] = ("interval",)


class Forecaster(nn.Module):
    """Recurrent layer over the window + a linear head: (last state, base forecast) -> all horizon steps."""

    def __init__(
        self, n_inputs: int, hidden_size: int, num_layers: int, horizon: int, dropout: float, cell: Cell = Cell()
    ) -> None:
        super().__init__()
        self.gru = cell.layer(n_inputs, hidden_size, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size + horizon, horizon)

    def forward(self, x: Tensor, base: Tensor) -> Tensor:  # (B, L, C'), (B, h) -> (B, h) scaled corrections
        out, _ = self.gru(x)  # (B, L, H)
        return self.head(torch.cat([self.drop(out[:, -1]), base], dim=1))  # (B, h)


def split_points(n: int, cfg, holdout: bool = True, test_points: int = 0) -> tuple[int, int]:
    """Ends of the train and validation parts (the test part runs to n: ``test_points``, else a
    fraction; without ``holdout`` there is none and the validation part ends the series)."""
    n_test = (test_points or max(1, round(n * cfg.test_fraction))) if holdout else 0
    n_val = max(1, round(n * cfg.val_fraction))
    return n - n_test - n_val, n - n_test


def check_length(n: int, lookback: int, horizon: int, n_train: int, source: str) -> None:
    need = lookback + horizon
    if n_train < need:
        total = int(np.ceil(need * n / max(n_train, 1)))
        raise ValueError(
            f"{source}: the series has {n} points, too short for --lookback {lookback} + --horizon {horizon} "
            f"(its training part has {n_train} points, needs at least {need}; about {total} points in all, "
            f"or lower --lookback/--horizon)"
        )


def fit_scaling(values: np.ndarray, n_train: int) -> dict:
    """Mean and std of every column and of the target's differences, on the training part only."""
    part = values[:n_train]
    std = part.std(axis=0)
    dstd = np.diff(part[:, 0]).std() if n_train > 1 else 0.0
    return {
        "mean": part.mean(axis=0).tolist(),
        "std": np.where(std > 0, std, 1.0).tolist(),
        "dstd": float(dstd) if dstd > 0 else 1.0,
    }


def features(s: Series, state: ForecastState) -> np.ndarray:
    """(N, C') float32 inputs: z-scores, the target's scaled difference, optional (sin, cos) of the day of year."""
    v = s.values
    z = (v - np.array(state.mean)) / np.array(state.std)  # (N, C)
    d = np.diff(v[:, 0], prepend=v[0, 0]) / state.dstd  # (N,)
    cols = [z, d[:, None]]
    if state.calendar:
        doy = day_of_year(s.dates)
        if doy is None:
            raise ValueError(
                f"{s.source}: this run uses calendar inputs, so it needs the time stamps in column {state.date_column!r}"
            )
        cols += [np.sin(2 * np.pi * doy)[:, None], np.cos(2 * np.pi * doy)[:, None]]
    return np.concatenate(cols, axis=1).astype(np.float32)


def windows(x: np.ndarray, at: np.ndarray, lookback: int) -> Tensor:
    """(K, lookback, C') the inputs that end at each origin."""
    return torch.from_numpy(x[at[:, None] + np.arange(-lookback + 1, 1)])


def base_forecast(y: np.ndarray, at: np.ndarray, state: ForecastState) -> np.ndarray:
    """(K, h) the forecast the model corrects: naive or seasonal naive."""
    if state.base == "seasonal":
        return fc.seasonal_naive(y, at, state.horizon, state.season)
    return fc.naive(y, at, state.horizon)


def choose_base(y: np.ndarray, lookback: int, season: int, horizon: int, n_train: int, ratio: float = 0.5) -> str:
    """'seasonal' for a nearly periodic series, else 'naive'.

    Nearly periodic: on the training part the seasonal naive's h-step MAE is
    under ``ratio`` times the naive's. Below that the GRU does better
    correcting the naive forecast (on sunspots, whose cycle drifts between 9
    and 14 years, and on co2 the naive base gave the lower validation MAE;
    on hourly temperatures, ratio 0.03, only the seasonal base beat the
    seasonal naive).
    """
    at = fc.origins(len(y), max(lookback, season), horizon, 0, n_train)
    if season <= 1 or len(at) == 0:
        return "naive"
    truth = fc.targets(y, at, horizon)
    seasonal = fc.mae(fc.seasonal_naive(y, at, horizon, season), truth)
    return "seasonal" if seasonal < ratio * fc.mae(fc.naive(y, at, horizon), truth) else "naive"


def _inputs(x: np.ndarray, y: np.ndarray, at: np.ndarray, state: ForecastState) -> tuple[Tensor, Tensor, np.ndarray]:
    """Model inputs at the origins: windows (K, L, C'), the base as a scaled change from the last value (K, h); the base (K, h)."""
    base = base_forecast(y, at, state)
    rel = torch.from_numpy(((base - y[at][:, None]) / state.std[0]).astype(np.float32))
    return windows(x, at, state.lookback), rel, base


@torch.no_grad()
def forecast(
    model: Forecaster, x: np.ndarray, y: np.ndarray, at: np.ndarray, state: ForecastState, batch: int = 512
) -> np.ndarray:
    """(K, h) forecasts in the target's units at the origins ``at``."""
    model.eval()
    outs = []
    for i in range(0, len(at), batch):
        win, rel, base = _inputs(x, y, at[i : i + batch], state)
        outs.append(base + state.std[0] * model(win, rel).double().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, state.horizon))


class _Objective:
    monitor, mode = "val_mae", "min"

    def __init__(self, cfg, x: np.ndarray, y: np.ndarray, state: ForecastState) -> None:
        self.cfg, self.x, self.y, self.state = cfg, x, y, state
        n_train, n_val = state.split
        L, h = state.lookback, state.horizon
        self.train_at = fc.origins(len(y), L, h, 0, n_train)
        self.val_at = fc.origins(len(y), L, h, n_train, n_val)
        self.loss_fn = {"mse": nn.MSELoss(), "mae": nn.L1Loss(), "huber": nn.HuberLoss(delta=1.0)}[cfg.loss]

    def batches(self, epoch: int, gen: torch.Generator):
        picks = torch.randint(0, len(self.train_at), (self.cfg.steps, self.cfg.batch_size), generator=gen).numpy()
        return [self.train_at[p] for p in picks]

    def loss(self, model: Forecaster, at: np.ndarray) -> Tensor:
        win, rel, base = _inputs(self.x, self.y, at, self.state)
        target = (fc.targets(self.y, at, self.state.horizon) - base) / self.state.std[0]  # (B, h) scaled corrections
        return self.loss_fn(model(win, rel), torch.from_numpy(target.astype(np.float32)))

    def validate(self, model: Forecaster) -> dict[str, float]:
        f = forecast(model, self.x, self.y, self.val_at, self.state)
        truth = fc.targets(self.y, self.val_at, self.state.horizon)
        err = torch.from_numpy(((f - truth) / self.state.std[0]).astype(np.float32))
        return {"val_loss": self.loss_fn(err, torch.zeros_like(err)).item(), "val_mae": fc.mae(f, truth)}

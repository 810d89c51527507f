"""Forecast accuracy: rolling-origin windows, the naive baselines, four metrics, a plot.

Every forecast is made at an origin t (the last observed index) for the
``horizon`` steps t+1 .. t+h. A split of the series is scored at every origin
whose h targets all lie in that split (the inputs may reach back before it).

Metrics, over all origins and steps (Hyndman & Koehler 2006, "Another look
at measures of forecast accuracy"):
    MAE   = mean |y - f|
    RMSE  = sqrt(mean (y - f)^2)
    sMAPE = 100 * mean 2|y - f| / (|y| + |f|)     (a 0/0 term counts as 0)
    MASE  = MAE / mean_{i>=m} |y_i - y_{i-m}|      (in-sample: the training part,
            m = the season, so MASE < 1 beats the one-step seasonal naive there)

Prediction interval of the GRU (residual_interval): per horizon step, the
empirical quantiles of its validation errors added to its forecast; scored by
its coverage on the test part (interval_score).
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib.dates as mdates
import numpy as np

from ..data.dates import to_datetimes
from ..figures import new_figure, save_figure


def origins(n: int, lookback: int, horizon: int, lo: int, hi: int) -> np.ndarray:
    """Origins t with targets t+1..t+horizon inside [lo, hi) and lookback points up to t."""
    first = max(lo - 1, lookback - 1)
    last = min(hi, n) - horizon - 1
    return np.arange(first, last + 1) if last >= first else np.arange(0)


def targets(y: np.ndarray, at: np.ndarray, horizon: int) -> np.ndarray:
    """(K, h) the true values after each origin."""
    return y[at[:, None] + np.arange(1, horizon + 1)]


def naive(y: np.ndarray, at: np.ndarray, horizon: int) -> np.ndarray:
    """(K, h) the last observed value, repeated."""
    return np.repeat(y[at][:, None], horizon, axis=1)


def seasonal_naive(y: np.ndarray, at: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """(K, h) the value one season (or k seasons) before each target: y[t+j - m*ceil(j/m)].

    Where the series does not reach back a whole season the naive value is used.
    """
    if season <= 1:
        return naive(y, at, horizon)
    j = np.arange(1, horizon + 1)
    idx = at[:, None] + j - season * np.ceil(j / season).astype(int)  # (K, h)
    return np.where(idx >= 0, y[np.maximum(idx, 0)], y[at][:, None])


def drift(y: np.ndarray, at: np.ndarray, horizon: int) -> np.ndarray:
    """(K, h) the line through the first point and the origin, extended: y_t + j (y_t - y_0) / t
    (fpp3 section 5.2's drift method on all history up to t; naive at t = 0)."""
    slope = (y[at] - y[0]) / np.maximum(at, 1)  # (K,)
    return y[at][:, None] + slope[:, None] * np.arange(1, horizon + 1)


def historical_mean(y: np.ndarray, at: np.ndarray, horizon: int) -> np.ndarray:
    """(K, h) the mean of all history up to each origin, repeated (fpp3 section 5.2's mean method)."""
    means = np.cumsum(y)[at] / (at + 1)  # (K,)
    return np.repeat(means[:, None], horizon, axis=1)


def mase_scale(y_train: np.ndarray, season: int) -> float:
    """In-sample MAE of the one-step seasonal naive (naive when the part is too short)."""
    m = season if season >= 1 and len(y_train) > season else 1
    if len(y_train) <= m:
        return float("nan")
    return float(np.mean(np.abs(y_train[m:] - y_train[:-m])))


def mae(f: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(y - f)))


def rmse(f: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - f) ** 2)))


def smape(f: np.ndarray, y: np.ndarray) -> float:
    denom = np.abs(y) + np.abs(f)
    terms = np.where(denom > 0, 2 * np.abs(y - f) / np.where(denom > 0, denom, 1), 0.0)
    return float(100 * np.mean(terms))


def mase(f: np.ndarray, y: np.ndarray, scale: float) -> float | None:
    """MAE / scale; None when the scale is 0 or undefined (a constant training part)."""
    if not scale > 0 or math.isnan(scale):
        return None
    return mae(f, y) / scale


def score(f: np.ndarray, y: np.ndarray, scale: float) -> dict[str, float | None]:
    """All four metrics, rounded for reading."""
    m = mase(f, y, scale)
    return {
        "mae": round(mae(f, y), 6),
        "rmse": round(rmse(f, y), 6),
        "smape": round(smape(f, y), 4),
        "mase": None if m is None else round(m, 6),
    }


def residual_interval(forecasts: np.ndarray, truth: np.ndarray, level: float = 0.8) -> dict:
    """An interval for each horizon step from the quantiles of the validation residuals.

    Method: r = y - f for every validation origin of the trained model, (K, h).
    For step j the interval of a new forecast f_j is
        [f_j + Q_j(a), f_j + Q_j(1 - a)],   a = (1 - level) / 2,
    Q_j the empirical quantile of column j of r (numpy's linear rule). It is
    split-conformal in spirit: it covers ``level`` of the test values when the
    test errors behave like the validation errors (no drift between the
    parts). The weights were chosen on the validation MAE, which makes those
    residuals a little optimistic, and with a few dozen origins the quantiles
    scatter: expect the test coverage within several points of ``level``.
    Returned (JSON, for the run's state): level, lower and upper offsets (h each), origins K.
    """
    if not 0 < level < 1:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    r = truth - forecasts  # (K, h)
    a = (1 - level) / 2
    return {
        "level": level,
        "lower": np.quantile(r, a, axis=0).round(6).tolist(),
        "upper": np.quantile(r, 1 - a, axis=0).round(6).tolist(),
        "origins": len(r),
    }


def interval_bounds(forecasts: np.ndarray, interval: dict) -> tuple[np.ndarray, np.ndarray]:
    """(K, h) lower and upper bounds around the forecasts."""
    return forecasts + np.array(interval["lower"]), forecasts + np.array(interval["upper"])


def interval_score(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray, level: float) -> dict:
    """Empirical coverage (share of true values inside [lower, upper]), overall and per step, and the mean width."""
    inside = (truth >= lower) & (truth <= upper)  # (K, h)
    return {
        "level": level,
        "coverage": round(float(inside.mean()), 4),
        "coverage_by_step": [round(float(v), 4) for v in inside.mean(axis=0)],
        "mean_width": round(float(np.mean(upper - lower)), 6),
    }


MAX_FORECAST_STEPS = 120  # forecast steps drawn (whole blocks); the history before them is at most twice that


def plot_forecast(
    path,
    y: np.ndarray,
    split: int,
    blocks: np.ndarray,
    forecasts: dict[str, np.ndarray],
    dates: tuple[str, ...] | None = None,
    title: str = "forecast",
    *,
    ylabel: str = "value",
    interval: tuple[np.ndarray, np.ndarray] | None = None,
    level: float = 0.8,
) -> None:
    """History before ``split``, the truth after it, each method's forecasts and the GRU's interval.

    ``blocks``: non-overlapping origins; ``forecasts[name]`` and ``interval`` (lower, upper,
    of a ``level`` interval): (len(blocks), h) values. Readable on long daily series: only the first blocks
    that fit in MAX_FORECAST_STEPS are drawn (at least one), after at most twice as
    many steps of history. The x axis is dates (matplotlib.dates) when the time
    stamps read as dates, else the time step; the y axis is ``ylabel``.
    """
    h = next(iter(forecasts.values())).shape[1]
    keep = max(1, min(len(blocks), MAX_FORECAST_STEPS // h))
    blocks = blocks[:keep]
    end = min(len(y), int(blocks[-1]) + h + 1)
    start = max(0, split - 2 * max(1, end - split))
    times = to_datetimes(dates)
    x = np.arange(len(y), dtype=float) if times is None else np.array(times[: len(y)], dtype="datetime64[s]")
    fig, ax = new_figure((9.0, 4.2))
    ax.plot(x[start:split], y[start:split], color="0.35", lw=1.2, label="history")
    ax.plot(x[split - 1 : end], y[split - 1 : end], color="black", lw=1.4, label="truth")
    styles: dict[str, dict[str, Any]] = {
        "gru": dict(color="tab:red", lw=1.8),
        "naive": dict(color="tab:blue", lw=0.9, ls="--"),
        "seasonal_naive": dict(color="tab:green", lw=0.9, ls=":"),
        "drift": dict(color="tab:purple", lw=0.9, ls="-."),
    }
    for name, f in forecasts.items():
        for k, t in enumerate(blocks):
            ax.plot(
                x[t : t + h + 1],
                np.concatenate([[y[t]], f[k]]),
                label=name.replace("_", "-") if k == 0 else None,
                **styles.get(name, {}),
            )
    if interval is not None:
        for k, t in enumerate(blocks):
            ax.fill_between(
                x[t + 1 : t + h + 1],
                interval[0][k],
                interval[1][k],
                color="tab:red",
                alpha=0.18,
                lw=0,
                label=f"gru {level:.0%} interval" if k == 0 else None,
            )
    ax.axvline(x[split - 1] + (x[split] - x[split - 1]) / 2, color="0.6", lw=0.8)
    if times is not None:
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_xlabel("date")
    else:
        ax.set_xlabel("time step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)

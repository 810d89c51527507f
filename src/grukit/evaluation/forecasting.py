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
"""

from __future__ import annotations

import math

import numpy as np

from ..training.plots import plt, save_figure


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
    return {"mae": round(mae(f, y), 6), "rmse": round(rmse(f, y), 6), "smape": round(smape(f, y), 4),
            "mase": None if m is None else round(m, 6)}


def plot_forecast(path, y: np.ndarray, split: int, blocks: np.ndarray, forecasts: dict[str, np.ndarray],
                  dates: tuple[str, ...] | None = None, title: str = "forecast") -> None:
    """History before ``split``, the truth after it, and each method's forecasts.

    ``blocks``: non-overlapping origins; ``forecasts[name]``: (len(blocks), h) values.
    The picture ends with the last block and shows twice as much history.
    """
    end = min(len(y), int(blocks[-1]) + next(iter(forecasts.values())).shape[1] + 1)
    start = max(0, split - 2 * max(1, end - split))
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    ax.plot(np.arange(start, split), y[start:split], color="0.35", lw=1.2, label="history")
    ax.plot(np.arange(split - 1, end), y[split - 1:end], color="black", lw=1.4, label="truth")
    styles = {"gru": dict(color="tab:red", lw=1.8), "naive": dict(color="tab:blue", lw=1.0, ls="--"),
              "seasonal_naive": dict(color="tab:green", lw=1.0, ls=":")}
    for name, f in forecasts.items():
        for k, t in enumerate(blocks):
            xs = np.arange(t, t + f.shape[1] + 1)
            ax.plot(xs, np.concatenate([[y[t]], f[k]]), label=name.replace("_", "-") if k == 0 else None,
                    **styles.get(name, {}))
    ax.axvline(split - 0.5, color="0.6", lw=0.8)
    if dates is not None:
        ticks = np.linspace(start, end - 1, 6).round().astype(int)
        ax.set_xticks(ticks)
        ax.set_xticklabels([dates[i] for i in ticks], fontsize=8)
    else:
        ax.set_xlabel("time step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)

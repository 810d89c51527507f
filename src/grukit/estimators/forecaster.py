"""GRUForecaster: the forecast task's model on one series given as an array."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..data.series import Series
from ..tasks.config import torch_threads
from ..tasks.forecast import ForecastTask
from ..tasks.forecast_model import ForecastState, features, forecast
from . import _inputs
from ._base import NO_FILE, GRUEstimator


class GRUForecaster(GRUEstimator[ForecastState]):
    """A GRU forecaster: ``fit(y)`` on one series, ``predict(horizon)`` for the values that follow.

    y: a 1-D series, or a 2-D (time, columns) array whose first column is the
    target and the others are inputs (known up to the forecast origin). The
    GRU reads ``lookback`` steps and outputs ``horizon`` steps at once, as a
    correction to the naive or seasonal-naive forecast (``base``); the last
    ``val_fraction`` of the series picks the best epoch (see the forecast task).

    Parameters are ``grukit train forecast``'s options of the same name, the
    defaults the CLI's except horizon 12, hidden_size 32 and 20 epochs.
    ``lookback=0`` is 2 x max(season, horizon), at least 24; ``season=0`` is 1
    (no season: the array carries no dates), so give it for seasonal data.
    ``random_state`` and ``verbose`` as GRUClassifier's.

    Fitted attributes: ``series_`` (the fitted series, (time, columns)),
    ``n_features_in_`` (columns), ``model_``, ``config_``, ``state_`` (the
    resolved lookback, horizon, season, base and scaling), ``history_``, ``seed_``.
    """

    _task = ForecastTask()
    _fixed: ClassVar[dict[str, object]] = {"data": NO_FILE, "calendar": False}

    def __init__(
        self,
        horizon=12,
        lookback=0,
        season=0,
        base="auto",
        loss="huber",
        hidden_size=32,
        num_layers=1,
        cell="gru",
        epochs=20,
        steps=50,
        lr=3e-3,
        batch_size=64,
        dropout=0.0,
        val_fraction=0.15,
        weight_decay=0.0,
        grad_clip=1.0,
        patience=10,
        zoneout=0.0,
        recurrent_dropout=0.0,
        weight_dropout=0.0,
        dtype="float32",
        threads=1,
        random_state=0,
        verbose=False,
    ):
        self.horizon, self.lookback, self.season, self.base, self.loss = horizon, lookback, season, base, loss
        self.hidden_size, self.num_layers, self.cell = hidden_size, num_layers, cell
        self.epochs, self.steps, self.lr, self.batch_size, self.dropout = epochs, steps, lr, batch_size, dropout
        self.val_fraction, self.weight_decay, self.grad_clip, self.patience = (
            val_fraction,
            weight_decay,
            grad_clip,
            patience,
        )
        self.zoneout, self.recurrent_dropout, self.weight_dropout = zoneout, recurrent_dropout, weight_dropout
        self.dtype, self.threads, self.random_state, self.verbose = dtype, threads, random_state, verbose

    def _series(self, y, name: str) -> Series:
        values = _inputs.one_series(y, name)
        return Series(values, tuple(["y"] + [f"x{i}" for i in range(1, values.shape[1])]), None, name)

    def fit(self, y, X=None):
        """Train on the series y (1-D, or 2-D (time, columns) with the target first); returns self.
        ``X`` is accepted for scikit-learn's signature and must be None (give inputs as y's columns)."""
        if X is not None:
            raise ValueError(
                "GRUForecaster.fit takes one series: give extra inputs as columns of y (time, columns), target first"
            )
        if isinstance(self.horizon, int) and self.horizon < 1:
            raise ValueError(f"GRUForecaster: horizon must be >= 1, got {self.horizon}")
        s = self._series(y, "y")
        self._fit_raw(s)
        self.series_ = s.values
        self.n_features_in_ = s.values.shape[1]
        return self

    def _set_fitted(self, cfg, state, model, meta) -> None:
        super()._set_fitted(cfg, state, model, meta)
        if meta.get("series") is not None:
            self.series_ = np.asarray(meta["series"], dtype=np.float64).reshape(-1, len(state.columns))
        self.n_features_in_ = len(state.columns)

    def _needs(self) -> int:
        """Points of history a forecast reads: the window (and a whole season for a seasonal base)."""
        st = self.state_
        return max(st.lookback, st.season if st.base == "seasonal" else 1)

    def _extras(self) -> dict:
        # the tail that predict() reads after load: the window, plus one point for its first difference
        return {**super()._extras(), "series": self.series_[-(self._needs() + 1) :].tolist()}

    def predict(self, horizon=None, y=None) -> np.ndarray:
        """The next ``horizon`` values (default: the fitted horizon) of the target after the fitted
        series, or after the history ``y`` (same columns as in fit) when given. 1-D float64."""
        check_is_fitted(self)
        h = self.state_.horizon if horizon is None else horizon
        if not horizon_ok(h) or not 1 <= h <= self.state_.horizon:
            raise ValueError(
                f"horizon must be an int in [1, {self.state_.horizon}] (the horizon this model was fitted for), "
                f"got {horizon!r}; for more steps fit GRUForecaster(horizon={h})"
            )
        if y is None:
            if not hasattr(self, "series_"):
                raise ValueError(
                    "this forecaster was loaded from a run without its series; pass the history: predict(h, y=...)"
                )
            s = Series(self.series_, tuple(self.state_.columns), None, "the fitted series")
        else:
            s = self._series(y, "y")
            if s.values.shape[1] != len(self.state_.columns):
                raise ValueError(
                    f"y has {s.values.shape[1]} column(s); this model was fitted on {len(self.state_.columns)}"
                )
        need = self._needs()
        if len(s.values) < need:
            raise ValueError(
                f"{s.source}: {len(s.values)} points, the model reads the last {need} (lookback "
                f"{self.state_.lookback}{' and a whole season' if need > self.state_.lookback else ''})"
            )
        at = np.array([len(s.values) - 1])
        with torch_threads(self.config_.threads):
            return forecast(self.model_, features(s, self.state_), s.values[:, 0], at, self.state_)[0][:h]

    def score(self, y_next, y=None) -> float:
        """Minus the mean absolute error of the forecast of ``len(y_next)`` values after the fitted series
        (or after the history ``y``): greater is better, scikit-learn's convention."""
        truth = _inputs.one_series(y_next, "y_next")[:, 0]
        return -float(np.abs(self.predict(len(truth), y) - truth).mean())


def horizon_ok(h) -> bool:
    return isinstance(h, (int, np.integer)) and not isinstance(h, (bool, np.bool_))

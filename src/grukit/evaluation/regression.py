"""Regression scores (MAE, RMSE, R^2) and the predict-the-mean baseline.

R^2 = 1 - sum (y - f)^2 / sum (y - mean(y))^2, with mean(y) over the scored
set, so the predict-the-training-mean baseline scores about 0 (slightly below
when the training mean differs from the test mean) and a perfect model 1.
"""

from __future__ import annotations

import numpy as np


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    y, f = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if y.shape != f.shape or y.size == 0:
        raise ValueError(f"need equal, non-empty shapes, got {y.shape} and {f.shape}")
    err = y - f
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean())), "r2": r2}


def mean_baseline(y_train: np.ndarray, y_test: np.ndarray) -> dict:
    """Predict the training targets' mean for every test sequence."""
    return scores(y_test, np.full(len(y_test), float(np.mean(y_train))))


def ridge_fit(x_train: np.ndarray, y_train: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, float]:
    """Ridge regression on the flattened equal-length series (N, T*C) plus an unpenalised bias:
    returns (coefficients (T*C,), intercept); the prediction is ``x.reshape(N, -1) @ coef + intercept``."""
    a = x_train.reshape(len(x_train), -1).astype(np.float64)
    mu, ym = a.mean(0), float(np.mean(y_train))
    a = a - mu
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (np.asarray(y_train, np.float64) - ym))
    return w, ym - float(mu @ w)


def ridge_baseline(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, alpha: float = 1.0
) -> dict:
    """:func:`ridge_fit` on the training series, scored on the test series."""
    w, b = ridge_fit(x_train, y_train, alpha)
    return scores(y_test, x_test.reshape(len(x_test), -1).astype(np.float64) @ w + b)


def least_squares_baseline(a_train: np.ndarray, y_train: np.ndarray, a_test: np.ndarray, y_test: np.ndarray) -> dict:
    """Ordinary least squares with an intercept on the rows of (N, F) features (sklearn's
    LinearRegression; the minimum-norm solution where columns are collinear, as one-hot ones with the intercept are)."""
    a = np.column_stack([np.ones(len(a_train)), np.asarray(a_train, np.float64)])
    w, *_ = np.linalg.lstsq(a, np.asarray(y_train, np.float64), rcond=None)
    return scores(y_test, np.column_stack([np.ones(len(a_test)), np.asarray(a_test, np.float64)]) @ w)

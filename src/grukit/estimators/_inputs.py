"""Checking and converting what users pass to the estimators: series X, labels y, texts, one series.

Series layout (aeon/sktime's): a 3-D array (n, channels, time); a 2-D array
(n, time), read as n univariate series; or a list of n series, each
(channels, time) or (time,), of any lengths. Internally a series is (time,
channels) float32, as grukit.data.numeric.SeriesSet holds it.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_array, column_or_1d

from ..data import numeric
from ..data.numeric import SeriesSet
from ..data.text import TextSet

SERIES_LAYOUT = "a 3-D array (n, channels, time), a 2-D array (n, time) or a list of (channels, time) / (time,) series"


def _finite(a: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or infinity; remove or fill those values first")
    return a


def _one_series(s, i: int, name: str) -> np.ndarray:
    """One list element -> (time, channels) float32."""
    a = check_array(
        s,
        ensure_2d=False,
        dtype=np.float32,
        ensure_all_finite=False,
        input_name=f"{name}[{i}]",
        ensure_min_samples=1,
        ensure_min_features=1 if np.ndim(s) == 2 else 0,
    )
    if a.ndim == 1:
        a = a[None, :]  # (1, time)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(
            f"{name}[{i}] has shape {a.shape}; each series must be (channels, time) or (time,) with time >= 1"
        )
    return np.ascontiguousarray(_finite(a, f"{name}[{i}]").T)  # (time, channels)


def as_series(X, name: str = "X") -> tuple[list[np.ndarray], int]:
    """X in any accepted layout -> (list of (time, channels) float32 arrays, the time length of an
    array X or 0 for a list of unequal series); ValueError naming the problem."""
    if X is None:
        raise ValueError(f"{name} is None; expected {SERIES_LAYOUT}")
    if (
        isinstance(X, (list, tuple))
        and len(X)
        and any(np.ndim(s) != np.ndim(X[0]) or np.shape(s) != np.shape(X[0]) for s in X)
    ):
        series = [_one_series(s, i, name) for i, s in enumerate(X)]  # unequal lengths
        channels = {s.shape[1] for s in series}
        if len(channels) > 1:
            raise ValueError(
                f"{name}: the series have different numbers of channels {sorted(channels)}; all must have the same"
            )
        return series, 0
    try:
        a = check_array(
            X,
            dtype=np.float32,
            allow_nd=True,
            ensure_all_finite=False,
            input_name=name,
            ensure_2d=False,
            ensure_min_samples=1,
        )
    except ValueError as e:
        if "convert string" in str(e):
            raise ValueError(
                f"{name} holds strings ({e}); expected numeric series ({SERIES_LAYOUT}); for text use GRUTextClassifier"
            ) from None
        raise
    if a.ndim not in (2, 3):
        raise ValueError(
            f"{name} has shape {a.shape} ({a.ndim}-D); expected {SERIES_LAYOUT}"
            + ("; Reshape your data: a single series as X.reshape(1, -1)" if a.ndim == 1 else "")
        )
    if a.shape[-1] == 0 or (a.ndim == 3 and a.shape[1] == 0):
        raise ValueError(f"{name} has shape {a.shape}: no time steps or no channels")
    _finite(a, name)
    a = a[:, None, :] if a.ndim == 2 else a  # (n, channels, time)
    return list(np.ascontiguousarray(a.transpose(0, 2, 1))), a.shape[-1]  # n x (time, channels)


def series_set(X, expect_length: int | None = None, who: str = "", source: str = "X") -> tuple[SeriesSet, int]:
    """(X as a SeriesSet without targets (see with_labels), the time length of an array X or 0).

    ``expect_length``: the length an array X must have (a fitted n_features_in_); a list of series
    may have any lengths."""
    series, length = as_series(X, source)
    if expect_length and length and length != expect_length and not isinstance(X, (list, tuple)):
        raise ValueError(
            f"X has {length} features, but {who} is expecting {expect_length} features as input (the series' "
            "time steps: an array X has the fitted length; pass series of other lengths as a list)"
        )
    return SeriesSet(series, [""] * len(series), source), length


def with_labels(items: SeriesSet | TextSet, labels: list[str]) -> SeriesSet | TextSet:
    """The same series or texts with one target string each (lengths checked by the caller)."""
    if isinstance(items, TextSet):
        return TextSet(items.texts, labels, items.source)
    return SeriesSet(items.series, labels, items.source)


def as_texts(X, name: str = "X") -> list[str]:
    """A list or 1-D array of strings; ValueError naming the first that is not."""
    if isinstance(X, str):
        raise ValueError(f"{name} is one string; expected a list or 1-D array of strings (one document each)")
    if np.ndim(X) != 1:
        raise ValueError(f"{name} has shape {np.shape(X)}; expected a list or 1-D array of strings (one document each)")
    texts = list(X)
    if not texts:
        raise ValueError(f"{name} is empty; expected at least one document")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"{name}[{i}] is {type(t).__name__} {t!r}; every document must be a str")
    return texts


def text_set(X) -> TextSet:
    """X as a TextSet without labels (see with_labels)."""
    texts = as_texts(X)
    return TextSet(texts, [""] * len(texts), "X")


def class_labels(y, n: int, name: str) -> tuple[np.ndarray, list[str]]:
    """(classes_ in sklearn's order, the labels as the task's strings); refuses one class."""
    from sklearn.utils.multiclass import check_classification_targets

    y = check_y(y, name)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)  # DataConversionWarning, as scikit-learn's estimators
    if y.ndim != 1:
        raise ValueError(f"y has shape {y.shape}; {name} takes one label per sample (a 1-D array)")
    if len(y) != n:
        raise ValueError(f"X holds {n} samples but y holds {len(y)} labels; they must match")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise ValueError("Input y contains NaN or infinity; labels must be finite")
    check_classification_targets(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"{name} needs at least 2 classes in y, got 1 class ({classes[0]!r})")
    names = [label_text(c) for c in classes]
    if len(set(names)) != len(names) or "" in names:
        raise ValueError(
            f"y's classes {classes.tolist()} are not told apart by their text; use distinct, non-empty labels"
        )
    return classes, [label_text(v) for v in y]


def label_text(value) -> str:
    """A label as the task stores it: its text, spelt as the UCR reader spells a file's labels
    (1.0 -> '1'), so `grukit eval DIR --data FILE` finds the same classes."""
    return numeric._label(str(value))


def check_y(y, name: str):
    if y is None:
        raise ValueError(f"{name} requires y to be passed, but the target y is None")
    return np.asarray(y)


def numeric_targets(y, n: int) -> np.ndarray:
    """y as finite float64 (n,)."""
    a = check_array(
        check_y(y, "GRURegressor"), ensure_2d=False, dtype=np.float64, ensure_all_finite=True, input_name="y"
    )
    if a.ndim == 2 and a.shape[1] == 1:
        a = column_or_1d(a, warn=True)
    if a.ndim != 1:
        raise ValueError(f"y has shape {a.shape}; GRURegressor predicts one number per series (a 1-D y)")
    if len(a) != n:
        raise ValueError(f"X holds {n} series but y holds {len(a)} values; they must match")
    return a


def one_series(y, name: str = "y") -> np.ndarray:
    """A 1-D series or a 2-D (time, columns) array (target first) -> (time, columns) float64."""
    a = check_array(
        y, ensure_2d=False, dtype=np.float64, ensure_all_finite=False, input_name=name, ensure_min_samples=1
    )
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(
            f"{name} has shape {a.shape}; expected a 1-D series or a 2-D (time, columns) array, the target first"
        )
    return _finite(a, name)

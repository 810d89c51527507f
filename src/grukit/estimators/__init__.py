"""scikit-learn estimators over grukit's tasks (needs the extra: pip install 'grukit[sklearn]').

    GRUClassifier      series -> labels         (task: classify)
    GRUTextClassifier  documents -> labels      (task: classify, text)
    GRURegressor       series -> one number     (task: regress)
    GRUForecaster      one series -> its next values (task: forecast)

Each fits through its task's template (``Task.fit(cfg, raw, holdout=False)``),
the code path ``grukit train`` runs, and ``save(dir)`` writes a run directory
that ``grukit predict`` and ``grukit eval`` read and ``load(dir)`` reads back.
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("grukit's estimators need scikit-learn: pip install 'grukit[sklearn]'") from None

from .classifier import GRUClassifier, GRUTextClassifier
from .forecaster import GRUForecaster
from .regressor import GRURegressor

__all__ = ["GRUClassifier", "GRUForecaster", "GRURegressor", "GRUTextClassifier"]

"""``GRUAutoencoder``: the autoencoder task as a scikit-learn estimator (needs scikit-learn).

Two kinds of input, chosen by ``window``:

    window=0 (default): X is a set of series, (N, T) or (N, T, C), or a list of
        (T_i,) / (T_i, C) arrays of different lengths. ``transform`` gives one
        code per series, (N, code_size); ``reconstruction_error`` one number
        per series (mean squared error over its steps, in scaled units).
    window=w: X is one long series, (N,) or (N, C). It is cut into windows of
        w points every ``stride`` points; ``transform`` gives one code per
        window, (W, code_size); ``reconstruction_error`` one number per point
        (its squared error averaged over the windows that cover it).

``score_samples`` follows scikit-learn's outlier detectors: it is the negated
reconstruction error, so the lower, the more abnormal. ``save(dir)`` writes a
run directory in the CLI's format (``grukit predict DIR --data FILE`` reads
it) and ``GRUAutoencoder.load(dir)`` reads one, also one the CLI wrote.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

try:
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.utils.validation import check_is_fitted
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("grukit.GRUAutoencoder needs scikit-learn: pip install scikit-learn") from None

from .data.numeric import SeriesSet
from .tasks import autoencoder_data as ad
from .tasks.autoencoder import AutoencoderConfig, AutoencoderTask
from .tasks.autoencoder_score import point_scores, series_scores
from .tasks.base import save_run
from .tasks.config import torch_threads
from .training import save_tensors
from .training.loop import MODEL_FILE

_PARAMS = (
    "window",
    "stride",
    "code_size",
    "hidden_size",
    "num_layers",
    "teacher_forcing",
    "epochs",
    "lr",
    "batch_size",
    "patch",
    "normalize",
    "val_fraction",
    "cell",
    "seed",
    "threads",
    "progress",
)


class GRUAutoencoder(TransformerMixin, BaseEstimator):
    """GRU sequence autoencoder (see the module docstring for the two kinds of X).

    Parameters are the ``grukit train autoencoder`` flags of the same names;
    ``epochs=0`` means 30 for a long series and 100 for a set of series.

    Attributes (after ``fit``): ``model_`` (the torch module, eval mode),
    ``state_`` (scaling, patch, window), ``config_`` (the task config),
    ``history_`` (one dict per epoch), ``n_features_in_`` (channels C).
    """

    def __init__(
        self,
        *,
        window: int = 0,
        stride: int = 1,
        code_size: int = 16,
        hidden_size: int = 64,
        num_layers: int = 1,
        teacher_forcing: bool = False,
        epochs: int = 0,
        lr: float = 3e-3,
        batch_size: int = 32,
        patch: int = 0,
        normalize: str = "auto",
        val_fraction: float = 0.2,
        cell: str = "gru",
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ) -> None:
        self.window, self.stride, self.code_size, self.hidden_size = window, stride, code_size, hidden_size
        self.num_layers, self.teacher_forcing, self.epochs, self.lr = num_layers, teacher_forcing, epochs, lr
        self.batch_size, self.patch, self.normalize, self.val_fraction = batch_size, patch, normalize, val_fraction
        self.cell, self.seed, self.threads, self.progress = cell, seed, threads, progress

    # ---- scikit-learn API --------------------------------------------------

    def fit(self, X, y=None) -> GRUAutoencoder:
        """Train on X (y is ignored: the autoencoder is unsupervised)."""
        cfg = AutoencoderConfig(**{k: getattr(self, k) for k in _PARAMS})
        raw = self._raw(X)
        fitted = AutoencoderTask().fit(cfg, raw, holdout=False)
        self.model_, self.state_, self.config_, self.history_ = (
            fitted.model.eval(),
            fitted.state,
            fitted.cfg,
            fitted.history,
        )
        self.n_features_in_ = self.state_.channels
        return self

    def transform(self, X) -> np.ndarray:
        """Codes: (N, code_size) for a set of series, (W, code_size) for the windows of a long series."""
        check_is_fitted(self)
        with torch_threads(self.config_.threads):
            x, ln, _ = self._inputs(X)
            codes, _, _ = series_scores(self.model_, x, ln)
        return codes

    def reconstruction_error(self, X) -> np.ndarray:
        """Anomaly scores, higher = more abnormal: (N,) per series, or (N,) per point of a long series."""
        check_is_fitted(self)
        with torch_threads(self.config_.threads):
            x, ln, starts = self._inputs(X)
            if self.state_.kind == "windows":
                return point_scores(self.model_, x, ln, starts, int(starts[-1]) + self.state_.window)[0]
            return series_scores(self.model_, x, ln)[1]

    def score_samples(self, X) -> np.ndarray:
        """The negated reconstruction error (scikit-learn's convention: the lower, the more abnormal)."""
        return -self.reconstruction_error(X)

    # ---- run directories ---------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write a run directory (config.json and model.safetensors) that the CLI can use."""
        check_is_fitted(self)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        task = AutoencoderTask()
        save_run(path, task, self.config_, self.state_)
        save_tensors(path / MODEL_FILE, self.model_.state_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> GRUAutoencoder:
        """A fitted estimator from a run directory (written by ``save`` or by ``grukit train autoencoder``)."""
        cfg, state, model = AutoencoderTask().load(Path(path))
        est = cls(**{k: getattr(cfg, k) for k in _PARAMS})
        est.model_, est.state_, est.config_, est.history_, est.n_features_in_ = model, state, cfg, [], state.channels
        return est

    # ---- inputs --------------------------------------------------------------

    def _raw(self, X):
        if self.window:
            values = _long(X)
            columns = tuple(f"x{c}" for c in range(values.shape[1]))
            return ad.LongSeries(values, None, len(values), columns, "", "X")
        series = _series(X)
        return SeriesSet(series, [""] * len(series), "X"), None

    def _inputs(self, X):
        """Scaled model inputs (x, lengths) and, for a long series, the window starts."""
        if self.state_.kind == "windows":
            values = _long(X)
            if values.shape[1] != self.state_.channels:
                raise ValueError(f"X has {values.shape[1]} channel(s), the model was fitted on {self.state_.channels}")
            x, starts = ad.windows(ad.scale(values, self.state_), self.state_.window, self.state_.stride, "X")
            return x, torch.full((len(x),), self.state_.window, dtype=torch.int64), starts
        items = SeriesSet(_series(X), [], "X")
        x, ln = ad.encode(dataclasses.replace(items, targets=[""] * len(items)), self.state_)
        return x, ln, None


def _finite(a: np.ndarray, what: str) -> np.ndarray:
    if a.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return a


def _long(X) -> np.ndarray:
    """One long series as (N, C) float64."""
    a = np.asarray(X, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise ValueError(f"with window set, X must be one long series, (N,) or (N, C); got shape {a.shape}")
    return _finite(a[:, None] if a.ndim == 1 else a, "X")


def _series(X) -> list[np.ndarray]:
    """A set of series as a list of (T_i, C) float32 arrays."""
    if isinstance(X, (list, tuple)) and X and np.ndim(X[0]) >= 1 and len({np.shape(s) for s in X}) > 1:
        items = [np.asarray(s, dtype=np.float64) for s in X]  # different lengths
    else:
        a = np.asarray(X, dtype=np.float64)
        if a.ndim not in (2, 3):
            raise ValueError(
                f"X must be a set of series, (N, T) or (N, T, C) (for one long series set window=); got shape {a.shape}"
            )
        items = list(a)
    out = []
    for i, s in enumerate(items):
        s = _finite(s[:, None] if s.ndim == 1 else s, f"series {i + 1} of X")
        if s.ndim != 2 or len(s) < 2:
            raise ValueError(f"series {i + 1} of X must be (T,) or (T, C) with T >= 2; got shape {s.shape}")
        out.append(s.astype(np.float32))
    if len({s.shape[1] for s in out}) > 1:
        raise ValueError("the series of X have different numbers of channels")
    return out


__all__ = ["GRUAutoencoder"]

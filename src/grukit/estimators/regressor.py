"""GRURegressor: one number per series, the regress task's model."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ..tasks.config import torch_threads
from ..tasks.regress import RegressState, RegressTask, encode, predict_values
from . import _inputs
from ._base import NO_FILE, GRUEstimator
from .classifier import _items_of, _set_length


class GRURegressor(RegressorMixin, GRUEstimator[RegressState]):
    """A GRU sequence regressor with scikit-learn's interface (the ``regress`` task).

    X as GRUClassifier's: (n, channels, time), (n, time) or a list of series
    of any lengths. y: one finite number per series. Targets are standardised
    with the mean and std of the fitting part and mapped back on predict.

    The parameters are the ``grukit train regress`` options of the same name;
    defaults as the CLI's except hidden_size 32 and 50 epochs (seconds on a few
    hundred short series). ``normalize``: global (default; keeps each series'
    level, per-channel training mean/std) or series (z-normalise each series).
    ``skip="linear"`` adds a linear map of the flattened series (equal lengths)
    and ``ensemble=N`` averages N models trained independently (each its own
    batch order and best epoch), as the CLI's ``--skip`` and ``--ensemble``;
    ``refit=True`` then trains the model again on all of X for the epochs
    chosen on the validation part, as ``--refit`` (``history_`` is the first
    phase's). ``val_split="last"`` validates on the last series in X's order,
    as ``--val-split last``. ``blend_linear=W`` predicts ``(1 - W) * GRU + W *
    ridge``, the ridge regression of the flattened series fitted on all of X
    (equal lengths), as ``--blend-linear``.
    ``random_state`` and ``verbose`` as GRUClassifier's. Fitted attributes:
    ``n_features_in_``, ``model_``, ``config_``, ``state_``, ``history_``, ``seed_``.
    """

    _task = RegressTask()
    _fixed: ClassVar[dict[str, object]] = {"data": NO_FILE}

    def __init__(
        self,
        hidden_size=32,
        num_layers=1,
        bidirectional=False,
        cell="gru",
        epochs=50,
        lr=3e-3,
        batch_size=32,
        dropout=0.0,
        pooling="mean",
        skip="none",
        ensemble=1,
        normalize="global",
        patch=0,
        val_fraction=0.2,
        val_split="random",
        refit=False,
        blend_linear=0.0,
        weight_decay=1e-4,
        grad_clip=1.0,
        patience=0,
        zoneout=0.0,
        recurrent_dropout=0.0,
        weight_dropout=0.0,
        dtype="float32",
        threads=1,
        random_state=0,
        verbose=False,
    ):
        self.hidden_size, self.num_layers, self.bidirectional, self.cell = hidden_size, num_layers, bidirectional, cell
        self.epochs, self.lr, self.batch_size, self.dropout = epochs, lr, batch_size, dropout
        self.pooling, self.normalize, self.patch, self.val_fraction = pooling, normalize, patch, val_fraction
        self.skip, self.ensemble, self.refit, self.val_split = skip, ensemble, refit, val_split
        self.blend_linear = blend_linear
        self.weight_decay, self.grad_clip, self.patience = weight_decay, grad_clip, patience
        self.zoneout, self.recurrent_dropout, self.weight_dropout = zoneout, recurrent_dropout, weight_dropout
        self.dtype, self.threads, self.random_state, self.verbose = dtype, threads, random_state, verbose

    def fit(self, X, y):
        """Train on X and the targets y (one finite number per series); returns self."""
        items = _items_of(self, X, fitting=True)
        y = _inputs.numeric_targets(y, len(items))
        if len(items) < 2:
            raise ValueError(f"GRURegressor needs at least 2 series to fit, got {len(items)} sample")
        self._fit_raw((_inputs.with_labels(items, [repr(float(v)) for v in y]), None))  # repr: the exact float back
        return self

    def _set_fitted(self, cfg, state, model, meta) -> None:
        super()._set_fitted(cfg, state, model, meta)
        _set_length(self, state)

    def predict(self, X) -> np.ndarray:
        """(n,) predicted targets, float64."""
        check_is_fitted(self)
        x, ln = encode(_items_of(self, X, fitting=False), self.state_)
        with torch_threads(self.config_.threads):
            return predict_values(self.model_, x, ln, self.state_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

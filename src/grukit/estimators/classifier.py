"""GRUClassifier (numeric series) and GRUTextClassifier (documents): the classify task's model.

Labels may be any hashable values (str, int, bool, ...); ``classes_`` holds
them in NumPy's sorted order (as scikit-learn's classifiers do), and
``predict`` returns values of y's own dtype. The task stores each label as
its text (``str(label)``, 1.0 as '1'), which is what ``grukit predict`` prints for a saved
run; estimator.json keeps the original values for ``load``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ..tasks import _sequence as seq
from ..tasks.classify import ClassifyTask
from ..tasks.classify_data import ClassifyState, Raw, encode
from ..tasks.config import torch_threads
from . import _inputs
from ._base import NO_FILE, GRUEstimator


class _LabelClassifier(ClassifierMixin, GRUEstimator[ClassifyState]):
    """What both classifiers share: labels <-> the task's classes, predict and predict_proba."""

    _task = ClassifyTask()
    _kind = "numeric"

    def _items(self, X, fitting: bool = False):
        raise NotImplementedError

    def fit(self, X, y):
        """Train on X and the labels y (one per sample); returns self."""
        items = self._items(X, fitting=True)
        classes, labels = _inputs.class_labels(y, len(items), type(self).__name__)
        self._fit_raw(Raw(self._kind, _inputs.with_labels(items, labels), None))
        self._set_classes(classes)
        return self

    def _set_classes(self, classes: np.ndarray) -> None:
        self.classes_ = np.asarray(classes)
        names = self.state_.classes
        self._columns = np.array(
            [names.index(_inputs.label_text(c)) for c in self.classes_]
        )  # model output of each classes_ entry

    def _set_fitted(self, cfg, state, model, meta) -> None:
        super()._set_fitted(cfg, state, model, meta)
        _set_length(self, state)
        if meta.get("classes") is not None:
            self._set_classes(np.asarray(meta["classes"]))
        elif hasattr(state, "classes"):
            self._set_classes(np.unique(np.asarray(state.classes)))  # a CLI run: the label texts

    def _extras(self) -> dict:
        return {**super()._extras(), "classes": self.classes_.tolist()}

    @classmethod
    def _check_run(cls, state: ClassifyState, run: Path) -> None:
        if state.kind != cls._kind:
            other = "GRUTextClassifier" if state.kind == "text" else "GRUClassifier"
            raise ValueError(f"{run} is a classify run on {state.kind} data; load it with {other}.load")

    def predict_proba(self, X) -> np.ndarray:
        """(n, len(classes_)) class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self)
        x, ln = encode(self._items(X), self.state_)
        with torch_threads(self.config_.threads):
            logits = seq.predict(self.model_, x, ln)  # (n, classes) in the task's order
        return torch.softmax(logits.double(), dim=1).numpy()[:, self._columns]

    def predict(self, X) -> np.ndarray:
        """The most probable label of each sample, as values of y's dtype."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class GRUClassifier(_LabelClassifier):
    """A GRU sequence classifier with scikit-learn's interface (the ``classify`` task).

    X: a 3-D array (n, channels, time) as aeon and sktime lay it out, a 2-D
    array (n, time) of univariate series, or a list of series each (channels,
    time) or (time,), of any lengths. Float input; NaN and inf are refused.

    The parameters are the ``grukit train classify`` options of the same name.
    The defaults are smaller than the CLI's (hidden_size 32, 50 epochs) so a
    fit on a few hundred short series takes seconds; raise them for real
    data. ``val_fraction`` of the training series (stratified) is held out to
    pick the best epoch (``refit=True``: then the model is trained again on
    all of X for the chosen epochs, as ``--refit``). ``random_state``: an int is the seed (same data and
    parameters give the same model); None draws a seed from NumPy's global
    generator. ``verbose=True`` shows the progress bar and one line per epoch.

    Fitted attributes: ``classes_``, ``n_features_in_`` (the training series'
    time length when they all had one: an array X passed to predict must
    have it, a list of series may have any lengths), ``model_`` (the torch module), ``config_`` (the task config),
    ``state_`` (the task state: scaling, classes), ``history_`` (per epoch),
    ``seed_``.
    """

    def __init__(
        self,
        hidden_size=32,
        num_layers=1,
        bidirectional=True,
        cell="gru",
        epochs=50,
        lr=3e-3,
        batch_size=16,
        dropout=0.1,
        pooling="last+mean",
        ensemble=1,
        normalize="auto",
        augment=0.1,
        patch=0,
        val_fraction=0.2,
        refit=False,
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
        self.pooling, self.normalize, self.augment, self.patch = pooling, normalize, augment, patch
        self.ensemble = ensemble
        self.val_fraction, self.weight_decay, self.grad_clip, self.patience = (
            val_fraction,
            weight_decay,
            grad_clip,
            patience,
        )
        self.zoneout, self.recurrent_dropout, self.weight_dropout = zoneout, recurrent_dropout, weight_dropout
        self.dtype, self.threads, self.random_state, self.verbose = dtype, threads, random_state, verbose
        self.refit = refit

    _fixed: ClassVar[dict[str, object]] = {"data": NO_FILE}

    def _items(self, X, fitting: bool = False):
        return _items_of(self, X, fitting)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


class GRUTextClassifier(_LabelClassifier):
    """A GRU document classifier with scikit-learn's interface (the ``classify`` task on text).

    X: a list or 1-D array of strings, one document each. Words (lower-case,
    HTML tags dropped; grukit.data.text.tokenize) are looked up in a
    vocabulary of the ``max_features - 2`` most frequent words of the
    training part; each document keeps its last ``maxlen`` words.

    Defaults: an embedding of 32, hidden_size 32, 10 epochs of batches of 32.
    ``word_dropout`` zeroes that share of whole word vectors while training;
    ``ensemble=N`` averages N models trained independently, each with its own batch order
    and best epoch (as the CLI's ``--word-dropout``, ``--ensemble``).
    Other parameters, ``random_state`` and ``verbose`` as GRUClassifier's.
    Fitted attributes as GRUClassifier's (the vocabulary is ``state_.vocab``).
    """

    _kind = "text"

    def __init__(
        self,
        max_features=10000,
        maxlen=100,
        embed_dim=32,
        hidden_size=32,
        num_layers=1,
        bidirectional=True,
        cell="gru",
        epochs=10,
        lr=3e-3,
        batch_size=32,
        dropout=0.1,
        pooling="last+mean",
        ensemble=1,
        word_dropout=0.0,
        val_fraction=0.2,
        refit=False,
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
        self.max_features, self.maxlen, self.embed_dim = max_features, maxlen, embed_dim
        self.hidden_size, self.num_layers, self.bidirectional, self.cell = hidden_size, num_layers, bidirectional, cell
        self.epochs, self.lr, self.batch_size, self.dropout, self.pooling = epochs, lr, batch_size, dropout, pooling
        self.ensemble, self.word_dropout = ensemble, word_dropout
        self.val_fraction, self.weight_decay, self.grad_clip, self.patience = (
            val_fraction,
            weight_decay,
            grad_clip,
            patience,
        )
        self.zoneout, self.recurrent_dropout, self.weight_dropout = zoneout, recurrent_dropout, weight_dropout
        self.dtype, self.threads, self.random_state, self.verbose = dtype, threads, random_state, verbose
        self.refit = refit

    _fixed: ClassVar[dict[str, object]] = {"data": NO_FILE}

    def _items(self, X, fitting: bool = False):
        return _inputs.text_set(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


def _items_of(est, X, fitting: bool):
    """X's SeriesSet; after fit an array X must have the fitted time length (``n_features_in_``,
    set when the training series had one length); a list of series may have any lengths."""
    if fitting:
        return _inputs.series_set(X)[0]
    return _inputs.series_set(X, getattr(est, "n_features_in_", None), type(est).__name__)[0]


def _set_length(est, state) -> None:
    """``n_features_in_``: the training series' common length (none when their lengths differed)."""
    if getattr(state, "length", 0):
        est.n_features_in_ = state.length
    elif hasattr(est, "n_features_in_"):
        del est.n_features_in_

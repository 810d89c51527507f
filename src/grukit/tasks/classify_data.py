"""The classify task's data: reading the sets, the label vocabulary, splits and encoding.

Splits: the official TRAIN file trains (``--val-fraction`` of it, stratified,
is held out to pick the best epoch) and the TEST file tests; data without a
test file is split ``--test-fraction`` (stratified, seeded) first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import numeric, reviews, text
from . import _sequence as seq
from .base import TaskState

Items = numeric.SeriesSet | text.TextSet


@dataclass(frozen=True)
class ClassifyState(TaskState):
    kind: str  # "numeric" or "text"
    classes: list  # the label names, in the order of the model's outputs
    dtw_accuracy: float | None = None  # the published 1-NN-DTW accuracy of a built-in set
    vocab: list | None = None  # text: the words, most frequent first
    maxlen: int = 0  # text: words kept per document
    channels: int = 0  # numeric: channels per step
    normalize: str = ""  # numeric: series | global | none
    norm_stats: dict | None = None  # numeric, global: per-channel mean and std of the training part
    patch: int = 1  # numeric: steps fed as one GRU step
    length: int = 0  # numeric: the training series' common length (0 when they differ)


@dataclass(frozen=True)
class Raw:
    """The sets before splitting: kind, the training set, the test set (or None), a published accuracy."""

    kind: str
    train: Items
    test: Items | None
    dtw_accuracy: float | None = None


def is_text(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix.lower() == ".csv" or text.is_text_folder(path)


def load_sets(cfg) -> Raw:
    """The sets ``cfg`` names: --data (series files or text) or a built-in --dataset."""
    if cfg.data is not None:
        if is_text(cfg.data):
            if Path(cfg.data).is_dir():
                return Raw("text", *text.read_text_folder(cfg.data))
            return Raw("text", text.read_text_csv(cfg.data, cfg.text_column, cfg.label_column), None)
        train_file, test_file = numeric.find_split_files(cfg.data)
        return Raw("numeric", numeric.read_series(train_file), numeric.read_series(test_file) if test_file else None)
    if cfg.dataset == "toy":
        return Raw("numeric", numeric.toy_classification(seed=cfg.seed), None)
    if cfg.dataset == "shakespeare":
        return Raw("text", *text.shakespeare_genres())
    if cfg.dataset == "rotten_tomatoes":
        return Raw("text", *reviews.rotten_tomatoes())
    if cfg.dataset not in numeric.UCR_DATASETS:
        raise ValueError(
            f"unknown --dataset {cfg.dataset!r}; built-in: rotten_tomatoes, shakespeare, toy, {', '.join(numeric.UCR_DATASETS)}"
        )
    train_file, test_file = numeric.builtin_files(cfg.dataset)
    return Raw(
        "numeric", numeric.read_series(train_file), numeric.read_series(test_file), numeric.UCR_DATASETS[cfg.dataset][1]
    )


def labels_of(items: Items) -> list[str]:
    return items.labels if isinstance(items, text.TextSet) else items.targets


def class_names(labels: list[str]) -> list[str]:
    """Sorted label set: numerically when every label is a number."""
    uniq = set(labels)
    if "" in uniq:
        raise ValueError("some series have no label")
    try:
        return sorted(uniq, key=float)
    except ValueError:
        return sorted(uniq)


def label_ids(labels: list[str], classes: list[str], source: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(
            f"{source}: label(s) {', '.join(map(repr, unknown[:5]))} not seen in training (known: {', '.join(classes[:20])})"
        )
    return np.array([index[v] for v in labels], dtype=np.int64)


def encode(items: Items, state: ClassifyState) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded inputs and lengths for a SeriesSet's series or a TextSet's texts, as in training."""
    if state.kind == "text":
        if not isinstance(items, text.TextSet):
            raise ValueError(f"{items.source}: this model reads text, got numeric series")
        assert state.vocab is not None  # a text run's state holds its vocabulary
        vocab = text.Vocabulary(state.vocab)
        return seq.pad([vocab.encode(t, state.maxlen) for t in items.texts])
    if not isinstance(items, numeric.SeriesSet):
        raise ValueError(f"{items.source}: this model reads numeric series, got text")
    if items.channels != state.channels:
        raise ValueError(
            f"{items.source}: series with {items.channels} channel(s), the model was trained on {state.channels}"
        )
    series, _ = seq.normalize_series(items.series, state.normalize, state.norm_stats)
    return seq.pad(series)


def prepare(cfg, raw: Raw, *, holdout: bool = True) -> tuple[ClassifyState, dict]:
    """Everything training and scoring need, split and encoded, deterministically from cfg.
    Without ``holdout`` no test part is kept (data["test"] is None)."""
    kind, train, test = raw.kind, raw.train, raw.test if holdout else None
    classes = class_names(labels_of(train))
    y_all = label_ids(labels_of(train), classes, train.source)
    if len(classes) < 2:
        raise ValueError(f"{train.source}: need at least two classes, found {classes}")
    if holdout and test is None:
        keep, held = seq.stratified_split(y_all, cfg.test_fraction, cfg.seed + 101)
        train, test, y_all = train.subset(keep), train.subset(held), y_all[keep]
    fit_idx, val_idx = seq.stratified_split(y_all, cfg.val_fraction, cfg.seed + 202)
    if kind == "text":
        assert isinstance(train, text.TextSet)  # Raw's kind names its sets' type
        words = text.Vocabulary.build(train.subset(fit_idx).texts, cfg.max_features).words
        state = ClassifyState(kind, classes, raw.dtw_accuracy, vocab=list(words), maxlen=cfg.maxlen)
    else:
        assert isinstance(train, numeric.SeriesSet)
        how = cfg.normalize if cfg.normalize != "auto" else ("series" if train.channels == 1 else "global")
        _, stats = seq.normalize_series(train.subset(fit_idx).series, how)
        lengths = train.lengths
        state = ClassifyState(
            kind,
            classes,
            raw.dtw_accuracy,
            channels=train.channels,
            normalize=how,
            norm_stats=stats or None,
            patch=cfg.patch or seq.auto_patch(int(lengths.max())),
            length=int(lengths[0]) if (lengths == lengths[0]).all() else 0,
        )
    state = ClassifyState.from_json(state.to_json(), "classify")  # exactly as it reads back from config.json
    x, ln = encode(train, state)
    f, v, y = torch.from_numpy(fit_idx), torch.from_numpy(val_idx), torch.from_numpy(y_all)
    data: dict[str, Any] = {
        "fit": (x[f], ln[f], y[f]),
        "val": (x[v], ln[v], y[v]),
        "test": None,
        "source": train.source,
    }
    if kind == "text":  # the whole texts, for the bag-of-words baseline
        assert isinstance(train, text.TextSet)
        data["texts"] = {"fit": train.subset(fit_idx).texts, "val": train.subset(val_idx).texts, "test": None}
    if test is not None:
        xt, lnt = encode(test, state)
        data["test"] = (xt, lnt, torch.from_numpy(label_ids(labels_of(test), classes, test.source)))
        if kind == "text":
            assert isinstance(test, text.TextSet)
            data["texts"]["test"] = test.texts
    return state, data

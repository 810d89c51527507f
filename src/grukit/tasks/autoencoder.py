"""Sequence autoencoder (unsupervised): anomaly scores, embeddings and clustering.

A GRU encoder reads a series into a code of ``--code-size`` numbers and a GRU
decoder reconstructs the series from it (see autoencoder_model; the decoder
sees the code at every step, or with ``--teacher-forcing`` also the previous
values). Labels are never used in training. Two kinds of data (see
autoencoder_data):

    a long series (a CSV column, or --dataset kdd_tsad_135) cut into windows
        -> a score per point: its reconstruction error averaged over the windows
           covering it, beside a matrix-profile discord; with 0/1 labels the
           UCR Anomaly Archive's hit rule (+-100 points), ROC AUC, best F1.
    a set of series (UCR .tsv/.ts, or a UCR set aeon bundles)
        -> a code and a reconstruction error per series; the codes clustered
           with k-means; with labels the ARI beside Euclidean k-means on the
           series and the published ARIs (autoencoder_score).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..data import numeric
from ..evaluation import clustering
from . import _sequence as seq
from . import autoencoder_data as ad
from .autoencoder_model import Objective, SequenceAutoencoder
from .autoencoder_score import point_scores, score_series, score_windows, series_scores
from .base import Scored, Task, TaskConfig, option
from .results import Table

SERIES_SETS = {
    **{k: v[0] for k, v in numeric.UCR_DATASETS.items()},
    "OSULeaf": "univariate, 427 steps, 6 classes of leaf outlines (200 / 242)",
    "ACSF1": "univariate, 1460 steps, 10 classes of appliance power use (100 / 100)",
}
DATASETS = {
    ad.KDD: "UCR Anomaly Archive 135 (InternalBleeding16, aeon): 7,501 points, the first 1,200 clean; anomaly at 4187-4198",
    **{
        k: v
        + (
            f"; published clustering ARI {clustering.PUBLISHED_ARI[k][0]} / {clustering.PUBLISHED_ARI[k][1]}"
            if k in clustering.PUBLISHED_ARI
            else ""
        )
        for k, v in SERIES_SETS.items()
    },
}
SUMMARY_ROWS = (
    "top_point",
    "hit",
    "distance",
    "roc_auc",
    "best_f1",
    "mse",
    "ari",
)  # metrics shown, where a model has them


@dataclass(frozen=True)
class AutoencoderConfig(TaskConfig):
    data: str | None = option(
        None,
        "your data: a CSV long series (windows; see --column, --label-column), or a UCR .tsv/.ts TRAIN file or folder (a set of series)",
    )
    dataset: str = option(
        ad.KDD,
        "built-in data, used when --data is not given (needs: pip install 'grukit[data]')",
        choices=list(DATASETS),
    )
    epochs: int = option(
        0,
        "passes over the training windows or series (0 = auto: 30 for a long series' windows, 100 for a set of series)",
    )
    lr: float = option(3e-3, "Adam learning rate")
    hidden_size: int = option(64, "GRU hidden units of the encoder and the decoder")
    code_size: int = option(16, "numbers in the code (the embedding) of a series or window")
    num_layers: int = option(1, "stacked GRU layers in the encoder and in the decoder")
    teacher_forcing: bool = option(
        False,
        "decoder also reads the previous values: the true ones in training, its own when scoring (default: the code alone at every step)",
    )
    batch_size: int = option(32, "series or windows per batch")
    patch: int = option(0, "consecutive steps fed as one GRU step (0 = auto: at most ~32 GRU steps)")
    normalize: str = option(
        "auto",
        "a set of series: series = z-normalise each, global = training mean/std per channel, auto = series if one channel else global",
        choices=list(seq.NORMALIZE),
    )
    window: int = option(
        0, "a long series: points per window (0 = auto: the period found by autocorrelation, within 16-256)"
    )
    stride: int = option(1, "a long series: points between window starts, in training and scoring")
    train_points: int = option(
        0, "a long series: leading points to train on (0 = the built-in's clean part, or a CSV's whole series)"
    )
    column: str = option("", "CSV: value column(s), comma-separated (default: the first numeric column)")
    label_column: str = option("", "CSV: a 0/1 anomaly label column, for the hit rule, ROC AUC and F1 (optional)")
    margin: int = option(
        100,
        "a long series: the top point is a hit within this many points of the labelled anomaly (the UCR archive's 100)",
    )
    clusters: int = option(0, "a set of series: k of k-means on the codes (0 = the number of labels)")
    val_fraction: float = option(
        0.2, "share of the training series, or the training part's end, that picks the best epoch"
    )
    test_fraction: float = option(0.2, "a set of series: share held out to measure reconstruction on unseen series")

    def validate(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"--epochs must be >= 0 (0 = auto), got {self.epochs}")
        TaskConfig.validate(replace(self, epochs=self.epochs or 1))  # 0 = auto
        self.at_least(1, "hidden_size", "code_size", "num_layers", "batch_size", "stride")
        self.at_least(0, "patch", "window", "train_points", "margin", "clusters")
        if self.window == 1:
            raise ValueError("--window must be >= 2 (or 0 = auto), got 1")
        self.within(0, 1, "val_fraction", "test_fraction")


class AutoencoderTask(Task[AutoencoderConfig, ad.AutoencoderState, SequenceAutoencoder]):
    name = "autoencoder"
    summary = "GRU sequence autoencoder (unsupervised): anomaly scores vs a matrix-profile discord, code clustering ARI vs k-means"
    Config = AutoencoderConfig
    State = ad.AutoencoderState
    datasets = DATASETS
    monitor_label = "validation reconstruction MSE"

    def load_data(self, cfg: AutoencoderConfig):
        return ad.load(cfg)

    def prepare(self, cfg: AutoencoderConfig, raw, *, holdout: bool = True):
        if isinstance(raw, ad.LongSeries):
            return ad.prepare_long(cfg, raw)
        return ad.prepare_series(cfg, raw, holdout=holdout)

    def resolve(self, cfg: AutoencoderConfig, state: ad.AutoencoderState) -> AutoencoderConfig:
        return replace(cfg, epochs=cfg.epochs or (30 if state.kind == "windows" else 100))

    def build(self, cfg: AutoencoderConfig, state: ad.AutoencoderState) -> SequenceAutoencoder:
        return SequenceAutoencoder(
            state.channels,
            hidden_size=cfg.hidden_size,
            code_size=cfg.code_size,
            num_layers=cfg.num_layers,
            patch=state.patch,
            teacher_forcing=cfg.teacher_forcing,
            cell=cfg.recurrent_cell(),
        )

    def objective(self, cfg: AutoencoderConfig, state: ad.AutoencoderState, data: dict) -> Objective:
        return Objective(data["fit"], data["val"], cfg.batch_size)

    def calibrate(self, model, cfg: AutoencoderConfig, state: ad.AutoencoderState, data: dict) -> ad.AutoencoderState:
        """A set of series: the k-means centres of every series' code, which ``predict`` assigns new series to."""
        if state.kind != "series" or not state.clusters:
            return state
        codes, _, _ = series_scores(model, *data["all"])
        _, centres = clustering.kmeans(codes, state.clusters, seed=cfg.seed)
        return ad.AutoencoderState.from_json({**state.to_json(), "centroids": centres.tolist()}, "autoencoder")

    def score(self, model, cfg: AutoencoderConfig, state: ad.AutoencoderState, data: dict) -> Scored:
        name = cfg.data or cfg.dataset
        if state.kind == "windows":
            return score_windows(model, cfg, state, data, name)
        return score_series(model, cfg, state, data, name)

    def summarize(self, metrics: dict) -> Table:
        baselines = metrics.get("baselines", {})
        own = {**metrics, "mse": metrics.get("test_mse")}
        rows = tuple(
            (k, own.get(k), *(b.get(k) for b in baselines.values()))
            for k in SUMMARY_ROWS
            if own.get(k) is not None or any(k in b for b in baselines.values())
        )
        notes = (f"trained in {metrics['train_seconds']} s",) if "train_seconds" in metrics else ()
        return Table(
            ("metric", "grukit", *baselines),
            rows,
            title=f"autoencoder {metrics.get('data', '')}: {metrics.get('summary', '')}",
            notes=notes,
        )

    def evaluate_file(self, cfg: AutoencoderConfig, state: ad.AutoencoderState, model, data: str) -> dict:
        if state.kind == "windows":
            return score_windows(model, cfg, state, self._windows(cfg, state, data), data).metrics
        items = self._series(data, state)
        x, ln = ad.encode(items, state)
        prepared = {"all": (x, ln), "test": None, "labels": ad.labels_of(items)}
        return score_series(model, cfg, state, prepared, data).metrics

    def predictions(
        self, cfg: AutoencoderConfig, state: ad.AutoencoderState, model, args: tuple[str, ...], data: str | None
    ) -> Table:
        if args or data is None:
            raise ValueError("predict for autoencoder reads series from a file: grukit predict DIR --data FILE")
        if state.kind == "windows":
            w = self._windows(cfg, state, data)
            x, ln = w["score"]
            scores, _ = point_scores(model, x, ln, w["starts"], len(w["values"]))
            labels = w["labels"] if w["labels"] is not None else [None] * len(scores)
            rows: tuple[tuple, ...] = tuple(
                (i, float(v), round(float(s), 6), None if y is None else int(y))
                for i, (v, s, y) in enumerate(zip(w["values"][:, 0], scores, labels))
            )
            return Table(("point", "value", "score", "label"), rows)
        items = seq.series_to_predict(data, state.length)
        codes, mse, _ = series_scores(model, *ad.encode(items, state))
        cluster = clustering.assign(codes, np.asarray(state.centroids)) if state.centroids else [None] * len(codes)
        columns = ("id", "score", "cluster", *(f"code_{j + 1}" for j in range(codes.shape[1])))
        rows = tuple(
            (i + 1, round(float(s), 6), None if c is None else int(c), *(round(float(v), 6) for v in code))
            for i, (s, c, code) in enumerate(zip(mse, cluster, codes))
        )
        return Table(columns, rows)

    def _windows(self, cfg: AutoencoderConfig, state: ad.AutoencoderState, path: str) -> dict:
        """A long series from a CSV, read with the run's columns and scaling, as windows."""
        label = state.label_column if state.label_column and _has_column(path, state.label_column) else ""
        assert state.columns is not None  # windows: the columns read
        raw = ad.read_long(path, ",".join(state.columns), label)
        if raw.values.shape[1] != state.channels:
            raise ValueError(f"{path}: {raw.values.shape[1]} column(s), the model was trained on {state.channels}")
        x, starts = ad.windows(ad.scale(raw.values, state), state.window, state.stride, path)
        ln = torch.full((len(x),), state.window, dtype=torch.int64)
        return {"score": (x, ln), "starts": starts, "values": raw.values, "labels": raw.labels}

    def _series(self, data: str, state: ad.AutoencoderState) -> numeric.SeriesSet:
        train_file, test_file = numeric.find_split_files(data)
        return numeric.read_series(test_file or train_file)


def _has_column(path: str, name: str) -> bool:
    with open(path, encoding="utf-8-sig") as f:
        header = f.readline()
    return name in [h.strip() for h in header.replace(";", ",").replace("\t", ",").split(",")]


__all__ = ["AutoencoderConfig", "AutoencoderTask"]

"""The autoencoder task's data: sets of series, or one long series cut into windows.

Sets of series (UCR .tsv / .ts files, the UCR sets aeon bundles): the TRAIN
and TEST files are pooled (labels, where there are any, are kept only to
score the clustering; training never sees them). ``--test-fraction`` of the
series is held out (seeded) to measure reconstruction on unseen series,
``--val-fraction`` of the rest picks the best epoch, and every series is
embedded and clustered.

A long series (a CSV column, or aeon's KDD-TSAD_135): the first
``train_points`` points train (the built-in: its 1,200 clean points; a CSV:
``--train-points``, default the whole series, anomalies taken as rare), their
last ``--val-fraction`` validates, and the whole series is scored. Values are
scaled with the mean and std of the training part (per channel). Windows of
``window`` points every ``stride`` points; the last window always ends at the
series' end.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import numeric
from ..data.series import parse_columns, read_csv_series
from ..evaluation.anomaly import window_starts
from . import _sequence as seq
from .base import TaskState

KDD = "kdd_tsad_135"
KDD_FILES = ("KDD-TSAD_135", "135_UCR_Anomaly_InternalBleeding16")  # folder in aeon's data, file stem
MAX_WINDOW_BYTES = 2 * 2**30  # the scored windows are materialised: refuse more than this


@dataclass(frozen=True)
class AutoencoderState(TaskState):
    kind: str  # "series" (a set of series) or "windows" (one long series)
    channels: int
    patch: int  # steps fed as one GRU step
    normalize: str = ""  # series: series | global | none (windows: always global)
    norm_stats: dict | None = None  # per-channel mean and std of the training part (global)
    length: int = 0  # series: the common length (0 when they differ)
    classes: list | None = None  # series: the label names, when every series has one
    clusters: int = 0  # series: k of k-means (0 = none: no labels and no --clusters)
    window: int = 0  # windows: points per window
    stride: int = 1  # windows: points between window starts
    train_points: int = 0  # windows: the training part's length
    columns: list | None = None  # windows: the CSV column(s) read
    label_column: str = ""  # windows: the 0/1 column, '' when none
    centroids: list | None = None  # series: k-means centres of the codes of all series (set after training)
    after_fit = ("centroids",)


@dataclass(frozen=True)
class LongSeries:
    """One long series: values (N, C), optional 0/1 labels (N,), and how many leading points train."""

    values: np.ndarray
    labels: np.ndarray | None
    train_points: int
    columns: tuple[str, ...]
    label_column: str
    source: str


def is_long(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".csv"


def read_long(path: str | Path, column: str, label_column: str, train_points: int = 0) -> LongSeries:
    """A CSV long series: ``column`` (comma-separated names; default the first numeric column) and a 0/1 label column."""
    columns = tuple(c for c in parse_columns(column) if c != label_column) if column else ()
    s = read_csv_series(path, columns)
    if label_column and label_column in s.columns:
        raise ValueError(
            f"{path}: the value column {label_column!r} is also --label-column; name the values with --column"
        )
    labels = None
    if label_column:
        raw = read_csv_series(path, (label_column,)).values[:, 0]
        if not np.isin(raw, (0, 1)).all():
            bad = raw[~np.isin(raw, (0, 1))][0]
            raise ValueError(
                f"{path}: --label-column {label_column!r} must hold 0 (normal) or 1 (anomaly), found {bad:g}"
            )
        labels = raw.astype(np.int64)
    return LongSeries(s.values, labels, train_points or len(s.values), s.columns, label_column, str(path))


def kdd_tsad_135() -> LongSeries:
    """aeon's UCR Anomaly Archive series 135 (InternalBleeding16): 7,501 points, the first 1,200 clean."""
    folder, stem = KDD_FILES
    base = numeric.aeon_data_dir() / folder
    test, train = base / f"{stem}_TEST.csv", base / f"{stem}_TRAIN.csv"
    if not (test.is_file() and train.is_file()):
        raise numeric.MissingExtraError(
            f"the installed aeon does not bundle {folder} (looked in {base}); pip install -U aeon"
        )
    series = read_long(test, "value", "is_anomaly")
    return dataclasses.replace(
        series, train_points=len(read_csv_series(train, ("value",)).values), source=f"dataset {KDD}"
    )


def load(cfg) -> numeric.SeriesSet | tuple | LongSeries:
    """What ``cfg`` names: a long series, or (training set, test set or None) of series."""
    if cfg.data is not None:
        if is_long(cfg.data):
            return read_long(cfg.data, cfg.column, cfg.label_column, cfg.train_points)
        train_file, test_file = numeric.find_split_files(cfg.data)
        return numeric.read_series(train_file), numeric.read_series(test_file) if test_file else None
    if cfg.dataset == KDD:
        series = kdd_tsad_135()
        return dataclasses.replace(series, train_points=cfg.train_points or series.train_points)
    return tuple(numeric.read_series(p) for p in numeric.builtin_files(cfg.dataset))


def period(x: np.ndarray) -> int:
    """The lag of the highest autocorrelation after its first negative value (0: none found)."""
    z = (x - x.mean()) / (x.std() or 1.0)
    n = len(z)
    ac = np.correlate(z, z, "full")[n - 1 :] / n  # (n,)
    negative = np.nonzero(ac < 0)[0]
    if not len(negative) or negative[0] >= n // 2:
        return 0
    return int(negative[0] + np.argmax(ac[negative[0] : n // 2]))


def auto_window(train: np.ndarray, val_points: int) -> int:
    """--window 0: the series' period (from the autocorrelation of the training part), within [16, 256]
    and at most the validation part's length; 64 when there is no period."""
    p = period(train[:, 0]) or 64
    return max(2, min(max(16, min(p, 256)), val_points))


def windows(z: np.ndarray, window: int, stride: int, where: str) -> tuple[torch.Tensor, np.ndarray]:
    """(N, C) -> windows (W, window, C) float32 and their starts (W,)."""
    try:
        starts = window_starts(len(z), window, stride)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if len(starts) * window * z.shape[1] * 4 > MAX_WINDOW_BYTES:
        raise ValueError(f"{where}: {len(starts)} windows of {window} points need over 2 GiB; use a larger --stride")
    idx = starts[:, None] + np.arange(window)[None, :]  # (W, window)
    return torch.from_numpy(z[idx].astype(np.float32)), starts


def scale(values: np.ndarray, state: AutoencoderState) -> np.ndarray:
    assert state.norm_stats is not None  # windows: always global scaling
    mu, sd = np.asarray(state.norm_stats["mean"]), np.asarray(state.norm_stats["std"])
    return (values - mu) / sd


def prepare_long(cfg, raw: LongSeries) -> tuple[AutoencoderState, dict]:
    values, n_train = raw.values, raw.train_points
    if not 0 < n_train <= len(values):
        raise ValueError(f"{raw.source}: --train-points {n_train} must be in [1, {len(values)}] (the series' length)")
    n_fit = int(round(n_train * (1 - cfg.val_fraction)))
    train = values[:n_train]
    sd = train[:n_fit].std(0)
    if (np.ptp(values, axis=0) == 0).all():
        raise ValueError(f"{raw.source}: the series is constant: there is nothing to learn or score")
    window = cfg.window or auto_window(train[:n_fit], n_train - n_fit)
    stats = {"mean": train[:n_fit].mean(0).tolist(), "std": np.where(sd > 1e-8, sd, 1.0).tolist()}
    state = AutoencoderState(
        "windows",
        values.shape[1],
        cfg.patch or seq.auto_patch(window),
        normalize="global",
        norm_stats=stats,
        window=window,
        stride=cfg.stride,
        train_points=n_train,
        columns=list(raw.columns),
        label_column=raw.label_column,
    )
    state = AutoencoderState.from_json(state.to_json(), "autoencoder")
    z = scale(values, state)
    fit, _ = windows(z[:n_fit], window, cfg.stride, f"{raw.source}: the training part ({n_fit} points)")
    val, _ = windows(
        z[n_fit:n_train],
        window,
        cfg.stride,
        f"{raw.source}: the validation part ({n_train - n_fit} points, --val-fraction)",
    )
    full, starts = windows(z, window, cfg.stride, raw.source)
    lengths = lambda w: torch.full((len(w),), window, dtype=torch.int64)  # noqa: E731
    return state, {
        "fit": (fit, lengths(fit)),
        "val": (val, lengths(val)),
        "score": (full, lengths(full)),
        "starts": starts,
        "values": values,
        "labels": raw.labels,
        "source": raw.source,
    }


def encode(items: numeric.SeriesSet, state: AutoencoderState) -> tuple[torch.Tensor, torch.Tensor]:
    if items.channels != state.channels:
        raise ValueError(
            f"{items.source}: series with {items.channels} channel(s), the model was trained on {state.channels}"
        )
    series, _ = seq.normalize_series(items.series, state.normalize, state.norm_stats)
    return seq.pad(series)


def labels_of(items: numeric.SeriesSet) -> list | None:
    """The labels when every series has one, else None (prepare_series also drops a single shared label)."""
    return list(items.targets) if all(items.targets) else None


def prepare_series(cfg, raw: tuple, *, holdout: bool = True) -> tuple[AutoencoderState, dict]:
    train, test = raw
    items = numeric.SeriesSet(
        train.series + (test.series if test else []), train.targets + (test.targets if test else []), train.source
    )
    if test is not None and test.channels != train.channels:
        raise ValueError(f"{test.source}: {test.channels} channel(s), the TRAIN file has {train.channels}")
    if all(np.ptp(s, axis=0).max() == 0 for s in items.series):
        raise ValueError(f"{items.source}: every series is constant: there is nothing to learn")
    labels = labels_of(items)
    if labels and len(set(labels)) < 2:
        labels = None  # one label for every series: nothing to compare a clustering with
    classes = sorted(set(labels), key=lambda v: (len(v), v)) if labels else None
    k = cfg.clusters or (len(classes) if classes else 0)  # 0: no labels and no --clusters, so no clustering
    if k > len(items):
        raise ValueError(f"--clusters {k} is more than the {len(items)} series")
    keep, held = (
        seq.random_split(len(items), cfg.test_fraction, cfg.seed + 101) if holdout else (np.arange(len(items)), None)
    )
    if len(keep) < 2:
        raise ValueError(f"{items.source}: need at least 2 training series, got {len(keep)}")
    f, v = seq.random_split(len(keep), cfg.val_fraction, cfg.seed + 202)
    fit_idx, val_idx = keep[f], keep[v]
    how = cfg.normalize if cfg.normalize != "auto" else ("series" if items.channels == 1 else "global")
    _, stats = seq.normalize_series(items.subset(fit_idx).series, how)
    ln = items.lengths
    state = AutoencoderState(
        "series",
        items.channels,
        cfg.patch or seq.auto_patch(int(ln.max())),
        normalize=how,
        norm_stats=stats or None,
        length=int(ln[0]) if (ln == ln[0]).all() else 0,
        classes=classes,
        clusters=k,
    )
    state = AutoencoderState.from_json(state.to_json(), "autoencoder")
    x, lengths = encode(items, state)
    part = lambda idx: None if idx is None else (x[torch.from_numpy(idx)], lengths[torch.from_numpy(idx)])  # noqa: E731
    return state, {
        "fit": part(fit_idx),
        "val": part(val_idx),
        "test": part(held),
        "all": (x, lengths),
        "labels": labels,
        "test_index": held,
        "source": items.source,
    }

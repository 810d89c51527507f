"""Anomaly scores of a long series: windows mapped back to points, the matrix-profile
discord baseline, the UCR Anomaly Archive's hit rule, ROC AUC and best F1, and the pictures.

Per-point scores: a score per window step (a window's reconstruction error at
each of its points, or one number per window broadcast over its points) is
averaged over every window that covers the point.

Discord baseline (Yeh et al. 2016, "Matrix Profile I"): each window's distance
to its nearest neighbour that does not overlap it (|i - j| >= m), in
z-normalised Euclidean distance; the window farthest from its nearest
neighbour is the top discord. Several channels add their squared distances.

Hit (Wu & Keogh 2021, the UCR Anomaly Archive / KDD Cup 2021 rule): the single
top-scoring point counts as a detection when it lies within ``margin`` (100)
points of the labelled anomaly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..figures import new_figure, save_figure


def window_starts(n: int, window: int, stride: int) -> np.ndarray:
    """Starts of the windows of ``window`` points every ``stride`` points; the last window ends at n."""
    if n < window:
        raise ValueError(f"the series has {n} points, fewer than one window of --window {window}")
    starts = np.arange(0, n - window + 1, stride, dtype=np.int64)
    if starts[-1] != n - window:
        starts = np.append(starts, n - window)  # every point is covered
    return starts


def point_scores(window_scores: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """(W, w) scores of each window's points -> (n,) mean over the windows covering each point."""
    _W, w = window_scores.shape
    idx = (starts[:, None] + np.arange(w)[None, :]).ravel()  # (W*w,)
    total = np.bincount(idx, weights=window_scores.ravel().astype(np.float64), minlength=n)
    count = np.bincount(idx, minlength=n)
    if (count == 0).any():
        raise ValueError("some points are covered by no window")
    return total / count


def matrix_profile(x: np.ndarray, m: int, chunk: int = 512) -> np.ndarray:
    """(n, C) series -> (n - m + 1,) z-normalised distance of each window to its nearest
    non-overlapping window. Constant windows are taken as all-zero after normalising."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    n = len(x)
    if n < 2 * m:
        raise ValueError(f"a discord needs at least two non-overlapping windows: {n} points < 2 x {m}")
    win = torch.from_numpy(x).unfold(0, m, 1)  # (n', C, m)
    mu, sd = win.mean(-1, keepdim=True), win.std(-1, unbiased=False, keepdim=True)
    z = torch.where(sd > 1e-8, (win - mu) / sd.clamp_min(1e-8), torch.zeros(())).reshape(len(win), -1)  # (n', C*m)
    sq = (z * z).sum(1)  # (n',)
    pos = torch.arange(len(z))
    out = torch.empty(len(z), dtype=torch.float64)
    for a in range(0, len(z), chunk):
        rows = z[a : a + chunk]
        d2 = sq[a : a + chunk, None] + sq[None, :] - 2 * rows @ z.T  # (chunk, n')
        near = (pos[a : a + chunk, None] - pos[None, :]).abs() < m  # the exclusion zone: overlapping windows
        out[a : a + chunk] = d2.masked_fill(near, float("inf")).amin(1).clamp_min(0).sqrt()
    return out.numpy()


def discord_scores(x: np.ndarray, m: int) -> np.ndarray:
    """Per-point scores of the discord baseline: the matrix profile averaged over the windows covering each point."""
    mp = matrix_profile(x, m)
    starts = np.arange(len(mp), dtype=np.int64)
    return point_scores(np.repeat(mp[:, None], m, axis=1), starts, len(x))


def hit(scores: np.ndarray, labels: np.ndarray, margin: int = 100) -> dict:
    """The top point and whether it is within ``margin`` points of a labelled anomalous point."""
    top = int(np.argmax(scores))
    anomalous = np.nonzero(labels)[0]
    distance = int(np.abs(anomalous - top).min()) if len(anomalous) else None
    return {"top_point": top, "distance": distance, "hit": bool(distance is not None and distance <= margin)}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random anomalous point outscores a random normal one (ties count half)."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        raise ValueError("ROC AUC needs both anomalous and normal points")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average rank of tied scores, from 1
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def best_f1(labels: np.ndarray, scores: np.ndarray) -> dict:
    """The highest point-wise F1 = 2TP / (2TP + FP + FN) over all thresholds 'score >= t'."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores), kind="stable")
    s, y = np.asarray(scores)[order], labels[order]
    tp, fp = np.cumsum(y), np.cumsum(~y)
    cut = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    f1 = 2 * tp[cut] / (tp[cut] + fp[cut] + labels.sum())
    best = int(np.argmax(f1))
    return {"f1": float(f1[best]), "threshold": float(s[cut[best]])}


def label_metrics(labels: np.ndarray, scores: np.ndarray, margin: int = 100) -> dict:
    """hit, ROC AUC and best F1 of per-point scores against 0/1 labels."""
    found = hit(scores, labels, margin)
    f1 = best_f1(labels, scores)
    return {**found, "roc_auc": roc_auc(labels, scores), "best_f1": f1["f1"], "best_f1_threshold": f1["threshold"]}


def _shade(ax, labels: np.ndarray | None) -> None:
    if labels is None or not labels.any():
        return
    idx = np.nonzero(labels)[0]
    breaks = np.nonzero(np.diff(idx) > 1)[0]
    for a, b in zip(np.r_[idx[0], idx[breaks + 1]], np.r_[idx[breaks], idx[-1]]):
        ax.axvspan(a - 0.5, b + 0.5, color="tab:red", alpha=0.25, lw=0)


def plot_anomaly(
    values: np.ndarray,
    scores: dict[str, np.ndarray],
    labels: np.ndarray | None,
    train_points: int,
    path: str | Path,
    title: str = "",
) -> None:
    """The series (labelled anomaly shaded, training part marked) above one panel per score, its top point marked."""
    fig, axes = new_figure((12, 2.2 * (1 + len(scores))), nrows=1 + len(scores), ncols=1, sharex=True)
    axes[0].plot(values, lw=0.7)
    _shade(axes[0], labels)
    if train_points:
        axes[0].axvline(train_points - 0.5, color="gray", ls="--", lw=1, label=f"end of training part ({train_points})")
        axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_title(title or "series (labelled anomaly shaded)")
    for ax, (name, s) in zip(axes[1:], scores.items()):
        ax.plot(s, lw=0.7, color="tab:orange")
        top = int(np.argmax(s))
        ax.axvline(top, color="black", lw=0.8, ls=":")
        _shade(ax, labels)
        ax.set_ylabel(name, fontsize=8)
        ax.set_title(f"{name}: top point {top}", fontsize=9)
    axes[-1].set_xlabel("point")
    fig.tight_layout()
    save_figure(fig, path)


def plot_reconstructions(
    originals: list[np.ndarray], recons: list[np.ndarray], titles: list[str], path: str | Path
) -> None:
    """Each (T, C) series (solid) and its reconstruction (dashed), one panel each."""
    k = len(originals)
    fig, axes = new_figure((9, 2.2 * k), nrows=k, ncols=1, squeeze=False)
    for ax, x, r, t in zip(axes[:, 0], originals, recons, titles):
        for c in range(x.shape[1]):
            (line,) = ax.plot(x[:, c], lw=1, label="series" if c == 0 else None)
            ax.plot(r[:, c], lw=1, ls="--", color=line.get_color(), label="reconstruction" if c == 0 else None)
        ax.set_title(t, fontsize=9)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    save_figure(fig, path)

"""Clustering of embeddings: seeded k-means, the adjusted Rand index, a 2-D projection and its picture.

k-means: Lloyd's iterations from k-means++ starts (Arthur & Vassilvitskii
2007), ``n_init`` starts from one seeded generator, the lowest inertia kept.
ARI: Hubert & Arabie 1985, (index - expected) / (max - expected) over the
pair counts of the contingency table; 1 = the same partition, about 0 = chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import new_figure, save_figure

# Published adjusted Rand index on UCR sets (Holder & Bagnall 2024, "Rock the KASBA: blazingly
# fast and accurate time series clustering"): (Euclidean k-means, the best method reported).
PUBLISHED_ARI: dict[str, tuple[float, float]] = {
    "ArrowHead": (0.171, 0.234),
    "OSULeaf": (0.153, 0.310),
    "ACSF1": (0.162, 0.215),
}


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[rng.integers(len(x))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        i = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centres.append(x[i])
        d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(1))
    return np.array(centres)


def _sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.maximum((x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None, :], 0)  # (N, k)


def kmeans(
    x: np.ndarray, k: int, seed: int = 0, n_init: int = 10, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) points -> (assignments (N,), centres (k, D)) of the best of ``n_init`` seeded runs."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if not 1 <= k <= len(x):
        raise ValueError(f"k-means with {k} clusters needs at least {k} points, got {len(x)}")
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray, np.ndarray] | None = None  # (inertia, assignments, centres)
    for _ in range(n_init):
        centres = _plus_plus(x, k, rng)
        for _ in range(max_iter):
            d2 = _sq_distances(x, centres)
            assign = d2.argmin(1)
            new = centres.copy()
            for j in range(k):
                members = x[assign == j]
                new[j] = (
                    members.mean(0) if len(members) else x[d2.min(1).argmax()]
                )  # an empty cluster takes the farthest point
            if np.allclose(new, centres):
                break
            centres = new
        d2 = _sq_distances(x, centres)
        inertia = d2.min(1).sum()
        if best is None or inertia < best[0]:
            best = (inertia, d2.argmin(1), centres)
    assert best is not None  # n_init >= 1 runs
    return best[1], best[2]


def assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Nearest centre of each point: (N,)."""
    return _sq_distances(np.asarray(x, np.float64).reshape(len(x), -1), np.asarray(centres, np.float64)).argmin(1)


def adjusted_rand_index(a, b) -> float:
    """ARI of two labelings of the same points (any hashable labels)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) != len(b):
        raise ValueError(f"ARI of labelings of different sizes: {len(a)} and {len(b)}")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    pairs = lambda v: (v * (v - 1) / 2.0).sum()  # noqa: E731
    index, rows, cols, total = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), len(a) * (len(a) - 1) / 2.0
    expected = rows * cols / total if total else 0.0
    top = (rows + cols) / 2
    return 1.0 if top == expected else float((index - expected) / (top - expected))


def project_2d(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 2): the first two principal components (SVD of the centred points)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    out = x @ vt[:2].T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))  # D = 1: a zero second axis


def plot_embedding(
    xy: np.ndarray, clusters: np.ndarray, labels: list[str] | None, path: str | Path, title: str = ""
) -> None:
    """The 2-D projection coloured by k-means cluster and, when there are labels, by label."""
    panels = [("k-means cluster", [str(c) for c in clusters])] + ([("label", labels)] if labels is not None else [])
    fig, axes = new_figure((5.5 * len(panels), 4.8), nrows=1, ncols=len(panels), squeeze=False)
    for ax, (name, groups) in zip(axes[0], panels):
        names = sorted(set(groups), key=lambda g: (len(g), g))
        for g in names:
            sel = np.array([v == g for v in groups])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=10, alpha=0.8, label=g[:12])
        ax.set_title(f"{title} coloured by {name}".strip(), fontsize=9)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        if len(names) <= 12:
            ax.legend(fontsize=7, markerscale=1.5)
    save_figure(fig, path)

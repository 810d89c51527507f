"""Scoring the autoencoder: anomaly scores of a long series, and embeddings of a set of series.

Windows (one long series): each point's score is its squared reconstruction
error (averaged over channels) averaged over every window that covers it.
Beside it, the matrix-profile discord with the same window (computed in the
run). With labels: the archive's hit rule, ROC AUC and the best F1.

Series: each series' score is its mean squared reconstruction error (in
scaled units). Held-out reconstruction MSE beside two references: the mean
training series and PCA with as many components as the code (the best linear
autoencoder of that size; equal lengths only). The codes of every series are
clustered with k-means; with labels, the ARI beside Euclidean k-means on the
scaled series themselves and the published ARIs.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..evaluation import anomaly, clustering
from .autoencoder_data import AutoencoderState
from .autoencoder_model import SequenceAutoencoder, run, step_errors
from .base import Scored

PLOTTED = 4  # series (or windows) in reconstruction.png


def point_scores(model: SequenceAutoencoder, x: torch.Tensor, ln: torch.Tensor, starts: np.ndarray, n: int):
    """Per-point anomaly scores (n,) and the reconstructions of the windows."""
    _, recon = run(model, x, ln)
    return anomaly.point_scores(step_errors(x, recon, ln).numpy(), starts, n), recon


def _round(d: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}


def score_windows(model, cfg, state: AutoencoderState, data: dict, name: str) -> Scored:
    x, ln = data["score"]
    values, labels, starts = data["values"], data["labels"], data["starts"]
    scores, recon = point_scores(model, x, ln, starts, len(values))
    metrics: dict = {
        "data": name,
        "points": len(values),
        "train_points": state.train_points,
        "window": state.window,
        "top_point": int(np.argmax(scores)),
    }
    panels = {"autoencoder reconstruction error": scores}
    baseline = {}
    if len(values) >= 2 * state.window:
        assert state.norm_stats is not None  # windows: always global scaling
        discord = anomaly.discord_scores(
            (values - np.asarray(state.norm_stats["mean"])) / np.asarray(state.norm_stats["std"]), state.window
        )
        panels["matrix-profile discord distance"] = discord
        baseline = {"top_point": int(np.argmax(discord))}
    if labels is not None and labels.any() and not labels.all():
        metrics.update(_round(anomaly.label_metrics(labels, scores, cfg.margin)))
        if baseline:
            baseline.update(
                _round(anomaly.label_metrics(labels, panels["matrix-profile discord distance"], cfg.margin))
            )
        where = np.nonzero(labels)[0]
        metrics["labelled_anomaly"] = [int(where[0]), int(where[-1])]
    if baseline:
        metrics["baselines"] = {"matrix_profile_discord": baseline}
    metrics["summary"] = _window_summary(metrics)
    nearest = lambda start: int(np.argmin(np.abs(starts - start)))  # noqa: E731  (the window starting nearest there)
    picks = {
        nearest(state.train_points - state.window): "the last training window",
        nearest(metrics["top_point"] - state.window // 2): "the window centred nearest the top point",
    }  # one entry if the same
    draw_windows = functools.partial(
        anomaly.plot_reconstructions,
        [x[i].numpy() for i in picks],
        [recon[i].numpy() for i in picks],
        [f"{what}: points {starts[i]}-{starts[i] + state.window - 1} (scaled)" for i, what in picks.items()],
    )
    draw_scores = functools.partial(
        anomaly.plot_anomaly,
        values[:, 0],
        panels,
        labels,
        state.train_points if state.train_points < len(values) else 0,
        title=f"{name} (labelled anomaly shaded)",
    )
    return Scored(metrics, {"anomaly.png": draw_scores, "reconstruction.png": draw_windows})


def _window_summary(m: dict) -> str:
    text = f"top point {m['top_point']}"
    if "hit" in m:
        text += f" ({'hit' if m['hit'] else 'miss'}, {m['distance']} from the labelled anomaly), ROC AUC {m['roc_auc']:.3f}, best F1 {m['best_f1']:.3f}"
    d = m.get("baselines", {}).get("matrix_profile_discord")
    if d and "hit" in d:
        text += f"; discord: top point {d['top_point']} ({'hit' if d['hit'] else 'miss'}), ROC AUC {d['roc_auc']:.3f}, best F1 {d['best_f1']:.3f}"
    return text


def series_scores(model, x: torch.Tensor, ln: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Codes (N, K), per-series MSE (N,) and the reconstructions."""
    codes, recon = run(model, x, ln)
    mse = step_errors(x, recon, ln).sum(1) / ln.to(recon.dtype)
    return codes.numpy(), mse.double().numpy(), recon


def _pca_mse(train: np.ndarray, test: np.ndarray, k: int) -> float:
    """Held-out MSE of PCA with k components fitted on ``train`` (N, T*C)."""
    mu = train.mean(0)
    _, _, vt = np.linalg.svd(train - mu, full_matrices=False)
    v = vt[:k]
    recon = (test - mu) @ v.T @ v + mu
    return float(((recon - test) ** 2).mean())


def reconstruction_baselines(data: dict, code_size: int) -> dict:
    (xf, lf), (xt, lt) = data["fit"], data["test"]
    if len(set(lf.tolist()) | set(lt.tolist())) != 1:
        return {}
    a, b = xf.reshape(len(xf), -1).double().numpy(), xt.reshape(len(xt), -1).double().numpy()
    return {
        "mean_series": {"mse": round(float(((b - a.mean(0)) ** 2).mean()), 6)},
        f"pca_{code_size}": {"mse": round(_pca_mse(a, b, min(code_size, len(a))), 6)},
    }


def score_series(model, cfg, state: AutoencoderState, data: dict, name: str) -> Scored:
    x, ln = data["all"]
    codes, mse, recon = series_scores(model, x, ln)
    metrics = {"data": name, "series": len(x), "code_size": codes.shape[1], "clusters": state.clusters}
    plots = {}
    if data["test"] is not None:
        held = data["test_index"]
        metrics.update(
            test_size=len(held),
            test_mse=round(float(mse[held].mean()), 6),
            baselines=reconstruction_baselines(data, codes.shape[1]),
        )
        picks = held[:PLOTTED]
        plots["reconstruction.png"] = functools.partial(
            anomaly.plot_reconstructions,
            [x[i, : ln[i]].numpy() for i in picks],
            [recon[i, : ln[i]].numpy() for i in picks],
            [
                f"held-out series {i + 1}"
                + (f" (label {data['labels'][i]})" if data["labels"] else "")
                + f", MSE {mse[i]:.3f}"
                for i in picks
            ],
        )
    labels = data["labels"]
    if not state.clusters:  # no labels and no --clusters
        metrics["summary"] = "; ".join(
            p for p in (_series_summary(metrics), "no clustering (no labels: give --clusters K)") if p
        )
        plots["embedding.png"] = functools.partial(
            clustering.plot_embedding,
            clustering.project_2d(codes),
            np.zeros(len(codes), int),
            None,
            title=f"{name} codes (PCA)",
        )
        return Scored(metrics, plots)
    found, _ = clustering.kmeans(codes, state.clusters, seed=cfg.seed)
    if labels is not None:
        metrics["ari"] = round(clustering.adjusted_rand_index(labels, found), 6)
        if len(set(ln.tolist())) == 1:
            raw, _ = clustering.kmeans(x.reshape(len(x), -1).numpy(), state.clusters, seed=cfg.seed)
            metrics.setdefault("baselines", {})["kmeans_euclidean"] = {
                "ari": round(clustering.adjusted_rand_index(labels, raw), 6)
            }
        if name in clustering.PUBLISHED_ARI:
            euclid, best = clustering.PUBLISHED_ARI[name]
            metrics.setdefault("baselines", {}).update(
                kmeans_euclidean_published={"ari": euclid}, best_published={"ari": best}
            )
    metrics["summary"] = _series_summary(metrics)
    plots["embedding.png"] = functools.partial(
        clustering.plot_embedding, clustering.project_2d(codes), found, labels, title=f"{name} codes (PCA)"
    )
    return Scored(metrics, plots)


def _series_summary(m: dict) -> str:
    parts = []
    b = m.get("baselines", {})
    if "test_mse" in m:
        refs = ", ".join(f"{k} {v['mse']:.4g}" for k, v in b.items() if "mse" in v)
        parts.append(f"held-out reconstruction MSE {m['test_mse']:.4g}" + (f" ({refs})" if refs else ""))
    if "ari" in m:
        refs = ", ".join(f"{k} {v['ari']:.3f}" for k, v in b.items() if "ari" in v)
        parts.append(f"ARI of k-means on the codes {m['ari']:.3f}" + (f" ({refs})" if refs else ""))
    return "; ".join(parts)

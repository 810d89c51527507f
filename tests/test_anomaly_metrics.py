"""The unsupervised scores against brute force and scikit-learn: matrix profile, ROC AUC, best F1, ARI, k-means."""

from __future__ import annotations

import numpy as np
import pytest

from grukit.evaluation import anomaly, clustering


def brute_profile(x: np.ndarray, m: int) -> np.ndarray:
    z = [(w - w.mean()) / w.std() for w in (x[i : i + m] for i in range(len(x) - m + 1))]
    return np.array([min(np.linalg.norm(a - b) for j, b in enumerate(z) if abs(i - j) >= m) for i, a in enumerate(z)])


def test_matrix_profile_matches_brute_force_and_finds_a_discord():
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(300) / 4) + 0.1 * rng.standard_normal(300)
    x[200:206] = 1.5
    mp = anomaly.matrix_profile(x, 20, chunk=37)  # chunks that do not divide the windows
    np.testing.assert_allclose(mp, brute_profile(x, 20), rtol=1e-7, atol=1e-7)
    assert 180 <= int(np.argmax(mp)) <= 206
    with pytest.raises(ValueError, match="two non-overlapping windows"):
        anomaly.matrix_profile(x[:39], 20)


def test_point_scores_average_the_covering_windows():
    starts = anomaly.window_starts(7, 3, 2)
    assert starts.tolist() == [0, 2, 4]
    scores = anomaly.point_scores(np.array([[1.0] * 3, [2.0] * 3, [4.0] * 3]), starts, 7)
    np.testing.assert_allclose(scores, [1, 1, 1.5, 2, 3, 4, 4])
    assert anomaly.window_starts(8, 3, 2).tolist() == [0, 2, 4, 5]  # the last window ends at the end
    with pytest.raises(ValueError, match="fewer than one window"):
        anomaly.window_starts(2, 3, 1)


def test_roc_auc_best_f1_and_hit():
    labels = np.array([0, 0, 1, 1, 0, 0])
    scores = np.array([0.1, 0.4, 0.4, 0.8, 0.2, 0.4])
    assert anomaly.roc_auc(labels, scores) == pytest.approx(
        7 / 8
    )  # 0.8 beats all 4 normal points; 0.4 beats 2 and ties 2 (half each)
    best = anomaly.best_f1(labels, scores)
    assert best["f1"] == pytest.approx(2 / 3) and best["threshold"] == pytest.approx(0.8)
    assert anomaly.hit(scores, labels, margin=0) == {"top_point": 3, "distance": 0, "hit": True}
    assert not anomaly.hit(np.arange(300.0), np.r_[1, np.zeros(299)], margin=100)["hit"]
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y, s = rng.integers(0, 2, 500), np.round(rng.standard_normal(500), 1)  # many ties
    assert anomaly.roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    precision, recall, _ = sk.precision_recall_curve(y, s)
    assert anomaly.best_f1(y, s)["f1"] == pytest.approx(np.nanmax(2 * precision * recall / (precision + recall)))


def test_ari_and_kmeans():
    assert clustering.adjusted_rand_index([0, 0, 1, 1], ["b", "b", "a", "a"]) == 1.0
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 3, 200), rng.integers(0, 4, 200)
    assert clustering.adjusted_rand_index(a, b) == pytest.approx(sk.adjusted_rand_score(a, b), abs=1e-12)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    x = np.concatenate([c + rng.standard_normal((30, 2)) for c in centres])
    found, fitted = clustering.kmeans(x, 3, seed=0)
    assert clustering.adjusted_rand_index(np.repeat([0, 1, 2], 30), found) == 1.0
    assert (clustering.assign(x, fitted) == found).all()
    again, _ = clustering.kmeans(x, 3, seed=0)
    assert (again == found).all()
    assert clustering.project_2d(x).shape == (90, 2)

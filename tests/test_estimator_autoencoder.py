"""grukit.GRUAutoencoder: the scikit-learn estimator over the autoencoder task (needs scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
from test_autoencoder import run, write_shapes


def test_estimator_codes_scores_and_run_directory(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.base import clone

    import grukit
    from grukit.data import numeric

    d = write_shapes(tmp_path / "S")
    items = numeric.read_series(d / "S_TRAIN.tsv")
    X = np.stack([s[:, 0] for s in items.series])  # (30, 60)
    est = grukit.GRUAutoencoder(epochs=3, hidden_size=8, code_size=5)
    assert clone(est).get_params()["code_size"] == 5
    with pytest.raises(Exception, match="not fitted"):
        est.transform(X)
    est.fit(X)
    codes = est.transform(X)
    assert codes.shape == (30, 5) and est.n_features_in_ == 1 and len(est.history_) == 3
    errors = est.reconstruction_error(X)
    assert errors.shape == (30,) and (errors > 0).all()
    np.testing.assert_allclose(est.score_samples(X), -errors)
    assert est.transform(list(X[:, :50]) + [X[0]]).shape == (31, 5)  # unequal lengths as a list
    back = grukit.GRUAutoencoder.load(est.save(tmp_path / "saved"))
    np.testing.assert_allclose(back.transform(X), codes, rtol=1e-5, atol=1e-6)
    assert len(run("predict", tmp_path / "saved", "--data", d / "S_TEST.tsv").output.strip().splitlines()) == 30
    with pytest.raises(ValueError, match="X must be a set of series"):
        est.transform(X[0])


def test_estimator_long_series_scores_every_point(tmp_path):
    pytest.importorskip("sklearn")
    import grukit

    rng = np.random.default_rng(0)
    x = np.sin(2 * np.pi * np.arange(600) / 30) + 0.05 * rng.standard_normal(600)
    x[400] += 3
    est = grukit.GRUAutoencoder(window=30, stride=2, epochs=4, hidden_size=8, code_size=4).fit(x[:300])
    scores = est.reconstruction_error(x)
    assert scores.shape == (600,) and abs(int(np.argmax(scores)) - 400) <= 2
    assert est.transform(x).shape == (286, 4)  # windows starting every 2 points, the last one ending at the end
    with pytest.raises(ValueError, match="fewer than one window"):
        est.transform(x[:20])


def test_estimator_loads_a_cli_run(tmp_path):
    pytest.importorskip("sklearn")
    import grukit
    from grukit.data import numeric

    d = write_shapes(tmp_path / "S", n=10)
    out = tmp_path / "run"
    run(
        "train",
        "autoencoder",
        "--data",
        d,
        "--epochs",
        2,
        "--hidden-size",
        8,
        "--code-size",
        3,
        "--no-progress",
        "--out",
        out,
    )
    est = grukit.GRUAutoencoder.load(out)
    X = np.stack([s[:, 0] for s in numeric.read_series(d / "S_TEST.tsv").series])
    assert est.code_size == 3 and est.transform(X).shape == (10, 3)
    lines = run("predict", out, "--data", d / "S_TEST.tsv").output.strip().splitlines()
    np.testing.assert_allclose([float(line.split("\t")[1]) for line in lines], est.reconstruction_error(X), rtol=1e-4)

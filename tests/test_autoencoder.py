"""The autoencoder task end to end through the CLI: anomaly scores on a long series, clustering of a set of series."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from grukit.cli import main

SMALL = ["--hidden-size", "16", "--code-size", "4", "--no-progress"]
SPIKE = 703  # where write_sine puts its spike


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def write_sine(path, n=1000, period=40, spike=SPIKE, seed=0):
    """A noisy sine with one spike (labelled, 3 points) at ``spike``; columns t, value, label."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.sin(2 * np.pi * t / period) + 0.05 * rng.standard_normal(n)
    label = np.zeros(n, dtype=int)
    if spike is not None:
        x[spike : spike + 3] += 2.5
        label[spike : spike + 3] = 1
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "value", "label"])
        w.writerows(zip(t, np.round(x, 5), label))
    return path


def write_shapes(folder, n=30, length=60, seed=0):
    """Two clearly different shapes, a sine period and a square wave, with noise: TRAIN and TEST files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.linspace(0, 1, length)
    for split in ("TRAIN", "TEST"):
        rows = []
        for i in range(n):
            label = i % 2
            shift = rng.uniform(-0.05, 0.05)
            base = np.sin(2 * np.pi * (t + shift)) if label == 0 else np.sign(np.sin(4 * np.pi * (t + shift)))
            values = base + 0.1 * rng.standard_normal(length)
            rows.append("\t".join([str(label + 1)] + [f"{v:.4f}" for v in values]))
        (folder / f"S_{split}.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_spike_is_the_top_point_for_the_autoencoder_and_the_discord(tmp_path):
    data = write_sine(tmp_path / "sine.csv")
    out = tmp_path / "run"
    result = run(
        "train",
        "autoencoder",
        "--data",
        data,
        "--column",
        "value",
        "--label-column",
        "label",
        "--train-points",
        500,
        "--epochs",
        6,
        "--out",
        out,
        *SMALL,
    )
    assert "matrix_profile_discord" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["window"] == 40  # --window auto: the period
    assert metrics["hit"] and SPIKE - 5 <= metrics["top_point"] <= SPIKE + 7, metrics
    assert metrics["roc_auc"] > 0.95 and metrics["best_f1"] > 0.5
    discord = metrics["baselines"]["matrix_profile_discord"]
    assert discord["hit"] and abs(discord["top_point"] - SPIKE) < 40
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert min(h["val_loss"] for h in history) < 0.5 * history[0]["val_loss"]  # it learned the sine
    for name in ("anomaly.png", "reconstruction.png", "loss.png", "model.safetensors"):
        assert (out / name).is_file()
    again = json.loads(run("eval", "--json", out).output)
    assert again["top_point"] == metrics["top_point"] and again["roc_auc"] == pytest.approx(
        metrics["roc_auc"], abs=1e-6
    )
    run("predict", out, "--data", data, "--to", tmp_path / "points.csv")
    with open(tmp_path / "points.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1000 and set(rows[0]) == {"point", "value", "score", "label"}
    scores = np.array([float(r["score"]) for r in rows])
    assert int(np.argmax(scores)) == metrics["top_point"]


def test_a_clean_series_scores_its_spike_without_labels(tmp_path):
    """Trained on a clean series, scored on one with a spike (no label column): the spike is the top point."""
    clean, spiky = write_sine(tmp_path / "clean.csv", n=400, spike=None), write_sine(tmp_path / "spiky.csv", seed=1)
    out = tmp_path / "run"
    run("train", "autoencoder", "--data", clean, "--column", "value", "--epochs", 5, "--out", out, *SMALL)
    metrics = json.loads(run("eval", "--json", out, "--data", spiky).output)
    assert "hit" not in metrics and metrics["top_point"] in range(SPIKE - 5, SPIKE + 8)


def test_clustering_two_shapes_codes_and_round_trip(tmp_path):
    data = write_shapes(tmp_path / "S")
    out = tmp_path / "run"
    run(
        "train",
        "autoencoder",
        "--data",
        data,
        "--epochs",
        100,
        "--hidden-size",
        32,
        "--code-size",
        8,
        "--no-progress",
        "--out",
        out,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["series"] == 60 and metrics["clusters"] == 2 and metrics["test_size"] == 12
    assert metrics["ari"] > 0.8, metrics
    assert set(metrics["baselines"]) == {"mean_series", "pca_8", "kmeans_euclidean"}
    assert metrics["test_mse"] < 0.5 * metrics["baselines"]["mean_series"]["mse"]
    for name in ("embedding.png", "reconstruction.png"):
        assert (out / name).is_file()
    again = json.loads(run("eval", "--json", out).output)
    assert again["ari"] == pytest.approx(metrics["ari"]) and again["test_mse"] == pytest.approx(
        metrics["test_mse"], rel=1e-5
    )
    lines = run("predict", out, "--data", data / "S_TEST.tsv").output.strip().splitlines()
    assert len(lines) == 30
    cells = [line.split("\t") for line in lines]
    assert all(len(c) == 3 + 8 for c in cells)  # id, score, cluster, then the code_size = 8 numbers
    clusters = np.array([int(c[2]) for c in cells])
    assert (clusters[0::2] != clusters[1::2]).mean() > 0.9  # the two shapes alternate in the file


@pytest.mark.parametrize(
    "content,flags,message",
    [
        (
            "t,value\n" + "".join(f"{i},{np.sin(i / 3):.3f}\n" for i in range(30)),
            ["--window", 50],
            "fewer than one window of --window 50",
        ),
        ("t,value\n" + "".join(f"{i},5\n" for i in range(300)), ["--column", "value"], "the series is constant"),
        ("a,b\nx,y\nz,w\n", [], "no numeric column found"),
        (
            "t,value,label\n" + "".join(f"{i},{i % 7},{i % 3}\n" for i in range(300)),
            ["--label-column", "label"],
            "must hold 0 (normal) or 1",
        ),
    ],
)
def test_bad_long_series_get_one_line(tmp_path, content, flags, message):
    (tmp_path / "bad.csv").write_text(content)
    result = run(
        "train", "autoencoder", "--data", tmp_path / "bad.csv", "--out", tmp_path / "run", *flags, *SMALL, ok=False
    )
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output


def test_constant_series_set_and_bad_flags(tmp_path):
    (tmp_path / "C_TRAIN.tsv").write_text("".join(f"{i % 2}\t1\t1\t1\t1\n" for i in range(10)))
    result = run(
        "train", "autoencoder", "--data", tmp_path / "C_TRAIN.tsv", "--out", tmp_path / "run", *SMALL, ok=False
    )
    assert result.exit_code == 1 and "every series is constant" in result.output
    result = run("train", "autoencoder", "--window", 1, "--out", tmp_path / "run2", ok=False)
    assert result.exit_code == 1 and "--window must be >= 2" in result.output


def test_kdd_tsad_135_reads_the_bundled_archive_series():
    pytest.importorskip("aeon")
    from grukit.tasks import autoencoder_data as ad

    s = ad.kdd_tsad_135()
    assert s.values.shape == (7501, 1) and s.train_points == 1200
    assert np.nonzero(s.labels)[0].tolist() == list(range(4187, 4199))


def test_one_shared_label_means_no_clustering_unless_asked(tmp_path):
    rows = ["1\t" + "\t".join(f"{v:.3f}" for v in np.sin(np.arange(20) / (2 + i % 3))) for i in range(12)]
    (tmp_path / "one.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    run("train", "autoencoder", "--data", tmp_path / "one.tsv", "--epochs", 1, "--out", out, *SMALL)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clusters"] == 0 and "ari" not in metrics and "no clustering" in metrics["summary"]
    lines = run("predict", out, "--data", tmp_path / "one.tsv").output.strip().splitlines()
    assert len(lines) == 12 and all(line.split("\t")[2] == "-" for line in lines)  # no cluster to assign

"""Every task with every cell through the CLI: --cell, --zoneout, --recurrent-dropout, --weight-dropout.

Each task trains on tiny data made here, for a second or two; eval rebuilds the
same cell from config.json and gets the same test metric; the options reach
the built layer; bad values are one line, exit code 1, and no run directory.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import grukit
from grukit.cli import main
from grukit.tasks import TASKS, cells

VERSE = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
OPTIONS = {"zoneout": 0.1, "recurrent_dropout": 0.2, "weight_dropout": 0.3}  # given to the lngru runs


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ---- tiny data, one maker per task ----------------------------------------------


def ucr(folder, target_is_mean=False, n=16, length=10):
    """TRAIN/TEST .tsv files: two classes (a rising and a falling ramp), or a number target (the series' mean)."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for split in ("TRAIN", "TEST"):
        rows = []
        for i in range(n):
            sign = 1 if i % 2 else -1
            values = (
                sign * np.linspace(-1, 1, length)
                + 0.1 * rng.standard_normal(length)
                + (rng.standard_normal() if target_is_mean else 0)
            )
            head = f"{values.mean():.5f}" if target_is_mean else str(i % 2 + 1)
            rows.append("\t".join([head] + [f"{v:.4f}" for v in values]))
        (folder / f"T_{split}.tsv").write_text("\n".join(rows) + "\n")
    return ["--data", folder]


def series_csv(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = ["day,value"] + [
        f"{date(2020, 1, 1) + timedelta(days=i)},{10 + 3 * np.sin(2 * np.pi * i / 7) + 0.1 * rng.standard_normal():.4f}"
        for i in range(120)
    ]
    (folder / "s.csv").write_text("\n".join(lines) + "\n")
    return ["--data", folder / "s.csv"]


def text(folder):
    folder.mkdir()
    (folder / "verse.txt").write_text(VERSE * 30)
    return ["--data", folder / "verse.txt"]


SMALL = ["--no-progress"]
TASK_ARGS = {  # task -> (data maker, tiny flags, the test metric in metrics.json / eval's output)
    "adding": (
        lambda d: [],
        ["--epochs", "1", "--steps", "5", "--eval-pairs", "20", "--hidden-size", "4"],
        lambda m: m["accuracy_by_bits"],
    ),
    "classify": (ucr, ["--epochs", "2", "--hidden-size", "4", "--batch-size", "8"], lambda m: m["accuracy"]),
    "regress": (
        lambda d: ucr(d, target_is_mean=True),
        ["--epochs", "2", "--hidden-size", "4", "--batch-size", "8"],
        lambda m: m["mae"],
    ),
    "forecast": (
        series_csv,
        [
            "--epochs",
            "2",
            "--steps",
            "3",
            "--batch-size",
            "8",
            "--hidden-size",
            "4",
            "--lookback",
            "8",
            "--horizon",
            "3",
        ],
        lambda m: m["gru"],
    ),
    "lm": (
        text,
        [
            "--epochs",
            "1",
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--seq-len",
            "16",
            "--hidden-size",
            "8",
            "--embedding-size",
            "4",
        ],
        lambda m: m["bpc"],
    ),
}
LOADERS = {
    task: (lambda t, r: t.load(r)[2]) for task in TASK_ARGS
}  # the model a run directory rebuilds (what eval/predict/generate use)


def train(task, cell, tmp_path, *extra):
    make, tiny, _ = TASK_ARGS[task]
    out = tmp_path / "run"
    args = make(tmp_path / "data") + tiny + SMALL + ["--cell", cell, *extra]
    if task == "classify" and cell == "mingru":
        args.append("--no-bidirectional")  # classify reads both ways by default; minGRU has one direction
    r = run("train", task, "--out", out, *args)
    assert r.exit_code == 0, r.output
    return out


# ---- every task x every cell ------------------------------------------------------


@pytest.mark.parametrize("cell", cells.CELLS)
@pytest.mark.parametrize("task", list(TASK_ARGS))
def test_every_task_trains_every_cell_and_eval_rebuilds_it(task, cell, tmp_path):
    options = OPTIONS if cell == "lngru" else {}
    out = train(task, cell, tmp_path, *[a for k, v in options.items() for a in ("--" + k.replace("_", "-"), v)])
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["cell"] == cell and {k: saved[k] for k in OPTIONS} == {**dict.fromkeys(OPTIONS, 0.0), **options}
    metric = TASK_ARGS[task][2]
    r = run("eval", "--json", out)
    assert r.exit_code == 0, r.output
    assert metric(json.loads(r.output)) == pytest.approx(
        metric(json.loads((out / "metrics.json").read_text())), rel=1e-5
    )

    layer = LOADERS[task](TASKS[task], out).gru
    if cell == "mingru":
        assert isinstance(layer, grukit.MinGRU)
    else:
        assert type(layer) is grukit.GRU and layer.layer_norm == (cell == "lngru")
        assert {k: getattr(layer, k) for k in OPTIONS} == {**dict.fromkeys(OPTIONS, 0.0), **options}


@pytest.mark.parametrize("cell", cells.CELLS)
def test_bfloat16_reaches_every_cell(cell, tmp_path):
    out = train("adding", cell, tmp_path, "--dtype", "bfloat16")
    assert LOADERS["adding"](TASKS["adding"], out).gru.compute_dtype == torch.bfloat16
    assert run("eval", "--json", out).exit_code == 0


def test_resume_keeps_the_cell_and_its_options(tmp_path):
    out = train("adding", "lngru", tmp_path, "--zoneout", "0.1")
    r = run("train", "adding", "--resume", out, "--epochs", "2", "--no-progress")
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["cell"] == "lngru" and saved["zoneout"] == 0.1 and saved["epochs"] == 2
    layer = LOADERS["adding"](TASKS["adding"], out).gru
    assert layer.layer_norm and layer.zoneout == 0.1


def test_a_run_from_before_cells_loads_as_gru(tmp_path):
    """config.json without cell, zoneout, ...: the defaults, the plain GRU."""
    out = train("adding", "gru", tmp_path)
    meta = json.loads((out / "config.json").read_text())
    for name in ("cell", *OPTIONS):
        del meta["config"][name]
    (out / "config.json").write_text(json.dumps(meta))
    r = run("eval", "--json", out)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["accuracy"] == json.loads((out / "metrics.json").read_text())["accuracy"]
    assert LOADERS["adding"](TASKS["adding"], out).gru.cell_options() == []


# ---- bad values: one line, exit code 1, nothing written --------------------------


@pytest.mark.parametrize("task", list(TASK_ARGS))
@pytest.mark.parametrize(
    "args, message",
    [
        (["--cell", "foo"], "--cell must be one of gru, lngru, mingru, got 'foo'"),
        (["--zoneout", "1.5"], "--zoneout must be in [0, 1), got 1.5"),
        (["--zoneout", "nan"], "--zoneout must be in [0, 1), got nan"),
        (["--recurrent-dropout", "-0.1"], "--recurrent-dropout must be in [0, 1), got -0.1"),
        (["--weight-dropout", "inf"], "--weight-dropout must be in [0, 1), got inf"),
        (["--cell", "mingru", "--zoneout", "0.1"], "--zoneout is not available for --cell mingru"),
        (["--cell", "mingru", "--weight-dropout", "0.1"], "--weight-dropout is not available for --cell mingru"),
    ],
)
def test_bad_cell_values_are_one_line(task, args, message, tmp_path):
    out = tmp_path / "run"
    r = run("train", task, "--out", out, *TASK_ARGS[task][0](tmp_path / "data"), *SMALL, *args)
    assert r.exit_code == 1, r.output
    assert r.output.strip() == f"Error: {message}"
    assert not out.exists()


@pytest.mark.parametrize(
    "task, args, message",
    [
        ("classify", [], "--bidirectional is not available for --cell mingru"),  # classify's default is both ways
        (
            "lm",
            ["--num-layers", "2", "--dropout", "0.1"],
            "--dropout is not available for --cell mingru; MinGRU has no dropout between layers",
        ),
    ],
)
def test_options_mingru_lacks_are_one_line(task, args, message, tmp_path):
    out = tmp_path / "run"
    r = run("train", task, "--out", out, *TASK_ARGS[task][0](tmp_path / "data"), *SMALL, "--cell", "mingru", *args)
    assert r.exit_code == 1, r.output
    assert r.output.strip() == f"Error: {message}"
    assert not out.exists()


# ---- the registry itself -----------------------------------------------------------


@pytest.mark.parametrize("cell", cells.CELLS)
def test_every_cell_takes_the_same_call(cell):
    """layer(x, h0, lengths=...) -> (output, h_n), padding zero and h_n each sequence's last state."""
    layer = cells.recurrent(cell, 3, 5, num_layers=2)
    x, lengths = torch.randn(4, 6, 3), torch.tensor([6, 2, 4, 1])  # (B, T, I)
    out, h_n = layer(x, None, lengths=lengths)  # (B, T, H), (L, B, H)
    assert out.shape == (4, 6, 5) and h_n.shape == (2, 4, 5)
    assert out[1, 2:].abs().max() == 0
    torch.testing.assert_close(h_n[-1], out[torch.arange(4), lengths - 1])
    out2, _ = layer(x[:1], h_n[:, :1])  # a given h0
    assert out2.shape == (1, 6, 5)

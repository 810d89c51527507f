"""--log csv|tensorboard: per-epoch logs that agree with history.jsonl, also across --resume."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch
from click.testing import CliRunner

from grukit.cli import main
from grukit.training import LoopConfig, fit, logs

TINY = ["--epochs", "2", "--steps", "5", "--eval-pairs", "20", "--no-progress"]


def run(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def read_history(run_dir):
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def read_csv(run_dir):
    with (run_dir / "log.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def assert_csv_matches_history(run_dir):
    header, rows = read_csv(run_dir)
    history = read_history(run_dir)
    assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in history]
    for row, h in zip(rows, history):
        assert {k: float(v) for k, v in row.items()} == {k: float(h[k]) for k in header}  # written at full precision
    return header, rows


def test_cli_csv_log_has_a_row_per_epoch_and_the_history_columns(tmp_path):
    out = tmp_path / "run"
    run("train", "adding", "--out", out, *TINY, "--log", "csv")
    header, rows = assert_csv_matches_history(out)
    assert header == ["epoch", "train_loss", "val_loss", "val_accuracy", "seconds"] and len(rows) == 2
    assert json.loads((out / "config.json").read_text())["config"]["log"] == "csv"
    run("train", "adding", "--resume", out, "--epochs", "3", "--no-progress")  # the run's --log carries on
    assert len(assert_csv_matches_history(out)[1]) == 3


def test_cli_resume_drops_rows_at_or_after_the_resumed_epoch(tmp_path):
    out = tmp_path / "run"
    run("train", "adding", "--out", out, *TINY, "--log", "csv")
    with (out / "log.csv").open("a") as f:  # an epoch logged whose checkpoint never made it to disk
        f.write("2,9.0,9.0,9.0,9.0\n3,9.0,9.0,9.0,9.0\n")
    run("train", "adding", "--resume", out, "--epochs", "4", "--no-progress")
    _header, rows = assert_csv_matches_history(out)
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3"] and "9.0" not in {r["train_loss"] for r in rows}


def test_cli_log_added_on_resume_holds_the_earlier_epochs_too(tmp_path):
    out = tmp_path / "run"
    run("train", "adding", "--out", out, *TINY)
    assert not (out / "log.csv").exists()
    run("train", "adding", "--resume", out, "--epochs", "3", "--log", "csv", "--no-progress")
    assert len(assert_csv_matches_history(out)[1]) == 3


class Interrupted:
    """A linear fit that raises KeyboardInterrupt (Ctrl-C) when the given epoch starts."""

    monitor, mode = "val_loss", "min"

    def __init__(self, at=None):
        self.at = at

    def batches(self, epoch, gen):
        if epoch == self.at:
            raise KeyboardInterrupt
        x = torch.randn(16, 1, generator=gen)
        return [(x, 3 * x - 1)]

    def loss(self, model, batch):
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1])

    def validate(self, model):
        x = torch.linspace(-1, 1, 8).unsqueeze(1)
        return {"val_loss": self.loss(model, (x, 3 * x - 1)).item()}


@pytest.mark.parametrize("kind", ["csv", "tensorboard"])
def test_interrupt_then_resume_keeps_the_log_consistent(tmp_path, kind):
    if kind == "tensorboard":
        pytest.importorskip(
            "tensorboard", reason="the optional tensorboard package (pip install 'grukit[log]') is not installed"
        )
    cfg = LoopConfig(epochs=5, lr=0.1, progress=False, log=kind)
    with pytest.raises(KeyboardInterrupt):
        fit(torch.nn.Linear(1, 1), Interrupted(at=3), cfg, tmp_path)
    assert (
        len(scalars(tmp_path, "train_loss") if kind == "tensorboard" else read_csv(tmp_path)[1]) == 3
    )  # closed, not lost
    if kind == "tensorboard":  # an epoch logged whose checkpoint never made it to disk: TensorBoard must drop it
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(tmp_path / "tensorboard")) as orphan:
            orphan.add_scalar("val_loss", 99.0, 3)
        assert [s for s, _ in scalars(tmp_path, "val_loss")] == [0, 1, 2, 3]
    history = fit(torch.nn.Linear(1, 1), Interrupted(), cfg, tmp_path, resume=True)
    if kind == "csv":
        assert assert_csv_matches_history(tmp_path)[0] == ["epoch", "train_loss", "val_loss", "seconds"]
    else:
        got = scalars(tmp_path, "val_loss")
        assert [s for s, _ in got] == [0, 1, 2, 3, 4]
        assert [v for _, v in got] == pytest.approx([h["val_loss"] for h in history], rel=1e-6)


def scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_cli_tensorboard_events_hold_every_scalar_per_epoch(tmp_path):
    pytest.importorskip(
        "tensorboard", reason="the optional tensorboard package (pip install 'grukit[log]') is not installed"
    )
    out = tmp_path / "run"
    run("train", "adding", "--out", out, *TINY, "--log", "tensorboard")
    history = read_history(out)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    for tag in ("train_loss", "val_loss", "val_accuracy", "seconds"):
        got = scalars(out, tag)
        assert [s for s, _ in got] == [0, 1], tag  # step = the epoch column of history.jsonl
        assert [v for _, v in got] == pytest.approx([h[tag] for h in history], rel=1e-6), tag


def test_tensorboard_missing_fails_in_one_line_before_writing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    out = tmp_path / "run"
    result = run("train", "adding", "--out", out, *TINY, "--log", "tensorboard", code=1)
    assert result.output.strip().splitlines() == [
        "Error: --log tensorboard needs the tensorboard package: pip install 'grukit[log]'"
    ]
    assert not out.exists()
    with pytest.raises(ValueError, match=r"pip install 'grukit\[log\]'"):
        fit(
            torch.nn.Linear(1, 1),
            Interrupted(),
            LoopConfig(epochs=1, progress=False, log="tensorboard"),
            tmp_path / "fit",
        )
    assert not (tmp_path / "fit").exists()


def test_unknown_log_kind_is_named():
    with pytest.raises(ValueError, match="--log must be one of none, csv, tensorboard, got 'xml'"):
        logs.check("xml")

"""The main job end to end through the CLI: train adding, predict, eval, resume, bad flags."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from grukit.cli import main

TINY = ["--epochs", "2", "--steps", "10", "--eval-pairs", "50", "--no-progress"]


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_default_run_adds_64_bit_numbers_exactly(tmp_path):
    """The headline claim: trained on <= 8-bit numbers, exact on held-out 64-bit sums."""
    out = tmp_path / "adding"
    run("train", "adding", "--out", out, "--no-progress")
    for name in (
        "config.json",
        "model.safetensors",
        "metrics.json",
        "history.jsonl",
        "loss.png",
        "checkpoint.safetensors",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == 1.0
    assert metrics["accuracy_by_bits"] == {"8": 1.0, "16": 1.0, "32": 1.0, "64": 1.0}
    a, b = 18446744073709551615, 12345678901234567890
    result = run("predict", out, a, b)
    assert result.output.strip() == f"{a} + {b} = {a + b}  (correct)"
    assert json.loads(run("eval", "--json", out).output)["accuracy_by_bits"]["64"] == 1.0


def test_short_run_writes_everything_and_resumes(tmp_path):
    out = tmp_path / "r"
    run("train", "adding", "--out", out, *TINY)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [0, 1]
    assert {"train_loss", "val_loss", "val_accuracy", "seconds"} <= set(history[0])
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "adding" and config["config"]["steps"] == 10
    run("train", "adding", "--resume", out, "--epochs", "3", "--no-progress")
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [0, 1, 2]


def test_resume_continues_exactly(tmp_path):
    """2 epochs + resume to 3 gives the same history as 3 epochs at once."""
    run("train", "adding", "--out", tmp_path / "a", *TINY[2:], "--epochs", "3")
    run("train", "adding", "--out", tmp_path / "b", *TINY)
    run("train", "adding", "--resume", tmp_path / "b", "--epochs", "3", "--no-progress")
    read = lambda d: [json.loads(x)["train_loss"] for x in (d / "history.jsonl").read_text().splitlines()]  # noqa: E731
    assert read(tmp_path / "a") == pytest.approx(read(tmp_path / "b"), rel=1e-6)


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "adding", "--out", "{tmp}/x", "--max-bits", "1"], "--max-bits must be in [2, 30], got 1"),
        (["train", "adding", "--out", "{tmp}/x", "--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["train", "adding", "--out", "{tmp}/x", "--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
        (["train", "adding", "--out", "{tmp}/x", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
        (["train", "adding", "--out", "{tmp}/x", "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        (
            ["train", "adding", "--out", "{tmp}/x", "--grad-clip", "nan"],
            "--grad-clip must be a finite number >= 0, got nan",
        ),
        (
            ["train", "adding", "--out", "{tmp}/x", "--weight-decay", "inf"],
            "--weight-decay must be a finite number >= 0, got inf",
        ),
        (["train", "adding", "--out", "{tmp}/x", "--threads", "100000"], "--threads must be at most"),
        (
            ["train", "adding", "--out", "{tmp}/x", "--seed", str(2**70)],
            "--seed must be in [0, 2**32), got 1180591620717411303424",
        ),
        (["train", "adding", "--out", "{tmp}/x", "--seed", "-1"], "--seed must be in [0, 2**32), got -1"),
        (["train", "adding", "--out", "{tmp}/x", "--hidden-size", "abc"], "'abc' is not a valid integer"),
        (["train", "adding", "--out", "{tmp}/x", "--bogus", "1"], "No such option '--bogus'"),
        (
            ["train", "adding", "--out", "{tmp}/x", "--dtype", "float16"],
            "--dtype must be one of float32, bfloat16, got 'float16'",
        ),
        (["train", "adding"], "give --out DIR"),
        (["train", "nosuchtask"], "No such command 'nosuchtask'"),
        (["predict", "{tmp}/missing", "1", "2"], "no such run directory"),
        (["eval", "--json", "{tmp}/missing"], "no such run directory"),
    ],
)
def test_bad_input_one_clear_line(tmp_path, args, message):
    result = run(*[a.replace("{tmp}", str(tmp_path)) for a in args], ok=False)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_predict_bad_numbers(tmp_path):
    out = tmp_path / "r"
    run("train", "adding", "--out", out, *TINY)
    for values, message in (
        (["1"], "takes two non-negative integers, got 1 value"),
        (["1", "x"], "got '1' 'x'"),
        (["--", "-3", "4"], "must be non-negative"),
    ):
        result = run("predict", out, *values, ok=False)
        assert result.exit_code == 1 and message in result.output


def test_tasks_lists_adding():
    assert "adding" in run("tasks").output


def test_module_entry_point():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "grukit", "--version"], capture_output=True, text=True, check=True)
    assert "grukit" in result.stdout


def test_bfloat16_training_follows_the_float32_loss_curve(tmp_path):
    """bf16 GRU (float32 master weights): same seed, same batches, the same curve within 2%."""
    args = ["--epochs", "4", "--steps", "100", "--eval-pairs", "200", "--no-progress"]
    curves = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / dtype
        run("train", "adding", "--out", out, "--dtype", dtype, *args)
        history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
        curves[dtype] = [(h["train_loss"], h["val_loss"]) for h in history]
        assert json.loads(run("eval", "--json", out).output)["accuracy"] >= 0.99, dtype  # eval rebuilds the bf16 model
    assert len(curves["float32"]) == len(curves["bfloat16"]) == 4
    assert curves["float32"][-1][0] < curves["float32"][0][0] / 10  # the curve does fall
    for (t32, v32), (t16, v16) in zip(curves["float32"], curves["bfloat16"]):
        assert abs(t16 - t32) <= 0.02 * t32, (t32, t16)
        assert abs(v16 - v32) <= 0.02 * v32, (v32, v16)


def test_bad_flags_write_no_run_directory(tmp_path):
    for flag, value in (("--threads", "100000"), ("--lr", "nan"), ("--grad-clip", "nan")):
        result = run("train", "adding", "--out", tmp_path / "x", flag, value, ok=False)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert not (tmp_path / "x").exists()


def test_threads_in_a_run_config_are_checked_on_eval(tmp_path):
    out = tmp_path / "r"
    run("train", "adding", "--out", out, *TINY)
    config = json.loads((out / "config.json").read_text())
    config["config"]["threads"] = 100000
    (out / "config.json").write_text(json.dumps(config))
    result = run("eval", "--json", out, ok=False)
    assert result.exit_code == 1 and "--threads must be at most" in result.output


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`grukit predict ... | head`: the reader has gone; no 'Broken pipe' error, exit 0."""
    import os
    import subprocess
    import sys

    out = tmp_path / "r"
    run("train", "adding", "--out", out, *TINY)
    read, write = os.pipe()
    os.close(read)  # nobody will read: the first write fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "grukit", "predict", str(out), "1", "2"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.returncode == 0, proc.stderr
    assert "Broken pipe" not in proc.stderr and "Error" not in proc.stderr and "Traceback" not in proc.stderr


def test_out_never_silently_replaces_a_run(tmp_path):
    out = tmp_path / "r"
    run("train", "adding", "--out", out, *TINY)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    result = run("train", "adding", "--out", out, *TINY, ok=False)
    assert result.exit_code != 0 and "already holds a 'adding' run" in result.output and "--overwrite" in result.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched
    run("train", "adding", "--out", out, *TINY, "--overwrite")
    assert (out / "model.safetensors").stat().st_mtime_ns != before["model.safetensors"]


def test_out_refuses_a_folder_that_is_not_a_run_and_the_current_directory(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        result = run("train", "adding", "--out", other, *TINY, *extra, ok=False)
        assert result.exit_code != 0 and "holds no grukit run" in result.output
    assert (other / "keep.txt").read_text() == "mine"
    result = run("train", "adding", "--out", "", *TINY, ok=False)
    assert result.exit_code != 0 and "--out must name a run directory" in result.output


def test_ctrl_c_before_the_first_epoch_leaves_no_run(tmp_path, monkeypatch):
    from grukit.training import loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_run_epoch", interrupted)
    out = tmp_path / "r"
    result = run("train", "adding", "--out", out, *TINY, ok=False)
    assert result.exit_code == 130 and "nothing to resume" in result.output
    assert not out.exists()  # no untrained model.safetensors that generate or predict would use


def test_ctrl_c_after_an_epoch_says_how_to_resume(tmp_path, monkeypatch):
    from grukit.training import loop

    real, calls = loop._run_epoch, []

    def second_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_run_epoch", second_interrupted)
    out = tmp_path / "r"
    result = run("train", "adding", "--out", out, *TINY, ok=False)
    assert result.exit_code == 130 and f"--resume {out}" in result.output
    assert (out / "checkpoint.safetensors").exists() and (out / "loss.png").exists()
    monkeypatch.setattr(loop, "_run_epoch", real)
    run("train", "adding", "--resume", out)


@pytest.mark.parametrize(
    "content,message",
    [
        ("[1, 2]", "not a grukit run config"),
        ('{"task": "adding", "config": []}', "not a grukit run config"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        ('{"task": "adding", "config": {"hidden_size": "abc"}}', "hidden_size must be int, got 'abc'"),
        ('{"task": "adding", "config": {"lr": NaN}}', "--lr must be a finite number > 0, got nan"),
    ],
)
def test_a_broken_config_json_is_one_line(tmp_path, content, message):
    out = tmp_path / "r"
    run("train", "adding", "--out", out, *TINY)
    (out / "config.json").write_text(content)
    for args in (["eval", "--json", out], ["predict", out, "1", "2"]):
        result = run(*args, ok=False)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output

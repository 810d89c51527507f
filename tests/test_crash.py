"""Crash safety, proven: training killed with SIGKILL at random moments and resumed ends with the
weights of an uninterrupted run, bit for bit, and no file of the run is ever truncated."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ARGS = [
    "--epochs",
    "6",
    "--steps",
    "40",
    "--eval-pairs",
    "100",
    "--hidden-size",
    "8",
    "--no-progress",
    "--deterministic",
]


def start(*args, cwd):
    with open(Path(cwd) / "stderr.txt", "ab") as err:  # the child keeps its own handle
        return subprocess.Popen(
            [sys.executable, "-m", "grukit", "train", "adding", *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )


def errors(cwd) -> str:
    return (Path(cwd) / "stderr.txt").read_text(errors="replace")[-2000:]


def rows(run: Path) -> int:
    try:
        return len((run / "history.jsonl").read_text().splitlines())
    except OSError:
        return 0


def check_whole(run: Path) -> None:
    """Every file of the run reads back whole (no half-written file is ever visible)."""
    for p in run.iterdir():
        if p.suffix == ".safetensors":
            load_file(p)
        elif p.suffix in (".json", ".jsonl"):
            for line in [p.read_text()] if p.suffix == ".json" else p.read_text().splitlines():
                json.loads(line)
        elif p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.read_bytes()[-8:-4] == b"IEND"


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    whole = start("--out", "whole", *ARGS, cwd=tmp_path)
    assert whole.wait(timeout=600) == 0, errors(tmp_path)
    rng = random.Random(7)
    run, kills = tmp_path / "killed", 0
    proc = start("--out", "killed", *ARGS, cwd=tmp_path)
    while kills < 3:
        target = rows(run) + 1  # wait for the next epoch to start being written, then a random moment after
        deadline = time.time() + 300
        while rows(run) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        check_whole(run)
        proc = start("--resume", "killed", cwd=tmp_path)
    assert proc.wait(timeout=600) == 0, errors(tmp_path)
    assert kills >= 2
    check_whole(run)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name]
    assert (run / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (
        load_file(run / "checkpoint.safetensors").keys()
        == load_file(tmp_path / "whole" / "checkpoint.safetensors").keys()
    )
    for k, v in load_file(tmp_path / "whole" / "checkpoint.safetensors").items():
        assert load_file(run / "checkpoint.safetensors")[k].equal(v), k
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [strip(json.loads(x)) for x in (run / "history.jsonl").read_text().splitlines()] == [
        strip(json.loads(x)) for x in (tmp_path / "whole" / "history.jsonl").read_text().splitlines()
    ]

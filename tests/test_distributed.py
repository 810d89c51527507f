"""Training under torchrun with DistributedDataParallel (gloo on this CPU): two processes follow
one process's loss curve with the same global batch, only rank 0 writes, and --resume works."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ADDING = ["--epochs", "2", "--steps", "6", "--eval-pairs", "50", "--hidden-size", "8", "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grukit(*args, procs: int = 1, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if procs == 1:
        cmd = [sys.executable, "-m", "grukit", *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={procs}",
            f"--master_port={free_port()}",
            "-m",
            "grukit",
            *args,
        ]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_follow_one_and_resume(tmp_path):
    two = grukit("train", "adding", "--out", "two", *ADDING, procs=2, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("run written to") == 1  # rank 0 reports, rank 1 stays quiet
    one = grukit("train", "adding", "--out", "one", *ADDING, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    h1, h2 = history(tmp_path / "one"), history(tmp_path / "two")
    assert len(h1) == len(h2) == 2
    for a, b in zip(h1, h2):  # each process trains on half of every batch of 64; DDP averages the gradients
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    meta = json.loads((tmp_path / "two" / "config.json").read_text())
    assert meta["runtime"] == {"world_size": 2, "backend": "gloo"}
    assert json.loads((tmp_path / "one" / "config.json").read_text())["runtime"] == {"world_size": 1, "backend": "none"}

    half = grukit("train", "adding", "--out", "half", *ADDING[:1], "1", *ADDING[2:], procs=2, cwd=tmp_path)
    assert half.returncode == 0, half.stderr[-3000:]
    resumed = grukit("train", "adding", "--resume", "half", "--epochs", "2", procs=2, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["val_loss"] for r in history(tmp_path / "half")] == pytest.approx([r["val_loss"] for r in h2], rel=1e-6)

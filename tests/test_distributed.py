"""Training under torchrun with DistributedDataParallel (gloo on this CPU): two processes follow
one process's loss curve with the same global batch, only rank 0 writes, and --resume works;
a process killed mid-run ends the job with one line and leaves the last checkpoint whole."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ADDING = ["--epochs", "2", "--steps", "6", "--eval-pairs", "50", "--hidden-size", "8", "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def command(*args, procs: int = 1) -> list[str]:
    if procs == 1:
        return [sys.executable, "-m", "grukit", *args]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={procs}",
        f"--master_port={free_port()}",
    ]
    return [*torchrun, "-m", "grukit", *args]


def grukit(*args, procs: int = 1, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args, procs=procs), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


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


@pytest.mark.slow
def test_an_ensemble_under_two_processes_follows_one(tmp_path):
    """Each member is wrapped in its own DistributedDataParallel, so the members train one after
    the other in both processes, each on half of its own batches."""
    args = ["train", "regress", "--epochs", "2", "--hidden-size", "4", "--ensemble", "2", "--batch-size", "64"]
    two = grukit(*args, "--out", "two", "--no-progress", procs=2, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = grukit(*args, "--out", "one", "--no-progress", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    for a, b in zip(history(tmp_path / "one"), history(tmp_path / "two"), strict=True):
        for key in ("member0_val_loss", "member1_val_loss", "val_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-4)


def children(pid: int) -> list[int]:
    """The child processes of pid (Linux /proc)."""
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def rank_of(pid: int) -> int | None:
    """The RANK torchrun gave a worker process, from its environment."""
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if entry.startswith(b"RANK="):
            return int(entry[5:])
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers in Linux's /proc")
def test_a_killed_process_ends_the_job_with_one_line_and_the_checkpoint_resumes(tmp_path):
    from grukit.training import checkpoint

    run = tmp_path / "run"
    epochs = ["--epochs", "200", "--steps", "10"]  # far more than the job lives
    args = ["train", "adding", "--out", "run", *epochs, *ADDING[4:]]
    job = subprocess.Popen(
        command(*args, procs=2), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120  # three Python processes import torch on a busy machine
        while not (run / "checkpoint.safetensors").exists():  # rank 0 has finished an epoch
            assert job.poll() is None, "torchrun ended before the first checkpoint: " + job.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        workers = {rank_of(pid): pid for pid in children(job.pid)}
        assert set(workers) == {0, 1}, workers
        os.kill(workers[1], signal.SIGKILL)
        killed = time.monotonic()
        out, err = job.communicate(timeout=60)  # torchrun stops rank 0 and ends: no process waits forever
        took = time.monotonic() - killed
    finally:
        if job.poll() is None:
            for pid in children(job.pid):
                os.kill(pid, signal.SIGKILL)
            job.kill()
            job.wait()
    assert job.returncode != 0
    assert took < 30, f"the job took {took:.1f} s to end after a process died"
    lines = [line for line in (out + err).splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, out + err  # the surviving process: one line, not a traceback
    assert lines[0].startswith("Error: rank 0 of 2: ") and f"continue with --resume {Path('run')}" in lines[0], lines[0]
    assert "/grukit/" not in out + err, err[-3000:]  # no traceback through grukit's code
    assert "SIGKILL" in err  # torchrun's own report names the process that died

    tensors, meta = checkpoint.load_tensors(run / "checkpoint.safetensors")  # whole: size and header agree
    saved = json.loads(meta["state"])["epoch"]
    assert saved >= 1 and tensors
    before = history(run)[:saved]
    resumed = grukit("train", "adding", "--resume", "run", "--epochs", str(saved + 2), cwd=tmp_path)  # one process
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = history(run)
    assert len(after) == saved + 2 and after[:saved] == before  # continued from the checkpoint, not from scratch

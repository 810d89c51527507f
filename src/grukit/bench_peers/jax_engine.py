"""JAX as an engine of the peers benchmark: the GRU of :mod:`.jax_gru` in a worker process pinned to N cores.

XLA sizes its CPU thread pool from the cores the process may run on and does
not follow its thread flags otherwise; so the JAX timings run in a separate
Python process whose affinity is set (``os.sched_setaffinity``, before it
starts) to the first N cores this process may use. The worker times each
call itself; :func:`grukit.bench.rounds` records that time (``Measured``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np

from ..bench import Measured
from . import jax_gru
from .engines import BENCH_EXTRA, Case, Engine, Missing
from .jax_gru import Params, Pipe


class JaxWorkerError(RuntimeError):
    """The JAX worker process failed; the message is the worker's."""


class JaxWorker:
    """A Python process pinned from its start to the first ``threads`` cores of this one, running the JAX GRU."""

    def __init__(self, threads: int) -> None:
        allowed = sorted(os.sched_getaffinity(0))
        if threads > len(allowed):
            raise JaxWorkerError(f"{threads} threads asked, but this process may use only {len(allowed)} cores")
        cores = allowed[:threads]
        self.proc = subprocess.Popen(
            [sys.executable, jax_gru.__file__],  # by path: the worker imports neither grukit nor torch
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=lambda: os.sched_setaffinity(0, cores),
        )
        self.conn = Pipe(self.proc.stdout, self.proc.stdin)
        _, self.version, self.cores = self._answer()

    def _answer(self):
        try:
            reply = self.conn.recv()
        except EOFError:
            raise JaxWorkerError(f"the JAX worker exited (code {self.proc.wait()})") from None
        if reply[0] == "missing":
            self.close()
            raise Missing(f"jax is not installed: {BENCH_EXTRA}")
        if reply[0] == "error":
            raise JaxWorkerError(reply[1])
        return reply

    def setup(self, params: Params, x: np.ndarray, g: np.ndarray):
        """Load one configuration; returns ((y, h_n), grads) for the check."""
        self.conn.send(("setup", params, x, g))
        return self._answer()[1]

    def timed(self, mode: str) -> Measured:
        self.conn.send(("time", mode))
        return Measured(self._answer()[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.conn.send(("stop",))
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:  # (both are pipes)
                f.close()


KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def jax_engine(worker: JaxWorker, case: Case) -> Engine:
    """The case loaded into the worker; its outputs and gradients come back once, for the check."""
    D = 2 if case.cfg.bidirectional else 1
    names = [[f"_l{k}" + ("_reverse" if d else "") for d in range(D)] for k in range(case.cfg.L)]
    params = [[{w: getattr(case.ref, w + s).detach().numpy().copy() for w in KINDS} for s in layer] for layer in names]
    out, grads = worker.setup(params, case.x.numpy(), case.g.numpy())
    flat = {w + s: grads[k][d][w] for k, layer in enumerate(names) for d, s in enumerate(layer) for w in KINDS}
    note = (
        f"jitted lax.scan, input projection hoisted; worker process pinned to cores {worker.cores} (sched_setaffinity)"
    )
    return Engine(
        "jax",
        "fp32",
        lambda: worker.timed("infer"),
        lambda: out,
        lambda: worker.timed("train"),
        lambda: flat,
        worker.version,
        note,
    )

"""A GRU in JAX and the worker process that runs it for the peers benchmark.

The same function as torch.nn.GRU (reset_after: r multiplies U_n h + b_hn),
same weights in torch's layout, gates stacked r | z | n, the input projection
hoisted out of the scan (one matrix product for all steps)::

    gi = x @ W_ih.T + b_ih                          # (T, B, 3H), before the loop
    gh = h @ W_hh.T + b_hh                          # (B, 3H), each step
    r = sigmoid(gi_r + gh_r);  z = sigmoid(gi_z + gh_z)
    n = tanh(gi_n + r * gh_n);  h = (1 - z) * n + z * h

Training is ``jax.value_and_grad`` of sum(output * g), the loss whose gradient
torch gets from ``output.backward(g)``.

This file is also the worker: ``python jax_gru.py`` (by path, so that neither
grukit nor torch is imported there), started by
:class:`grukit.bench_peers.jax_engine.JaxWorker` already pinned to its cores;
it imports jax only then, so XLA sizes its thread pool from those cores. It
times each call itself (dispatch to ``block_until_ready``) and sends the
seconds back, so the pipe's round trip is not counted. It needs only the
standard library, numpy and jax.
"""

from __future__ import annotations

import os
import pickle
import sys
import time

import numpy as np

Params = list  # [layer][direction] -> {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}: arrays in torch's layout


def gru(params, x):
    """Output (T, B, D*H) and h_n (L*D, B, H) of a torch-layout GRU, h0 = 0 (jax.numpy)."""
    import jax
    import jax.numpy as jnp

    last = []
    for layer in params:
        outs = []
        for d, p in enumerate(layer):
            H = p["weight_hh"].shape[1]
            gi = x @ p["weight_ih"].T + p["bias_ih"]  # (T, B, 3H), hoisted

            def step(h, gi_t, p=p):
                gh = h @ p["weight_hh"].T + p["bias_hh"]  # (B, 3H)
                i_r, i_z, i_n = jnp.split(gi_t, 3, axis=-1)
                h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
                r = jax.nn.sigmoid(i_r + h_r)
                z = jax.nn.sigmoid(i_z + h_z)
                n = jnp.tanh(i_n + r * h_n)
                h = (1 - z) * n + z * h
                return h, h

            h0 = jnp.zeros((x.shape[1], H), x.dtype)  # (B, H)
            h_last, out = jax.lax.scan(step, h0, gi, reverse=d == 1)  # out (T, B, H)
            outs.append(out)
            last.append(h_last)
        x = jnp.concatenate(outs, axis=-1)  # (T, B, D*H)
    return x, jnp.stack(last)


def loss(params, x, g):
    """sum(output * g): its gradient is what torch's output.backward(g) computes."""
    return (gru(params, x)[0] * g).sum()


_jitted: dict = {}


def _fns():
    """The jitted inference and training functions, made once per process (so each shape compiles once)."""
    if not _jitted:
        import jax

        _jitted["infer"] = jax.jit(gru)
        _jitted["train"] = jax.jit(jax.value_and_grad(loss))
    return _jitted["infer"], _jitted["train"]


class _Served:
    """The worker's state for one configuration."""

    def __init__(self, params: Params, x: np.ndarray, g: np.ndarray) -> None:
        import jax
        import jax.numpy as jnp

        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        self.x, self.g = jnp.asarray(x), jnp.asarray(g)
        self.infer_fn, self.train_fn = _fns()

    def check(self):
        """Outputs and gradients (numpy) for the comparison with torch; also compiles both."""
        y, h = self.infer_fn(self.params, self.x)
        _, grads = self.train_fn(self.params, self.x, self.g)
        return (np.asarray(y), np.asarray(h)), [
            [{k: np.asarray(v) for k, v in p.items()} for p in layer] for layer in grads
        ]

    def time(self, mode: str) -> float:
        import jax

        t0 = time.perf_counter()
        if mode == "infer":
            jax.block_until_ready(self.infer_fn(self.params, self.x))
        else:
            jax.block_until_ready(self.train_fn(self.params, self.x, self.g))
        return time.perf_counter() - t0


class Pipe:
    """Pickled messages over a pair of byte streams."""

    def __init__(self, read, write) -> None:
        self.read, self.write = read, write

    def send(self, msg) -> None:
        pickle.dump(msg, self.write, protocol=pickle.HIGHEST_PROTOCOL)
        self.write.flush()

    def recv(self):
        return pickle.load(self.read)


def serve(conn: Pipe) -> None:
    """Worker loop: import jax, then answer ("setup", params, x, g) / ("time", mode) / ("stop",)."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    try:
        import jax
    except ImportError:
        conn.send(("missing",))
        return
    conn.send(("ready", jax.__version__, sorted(os.sched_getaffinity(0))))
    served: _Served | None = None
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent has gone
            return
        try:
            if msg[0] == "setup":
                served = _Served(*msg[1:])
                conn.send(("ok", served.check()))
            elif msg[0] == "time":
                assert served is not None, "time before setup"
                conn.send(("ok", served.time(msg[1])))
            else:
                return
        except Exception as e:  # reported in the parent, with the worker's message
            conn.send(("error", f"{type(e).__name__}: {e}"))


if __name__ == "__main__":  # the worker: stdout carries only the protocol; anything jax prints goes to stderr
    _protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(Pipe(sys.stdin.buffer, _protocol_out))

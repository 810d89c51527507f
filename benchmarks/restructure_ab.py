"""The native kernel before and after the driver-plus-cells restructure, in one process.

    python benchmarks/restructure_ab.py [THREADS]

Builds the kernel of commit 9edc07e (the last one-cell engine) from git under
the op namespace ``grukit_old``, then times its ``gru_layer`` (inference) and
``gru_layer`` + ``gru_layer_backward`` (training) against today's ops on the
same inputs, rounds interleaved (grukit.bench.rounds). Before timing, the
outputs and all six gradients must be bit-identical. Prints new/old time
ratios (medians over rounds). Run from the repository root.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.cpp_extension import load

from grukit import kernels
from grukit.bench import GRID, rounds
from grukit.kernels import _build

OLD = "9edc07e"


def build_old() -> None:
    src = Path(tempfile.mkdtemp(prefix="grukit_old_"))
    for name in ("gru.cpp", "gates.h", "matvec.h"):
        text = subprocess.run(
            ["git", "show", f"{OLD}:src/grukit/kernels/{name}"], capture_output=True, text=True, check=True
        ).stdout
        if name == "gru.cpp":
            text = text.replace("TORCH_LIBRARY(grukit,", "TORCH_LIBRARY(grukit_old,").replace(
                "TORCH_LIBRARY_IMPL(grukit,", "TORCH_LIBRARY_IMPL(grukit_old,"
            )
        (src / name).write_text(text)
    cap, flags = _build._flags()
    load(
        name=f"grukit_old_{OLD}_{cap}",
        sources=[str(src / "gru.cpp")],
        extra_include_paths=[str(src)],
        extra_cflags=list(flags),
        extra_ldflags=list(_build._openmp()),
        is_python_module=False,
    )


def main() -> None:
    assert kernels.available(), "today's kernel could not be built"
    build_old()
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads())
    shapes = [(c.T, c.B, c.I, c.H, 2 if c.bidirectional else 1) for c in GRID if c.L == 1]
    shapes += [(100, 32, 64, 128, 2), (200, 8, 40, 64, 1), (20, 1, 32, 64, 1)]
    old, new = torch.ops.grukit_old, torch.ops.grukit
    for T, B, I, H, D in shapes:
        g = torch.Generator().manual_seed(0)
        x, h0 = torch.randn(T, B, I, generator=g), torch.randn(D, B, H, generator=g) * 0.1
        w_ih, w_hh = torch.randn(D, 3 * H, I, generator=g) * 0.1, torch.randn(D, 3 * H, H, generator=g) * 0.1
        b_ih, b_hh = torch.randn(D, 3 * H, generator=g) * 0.1, torch.randn(D, 3 * H, generator=g) * 0.1
        dout, dh = torch.randn(T, B, D * H, generator=g), torch.randn(D, B, H, generator=g)
        cell = (None, None, None, 0.0)  # norms, zoneout, h_mask, zoneout_p: the plain GRU

        def old_infer():
            return old.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, None, True, False, False)

        def new_infer():
            return new.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, None, *cell, True, False)

        def old_train():
            _, _, hs, ws = old.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, None, True, False, True)
            return old.gru_layer_backward(dout, dh, x, hs, ws, w_ih, w_hh, None, True, False, True, True)

        def new_train():
            _, _, hs, ws = new.gru_layer_train(x, h0, w_ih, w_hh, b_ih, b_hh, None, *cell, True, False)
            return new.gru_layer_backward(dout, dh, x, hs, ws, w_ih, w_hh, None, *cell, True, False, True, True)

        assert torch.equal(old_infer()[0], new_infer()[0]), "outputs differ"
        assert all(torch.equal(a, b) for a, b in zip(old_train(), new_train()[:6])), "gradients differ"
        ti, tt = rounds([old_infer, new_infer]), rounds([old_train, new_train])
        ri = statistics.median(n / o for o, n in zip(*ti))
        rt = statistics.median(n / o for o, n in zip(*tt))
        print(
            f"T{T} B{B} I{I} H{H} D{D}: inference {statistics.median(ti[0]) * 1e3:.3f} -> {statistics.median(ti[1]) * 1e3:.3f} ms "
            f"(new/old {ri:.3f}); training {statistics.median(tt[0]) * 1e3:.3f} -> {statistics.median(tt[1]) * 1e3:.3f} ms (new/old {rt:.3f})",
            flush=True,
        )


if __name__ == "__main__":
    main()

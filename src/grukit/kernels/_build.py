"""Compile the native kernel once with torch.utils.cpp_extension and load its ops.

The library is built on first use (about 25 s on 2 cores; once per version of
the sources) into the default
torch extensions cache (``~/.cache/torch_extensions`` or
``$TORCH_EXTENSIONS_DIR``) and reused afterwards. The ops it registers live in
``torch.ops.grukit``. If no compiler is present, :func:`load` warns once and
returns False; grukit then uses the readable reference.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import threading
import warnings
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
_SOURCES = [_HERE / "driver.cpp", _HERE / "stream.cpp"]
_HEADERS = [_HERE / "common.h", _HERE / "matvec.h", _HERE / "cells" / "gru.h", _HERE / "cells" / "layernorm.h"]
_lock = threading.Lock()
_state: dict = {"loaded": None, "error": None}
_module = None  # the built library as a Python module (its gru_cell: the streaming step)


def _flags() -> tuple[str, list[str]]:
    """Vector flags matching the CPU torch itself dispatches to at run time.

    ATen's ``Vectorized`` (and its SLEEF exp/tanh, exported by libtorch_cpu)
    picks its width from ``CPU_CAPABILITY_*``; we only claim what this CPU has,
    and name the build after it so caches of different machines do not mix.
    """
    cap = torch.backends.cpu.get_cpu_capability()  # "AVX512", "AVX2", "DEFAULT", ...
    if cap == "AVX512":
        vec = ["-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"]
    elif cap == "AVX2":
        vec = ["-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma", "-mf16c"]
    else:
        cap, vec = "DEFAULT", []
    return cap.lower(), ["-O3", *vec, *_openmp()]


@functools.lru_cache(maxsize=None)
def _openmp() -> tuple[str, ...]:
    """-fopenmp where torch's own threads are OpenMP's.

    ``at::parallel_for`` is inlined into our code, and with an OpenMP build of
    torch it is an ``omp parallel`` region: compiled without -fopenmp it quietly
    runs everything on one thread. (Torch's native thread-pool backend is
    called through libtorch instead and needs nothing.)
    """
    return ("-fopenmp",) if "OpenMP" in torch.__config__.parallel_info() and sys.platform.startswith("linux") else ()


def load() -> bool:
    """Build (first time) and load the native ops; False with one warning if that fails."""
    if _state["loaded"] is not None:
        return _state["loaded"]
    with _lock:
        if _state["loaded"] is None:
            try:
                _compile()
                _state["loaded"] = True
            except Exception as e:  # no compiler, no headers, a failed build: fall back, visibly
                _state["loaded"], _state["error"] = False, e
                warnings.warn(
                    f"grukit: the native GRU kernel could not be built ({type(e).__name__}: {str(e).strip()[:300]}); "
                    "using the slower reference implementation. Set GRUKIT_BACKEND=reference to silence this.",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return _state["loaded"]


def error() -> Exception | None:
    """Why :func:`load` failed, if it did."""
    return _state["error"]


def module():
    """The loaded library as a Python module (after :func:`load` returned True)."""
    return _module


def _compile() -> None:
    global _module
    if _module is not None:
        return  # already loaded in this process (its ops are registered)
    from torch.utils.cpp_extension import load as cpp_load

    cap, cflags = _flags()
    # The name carries a hash of the sources, headers and flags: an edited kernel
    # builds in its own directory, never over (or from) another version's objects.
    digest = hashlib.sha256(" ".join(cflags).encode())
    for path in _SOURCES + _HEADERS:
        digest.update(path.read_bytes())
    _module = cpp_load(
        name=f"grukit_native_{cap}_{digest.hexdigest()[:12]}",
        sources=[str(p) for p in _SOURCES],
        extra_include_paths=[str(_HERE)],
        extra_cflags=cflags,
        extra_ldflags=list(_openmp()),
        is_python_module=True,  # loading it also registers torch.ops.grukit
        verbose=False,
    )

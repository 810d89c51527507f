"""Compile the C++ kernel once with torch.utils.cpp_extension and load its ops.

Sources: every ``*.cpp`` below this folder; headers: every ``*.h`` (sub-folders
included, e.g. ``cells/*.h``, kept at their relative paths).

Cache: one directory in the torch extensions cache (``~/.cache/torch_extensions``
or ``$TORCH_EXTENSIONS_DIR``) named ``grukit_native_{cap}_{hash}``, the hash
taken over the sources' relative paths and contents, the compiler and linker
flags, torch's version and the Python ABI. The sources are copied into it
(``src/``) and compiled from there, so nothing in the build depends on where
the checkout lives: two checkouts (or two virtual environments) with the same
sources and the same torch share one build instead of rebuilding each other's.
A finished build is imported directly (no compiler, no ninja); a missing one is
built under torch's file baton (``lock``), so two processes never build at once.

The first build (about 2 minutes on 2 cores) says so on stderr before and after.
Without a compiler, or when the build fails, :func:`load` warns once in one
line and returns False; grukit then uses the readable reference.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import sys
import sysconfig
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
_LIB_EXT = ".pyd" if sys.platform == "win32" else ".so"
_lock = threading.RLock()
_state: dict = {"loaded": None, "error": None}
_module = None  # the built library as a Python module (its gru_cell: the streaming step)


class BuildError(RuntimeError):
    """The kernel could not be built; ``str()`` is one line, ``log`` the whole story."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log or message


@dataclass(frozen=True)
class Plan:
    """One build: its name, its directory and the exact bytes it compiles."""

    name: str
    directory: Path  # content-addressed: <extensions root>/<name>
    files: dict  # relative path (posix str) -> bytes, every source and header
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]

    @property
    def src(self) -> Path:
        """Where the sources are copied and compiled from."""
        return self.directory / "src"

    @property
    def sources(self) -> list[Path]:
        return [self.src / rel for rel in self.files if rel.endswith(".cpp")]

    @property
    def library(self) -> Path:
        return self.directory / f"{self.name}{_LIB_EXT}"

    @property
    def lock(self) -> Path:
        return self.directory / "lock"  # torch's FileBaton while a build runs

    def cached(self) -> bool:
        """A finished build is there (the library, and nobody building it)."""
        return self.library.is_file() and not self.lock.exists()


@dataclass(frozen=True)
class Result:
    library: Path
    seconds: float  # building (or importing, when cached)
    built: bool  # False: loaded from the cache


def _flags() -> tuple[str, list[str]]:
    """Vector flags matching the CPU torch itself dispatches to at run time.

    ATen's ``Vectorized`` (and its SLEEF exp/tanh, exported by libtorch_cpu)
    picks its width from ``CPU_CAPABILITY_*``; we only claim what this CPU has,
    and name the build after it so caches of different machines do not mix.
    """
    cap = torch.backends.cpu.get_cpu_capability()  # "AVX512", "AVX2", "DEFAULT", ...
    if cap == "AVX512":
        vec = [
            "-DCPU_CAPABILITY=AVX512",
            "-DCPU_CAPABILITY_AVX512",
            "-mavx512f",
            "-mavx512bw",
            "-mavx512vl",
            "-mavx512dq",
            "-mfma",
        ]
    elif cap == "AVX2":
        vec = ["-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma", "-mf16c"]
    else:
        cap, vec = "DEFAULT", []
    return cap.lower(), ["-O3", *vec, *_openmp()]


@functools.cache
def _openmp() -> tuple[str, ...]:
    """-fopenmp where torch's own threads are OpenMP's.

    ``at::parallel_for`` is inlined into our code, and with an OpenMP build of
    torch it is an ``omp parallel`` region: compiled without -fopenmp it quietly
    runs everything on one thread. (Torch's native thread-pool backend is
    called through libtorch instead and needs nothing.)
    """
    return ("-fopenmp",) if "OpenMP" in torch.__config__.parallel_info() and sys.platform.startswith("linux") else ()


def _python_tag() -> str:
    """The ABI an extension module is built for, e.g. '.cpython-312-x86_64-linux-gnu.so'."""
    return sysconfig.get_config_var("EXT_SUFFIX") or f"{sys.implementation.cache_tag}{getattr(sys, 'abiflags', '')}"


def _read_tree(root: Path) -> dict:
    """Every *.cpp and *.h below ``root``: relative posix path -> bytes, in a fixed order."""
    paths = sorted(p for p in root.rglob("*") if p.suffix in (".cpp", ".h") and p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in paths}


def _extensions_root() -> Path:
    """Torch's extensions cache for this Python (TORCH_EXTENSIONS_DIR wins)."""
    try:  # torch's own layout: <root>/py312_cpu/ unless TORCH_EXTENSIONS_DIR is set
        from torch.utils.cpp_extension import _get_build_directory

        return Path(_get_build_directory("", verbose=False))
    except (ImportError, TypeError):
        from torch.utils.cpp_extension import get_default_build_root

        return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())


def plan(root: Path = _HERE, extensions_root: Path | None = None) -> Plan:
    """The build of the sources under ``root``: its name depends on their contents only."""
    cap, cflags = _flags()
    ldflags = list(_openmp())
    files = _read_tree(root)
    if not any(rel.endswith(".cpp") for rel in files):
        raise BuildError(f"no C++ sources under {root}")
    digest = hashlib.sha256()
    for part in (torch.__version__, _python_tag(), " ".join(cflags), " ".join(ldflags)):
        digest.update(part.encode() + b"\0")
    for rel, data in files.items():
        digest.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    name = f"grukit_native_{cap}_{digest.hexdigest()[:16]}"
    base = Path(extensions_root) if extensions_root is not None else _extensions_root()
    return Plan(name, base / name, files, tuple(cflags), tuple(ldflags))


def _stage(p: Plan) -> None:
    """Copy the sources into the build directory; files already right are left alone
    (ninja goes by their times), others replaced atomically (a concurrent stager
    writes the same bytes, since the directory is named by them)."""
    for rel, data in p.files.items():
        dst = p.src / rel
        if dst.is_file() and dst.read_bytes() == data:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dst)


def compiler() -> str:
    """The C++ compiler torch.utils.cpp_extension will run ($CXX, else c++)."""
    try:
        from torch.utils.cpp_extension import get_cxx_compiler

        return get_cxx_compiler()
    except ImportError:
        return os.environ.get("CXX", "cl" if sys.platform == "win32" else "c++")


def toolchain_problem() -> str | None:
    """Why a build cannot even start (no compiler, no ninja), in one line; None if it can."""
    cxx = compiler()
    words = shlex.split(cxx) if cxx.strip() else []
    exe = words[0] if words else "c++"
    if shutil.which(exe) is None:
        which = f"CXX={cxx}" if os.environ.get("CXX") else exe
        hint = "apt-get install g++" if Path("/etc/debian_version").exists() else "a C++ compiler, e.g. g++ or clang++"
        if sys.platform == "darwin":
            hint = "xcode-select --install"
        return f"no C++ compiler found ({which} is not on PATH); install {hint}"
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available():
        return "ninja is not installed; install it with `pip install ninja`"
    return None


def _first_error(text: str, p: Plan | None = None) -> str:
    """The line of a failed build worth reading: the compiler's first error, source paths shortened."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    pick = next(
        (
            ln
            for ln in lines
            if re.search(r"\berror\b", ln, re.I) and not ln.startswith(("collect2", "ninja", "Error building"))
        ),
        None,
    )
    pick = pick or next((ln for ln in lines if "undefined reference" in ln or "cannot find" in ln), None)
    pick = pick or (lines[0] if lines else "unknown error")
    if p is not None:
        pick = pick.replace(str(p.src) + os.sep, "").replace(str(p.directory) + os.sep, "")
    return pick if len(pick) <= 240 else pick[:237] + "..."


def _say(msg: str) -> None:
    """One line straight to stderr (visible with piped output, no progress bar needed)."""
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _import(p: Plan):
    """Import the built library (it registers torch.ops.grukit as it loads)."""
    spec = importlib.util.spec_from_file_location(p.name, p.library)
    assert spec is not None and spec.loader is not None  # a library file has both
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cpp_load(p: Plan):
    from torch.utils.cpp_extension import load as cpp_load

    return cpp_load(
        name=p.name,
        sources=[str(s) for s in p.sources],
        extra_include_paths=[str(p.src)],
        extra_cflags=list(p.cflags),
        extra_ldflags=list(p.ldflags),
        build_directory=str(p.directory),
        is_python_module=True,  # loading it also registers torch.ops.grukit
        verbose=False,
    )


def _ensure(p: Plan, *, force: bool = False):
    """(module, Result): import the cached build of ``p``, or build it first."""
    start = time.perf_counter()
    if force and p.directory.exists() and not p.lock.exists():
        shutil.rmtree(p.directory)
    if p.cached():
        try:
            return _import(p), Result(p.library, time.perf_counter() - start, built=False)
        except ImportError:
            pass  # unreadable (e.g. half-written by a killed build): let the build below redo it
    problem = toolchain_problem()
    if problem:
        raise BuildError(problem)
    p.directory.mkdir(parents=True, exist_ok=True)
    _stage(p)
    if p.lock.exists():
        _say(
            f"grukit: waiting for another process building the native GRU kernel in {p.directory} (if none is, delete {p.lock}) ..."
        )
    else:
        _say(f"grukit: building the native GRU kernel once (about 2 minutes on 2 cores; cached in {p.directory}) ...")
    try:
        mod = _cpp_load(p)
    except Exception as e:
        log = str(e)
        _say(f"grukit: the native GRU kernel did not build ({time.perf_counter() - start:.0f} s)")
        raise BuildError(_first_error(log, p), log) from e
    seconds = time.perf_counter() - start
    _say(f"grukit: native GRU kernel ready ({seconds:.0f} s)")
    return mod, Result(p.library, seconds, built=True)


def _compile(force: bool = False) -> Result:
    global _module
    p = plan()
    if _module is not None and not force:
        return Result(p.library, 0.0, built=False)  # already loaded in this process (its ops are registered)
    _module, result = _ensure(p, force=force and _module is None)
    return result


def build(force: bool = False) -> Result:
    """Build the kernel now (or find it cached) and load it; raises :class:`BuildError`.

    ``force`` rebuilds from scratch (before the kernel is loaded in this process)."""
    with _lock:
        try:
            result = _compile(force) if force else _compile()
        except BuildError as e:
            _state["loaded"], _state["error"] = False, e
            raise
        except Exception as e:  # no headers, an unwritable cache, ...: one line too
            err = BuildError(f"{type(e).__name__}: {_first_error(str(e))}", str(e))
            _state["loaded"], _state["error"] = False, err
            raise err from e
        _state["loaded"], _state["error"] = True, None
        return result


def load() -> bool:
    """Build (first time) and load the native ops; False with one warning if that fails."""
    if _state["loaded"] is not None:
        return _state["loaded"]
    with _lock:
        if _state["loaded"] is None:
            try:
                build()
            except BuildError as e:
                warnings.warn(
                    f"grukit: the native GRU kernel was not built ({e}); using the slower reference "
                    "implementation (GRUKIT_BACKEND=reference silences this)",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return bool(_state["loaded"])  # True or False by now: build() set it


def error() -> Exception | None:
    """Why :func:`load` failed, if it did (one line; the full build log in ``.log``)."""
    return _state["error"]


def module():
    """The loaded library as a Python module (after :func:`load` returned True)."""
    return _module

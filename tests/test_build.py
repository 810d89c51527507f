"""The kernel build: keyed by contents (not paths), announced once, one-line failures,
``grukit build``, and training clocks that never include it.

Only the CLI test touches the real build (cached after the first build of the
session); everything else stages copies of the sources into a temporary cache
with the compiler replaced by a stub.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from grukit import backend
from grukit.cli.main import main
from grukit.kernels import _build
from grukit.tasks import TASKS
from grukit.tasks.base import Task

KERNELS = Path(_build.__file__).resolve().parent


def _checkout(path: Path) -> Path:
    """A copy of the kernel sources (as in another checkout), with a header in a sub-folder."""
    shutil.copytree(KERNELS, path, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (path / "cells").mkdir(exist_ok=True)
    (path / "cells" / "extra.h").write_text("#pragma once\n")
    return path


def test_every_cpp_and_h_below_the_folder_is_in_the_build(tmp_path):
    p = _build.plan(_checkout(tmp_path / "a"), tmp_path / "ext")
    assert "cells/extra.h" in p.files and "cells/gru.h" in p.files and "driver.cpp" in p.files and "common.h" in p.files
    assert {s.name for s in p.sources} == {f.name for f in KERNELS.glob("*.cpp")}
    assert not any(rel.endswith(".py") for rel in p.files)


def test_two_checkouts_with_the_same_sources_share_one_build(tmp_path):
    a = _build.plan(_checkout(tmp_path / "a"), tmp_path / "ext")
    b = _build.plan(_checkout(tmp_path / "elsewhere" / "b"), tmp_path / "ext")
    assert a.name == b.name and a.directory == b.directory and a.directory.parent == tmp_path / "ext"
    assert a.name.startswith("grukit_native_")
    # everything the compiler sees lives under the build directory, not the checkout
    assert all(str(s).startswith(str(a.directory)) for s in a.sources)


def test_any_change_to_a_source_or_header_is_a_new_build(tmp_path):
    a = _build.plan(_checkout(tmp_path / "a"), tmp_path / "ext")
    b_root = _checkout(tmp_path / "b")
    (b_root / "cells" / "extra.h").write_text("#pragma once\n// edited\n")
    assert _build.plan(b_root, tmp_path / "ext").name != a.name
    (b_root / "cells" / "extra.h").write_text("#pragma once\n")
    (b_root / "cells" / "extra.h").rename(b_root / "cells" / "moved.h")
    assert _build.plan(b_root, tmp_path / "ext").name != a.name


def test_the_key_includes_torch_and_python(tmp_path, monkeypatch):
    root = _checkout(tmp_path / "a")
    name = _build.plan(root, tmp_path / "ext").name
    monkeypatch.setattr(_build.torch, "__version__", "0.0.0-other")
    assert _build.plan(root, tmp_path / "ext").name != name
    monkeypatch.undo()
    monkeypatch.setattr(_build, "_python_tag", lambda: ".cpython-399-other.so")
    assert _build.plan(root, tmp_path / "ext").name != name


def test_staging_copies_sub_paths_and_leaves_unchanged_files_alone(tmp_path):
    p = _build.plan(_checkout(tmp_path / "a"), tmp_path / "ext")
    _build._stage(p)
    for rel, data in p.files.items():
        assert (p.src / rel).read_bytes() == data
    stamp = (p.src / "driver.cpp").stat().st_mtime_ns
    time.sleep(0.01)
    _build._stage(p)
    assert (p.src / "driver.cpp").stat().st_mtime_ns == stamp  # ninja would rebuild otherwise


@pytest.fixture
def fake_compiler(monkeypatch):
    """A stand-in for torch's build: writes the library and counts its calls."""
    calls = []

    def fake_cpp_load(p):
        assert (p.src / "driver.cpp").is_file() and not p.cached()
        calls.append(p.name)
        p.library.write_bytes(b"built")
        return "module"

    monkeypatch.setattr(_build, "_cpp_load", fake_cpp_load)
    monkeypatch.setattr(_build, "_import", lambda p: "module")
    monkeypatch.setattr(_build, "toolchain_problem", lambda: None)
    return calls


def test_first_build_announces_itself_once_and_the_cache_is_silent(tmp_path, fake_compiler, capsys):
    p = _build.plan(_checkout(tmp_path / "a"), tmp_path / "ext")
    mod, res = _build._ensure(p)
    err = capsys.readouterr().err.splitlines()
    assert mod == "module" and res.built and res.library == p.library
    assert (
        len(err) == 2
        and err[0].startswith("grukit: building the native GRU kernel once")
        and str(p.directory) in err[0]
    )
    assert err[1].startswith("grukit: native GRU kernel ready (")

    other = _build.plan(_checkout(tmp_path / "b"), tmp_path / "ext")  # the second checkout
    mod, res = _build._ensure(other)
    assert mod == "module" and not res.built and fake_compiler == [p.name]
    assert capsys.readouterr().err == ""


def test_force_rebuilds(tmp_path, fake_compiler, capsys):
    p = _build.plan(_checkout(tmp_path / "a"), tmp_path / "ext")
    _build._ensure(p)
    _, res = _build._ensure(p, force=True)
    assert res.built and fake_compiler == [p.name, p.name]


def test_a_build_in_progress_is_waited_for(tmp_path, fake_compiler, monkeypatch, capsys):
    p = _build.plan(_checkout(tmp_path / "a"), tmp_path / "ext")
    p.directory.mkdir(parents=True)
    p.library.write_bytes(b"half")
    p.lock.write_text("")  # another process holds torch's baton: its library is not finished
    assert not p.cached()
    stub = _build._cpp_load

    def wait_then_load(plan):  # what torch's load does with a held baton: wait, then import
        plan.lock.unlink()
        plan.library.unlink()
        return stub(plan)

    monkeypatch.setattr(_build, "_cpp_load", wait_then_load)
    _build._ensure(p)
    assert "waiting for another process" in capsys.readouterr().err.splitlines()[0]


def test_a_missing_compiler_is_named_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    problem = _build.toolchain_problem()
    assert problem and "\n" not in problem and "CXX=/nonexistent/c++" in problem and "install" in problem
    if Path("/etc/debian_version").exists():
        assert "apt-get install g++" in problem
    p = _build.plan(_checkout(tmp_path / "a"), tmp_path / "ext")
    with pytest.raises(_build.BuildError, match="no C\\+\\+ compiler"):
        _build._ensure(p)
    assert capsys.readouterr().err == ""  # no announcement of a build that cannot start


def test_without_a_compiler_grukit_warns_once_briefly_and_falls_back(tmp_path):
    env = {
        **os.environ,
        "CXX": "/nonexistent/c++",
        "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"),
        "PYTHONWARNINGS": "default",
    }
    code = "import grukit.kernels as k; print(k.available(), k.available())"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) <= 2 and sum("RuntimeWarning" in ln for ln in lines) == 1, r.stderr
    assert "no C++ compiler found" in r.stderr and "reference" in r.stderr and "WARNING !!" not in r.stderr


def test_a_failed_build_is_reported_by_its_first_error(tmp_path):
    p = _build.plan(_checkout(tmp_path / "a"), tmp_path / "ext")
    log = (
        f"Error building extension '{p.name}': [1/3] c++ -MMD -MF driver.o.d -Werror -O3 -c {p.src}/driver.cpp -o driver.o\n"
        "FAILED: gru.o\n"
        f"{p.src}/driver.cpp:12:5: error: 'foo' was not declared in this scope\n"
        f"{p.src}/driver.cpp:13:5: error: another one\n"
        "ninja: build stopped: subcommand failed.\n"
    )
    assert _build._first_error(log, p) == "driver.cpp:12:5: error: 'foo' was not declared in this scope"
    assert _build._first_error("", p) == "unknown error"


def test_grukit_build_reports_where_the_kernel_is():
    r = CliRunner().invoke(main, ["build"])
    if r.exit_code != 0 and not os.environ.get("GRUKIT_REQUIRE_NATIVE"):
        pytest.skip(f"native kernel unavailable: {r.output}")
    assert r.exit_code == 0, r.output
    p = _build.plan()
    assert f"native GRU kernel: {p.library}" in r.output and p.cached()
    assert (p.src / "driver.cpp").read_bytes() == (KERNELS / "driver.cpp").read_bytes()


def test_grukit_build_fails_in_one_line(monkeypatch):
    def no_compiler(force=False):
        raise _build.BuildError("no C++ compiler found (c++ is not on PATH); install apt-get install g++")

    monkeypatch.setattr(_build, "build", no_compiler)
    r = CliRunner().invoke(main, ["build", "--force"])
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0 and "apt-get install g++" in r.output


def test_the_build_happens_before_any_task_starts_its_clock(monkeypatch):
    order = []
    monkeypatch.setattr(backend, "prepare", lambda: order.append("build"))

    class Timed(Task):
        name = "timed"

        def train(self, cfg, out, *, resume=False):
            order.append("clock starts")
            return {}

    Timed().train(None, Path("."))
    assert order == ["build", "clock starts"]
    assert all(getattr(type(t).train, "_kernel_first", False) for t in TASKS.values())


def test_prepare_skips_the_build_for_the_reference(monkeypatch):
    calls = []
    monkeypatch.setattr(backend, "_native_ready", lambda: calls.append(1) or True)
    monkeypatch.setenv("GRUKIT_BACKEND", "reference")
    backend.prepare()
    assert calls == []
    monkeypatch.setenv("GRUKIT_BACKEND", "auto")
    backend.prepare()
    assert calls == [1]


def test_one_version_and_a_licence_packaging_accepts():
    import importlib.metadata

    import grukit

    assert importlib.metadata.version("grukit") == grukit.__version__  # pyproject reads it from grukit/__init__.py
    meta = importlib.metadata.metadata("grukit")
    assert meta["License-Expression"] == "MIT"
    root = Path(__file__).resolve().parents[1]
    assert "MIT License" in (root / "LICENSE").read_text()

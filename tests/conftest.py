"""Shared fixtures: fixed seeds and small helpers for comparing GRUs."""

from __future__ import annotations

import os
import warnings

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def assert_close(a, b, dtype, what=""):
    torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m: f"{what}: {m}")


def require_native() -> None:
    """Skip the caller's tests where the native kernel cannot be built; in CI
    (GRUKIT_REQUIRE_NATIVE set) a kernel that fails to build fails them instead."""
    from grukit import kernels
    from grukit.kernels import _build

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = kernels.available()
    if not ok and os.environ.get("GRUKIT_REQUIRE_NATIVE"):
        pytest.fail(f"native kernel unavailable: {_build.error()}")
    if not ok:
        pytest.skip(f"native kernel unavailable: {_build.error()}")

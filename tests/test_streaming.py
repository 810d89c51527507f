"""GRUCell's streaming path: a no-grad stream of steps skips the checks it has
already passed for the same shapes, dtypes and devices. It must give the same
numbers as the checked path and never skip a check that a changed input needs."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close
from torch import nn

import grukit
from grukit import backend, functional


def _stream(cell, xs, h):
    with torch.no_grad():
        for x in xs:
            h = cell(x, h)
    return h


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("B", [1, 3])
def test_stream_matches_reference_and_torch(reset_after, B):
    torch.manual_seed(0)
    cell = grukit.GRUCell(5, 7, reset_after=reset_after)
    xs, h0 = torch.randn(20, B, 5), torch.randn(B, 7)
    w = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    expected = h0
    with torch.no_grad():
        for x in xs:
            expected = functional.gru_cell(x, expected, *w, reset_after=reset_after)
    assert_close(_stream(cell, xs, h0), expected, torch.float32)
    if reset_after:
        ref = nn.GRUCell(5, 7)
        ref.load_state_dict(cell.state_dict())
        assert_close(_stream(ref, xs, h0), expected, torch.float32)


def test_changed_inputs_are_checked_again():
    cell = grukit.GRUCell(3, 4)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    _stream(cell, [x, x], h)  # the stream is established for (2, 3), (2, 4), float32
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"hx must have shape \(2, 4\), got \(3, 4\)"):
            cell(x, torch.randn(3, 4))
        with pytest.raises(ValueError, match=r"input.size"):
            cell(torch.randn(2, 5), h)
        with pytest.raises(TypeError, match=r"dtype torch.float64 but the weights have dtype torch.float32"):
            cell(x.double(), h.double())
        cell(x, h)  # and the original stream still runs


def test_converted_or_replaced_weights_are_used():
    torch.manual_seed(1)
    cell = grukit.GRUCell(3, 4)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    _stream(cell, [x, x], h)
    cell.double()
    with torch.no_grad():
        with pytest.raises(TypeError, match=r"input has dtype torch.float32"):
            cell(x, h)
        got = cell(x.double(), h.double())
    assert got.dtype == torch.float64
    cell.weight_hh = nn.Parameter(torch.zeros(12, 4, dtype=torch.float64))
    got = _stream(cell, [x.double()], h.double())
    w = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    assert_close(got, functional.gru_cell(x.double(), h.double(), *w).detach(), torch.float64)


@pytest.mark.parametrize("name", ["weight_ih", "weight_hh", "bias_hh"])
@pytest.mark.parametrize("when", ["before", "mid-stream"])
def test_parametrized_weights_stream_as_torchs_cell(name, when):
    """A parametrization (here weight_norm) moves a weight out of the module's parameters and computes
    it at every access: the stream must use it, before and after the stream has started, as
    torch.nn.GRUCell does with the same parametrization."""
    torch.manual_seed(2)
    ours, ref = grukit.GRUCell(3, 4), nn.GRUCell(3, 4)
    ref.load_state_dict(ours.state_dict())
    xs, h = torch.randn(6, 2, 3), torch.randn(2, 4)
    if when == "mid-stream":
        _stream(ours, xs[:2], h)
    for cell in (ours, ref):
        nn.utils.parametrizations.weight_norm(cell, name, dim=0)
        with torch.no_grad():  # a different weight than before, from the parametrization's own parameters
            getattr(cell.parametrizations, name).original0.mul_(1.5)
    assert_close(_stream(ours, xs, h), _stream(ref, xs, h), torch.float32)


def test_set_backend_takes_effect_mid_stream(monkeypatch):
    calls = []
    real = functional.gru_cell

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(functional, "gru_cell", counting)
    cell = grukit.GRUCell(3, 4)
    x, h = torch.randn(1, 3), torch.randn(1, 4)
    try:
        backend.set_backend("native")
        _stream(cell, [x, x, x], h)
        assert calls == []
        backend.set_backend("reference")
        _stream(cell, [x, x, x], h)
        assert len(calls) == 3
    finally:
        backend.set_backend(None)


def test_unbatched_and_grad_mode_calls_take_the_checked_path():
    torch.manual_seed(2)
    cell = grukit.GRUCell(3, 4, dtype=torch.float64)
    x, h = torch.randn(3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    w = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    with torch.no_grad():
        for _ in range(3):
            assert cell(x, h).shape == (4,)
        expected = functional.gru_cell(x[None], h[None], *w)[0]
        assert_close(cell(x, h), expected, torch.float64)
    out = cell(x[None], h[None])  # gradients still flow to the weights
    (g,) = torch.autograd.grad(out.sum(), [cell.weight_hh])
    (g_ref,) = torch.autograd.grad(functional.gru_cell(x[None], h[None], *w).sum(), [cell.weight_hh])
    assert_close(g, g_ref, torch.float64)


def test_no_grad_bad_input_types_still_get_clear_errors():
    cell = grukit.GRUCell(3, 4)
    with torch.no_grad():
        with pytest.raises(TypeError, match=r"input must be a torch.Tensor, got list"):
            cell([[1.0, 2.0, 3.0]], torch.zeros(1, 4))
        with pytest.raises(TypeError, match=r"hx must be a torch.Tensor, got list"):
            cell(torch.zeros(1, 3), [[0.0] * 4])


def test_a_cell_that_streamed_pickles_copies_and_saves(tmp_path):
    import copy
    import pickle

    cell = grukit.GRUCell(3, 4)
    x, h = torch.randn(2, 3), torch.zeros(2, 4)
    with torch.no_grad():
        for _ in range(3):
            h = cell(x, h)
    assert cell._streaming_step is not None or grukit.backend.requested() == "reference"
    for again in (pickle.loads(pickle.dumps(cell)), copy.deepcopy(cell)):
        with torch.no_grad():
            assert torch.equal(again(x, h), cell(x, h))
    torch.save(cell, tmp_path / "cell.pt")
    loaded = torch.load(tmp_path / "cell.pt", weights_only=False)
    with torch.no_grad():
        assert torch.equal(loaded(x, h), cell(x, h))

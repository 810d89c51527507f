"""The reference itself: gradcheck, a hand-computed Cho-2014 example, chunking."""

from __future__ import annotations

import math

import pytest
import torch

import grukit
from grukit import functional as F


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bidir,lengths", [(False, None), (True, [3, 1, 2])])
def test_gradcheck(reset_after, bidir, lengths):
    gru = grukit.GRU(3, 4, num_layers=2, bidirectional=bidir, dtype=torch.float64, reset_after=reset_after)
    x = torch.randn(3, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2 * (2 if bidir else 1), 3, 4, dtype=torch.float64, requires_grad=True)
    params = list(gru.parameters())
    names = [n for n, _ in gru.named_parameters()]
    lens = torch.tensor(lengths) if lengths else None

    def fn(x, h0, *ps):
        out, h_n = torch.func.functional_call(gru, dict(zip(names, ps)), (x, h0), {"lengths": lens})
        return out, h_n

    assert torch.autograd.gradcheck(fn, (x, h0, *params), atol=1e-8)


def test_gradcheck_cell_both_conventions():
    for reset_after in (True, False):
        cell = grukit.GRUCell(3, 4, dtype=torch.float64, reset_after=reset_after)
        x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
        h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, h: cell(x, h), (x, h))


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_reset_before_matches_hand_computation():
    """One hidden unit, one input, two steps, worked out in plain scalar math."""
    w_ih, w_hh = [0.5, -0.3, 0.8], [0.2, 0.4, -0.6]  # gates r, z, n
    b_ih, b_hh = [0.1, 0.2, 0.3], [-0.1, 0.05, 0.2]
    xs, h = [1.0, -2.0], 0.5
    expected = []
    for x in xs:
        r = _sig(w_ih[0] * x + b_ih[0] + w_hh[0] * h + b_hh[0])
        z = _sig(w_ih[1] * x + b_ih[1] + w_hh[1] * h + b_hh[1])
        n = math.tanh(w_ih[2] * x + b_ih[2] + w_hh[2] * (r * h) + b_hh[2])  # Cho 2014: reset before U_n
        h = (1 - z) * n + z * h
        expected.append(h)
    gru = grukit.GRU(1, 1, dtype=torch.float64, reset_after=False)
    with torch.no_grad():
        for name, vals in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh)):
            getattr(gru, name).copy_(torch.tensor(vals, dtype=torch.float64).reshape(3, 1))
        gru.bias_ih_l0.copy_(torch.tensor(b_ih, dtype=torch.float64))
        gru.bias_hh_l0.copy_(torch.tensor(b_hh, dtype=torch.float64))
    out, h_n = gru(torch.tensor(xs, dtype=torch.float64).reshape(2, 1, 1), torch.tensor([[[0.5]]], dtype=torch.float64))
    assert out.flatten().tolist() == pytest.approx(expected, abs=1e-14)
    assert h_n.item() == pytest.approx(expected[-1], abs=1e-14)
    # the reset-after convention gives a different answer on the same weights
    gru.reset_after = True
    assert gru(torch.tensor(xs, dtype=torch.float64).reshape(2, 1, 1))[1].item() != pytest.approx(
        expected[-1], abs=1e-6
    )


@pytest.mark.parametrize("reset_after", [True, False])
def test_chunked_sequence_equals_full_run(reset_after):
    gru = grukit.GRU(3, 5, num_layers=2, dtype=torch.float64, reset_after=reset_after)
    x = torch.randn(12, 2, 3, dtype=torch.float64)
    full, h_full = gru(x)
    h, pieces = None, []
    for chunk in x.split([5, 1, 6]):
        out, h = gru(chunk, h)
        pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces), full, rtol=0, atol=1e-14)
    torch.testing.assert_close(h, h_full, rtol=0, atol=1e-14)


def test_cell_steps_equal_layer():
    cell = grukit.GRUCell(3, 4, dtype=torch.float64, reset_after=False)
    gru = grukit.GRU(3, 4, dtype=torch.float64, reset_after=False)
    gru.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    h = torch.zeros(2, 4, dtype=torch.float64)
    for t in range(6):
        h = cell(x[t], h)
    torch.testing.assert_close(h, gru(x)[1][0], rtol=0, atol=1e-14)


def test_lengths_stop_each_sequence_at_its_end():
    gru = grukit.GRU(2, 3, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 2, 2, dtype=torch.float64)
    out, h_n = gru(x, lengths=torch.tensor([5, 3]))
    alone, h_alone = gru(x[:3, 1:2])
    assert torch.all(out[3:, 1] == 0)
    torch.testing.assert_close(out[:3, 1:2], alone, rtol=0, atol=1e-14)
    torch.testing.assert_close(h_n[:, 1:2], h_alone, rtol=0, atol=1e-14)


def test_functional_layer_hoists_projection_and_runs_reverse():
    w_ih, w_hh = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 4, dtype=torch.float64)
    x, h0 = torch.randn(4, 2, 3, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    out, h = F.gru_layer(x, h0, w_ih, w_hh, reverse=True)
    flipped, h_f = F.gru_layer(x.flip(0), h0, w_ih, w_hh)
    torch.testing.assert_close(out, flipped.flip(0))
    torch.testing.assert_close(h, h_f)

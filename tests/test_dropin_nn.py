"""PyTorch's GRU tests from test/test_nn.py and the GRU case of test/test_expanded_weights.py.

Written here, following the assertions of those tests (torch 2.13) for the parts
that apply to GRU and GRUCell on the CPU; the RNN and LSTM parts are left out.
The classes under test come from ``dropin.target`` (grukit's by default;
``GRUKIT_DROPIN_TARGET=torch`` runs the same tests on torch's own).

Origin: the tests of PyTorch's test/test_modules.py, test/test_nn.py and
test/test_expanded_weights.py (PyTorch 2.13 era, read at pytorch/pytorch and
its mirrors), re-expressed here for pytest; no code is copied from them, but the
checks are theirs. PyTorch: Copyright (c) 2016- Facebook, Inc. (Adam Paszke) and
contributors, BSD-3-Clause licence (https://github.com/pytorch/pytorch/blob/main/LICENSE).
The samples and error cases come at run time from the installed torch's
torch.testing._internal.common_modules.
"""

from __future__ import annotations

import copy
import itertools
import re

import pytest
import torch
from dropin.target import GRU, GRUCell
from torch.nn.utils._per_sample_grad import call_for_per_sample_grads
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence
from torch.testing._internal.common_modules import module_db
from torch.testing._internal.common_utils import freeze_rng_state, gradcheck, gradgradcheck
from torch.utils._pytree import tree_map_only


def test_RNN_cell():
    for bias in (True, False):  # a smoke test: six steps, then backward
        x, hx = torch.randn(3, 10), torch.randn(3, 20)
        cell = GRUCell(10, 20, bias=bias)
        for _ in range(6):
            hx = cell(x, hx)
        hx.sum().backward()
        assert cell.weight_ih.grad is not None and cell.weight_ih.grad.abs().sum() > 0


def test_RNN_cell_no_broadcasting():
    x, good_hx = torch.randn(3, 10), torch.randn(3, 20)
    for input, hx in ((x, torch.randn(1, 20)), (x, torch.randn(3, 1)), (torch.randn(3, 1), good_hx)):
        with pytest.raises(RuntimeError):  # a size 1 must not broadcast
            GRUCell(10, 20)(input, hx)


def test_RNN_cell_forward_zero_hidden_size():
    assert GRUCell(10, 0)(torch.randn(3, 10), torch.randn(3, 0)).shape == torch.Size([3, 0])


def test_rnn_args_check():
    T, B, I, H, L, bad = 6, 4, 3, 5, 2, 7
    good_x, good_h = (T, B, I), (L, B, H)
    for which, dim in (
        (0, 1),
        (1, 1),
        (0, 2),
        (1, 2),
        (1, 0),
    ):  # input batch, hidden batch, input size, hidden size, hidden[0]
        shapes = [list(good_x), list(good_h)]
        shapes[which][dim] = bad
        with pytest.raises(RuntimeError):
            GRU(I, H, L)(torch.randn(shapes[0]), torch.randn(shapes[1]))


def test_rnn_initial_hidden_state():
    rnn = GRU(30, 20, 2)
    x = torch.randn(10, 32, 30)
    out1, h1 = rnn(x, torch.zeros(2, 32, 20))
    out2, h2 = rnn(x)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(h1, h2)


def test_cudnn_forward_exception():
    rnn = GRU(10, 20, batch_first=True)
    with pytest.raises(RuntimeError, match=r"Expected hidden.*size.*got"):
        rnn(torch.randn(2, 3, 10), torch.zeros(1, 2, 19))
    with pytest.raises(RuntimeError, match=re.escape("input.size(-1) must be equal to input_size")):
        rnn(torch.randn(2, 3, 3))


def test_projections_errors_on_gru_and_rnn():
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not RNN or GRU"):
        GRU(10, 20, proj_size=10)


def test_rnn_retain_variables():
    rnn = GRU(10, 20, num_layers=2).double()
    x = torch.randn(5, 6, 10, dtype=torch.double, requires_grad=True)
    out = rnn(x)
    out[0].sum().backward(retain_graph=True)
    grads = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
    for _ in range(4):  # the same graph, differentiated again, gives the same gradients
        rnn.zero_grad()
        x.grad.zero_()
        out[0].sum().backward(retain_graph=True)
        for a, b in zip(grads, [x.grad] + [p.grad for p in rnn.parameters()], strict=True):
            torch.testing.assert_close(a, b)


def test_GRU_grad_and_gradgrad():
    for bias in (True, False):
        net = GRU(3, 3, bias=bias).to(dtype=torch.float64)
        x = torch.randn(1, 1, 3, dtype=torch.float64, requires_grad=True)
        hx = torch.randn(1, 1, 3, dtype=torch.float64, requires_grad=True)
        # torch's wrappers, as test_nn calls them (batched gradients checked too), in their full mode
        assert gradcheck(lambda a, b: net(a, b)[0], (x, hx), fast_mode=False)
        assert gradgradcheck(lambda a, b: net(a, b)[0], (x, hx), fast_mode=False)


# test_expanded_weights.py, TestExpandedWeightModule.test_module on the nn.GRU entry:
# per-sample gradients from call_for_per_sample_grads against a loop over the batch.

GRU_INFO = copy.copy(next(i for i in module_db if i.module_cls is torch.nn.GRU))
GRU_INFO.module_cls = GRU


class OutputOnly(torch.nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.m = GRU(*args, **kwargs)

    def forward(self, *inputs):
        return self.m(*inputs)[0]


def _per_sample(module, input, args, batch_first, tol):
    """Per-sample gradients of ``sum(module(input, *args))`` against a loop of one-sequence batches."""
    dim = 0 if batch_first else 1
    B = input.shape[dim]
    input.requires_grad_()
    with freeze_rng_state():
        total = call_for_per_sample_grads(module, batch_size=B, loss_reduction="sum", batch_first=batch_first)(
            input, *args
        ).sum()
        total.backward()
        actual = [p.grad_sample for p in module.parameters()] + [input.grad.clone()]
        for p in module.parameters():
            del p.grad_sample
        expected, expected_total = [], 0.0
        for i in range(B):
            one = input.narrow(dim, i, 1).squeeze(dim)
            sliced = tree_map_only(torch.Tensor, lambda t: t.narrow(1, i, 1).contiguous(), args)
            res = module(one.unsqueeze(dim).contiguous(), *sliced).sum()
            expected.append(torch.autograd.grad(res, list(module.parameters()) + [one]))
            expected_total = expected_total + res
    expected = [torch.stack(g) for g in zip(*expected)]
    if not batch_first:
        expected[-1] = expected[-1].transpose(0, 1)
    torch.testing.assert_close(total, expected_total, **tol)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **tol)


def _per_sample_packed(module, input, tol):
    B = int(max(input.batch_sizes))
    with freeze_rng_state():
        total = call_for_per_sample_grads(module, batch_size=B, loss_reduction="sum")(input).data.sum()
        total.backward()
        actual = [p.grad_sample for p in module.parameters()]
        for p in module.parameters():
            assert p.grad_sample.shape[0] == B
            del p.grad_sample
        padded, lengths = pad_packed_sequence(input, batch_first=True)
        expected, expected_total = [], 0.0
        for i in range(len(lengths)):
            one = padded[i].narrow(0, 0, lengths[i])
            res = module(one.unsqueeze(0 if module.m.batch_first else 1)).sum()
            expected.append(torch.autograd.grad(res, list(module.parameters())))
            expected_total = expected_total + res
    torch.testing.assert_close(total, expected_total, **tol)
    for a, e in zip(actual, [torch.stack(g) for g in zip(*expected)], strict=True):
        torch.testing.assert_close(a, e, **tol)


@pytest.mark.parametrize("dtype,training", list(itertools.product((torch.float32, torch.float64), (True, False))))
def test_expanded_weights_module(dtype, training):
    tol = dict(atol=1e-3, rtol=1e-4) if dtype == torch.float32 else {}
    inputs = GRU_INFO.module_inputs_func(
        GRU_INFO, device="cpu", dtype=dtype, requires_grad=True, training=training, with_packed_sequence=True
    )
    for s in inputs:
        m = OutputOnly(*s.constructor_input.args, **s.constructor_input.kwargs).to(dtype)
        batch_first = m.m.batch_first
        args = list(s.forward_input.args)
        input = args[0]
        if isinstance(input, torch.Tensor) and input.dim() == 2:  # unbatched samples: a batch of two copies
            input = input.detach().unsqueeze(0 if batch_first else 1)
            input = input.repeat([2, 1, 1] if batch_first else [1, 2, 1])
            if len(args) > 1:
                args[1] = args[1].unsqueeze(1).repeat(1, 2, 1)
        if isinstance(input, PackedSequence):
            _per_sample_packed(m, input, tol)
        else:
            _per_sample(m, input, tuple(args[1:]), batch_first, tol)

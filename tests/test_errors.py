"""Bad input gets a ValueError / TypeError naming the argument, expected and actual values."""

from __future__ import annotations

import pytest
import torch

import grukit


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(input_size=3, hidden_size=0), ValueError, "hidden_size must be >= 1, got 0"),
        (dict(input_size=0, hidden_size=4), ValueError, "input_size must be >= 1, got 0"),
        (dict(input_size=3, hidden_size=4, num_layers=0), ValueError, "num_layers must be >= 1, got 0"),
        (dict(input_size=3, hidden_size=2.5), TypeError, "hidden_size must be an int, got float"),
        (dict(input_size="3", hidden_size=4), TypeError, "input_size must be an int, got str"),
        (
            dict(input_size=3, hidden_size=4, num_layers=2, dropout=1.5),
            ValueError,
            r"dropout must be in \[0, 1\], got 1.5",
        ),
        (
            dict(input_size=3, hidden_size=4, num_layers=2, dropout=-0.1),
            ValueError,
            r"dropout must be in \[0, 1\], got -0.1",
        ),
        (dict(input_size=3, hidden_size=4, num_layers=2, dropout="x"), TypeError, "dropout must be a float"),
        (
            dict(input_size=3, hidden_size=4, compute_dtype="bfloat16"),
            TypeError,
            "compute_dtype must be a floating-point torch.dtype or None, got 'bfloat16'",
        ),
        (
            dict(input_size=3, hidden_size=4, compute_dtype=torch.int32),
            TypeError,
            "compute_dtype must be a floating-point torch.dtype or None, got torch.int32",
        ),
    ],
)
def test_constructor(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        grukit.GRU(**kwargs)


def test_cell_constructor():
    with pytest.raises(ValueError, match="hidden_size must be >= 0, got -2"):
        grukit.GRUCell(3, -2)


gru = grukit.GRU(3, 4, num_layers=2)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (
            lambda: gru(torch.randn(5)),
            ValueError,
            r"input must be 3-D \(T, B, I\) or 2-D \(unbatched\), got 1-D with shape \(5,\)",
        ),
        (lambda: gru(torch.randn(2, 5, 3, 1)), ValueError, "got 4-D"),
        (lambda: gru(torch.randn(5, 2, 7)), ValueError, r"input.size\(-1\) must equal input_size=3, got 7"),
        (
            lambda: gru(torch.randn(5, 2, 3, dtype=torch.float64)),
            TypeError,
            "input has dtype torch.float64 but the weights have dtype torch.float32",
        ),
        (
            lambda: gru(torch.ones(5, 2, 3, dtype=torch.long)),
            TypeError,
            "input must be a floating-point tensor, got dtype torch.int64",
        ),
        (lambda: gru([[1.0, 2.0, 3.0]]), TypeError, "input must be a torch.Tensor, got list"),
        (
            lambda: gru(torch.randn(5, 2, 3), torch.randn(1, 2, 4)),
            ValueError,
            r"hx must have shape \(2, 2, 4\), got \(1, 2, 4\)",
        ),
        (
            lambda: gru(torch.randn(5, 3), torch.randn(2, 2, 4)),
            ValueError,
            r"hx must have shape \(2, 4\), got \(2, 2, 4\)",
        ),
        (
            lambda: gru(torch.randn(5, 2, 3), torch.randn(2, 2, 4, dtype=torch.float64)),
            TypeError,
            "hx has dtype torch.float64",
        ),
        (lambda: gru(torch.randn(0, 2, 3)), ValueError, "zero time steps"),
        (
            lambda: gru(torch.randn(5, 2, 3), lengths=torch.tensor([[5, 5]])),
            ValueError,
            r"lengths must be 1-D .* got shape \(1, 2\)",
        ),
        (
            lambda: gru(torch.randn(5, 2, 3), lengths=torch.tensor([5.0, 5.0])),
            TypeError,
            "lengths must be an integer tensor, got dtype torch.float32",
        ),
        (
            lambda: gru(torch.randn(5, 2, 3), lengths=torch.tensor([5, 5, 5])),
            ValueError,
            "lengths has 3 entries but the batch has 2 sequences",
        ),
        (
            lambda: gru(torch.randn(5, 2, 3), lengths=torch.tensor([0, 5])),
            ValueError,
            r"lengths must lie in \[1, 5\].*got values in \[0, 5\]",
        ),
        (lambda: gru(torch.randn(5, 2, 3), lengths=torch.tensor([6, 5])), ValueError, r"lengths must lie in \[1, 5\]"),
        (lambda: gru(torch.randn(5, 2, 3), lengths="5"), TypeError, "lengths must be a torch.Tensor, got str"),
    ],
)
def test_forward(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_device_mismatch_is_named():
    meta = grukit.GRU(3, 4, device="meta")
    with pytest.raises(ValueError, match="input is on device cpu but the weights are on meta"):
        meta(torch.randn(5, 2, 3))


def test_lengths_with_packed_input():
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3), [5, 3])
    with pytest.raises(ValueError, match="lengths must not be given with a PackedSequence"):
        gru(packed, lengths=torch.tensor([5, 3]))


def test_lengths_as_list_accepted():
    out, _ = gru(torch.randn(5, 2, 3), lengths=[5, 2])
    assert torch.all(out[2:, 1] == 0)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda c: c(torch.randn(2, 5)), ValueError, r"input.size\(-1\) must equal input_size=3, got 5"),
        (lambda c: c(torch.randn(2, 3), torch.randn(3, 4)), ValueError, r"hx must have shape \(2, 4\), got \(3, 4\)"),
        (lambda c: c(torch.randn(1, 2, 3)), ValueError, r"input must be 2-D \(B, I\) or 1-D"),
        (lambda c: c(torch.randn(2, 3, dtype=torch.float64)), TypeError, "input has dtype torch.float64"),
    ],
)
def test_cell_forward(call, exc, match):
    with pytest.raises(exc, match=match):
        call(grukit.GRUCell(3, 4))


def test_no_exact_torch_conversion_for_reset_before():
    with pytest.raises(ValueError, match="to_torch\\(\\) needs reset_after=True"):
        grukit.GRU(3, 4, reset_after=False).to_torch()


def test_from_torch_needs_a_gru():
    with pytest.raises(TypeError, match=r"expects a torch.nn.GRU, got LSTM"):
        grukit.GRU.from_torch(torch.nn.LSTM(3, 4))


@pytest.mark.parametrize("kind", ["GRU", "GRUCell", "MinGRU"])
def test_fx_symbolic_trace_says_how_to_keep_the_layer_whole(kind):
    """torch.fx.symbolic_trace leaves only torch.nn's own modules whole: inside grukit's, the input is
    a Proxy. The error says so and how to trace instead, and that way works."""
    layer = {"GRU": grukit.GRU(4, 6), "GRUCell": grukit.GRUCell(4, 6), "MinGRU": grukit.MinGRU(4, 6)}[kind]
    x = torch.randn(3, 4) if kind == "GRUCell" else torch.randn(5, 3, 4)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = layer, torch.nn.Linear(6, 2)

        def forward(self, x):
            out = self.rnn(x)
            return self.head(out if kind == "GRUCell" else out[0])

    net = Net()
    with pytest.raises(TypeError, match=r"input is a torch.fx Proxy: .* is_leaf_module also returns True"):
        torch.fx.symbolic_trace(net)

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualified_name):
            return isinstance(m, (grukit.GRU, grukit.GRUCell, grukit.MinGRU)) or super().is_leaf_module(
                m, qualified_name
            )

    traced = torch.fx.GraphModule(net, Tracer().trace(net))
    assert torch.equal(traced(x), net(x))

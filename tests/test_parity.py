"""grukit.GRU against torch.nn.GRU: outputs, h_n and every gradient, over every option."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import grukit

GRID = list(
    itertools.product(
        [1, 2, 3], [False, True], [False, True], [False, True], [False, True], ["none", "packed", "lengths"]
    )
)


def _pair(I, H, L, bidir, batch_first, bias, dtype):
    ref = torch.nn.GRU(I, H, L, bias=bias, batch_first=batch_first, bidirectional=bidir, dtype=dtype)
    return ref, grukit.GRU.from_torch(ref)


def _run(model, x, h0, variant, lengths, batch_first):
    if variant == "packed":
        out, h = model(pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False), h0)
        return pad_packed_sequence(out, batch_first=batch_first)[0], h
    if variant == "lengths":
        if isinstance(model, grukit.GRU):
            return model(x, h0, lengths=lengths)
        # torch.nn.GRU has no lengths=: its packed result, padded, is what lengths= must give
        out, h = model(pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False), h0)
        return pad_packed_sequence(out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])[0], h
    return model(x, h0)


def check_parity(I, H, L, bidir, batch_first, bias, with_h0, variant, dtype, T=5, B=3):
    ref, ours = _pair(I, H, L, bidir, batch_first, bias, dtype)
    D = 2 if bidir else 1
    x = torch.randn(B, T, I, dtype=dtype) if batch_first else torch.randn(T, B, I, dtype=dtype)
    h0 = torch.randn(L * D, B, H, dtype=dtype) if with_h0 else None
    lengths = torch.randint(1, T + 1, (B,)) if variant != "none" else None
    if lengths is not None:
        lengths[0] = T  # so the padded outputs have T steps
    results = []
    for model in (ref, ours):
        xi = x.clone().requires_grad_()
        hi = h0.clone().requires_grad_() if h0 is not None else None
        out, h_n = _run(model, xi, hi, variant, lengths, batch_first)
        weight = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(7))
        (out * weight).sum().backward(retain_graph=True)
        (h_n * torch.randn(h_n.shape, dtype=dtype, generator=torch.Generator().manual_seed(8))).sum().backward()
        grads = [xi.grad] + ([hi.grad] if hi is not None else []) + [p.grad for p in model.parameters()]
        results.append((out, h_n, grads))
    (o1, h1, g1), (o2, h2, g2) = results
    assert_close(o2, o1, dtype, "output")
    assert_close(h2, h1, dtype, "h_n")
    names = ["input", *(["h0"] if with_h0 else [])] + [n for n, _ in ref.named_parameters()]
    assert len(g1) == len(g2) == len(names)
    for name, a, b in zip(names, g1, g2):
        assert_close(b, a, dtype, f"grad of {name}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("L,bidir,batch_first,bias,with_h0,variant", GRID)
def test_matches_torch(L, bidir, batch_first, bias, with_h0, variant, dtype):
    check_parity(4, 6, L, bidir, batch_first, bias, with_h0, variant, dtype)


@settings(max_examples=25, deadline=None)
@given(
    T=st.integers(1, 7),
    B=st.integers(1, 5),
    I=st.integers(1, 9),
    H=st.integers(1, 9),
    L=st.integers(1, 2),
    bidir=st.booleans(),
    variant=st.sampled_from(["none", "packed", "lengths"]),
)
def test_random_shapes_match_torch(T, B, I, H, L, bidir, variant):
    torch.manual_seed(T * 1000 + B * 100 + I * 10 + H)
    check_parity(I, H, L, bidir, False, True, True, variant, torch.float64, T=T, B=B)


def test_unbatched_matches_torch():
    ref, ours = _pair(3, 5, 2, True, False, True, torch.float64)
    x, h0 = torch.randn(7, 3, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    for a, b in zip(ref(x, h0), ours(x, h0)):
        assert b.shape == a.shape
        assert_close(b, a, torch.float64)


def test_packed_output_keeps_torch_structure():
    ref, ours = _pair(3, 4, 1, True, False, True, torch.float64)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([2, 6, 3, 6]), enforce_sorted=False)
    a, b = ref(packed)[0], ours(packed)[0]
    assert torch.equal(a.batch_sizes, b.batch_sizes)
    assert torch.equal(a.sorted_indices, b.sorted_indices) and torch.equal(a.unsorted_indices, b.unsorted_indices)
    assert_close(b.data, a.data, torch.float64)


def test_same_seed_same_init_as_torch():
    torch.manual_seed(5)
    ref = torch.nn.GRU(3, 4, 2, bidirectional=True)
    torch.manual_seed(5)
    ours = grukit.GRU(3, 4, 2, bidirectional=True)
    assert list(ref.state_dict()) == list(ours.state_dict())
    for (name, a), b in zip(ref.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name


def test_torch_state_dict_loads_unchanged_and_back():
    ref = torch.nn.GRU(3, 4, 2, bias=False, batch_first=True, bidirectional=True)
    ours = grukit.GRU(3, 4, 2, bias=False, batch_first=True, bidirectional=True)
    ours.load_state_dict(ref.state_dict())  # strict: identical keys and shapes
    back = ours.to_torch()
    assert isinstance(back, torch.nn.GRU) and back.batch_first and back.bidirectional and not back.bias
    x = torch.randn(2, 5, 3)
    assert torch.equal(back(x)[0], ref(x)[0])


def test_dropout_between_layers_only():
    gru = grukit.GRU(3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(5, 2, 3)
    gru.eval()
    assert torch.equal(gru(x)[0], gru(x)[0])  # no dropout in eval mode
    gru.train()
    torch.manual_seed(1)
    a = gru(x)[0]
    torch.manual_seed(2)
    b = gru(x)[0]
    assert not torch.equal(a, b)  # dropout between layer 0 and 1 in training
    with pytest.warns(UserWarning, match="num_layers=1"):
        single = grukit.GRU(3, 4, dropout=0.5).train()
    torch.manual_seed(1)
    first = single(x)[0]
    torch.manual_seed(2)
    assert torch.equal(first, single(x)[0])  # never after the last layer


def test_gru_cell_matches_torch():
    for dtype in (torch.float64, torch.float32):
        ref = torch.nn.GRUCell(4, 6, dtype=dtype)
        ours = grukit.GRUCell(4, 6, dtype=dtype)
        ours.load_state_dict(ref.state_dict())
        x, h = torch.randn(3, 4, dtype=dtype), torch.randn(3, 6, dtype=dtype)
        assert_close(ours(x, h), ref(x, h), dtype)
        assert_close(ours(x), ref(x), dtype)
        assert_close(ours(x[0], h[0]), ref(x[0], h[0]), dtype)
        ours(x, h).sum().backward()
        ref(x, h).sum().backward()
        for (name, a), b in zip(ref.named_parameters(), ours.parameters()):
            assert_close(b.grad, a.grad, dtype, name)


def test_torchs_public_helpers_give_torchs_answers_and_exceptions():
    """Every public name of torch.nn.GRU exists on grukit.GRU, and RNNBase's helpers (which
    training loops and subclasses call: flatten_parameters, check_forward_args, ...) return what
    torch's return and raise torch's exception classes with torch's words."""
    public = {n for n in dir(torch.nn.GRU(3, 4)) if not n.startswith("_")}
    assert public <= set(dir(grukit.GRU(3, 4)))
    for batch_first, bidir in itertools.product([False, True], [False, True]):
        ref = torch.nn.GRU(3, 4, 2, batch_first=batch_first, bidirectional=bidir)
        ours = grukit.GRU.from_torch(ref)
        x = torch.randn(5, 2, 3)
        packed = torch.nn.utils.rnn.pack_sequence([torch.randn(n, 3) for n in (2, 5, 3)], enforce_sorted=False)
        for m in (ref, ours):
            assert m.flatten_parameters() is None
        assert_close(ours(x)[0], ref(x)[0], torch.float32, "after flatten_parameters")
        for args in ((x, None), (packed.data, packed.batch_sizes)):
            assert ours.get_expected_hidden_size(*args) == ref.get_expected_hidden_size(*args)
            h = torch.zeros(ref.get_expected_hidden_size(*args))
            assert ours.check_forward_args(args[0], h, args[1]) is None
            ref.check_forward_args(args[0], h, args[1])
        h = torch.randn(4 if bidir else 2, 3, 4)
        assert torch.equal(ours.permute_hidden(h, packed.sorted_indices), ref.permute_hidden(h, packed.sorted_indices))
        assert ours.permute_hidden(h, None) is h
        bad = [
            (
                x.double(),
                torch.zeros(1),
                None,
                r"^RNN input dtype \(torch.float64\) does not match weight dtype \(torch.float32\)",
            ),
            (x[0], torch.zeros(1), None, r"input must have 3 dimensions, got 2"),
            (packed.data[None], torch.zeros(1), packed.batch_sizes, r"input must have 2 dimensions, got 3"),
            (
                torch.randn(5, 2, 6),
                torch.zeros(1),
                None,
                r"input.size\(-1\) must be equal to input_size. Expected 3, got 6",
            ),
            (x, torch.zeros(9, 2, 4), None, r"Expected hidden size \(\d, \d, 4\), got \[9, 2, 4\]"),
        ]
        for inp, hid, sizes, words in bad:
            for m in (ref, ours):
                with pytest.raises(Exception, match=words) as caught:
                    m.check_forward_args(inp, hid, sizes)
                if m is ref:
                    theirs = caught.type
                else:
                    assert isinstance(caught.value, theirs)
    with pytest.raises(RuntimeError, match=r"^my message \(1, 2, 4\) \[3\]$"):
        grukit.GRU(3, 4).check_hidden_size(torch.zeros(3), (1, 2, 4), "my message {} {}")

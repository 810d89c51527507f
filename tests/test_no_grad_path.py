"""grukit.GRU's no-grad forward: one native call for the whole stack (modules.GRU._direct_forward).

It must give what the checked path and the reference give, be taken exactly where
it applies, and leave every error to the checked path's named messages."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import assert_close, require_native

import grukit
from grukit import backend


@pytest.fixture(scope="module", autouse=True)
def _native():
    require_native()


@pytest.fixture
def calls(monkeypatch):
    """How many times the one-call stack ran."""
    count = [0]
    real = backend.stack_fn

    def counting(x, train=False):
        stack = real(x, train)
        if stack is None:
            return None

        def run(*args):
            count[0] += 1
            return stack(*args)

        return run

    monkeypatch.setattr(backend, "stack_fn", counting)
    return count


def _reference(model, x, hx):
    backend.set_backend("reference")
    try:
        with torch.no_grad():
            return model(x, hx)
    finally:
        backend.set_backend(None)


GRID = list(
    itertools.product(
        [1, 2],  # layers
        [False, True],  # bidirectional
        [True, False],  # bias
        [False, True],  # batch_first
        [True, False],  # batched
        [False, True],  # hx given
        [True, False],  # reset_after
    )
)


@pytest.mark.parametrize("layers, bidirectional, bias, batch_first, batched, with_hx, reset_after", GRID)
def test_no_grad_stack_matches_reference(
    calls, layers, bidirectional, bias, batch_first, batched, with_hx, reset_after
):
    D = 2 if bidirectional else 1
    model = grukit.GRU(
        5,
        7,
        layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        reset_after=reset_after,
        dtype=torch.float64,
    )
    T, B = 6, 3
    if batched:
        x = torch.randn(B, T, 5, dtype=torch.float64) if batch_first else torch.randn(T, B, 5, dtype=torch.float64)
        hx = torch.randn(layers * D, B, 7, dtype=torch.float64) if with_hx else None
    else:
        x = torch.randn(T, 5, dtype=torch.float64)
        hx = torch.randn(layers * D, 7, dtype=torch.float64) if with_hx else None
    with torch.no_grad():
        out, h_n = model(x, hx)
    assert calls[0] == 1
    ref_out, ref_h = _reference(model, x, hx)
    assert out.shape == ref_out.shape and h_n.shape == ref_h.shape
    assert_close(out, ref_out, torch.float64, "output")
    assert_close(h_n, ref_h, torch.float64, "h_n")
    out_grad, h_grad = model(x, hx)  # autograd on: the checked path, the same numbers
    assert_close(out, out_grad.detach(), torch.float64, "output with grad")
    assert_close(h_n, h_grad.detach(), torch.float64, "h_n with grad")


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_no_grad_stack_in_lower_precision(calls, dtype, tol):
    model = grukit.GRU(8, 16, 2, bidirectional=True)
    x = torch.randn(9, 4, 8)
    with torch.no_grad():
        expected, _ = _reference(model.double(), x.double(), None)
        out, h_n = model.to(dtype)(x.to(dtype))
    assert calls[0] == 1 and out.dtype == dtype and h_n.dtype == dtype
    err = (out.double() - expected).abs().max() / expected.abs().max().clamp(min=1.0)
    assert err < tol, f"relative error {err:.3g}"


CELL_OPTIONS = {
    "layer_norm": dict(layer_norm=True),
    "zoneout": dict(zoneout=0.3),
    "dropouts": dict(recurrent_dropout=0.3, input_dropout=0.2, weight_dropout=0.4),
    "all": dict(layer_norm=True, zoneout=0.2, recurrent_dropout=0.3, weight_dropout=0.1),
}


@pytest.mark.parametrize("option", list(CELL_OPTIONS))
@pytest.mark.parametrize(
    "layers, bidirectional, batch_first, with_hx",
    list(itertools.product([1, 2], [False, True], [False, True], [False, True])),
)
def test_no_grad_stack_runs_the_cells_without_masks(calls, option, layers, bidirectional, batch_first, with_hx):
    """layer_norm in any mode, zoneout and the dropouts in eval: one call, the reference's numbers."""
    torch.manual_seed(0)
    model = grukit.GRU(
        5, 7, layers, batch_first=batch_first, bidirectional=bidirectional, dtype=torch.float64, **CELL_OPTIONS[option]
    )
    with torch.no_grad():  # the norms' gains and biases away from 1 and 0, so that a misplaced one shows
        for name in model._norm_names:
            getattr(model, name).add_(0.3 * torch.randn(21, dtype=torch.float64))
    model.eval()
    D = 2 if bidirectional else 1
    x = torch.randn(3, 6, 5, dtype=torch.float64) if batch_first else torch.randn(6, 3, 5, dtype=torch.float64)
    hx = torch.randn(layers * D, 3, 7, dtype=torch.float64) if with_hx else None
    with torch.no_grad():
        out, h_n = model(x, hx)
    assert calls[0] == 1
    ref_out, ref_h = _reference(model, x, hx)
    assert_close(out, ref_out, torch.float64, "output")
    assert_close(h_n, ref_h, torch.float64, "h_n")
    plain = grukit.GRU(5, 7, layers, batch_first=batch_first, bidirectional=bidirectional, dtype=torch.float64)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k in plain.state_dict()})
    with torch.no_grad():
        differs = (plain.eval()(x, hx)[0] - out).abs().max()
    if option == "dropouts":  # off in eval: the plain GRU's numbers
        assert differs < 1e-12
    else:  # the option changed the numbers: it was not dropped on the way
        assert differs > 1e-3


def test_layer_norm_in_training_mode_takes_the_stack(calls):
    model = grukit.GRU(4, 6, 2, layer_norm=True).train()  # no masks, no dropout between layers: deterministic
    x = torch.randn(5, 3, 4)
    with torch.no_grad():
        out, _ = model(x)
    assert calls[0] == 1
    assert_close(out, model(x)[0].detach(), torch.float32, "output with grad")


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("ln_gain_ih_l0", torch.zeros(5), r"must have shape \(18,\), got \(5,\)"),
        ("ln_bias_hh_l0", torch.zeros(18, dtype=torch.float64), "has dtype torch.float64"),
    ],
)
def test_no_grad_layer_norm_errors_name_the_parameter(name, value, match):
    g = grukit.GRU(4, 6, layer_norm=True)
    assert name in g._norm_names
    setattr(g, name, torch.nn.Parameter(value))
    with torch.no_grad(), pytest.raises((ValueError, TypeError), match=match):
        g(torch.randn(3, 2, 4))


@pytest.mark.parametrize(
    "make, call",
    [
        (lambda: grukit.GRU(4, 6, zoneout=0.3).train(), None),
        (lambda: grukit.GRU(4, 6, recurrent_dropout=0.3).train(), None),
        (lambda: grukit.GRU(4, 6, input_dropout=0.3).train(), None),
        (lambda: grukit.GRU(4, 6, weight_dropout=0.3).train(), None),
        (lambda: grukit.GRU(4, 6, 2, dropout=0.5).train(), None),
        (lambda: grukit.GRU(4, 6), "lengths"),
        (lambda: grukit.GRU(4, 6), "packed"),
    ],
)
def test_other_cases_take_the_checked_path(calls, make, call):
    model = make()
    x = torch.randn(5, 3, 4)
    with torch.no_grad():
        if call == "lengths":
            model(x, lengths=torch.tensor([5, 2, 4]))
        elif call == "packed":
            model(torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([5, 4, 2])))
        else:
            model(x)
    assert calls[0] == 0


@pytest.mark.parametrize("layer_norm", [False, True])
def test_compute_dtype_takes_the_stack_with_the_checked_paths_numbers(calls, layer_norm):
    """Mixed precision (float32 weights, bfloat16 compute) casts around the stack exactly as the
    checked path casts around its per-layer ops: the same bits, returned in float32."""
    torch.manual_seed(7)
    model = grukit.GRU(4, 6, 2, bidirectional=True, layer_norm=layer_norm, compute_dtype=torch.bfloat16)
    x, h = torch.randn(5, 3, 4), torch.randn(4, 3, 6)
    with torch.no_grad():
        out, h_n = model(x, h)
        assert calls[0] == 1
        ref_out, ref_h = model(x, h, lengths=torch.full((3,), 5))  # lengths: the checked path
    assert calls[0] == 1
    assert out.dtype == h_n.dtype == torch.float32
    assert torch.equal(out, ref_out) and torch.equal(h_n, ref_h)


def test_dropout_between_layers_in_eval_takes_the_stack(calls):
    model = grukit.GRU(4, 6, 2, dropout=0.5).eval()
    with torch.no_grad():
        model(torch.randn(5, 3, 4))
    assert calls[0] == 1


def test_transforms_and_subclasses_take_the_checked_path(calls):
    model = grukit.GRU(4, 6)
    x = torch.randn(3, 5, 4)  # (N, T, I) for vmap over N
    with torch.no_grad():
        batched = torch.func.vmap(lambda s: model(s)[0])(x)  # each sample (T, I), unbatched
        looped = torch.stack([model(s)[0] for s in x])
    assert_close(batched, looped, torch.float32)
    assert calls[0] == 3  # the three looped calls only, not the vmapped one


def test_torch_compile_under_no_grad_has_no_graph_break(calls):
    model = grukit.GRU(3, 4, 2, bidirectional=True).eval()
    x = torch.randn(5, 2, 3)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        out, h_n = compiled(x)
        traced = calls[0]
        ref_out, ref_h = model(x)
    assert traced == 0  # the compiled graph holds the dispatcher's op, not the direct call
    assert_close(out, ref_out, torch.float32)
    assert_close(h_n, ref_h, torch.float32)


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("bias_hh_l0", torch.zeros(1), r"bias_hh_l0 must have shape \(24,\), got \(1,\)"),
        ("weight_hh_l0", torch.zeros(24, 9), r"weight_hh_l0 must have shape \(24, 8\)"),
        ("weight_ih_l1", torch.zeros(24, 7), r"weight_ih_l1 must have shape \(24, 8\)"),
        ("bias_ih_l1", torch.zeros(24, dtype=torch.float64), "bias_ih_l1 has dtype torch.float64"),
    ],
)
def test_no_grad_errors_name_the_parameter(name, value, match):
    g = grukit.GRU(5, 8, 2)
    setattr(g, name, torch.nn.Parameter(value))
    with torch.no_grad(), pytest.raises((ValueError, TypeError), match=match):
        g(torch.randn(3, 2, 5))


def test_no_grad_input_errors_match_the_checked_path():
    g = grukit.GRU(5, 8)
    cases = [
        (torch.randn(3, 2, 6), None),  # input size
        (torch.randn(3, 2, 5), torch.randn(1, 3, 8)),  # hx batch
        (torch.randn(3, 2, 5), torch.randn(1, 2, 8, dtype=torch.float64)),  # hx dtype
        (torch.randn(3, 2, 5, dtype=torch.float64), None),  # input dtype
    ]
    for x, hx in cases:
        with pytest.raises(Exception) as with_grad:
            g(x, hx)
        with torch.no_grad(), pytest.raises(Exception) as without:
            g(x, hx)
        assert type(without.value) is type(with_grad.value) and str(without.value) == str(with_grad.value)

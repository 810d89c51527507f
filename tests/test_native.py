"""The native kernel against its readable twin (grukit.functional) and torch.nn.GRU.

Every check compares outputs and every gradient (input, h0, all weights and
biases). Tolerances: float64 1e-10, float32 1e-5 (conftest.TOL); bfloat16 is
compared with the float32 reference on the same bf16-rounded weights and
inputs, within BF16_TOL (8-bit mantissa: ~4e-3 per rounding, a few roundings
per step; gates are accumulated in float32).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import assert_close, require_native
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence

import grukit
from grukit import backend, functional, kernels
from grukit.kernels import _build

BF16_TOL = 3e-2  # max |native bf16 - fp32 reference| / max(1, max |reference|)


@pytest.fixture(scope="module", autouse=True)
def _native():
    require_native()


@pytest.fixture
def always_team():
    """Batch-1 loops split their units between threads whenever the sizes allow (not by measurement)."""
    kernels.ops.set_team_policy("team")
    yield
    kernels.ops.set_team_policy("measured")


def _layer_inputs(T, B, I, H, dtype, bias=True):
    x = torch.randn(T, B, I, dtype=dtype)  # (T, B, I)
    h0 = torch.randn(B, H, dtype=dtype)  # (B, H)
    w = [torch.randn(3 * H, I, dtype=dtype) * 0.5, torch.randn(3 * H, H, dtype=dtype) * 0.5]
    w += [torch.randn(3 * H, dtype=dtype), torch.randn(3 * H, dtype=dtype)] if bias else [None, None]
    return [t.requires_grad_() if t is not None else None for t in (x, h0, *w)]


def _outputs_and_grads(fn, inputs, lengths, reset_after, reverse, seed=1):
    out, h_n = fn(*inputs, reset_after=reset_after, reverse=reverse, lengths=lengths)
    g = torch.Generator().manual_seed(seed)
    go = torch.randn(out.shape, generator=g, dtype=out.dtype)  # (T, B, H)
    gh = torch.randn(h_n.shape, generator=g, dtype=out.dtype)  # (B, H)
    wanted = [t for t in inputs if t is not None]
    grads = torch.autograd.grad((out * go).sum() + (h_n * gh).sum(), wanted)
    return [out, h_n, *grads]


NAMES = ["output", "h_n", "dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"]


def _outputs_and_grads_given(fn, tensors, go, gh, lengths, reset_after, reverse=False):
    """Like _outputs_and_grads, with the upstream gradients given (float64, cast to each dtype)."""
    out, h_n = fn(*tensors, reset_after=reset_after, reverse=reverse, lengths=lengths)
    loss = (out * go.to(out.dtype)).sum() + (h_n * gh.to(out.dtype)).sum()
    return [out, h_n, *torch.autograd.grad(loss, tensors)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_matches_reference(dtype, reset_after, reverse, with_lengths, bias):
    inputs = _layer_inputs(6, 4, 3, 5, dtype, bias)
    lengths = torch.tensor([6, 2, 1, 4]) if with_lengths else None
    ref = _outputs_and_grads(functional.gru_layer, inputs, lengths, reset_after, reverse)
    nat = _outputs_and_grads(kernels.gru_layer, inputs, lengths, reset_after, reverse)
    for name, a, b in zip(NAMES, ref, nat):
        assert_close(b, a, dtype, name)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gate_activations_over_the_whole_float_range(reset_after):
    """float32 sigmoid and tanh (the kernel's own exp on AVX2 and AVX-512) against float64,
    for pre-activations from -1e4 to 1e4, across exp's clamps (-104, 89) and where e^x leaves
    the normal floats, plus +-inf and NaN: every gate gets the same value v_j in unit j."""
    v = torch.cat(
        [
            torch.linspace(-30.0, 30.0, 241, dtype=torch.float64),
            torch.tensor([-1e4, -200.0, -104.5, -103.9, -89.5, -88.8, -87.3, -44.4, -43.6, 43.6, 44.4]),
            torch.tensor([87.3, 88.8, 89.5, 103.9, 104.5, 200.0, 1e4]),
        ]
    )
    H = v.numel()  # 259: not a multiple of any vector width
    w_ih = v.repeat(3).unsqueeze(1)  # (3H, 1): gi = (v, v, v) for x = 1
    x = torch.ones(3, 1, 1, dtype=torch.float64)  # (T, B, I)
    h0 = torch.full((1, H), 0.5, dtype=torch.float64)
    w_hh = torch.zeros(3 * H, H, dtype=torch.float64)  # gh = 0: each step is the activations alone
    go, gh = torch.randn(3, 1, H, dtype=torch.float64), torch.randn(1, H, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (x, h0, w_ih, w_hh)]
    ref = _outputs_and_grads_given(functional.gru_layer, inputs, go, gh, None, reset_after)
    f32 = [t.detach().float().requires_grad_() for t in inputs]
    nat = _outputs_and_grads_given(kernels.gru_layer, f32, go, gh, None, reset_after)
    for name, a, b in zip(["output", "h_n", "dx", "dh0", "dw_ih", "dw_hh"], ref, nat):
        assert torch.isfinite(b).all(), name
        if name != "dx":  # dx sums v_j * dG_j over j, weights up to 1e4: float32 rounding, not the activations
            assert_close(b, a.float(), torch.float32, name)
    # One step of +-inf and NaN: as the reference (a NaN in h reaches every unit through U, even U = 0)
    inf, nan = float("inf"), float("nan")
    special = [torch.ones(1, 1, 1), torch.full((1, 3), 0.5), torch.tensor([inf, -inf, nan]).repeat(3).unsqueeze(1)]
    out, _ = kernels.gru_layer(*special, torch.zeros(9, 3), None, None, reset_after=reset_after)
    want, _ = functional.gru_layer(*special, torch.zeros(9, 3), None, None, reset_after=reset_after)
    torch.testing.assert_close(out, want, rtol=0, atol=0, equal_nan=True)
    if reset_after:  # sigmoid(inf) = 1 keeps h; sigmoid(-inf) = 0 takes tanh(-inf) = -1; NaN stays NaN
        torch.testing.assert_close(out[0, 0], torch.tensor([0.5, -1.0, float("nan")]), rtol=0, atol=0, equal_nan=True)


@settings(max_examples=15, deadline=None)
@given(
    T=st.integers(1, 9),
    B=st.integers(1, 5),
    I=st.integers(1, 7),
    H=st.integers(1, 40),
    reset_after=st.booleans(),
    reverse=st.booleans(),
)
def test_random_shapes_match_reference(T, B, I, H, reset_after, reverse):
    # H up to 40 crosses the 16-wide vector length: full vectors plus a masked tail
    inputs = _layer_inputs(T, B, I, H, torch.float64)
    lengths = torch.randint(1, T + 1, (B,))
    ref = _outputs_and_grads(functional.gru_layer, inputs, lengths, reset_after, reverse)
    nat = _outputs_and_grads(kernels.gru_layer, inputs, lengths, reset_after, reverse)
    for name, a, b in zip(NAMES, ref, nat):
        assert_close(b, a, torch.float64, name)


def _module_run(model, x, h0, variant, lengths, batch_first):
    if variant == "packed":
        xp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out, h_n = model(xp, h0)
        return out.data, h_n
    kw = {"lengths": lengths} if variant == "lengths" else {}
    return model(x, h0, **kw)


@pytest.mark.parametrize(
    "L, bidir, batch_first, bias, with_h0, variant, reset_after",
    [
        c
        for c in itertools.product(
            [1, 2, 3],
            [False, True],
            [False, True],
            [True, False],
            [False, True],
            ["plain", "lengths", "packed"],
            [True, False],
        )
        if c[0] != 3 or (c[3] and c[4])  # 3 layers: fewer combinations, the stacking is what is new
    ],
)
def test_module_native_matches_reference(L, bidir, batch_first, bias, with_h0, variant, reset_after):
    dtype = torch.float64
    model = grukit.GRU(
        3, 4, L, bias=bias, batch_first=batch_first, bidirectional=bidir, dtype=dtype, reset_after=reset_after
    )
    T, B, D = 5, 3, 2 if bidir else 1
    x = torch.randn((B, T, 3) if batch_first else (T, B, 3), dtype=dtype, requires_grad=True)
    h0 = torch.randn(L * D, B, 4, dtype=dtype, requires_grad=True) if with_h0 else None
    lengths = torch.tensor([5, 2, 4]) if variant != "plain" else None
    results = []
    for name in ("reference", "native"):
        backend.set_backend(name)
        try:
            out, h_n = _module_run(model, x, h0, variant, lengths, batch_first)
        finally:
            backend.set_backend(None)
        wanted = [t for t in (x, h0, *model.parameters()) if t is not None]
        grads = torch.autograd.grad(out.sin().sum() + h_n.cos().sum(), wanted)
        results.append([out, h_n, *grads])
    for i, (a, b) in enumerate(zip(*results)):
        assert_close(b, a, dtype, f"tensor {i}")


def test_module_native_matches_torch_float32_and_eval_mode():
    ref = torch.nn.GRU(5, 7, 2, bidirectional=True)
    ours = grukit.GRU.from_torch(ref).eval()  # gradients must work in eval mode too
    ref.eval()
    x = torch.randn(8, 3, 5, requires_grad=True)
    assert backend.active(x, ours.weight_ih_l0) == "native"
    grads = []
    for m in (ref, ours):
        out, h_n = m(x)
        grads.append([out, h_n, *torch.autograd.grad(out.square().sum() + h_n.sum(), [x, *m.parameters()])])
    for a, b in zip(*grads):
        assert_close(b, a, torch.float32)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gradcheck_float64(reset_after):
    inputs = _layer_inputs(4, 3, 2, 3, torch.float64)
    lengths = torch.tensor([4, 1, 3])

    def f(*tensors):
        out, h_n = kernels.gru_layer(*tensors, reset_after=reset_after, reverse=True, lengths=lengths)
        return out, h_n

    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("reset_after", [True, False])
def test_double_backward_matches_reference(reset_after):
    inputs = _layer_inputs(4, 2, 3, 3, torch.float64)
    second = []
    for fn in (functional.gru_layer, kernels.gru_layer):
        out, h_n = fn(*inputs, reset_after=reset_after)
        g = torch.autograd.grad(out.sum() + h_n.square().sum(), inputs, create_graph=True)
        penalty = sum(t.square().sum() for t in g)  # a gradient penalty, as in WGAN-GP
        second.append(torch.autograd.grad(penalty, inputs))
    for a, b in zip(*second):
        assert_close(b, a, torch.float64, "second derivative")
    assert torch.autograd.gradgradcheck(lambda *t: kernels.gru_layer(*t, reset_after=reset_after)[0], inputs)


# The per-step products are register tiles of up to 4 batch rows x 4 vectors of
# columns (64 floats, 32 doubles; bfloat16 on CPUs with its dot product: pairs
# of k, so an odd K leaves one alone): these shapes cover full tiles, 1-3
# leftover rows, and leftover columns that fill 1-4 vectors, the last partly.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("B, H", [(1, 16), (3, 37), (4, 70), (6, 21), (9, 64)])
@pytest.mark.parametrize("reset_after", [True, False])
def test_tiled_step_products_match_reference(dtype, B, H, reset_after):
    inputs = _layer_inputs(7, B, 11, H, torch.float64)
    with torch.no_grad():
        for t in inputs[2:4]:
            t /= H**0.5  # keep the gates away from saturation, where errors would hide
    ours = [t.detach().to(dtype).requires_grad_() for t in inputs]
    exact = [t.detach().double().requires_grad_() for t in ours]  # the same (rounded) values in float64
    lengths = torch.randint(1, 8, (B,))
    go, gh = torch.randn(7, B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    ref = _outputs_and_grads_given(functional.gru_layer, exact, go, gh, lengths, reset_after)
    nat = _outputs_and_grads_given(kernels.gru_layer, ours, go, gh, lengths, reset_after)
    for name, a, b in zip(NAMES, ref, nat):
        assert b.dtype == dtype, name
        if dtype == torch.float64:
            assert_close(b, a, dtype, name)
        else:  # against the float64 reference: relative to the largest entry
            err = (b.double() - a).abs().max() / a.abs().max().clamp(min=1.0)
            assert err < (1e-5 if dtype == torch.float32 else BF16_TOL), f"{name}: relative error {err:.3g}"


# bfloat16 on a CPU with AMX: the per-step products of batch pieces of 4 rows
# or more run on the tile unit, in tiles of 16 rows x 32 values of k (here 40
# rows and H = 72 or 256: padded rows, and padded depth at 72). Elsewhere the
# same shapes take the hand-tiled kernel, and only the comparisons run.
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("H", [72, 256])
def test_bfloat16_tile_unit_products_match_reference(reset_after, reverse, H):
    torch.manual_seed(12)
    T, B, I = 6, 80, 20  # at two threads, two batch blocks of 40 rows
    inputs = _layer_inputs(T, B, I, H, torch.float64)
    with torch.no_grad():
        for t in inputs[2:4]:
            t /= H**0.5
    ours = [t.detach().bfloat16().requires_grad_() for t in inputs]
    exact = [t.detach().double().requires_grad_() for t in ours]
    lengths = torch.randint(1, T + 1, (B,))
    go, gh = torch.randn(T, B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    ref = _outputs_and_grads_given(functional.gru_layer, exact, go, gh, lengths, reset_after, reverse)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    runs = {}
    try:
        tiles = kernels.loaded_function("tile_loops")
        start = tiles() if tiles else 0
        nat = _outputs_and_grads_given(kernels.gru_layer, ours, go, gh, lengths, reset_after, reverse)
        tiles = kernels.loaded_function("tile_loops")
        trained, start = tiles() - start, tiles()
        for policy in ("team", "alone"):  # the blocks on two threads, or both on the calling thread
            kernels.ops.set_team_policy(policy)
            with torch.no_grad():
                runs[policy] = kernels.gru_layer(*ours, reset_after=reset_after, reverse=reverse, lengths=lengths)
        loops = tiles() - start
    finally:
        kernels.ops.set_team_policy("measured")
        torch.set_num_threads(before)
    for name, a, b in zip(NAMES, ref, nat):
        err = (b.double() - a).abs().max() / a.abs().max().clamp(min=1.0)
        assert err < BF16_TOL, f"{name}: relative error {err:.3g}"
    for out, h_n in runs.values():  # with or without autograd, either way of the thread choice: the same bits
        assert torch.equal(out, nat[0].detach()) and torch.equal(h_n, nat[1].detach())
    # each run's two blocks on the tile unit where the CPU has one, none elsewhere; in training the
    # backward's too
    amx = kernels.loaded_function("tile_unit")()
    assert loops == (4 if amx else 0)
    assert trained == (4 if amx else 0)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("B, I, H", [(2, 70, 37), (1, 64, 256), (1, 50, 300)])
def test_cell_step_matches_reference(reset_after, dtype, B, I, H, always_team):
    # (2, 70, 37): rows 3H = 111, blocks of four plus three left over; I = 70,
    # two full vectors and a tail. Batch 1 with 3H (I + H) >= 160k multiply-adds
    # runs on a team of two threads, each with a slice of the hidden units
    # (H = 300: slices of 160 and 140).
    torch.manual_seed(6)
    cell = grukit.GRUCell(I, H, dtype=dtype, reset_after=reset_after)
    x, h = torch.randn(B, I, dtype=dtype), torch.randn(B, H, dtype=dtype)
    w = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            expected = functional.gru_cell(x.double(), h.double(), *(p.double() for p in w), reset_after=reset_after)
            got = [cell(x, h) for _ in range(3)]  # the first call checks; the stream skips the checks
    finally:
        torch.set_num_threads(before)
    for g in got:
        assert g.dtype == dtype
        if dtype == torch.float64:
            assert_close(g, expected, dtype)
        else:
            assert (g.double() - expected).abs().max() < (1e-5 if dtype == torch.float32 else BF16_TOL)


@pytest.mark.parametrize("reset_after", [True, False])
def test_bfloat16_close_to_float32(reset_after):
    inputs = _layer_inputs(12, 4, 8, 24, torch.bfloat16)
    inputs32 = [t.detach().float().requires_grad_() for t in inputs]
    lengths = torch.tensor([12, 5, 9, 1])
    ref = _outputs_and_grads(functional.gru_layer, inputs32, lengths, reset_after, False)
    nat = _outputs_and_grads(kernels.gru_layer, inputs, lengths, reset_after, False)
    for name, a, b in zip(NAMES, ref, nat):
        assert b.dtype == torch.bfloat16, name
        err = (b.float() - a).abs().max() / a.abs().max().clamp(min=1.0)
        assert err < BF16_TOL, f"{name}: relative error {err:.3g}"


@pytest.mark.parametrize("reset_after", [True, False])
def test_cell_matches_reference_with_and_without_grad(reset_after):
    cell = grukit.GRUCell(4, 6, dtype=torch.float64, reset_after=reset_after)
    x, h = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    w = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    expected = functional.gru_cell(x, h, *w, reset_after=reset_after)
    with torch.no_grad():
        assert_close(kernels.gru_cell(x, h, *w, reset_after=reset_after), expected, torch.float64)
        assert_close(cell(x[0], h[0]), expected[0], torch.float64)
    out = kernels.gru_cell(x, h, *w, reset_after=reset_after)
    assert_close(out, expected, torch.float64)
    for a, b in zip(torch.autograd.grad(expected.sum(), w), torch.autograd.grad(out.sum(), w)):
        assert_close(b, a, torch.float64)


def test_torch_compile_without_graph_breaks(monkeypatch):
    # as in a fresh process: the first forward, which loads the kernel, is the traced one
    monkeypatch.setattr(_build, "_state", {"loaded": None, "error": None})
    monkeypatch.setattr(kernels, "_ready", False)
    model = grukit.GRU(3, 4, 2, bidirectional=True)
    x = torch.randn(5, 2, 3, requires_grad=True)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out, h_n = compiled(x)
    ref_out, ref_h = model(x)
    assert_close(out, ref_out, torch.float32)
    assert_close(h_n, ref_h, torch.float32)
    g1 = torch.autograd.grad(out.sum(), x)[0]
    g2 = torch.autograd.grad(ref_out.sum(), x)[0]
    assert_close(g1, g2, torch.float32)


def test_torch_export():
    model = grukit.GRU(3, 4).eval()
    x = torch.randn(5, 2, 3)
    exported = torch.export.export(model, (x,))
    assert any("grukit" in str(n.target) for n in exported.graph.nodes)
    out, _h_n = exported.module()(x)
    assert_close(out, model(x)[0], torch.float32)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("traced_with_grad", [True, False])
@pytest.mark.parametrize("kind", ["GRU", "GRUCell"])
def test_torch_jit_trace_passes_its_check_and_stays_differentiable(kind, traced_with_grad):
    """torch.jit.trace records the module twice, the second time under no_grad, and fails when the
    graphs differ: the recorded op must not depend on the grad mode. And a module traced under
    no_grad must still train, as a traced torch.nn.GRU does (its aten::gru is differentiable). The
    cell is traced right after a no-grad stream of steps, whose step function no trace can see."""
    torch.manual_seed(0)
    if kind == "GRU":
        ref = torch.nn.GRU(4, 6, 2, batch_first=True, bidirectional=True)
        ours = grukit.GRU(4, 6, 2, batch_first=True, bidirectional=True)
        x, other = (torch.randn(3, 5, 4),), (torch.randn(2, 7, 4),)  # the trace must serve another shape too
    else:
        ref, ours = torch.nn.GRUCell(4, 6), grukit.GRUCell(4, 6)
        x, other = (torch.randn(3, 4), torch.randn(3, 6)), (torch.randn(5, 4), torch.randn(5, 6))
    ours.load_state_dict(ref.state_dict())
    if kind == "GRUCell":
        with torch.no_grad():
            ours(x[0], ours(*x))  # a stream: its checks are remembered
    with torch.enable_grad() if traced_with_grad else torch.no_grad():
        traced = torch.jit.trace(ours, x)  # check_trace=True: raises TracingCheckError on a mismatch
    assert any(n.kind().startswith("grukit::") for n in traced.graph.nodes())

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    for inp in (x, other):
        out, expected = first(traced(*inp)), first(ref(*inp))
        assert_close(out, expected, torch.float32)
        grads = torch.autograd.grad(out.sum(), list(ours.parameters()))
        for got, want in zip(grads, torch.autograd.grad(expected.sum(), list(ref.parameters()))):
            assert_close(got, want, torch.float32)


def test_reference_backend_is_forced_by_env(monkeypatch):
    x = torch.randn(2, 2)
    monkeypatch.setenv("GRUKIT_BACKEND", "reference")
    assert backend.layer_fn(x) is functional.gru_directions
    monkeypatch.setenv("GRUKIT_BACKEND", "native")
    assert backend.layer_fn(x) is kernels.ops.gru_directions
    with pytest.raises(ValueError, match="float16"):
        backend.layer_fn(x.half())
    monkeypatch.setenv("GRUKIT_BACKEND", "auto")
    assert backend.layer_fn(x.half()) is functional.gru_directions  # unsupported dtype: the reference


def test_failed_build_warns_once_and_falls_back(monkeypatch):
    def broken():
        raise OSError("no C++ compiler")

    monkeypatch.setattr(_build, "_compile", broken)
    monkeypatch.setattr(_build, "_state", {"loaded": None, "error": None})
    monkeypatch.setattr(kernels, "_ready", False)
    monkeypatch.delenv("GRUKIT_BACKEND", raising=False)
    x = torch.randn(2, 2)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert backend.layer_fn(x) is functional.gru_directions
    assert backend.layer_fn(x) is functional.gru_directions  # no second warning (warnings are errors here)
    monkeypatch.setenv("GRUKIT_BACKEND", "native")
    with pytest.raises(RuntimeError, match="could not be built"):
        backend.layer_fn(x)


@pytest.mark.parametrize("B", [1, 2])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_small_batch_matvec_path(B, reset_after, dtype):
    # batch 1 and 2 take the hand-written matrix-vector products instead of GEMMs
    inputs = _layer_inputs(5, B, 3, 37, dtype)
    lengths = torch.tensor([5, 3][:B])
    for reverse in (False, True):
        ref = _outputs_and_grads(functional.gru_layer, inputs, lengths, reset_after, reverse)
        nat = _outputs_and_grads(kernels.gru_layer, inputs, lengths, reset_after, reverse)
        for name, a, b in zip(NAMES, ref, nat):
            assert_close(b, a, dtype, name)


@pytest.mark.parametrize("threads", [1, 3])
def test_thread_counts_give_the_same_result(threads):
    # the layer is cut into pieces (directions x batch blocks) by thread count
    model = grukit.GRU(3, 5, 2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(4, 7, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 1, 3, 4, 2, 2, 4])
    backend.set_backend("reference")
    try:
        expected = model(x, lengths=lengths)
    finally:
        backend.set_backend(None)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = model(x, lengths=lengths)
        g_got = torch.autograd.grad(got[0].sum() + got[1].sum(), [x, *model.parameters()])
    finally:
        torch.set_num_threads(old)
    g_exp = torch.autograd.grad(expected[0].sum() + expected[1].sum(), [x, *model.parameters()])
    for a, b in zip([*expected, *g_exp], [*got, *g_got]):
        assert_close(b, a, torch.float64)


@pytest.mark.parametrize("T", [1, 4])
def test_directions_on_two_threads_match_reference(T):
    # each direction's time loop runs on its own thread; a worker thread starts
    # with autograd on, which the single-step GEMM fallback (T = 1) must not see
    torch.manual_seed(3)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = grukit.GRU(3, 6, num_layers=2, bidirectional=True, dtype=torch.float64)
        x = torch.randn(T, 5, 3, dtype=torch.float64, requires_grad=True)
        out, h_n = model(x)
        grads = torch.autograd.grad(out.sum() + h_n.sum(), [x, *model.parameters()])
        backend.set_backend("reference")
        ref_out, ref_h = model(x)
        ref_grads = torch.autograd.grad(ref_out.sum() + ref_h.sum(), [x, *model.parameters()])
    finally:
        backend.set_backend(None)
        torch.set_num_threads(before)
    assert_close(out, ref_out, torch.float64)
    for a, b in zip(ref_grads, grads):
        assert_close(b, a, torch.float64)


@pytest.mark.parametrize("T", [1, 2, 5])
@pytest.mark.parametrize("reset_after", [True, False])
def test_inference_keeps_two_states_and_matches_training_forward(T, reset_after):
    # without autograd the kernel keeps only the last two states (hs[i % 2]):
    # outputs and h_n must equal the training forward's, for odd and even T
    torch.manual_seed(4)
    model = grukit.GRU(3, 5, num_layers=2, bidirectional=True, dtype=torch.float64, reset_after=reset_after)
    x = torch.randn(T, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([T, 1, max(1, T - 1), T])
    out, h_n = model(x, lengths=lengths)
    with torch.no_grad():
        out_ng, h_ng = model(x, lengths=lengths)
    assert out.requires_grad and not out_ng.requires_grad
    assert_close(out_ng, out.detach(), torch.float64)
    assert_close(h_ng, h_n.detach(), torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("H", [128, 150])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_batch1_team_of_threads_matches_reference(dtype, H, reset_after, reverse, always_team):
    # batch 1, one direction, two threads: each step's hidden units are split
    # between the threads (H = 150: slices of 80 and 70 units), meeting at a
    # barrier after every step; forward with and without autograd, and backward
    torch.manual_seed(5)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inputs = _layer_inputs(9, 1, 6, H, torch.float64)
        with torch.no_grad():
            for t in inputs[2:4]:
                t /= H**0.5
        ours = [t.detach().to(dtype).requires_grad_() for t in inputs]
        exact = [t.detach().double().requires_grad_() for t in ours]
        lengths = torch.tensor([7])
        go, gh = torch.randn(9, 1, H, dtype=torch.float64), torch.randn(1, H, dtype=torch.float64)
        ref = _outputs_and_grads_given(functional.gru_layer, exact, go, gh, lengths, reset_after, reverse)
        nat = _outputs_and_grads_given(kernels.gru_layer, ours, go, gh, lengths, reset_after, reverse)
        with torch.no_grad():
            out_ng, h_ng = kernels.gru_layer(*ours, reset_after=reset_after, reverse=reverse, lengths=lengths)
    finally:
        torch.set_num_threads(before)
    tol = 1e-5 if dtype == torch.float32 else BF16_TOL
    for name, a, b in zip(NAMES, ref, nat):
        err = (b.double() - a).abs().max() / a.abs().max().clamp(min=1.0)
        assert err < tol, f"{name}: relative error {err:.3g}"
    assert torch.equal(out_ng, nat[0].detach()) and torch.equal(h_ng, nat[1].detach())


@pytest.mark.parametrize("which", ["output", "h_n"])
@pytest.mark.parametrize("reset_after", [True, False])
def test_gradient_from_one_output_only(which, reset_after):
    # autograd passes None for the output that got no gradient (grads are not
    # materialised as zeros); the result must equal the reference's
    torch.manual_seed(7)
    inputs = _layer_inputs(6, 3, 4, 5, torch.float64)
    lengths = torch.tensor([6, 2, 4])
    grads = []
    for fn in (functional.gru_layer, kernels.gru_layer):
        out, h_n = fn(*inputs, reset_after=reset_after, lengths=lengths)
        loss = out.sin().sum() if which == "output" else h_n.cos().sum()
        grads.append(torch.autograd.grad(loss, inputs))
    for name, a, b in zip(NAMES[2:], *grads):
        assert_close(b, a, torch.float64, name)


@pytest.mark.parametrize("bidir", [False, True])
def test_compute_dtype_is_mixed_precision(bidir):
    # float32 parameters, bfloat16 compute: the same numbers as a bfloat16 copy
    # of the layer run on bfloat16 input, returned in float32, with float32
    # gradients close to the float32 layer's
    torch.manual_seed(8)
    mixed = grukit.GRU(5, 24, num_layers=2, bidirectional=bidir, compute_dtype=torch.bfloat16)
    plain = grukit.GRU(5, 24, num_layers=2, bidirectional=bidir)
    plain.load_state_dict(mixed.state_dict())
    low = grukit.GRU(5, 24, num_layers=2, bidirectional=bidir, dtype=torch.bfloat16)
    low.load_state_dict(mixed.state_dict())
    x = torch.randn(9, 3, 5)
    lengths = torch.tensor([9, 4, 7])
    out, h_n = mixed(x, lengths=lengths)
    assert out.dtype == h_n.dtype == torch.float32
    out_low, h_low = low(x.bfloat16(), lengths=lengths)
    assert torch.equal(out, out_low.float()) and torch.equal(h_n, h_low.float())
    grads = torch.autograd.grad(out.sum() + h_n.sum(), list(mixed.parameters()))
    ref_out, ref_h = plain(x, lengths=lengths)
    ref_grads = torch.autograd.grad(ref_out.sum() + ref_h.sum(), list(plain.parameters()))
    assert (out - ref_out).abs().max() < BF16_TOL
    for g, r in zip(grads, ref_grads):
        assert g.dtype == torch.float32
        assert (g - r).abs().max() / r.abs().max().clamp(min=1.0) < BF16_TOL


@pytest.mark.parametrize("reset_after", [True, False])
def test_team_and_one_thread_give_identical_bits(reset_after):
    # A batch-1 loop big enough for a team runs as one, or on one thread, by measurement
    # (driver.cpp, TeamChoice): both must give the same bits, whichever the load picks.
    torch.manual_seed(9)
    layer = [t.detach() for t in _layer_inputs(12, 1, 40, 160, torch.float32)]
    cell = grukit.GRUCell(64, 256, reset_after=reset_after)
    x, h = torch.randn(1, 64), torch.randn(1, 256)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    runs = {}
    try:
        with torch.no_grad():
            for policy in ("team", "alone", "measured"):
                kernels.ops.set_team_policy(policy)
                runs[policy] = [(kernels.gru_layer(*layer, reset_after=reset_after)[0], cell(x, h)) for _ in range(40)]
    finally:
        kernels.ops.set_team_policy("measured")
        torch.set_num_threads(before)
    first_out, first_step = runs["team"][0]
    for policy, results in runs.items():
        for out, step in results:
            assert torch.equal(out, first_out), policy
            assert torch.equal(step, first_step), policy
    with pytest.raises(ValueError, match="team policy must be one of"):
        kernels.ops.set_team_policy("sometimes")


@pytest.mark.parametrize("policy", ["own", "library"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("T,B,I,H", [(43, 7, 67, 45), (4, 8, 200, 300)])
def test_large_products_on_either_gemm_match_the_reference_with_the_same_bits_on_any_threads(
    policy, bidirectional, T, B, I, H
):
    # Float products above the small-product bound (input projection, weight gradients, dx)
    # run on grukit's blocked gemm (matvec.h; the default on AMD CPUs) or on torch's GEMM
    # library. Shapes off every block size: T*B = 301 rows (row blocks of 96; the weight
    # gradients' depth in slices of 256), I = 67 and H = 45 (no whole strips or vectors); and
    # T*B = 32 rows against 3H = 900 columns, where the threads share column strips rather
    # than rows. x needs its gradient (dx, added over the directions). Both threads and one
    # thread alone must give the same bits.
    torch.manual_seed(5)
    D = 2 if bidirectional else 1
    g = grukit.GRU(I, H, 2, bidirectional=bidirectional)
    x = torch.randn(T, B, I, requires_grad=True)
    w_out = torch.randn(T, B, D * H)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    kernels.ops.set_gemm_policy(policy)
    results = []
    try:
        for team in ("team", "alone"):
            kernels.ops.set_team_policy(team)
            out, h_n = g(x)
            grads = torch.autograd.grad((out * w_out).sum() + h_n.sum(), [x, *g.parameters()])
            results.append((out, h_n, *grads))
    finally:
        kernels.ops.set_gemm_policy("auto")
        kernels.ops.set_team_policy("measured")
        torch.set_num_threads(before)
    for k, (a, b) in enumerate(zip(*results)):
        assert torch.equal(a, b), k
    ref = torch.nn.GRU(I, H, 2, bidirectional=bidirectional, dtype=torch.float64)
    ref.load_state_dict({k: v.double() for k, v in g.state_dict().items()})
    x64 = x.detach().double().requires_grad_()
    r_out, r_h_n = ref(x64)
    r_grads = torch.autograd.grad((r_out * w_out.double()).sum() + r_h_n.sum(), [x64, *ref.parameters()])
    for k, (a, b) in enumerate(zip(results[0], (r_out, r_h_n, *r_grads))):
        assert_close(a, b.float(), torch.float32, f"result {k} against float64 torch.nn.GRU")
    with pytest.raises(ValueError, match="gemm policy must be one of"):
        kernels.ops.set_gemm_policy("fastest")


@pytest.mark.parametrize("bidirectional,batch", [(False, 6), (True, 5), (True, 1)])
def test_threads_together_and_one_thread_alone_give_identical_bits(bidirectional, batch):
    # A layer pass with two threads free runs on both (GEMMs on all threads, directions and
    # batch blocks side by side) or on the calling thread alone, by measurement (driver.cpp,
    # run_layer): outputs, h_n and every gradient must have the same bits either way, and
    # both ways must have run. The products are big enough for the GEMM library (T*B*I*3H
    # above the hand-written products' bound).
    torch.manual_seed(11)
    T, I, H = 30, 40, 48
    g = grukit.GRU(I, H, 2, bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    x = torch.randn(T, batch, I, requires_grad=True)
    h0 = torch.randn(2 * D, batch, H, requires_grad=True)
    w_out = torch.randn(T, batch, D * H)
    alone = kernels.loaded_function("passes_alone")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    runs, counts = {}, {}
    try:
        for policy in ("team", "alone", "measured"):
            kernels.ops.set_team_policy(policy)
            start = alone()
            runs[policy] = []
            for _ in range(6):
                with torch.no_grad():
                    infer = g.eval()(x, h0)
                out, h_n = g.train()(x, h0)
                grads = torch.autograd.grad((out * w_out).sum() + h_n.sum(), [x, h0, *g.parameters()])
                runs[policy].append((*infer, out, h_n, *grads))
            counts[policy] = alone() - start
        assert torch.get_num_threads() == 2  # the one-thread passes put the thread count back
    finally:
        kernels.ops.set_team_policy("measured")
        torch.set_num_threads(before)
    # each round: 2 layers in inference, 2 forward and 2 backward passes in training
    assert counts["team"] == 0 and counts["alone"] == 6 * 6, counts
    first = runs["team"][0]
    for policy, results in runs.items():
        for result in results:
            for k, (a, b) in enumerate(zip(result, first)):
                assert torch.equal(a, b), (policy, k)
    ref = torch.nn.GRU(I, H, 2, bidirectional=bidirectional)
    ref.load_state_dict(g.state_dict())
    t_out, t_h_n = ref(x, h0)
    t_grads = torch.autograd.grad((t_out * w_out).sum() + t_h_n.sum(), [x, h0, *ref.parameters()])
    for k, (a, b) in enumerate(zip(first[2:], (t_out, t_h_n, *t_grads))):
        assert_close(a, b, torch.float32, f"result {k} against torch.nn.GRU")


def test_a_new_shape_goes_the_way_its_kind_last_went_then_tries_the_other():
    # The choice between threads together and one thread alone is kept per kind of pass and
    # shape (driver.cpp, layer_choice): a shape not seen before on this thread starts the way
    # the last pass of its kind went, whatever other shapes measured, and runs the other way
    # once it has a time of that way (its first call is not counted): it compares times of
    # its own work.
    torch.manual_seed(12)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    firsts = {}
    try:
        for last, fresh_input in (("alone", 43), ("team", 44), ("alone", 45)):
            kernels.ops.set_team_policy(last)
            with torch.no_grad():
                grukit.GRU(40, 48).eval()(torch.randn(30, 6, 40))  # how inference last went
            kernels.ops.set_team_policy("measured")
            alone = kernels.loaded_function("passes_alone")
            g, x = grukit.GRU(fresh_input, 48).eval(), torch.randn(30, 6, fresh_input)
            ran_alone = []
            for _ in range(3):
                start = alone()
                with torch.no_grad():
                    g(x)
                ran_alone.append(alone() - start)
            firsts[(last, fresh_input)] = ran_alone
    finally:
        kernels.ops.set_team_policy("measured")
        torch.set_num_threads(before)
    assert firsts == {("alone", 43): [1, 1, 0], ("team", 44): [0, 0, 1], ("alone", 45): [1, 1, 0]}, firsts


TINY_SHAPES = [  # T, B, I, H, layers, bias, h0 given
    (20, 1, 32, 64, 1, True, False),
    (2, 1, 1, 1, 1, False, True),
    (7, 3, 5, 9, 2, True, True),
    (12, 2, 16, 33, 3, True, False),
    (5, 1, 7, 17, 2, False, True),
    (20, 1, 40, 60, 1, True, True),
]


def _tiny_case(T, B, I, H, L, bias, with_h0):
    torch.manual_seed(T * 100 + H)
    g = grukit.GRU(I, H, L, bias=bias)
    x = torch.randn(T, B, I)
    h0 = torch.randn(L, B, H) if with_h0 else None
    return g, x, h0


def _by_layer_ops(g, x, h0):
    """The general path: the gru_layer op layer by layer (autograd through its own backward op)."""
    B = x.shape[1]
    inp, last = x, []
    for layer in range(g.num_layers):
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if g.bias else ("weight_ih", "weight_hh")
        w = [getattr(g, f"{n}_l{layer}") for n in names]
        h = h0[layer] if h0 is not None else torch.zeros(B, g.hidden_size, dtype=x.dtype)
        inp, h_l = kernels.gru_layer(inp, h, *w)
        last.append(h_l)
    return inp, torch.stack(last)


@pytest.mark.parametrize("threads", [1, 2])
def test_tiny_stack_gives_the_general_paths_bits(threads):
    # Small plain float stacks run on raw pointers (driver.cpp, tiny_forward and
    # tiny_backward); the general path must give the same bits in inference and in
    # training, outputs and every gradient, and the tiny passes must be the ones that ran.
    tiny = kernels.loaded_function("tiny_runs")
    before_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for T, B, I, H, L, bias, with_h0 in TINY_SHAPES:
            if threads > 1 and B > 1:  # (two pieces of the batch on two threads: the general path)
                continue
            case = (T, B, I, H, L)
            g, x, h0 = _tiny_case(T, B, I, H, L, bias, with_h0)
            ran = tiny()
            with torch.no_grad():
                out, h_n = g.eval()(x, h0)
                assert tiny() == ran + 1, case
                ref_out, ref_h_n = _by_layer_ops(g, x, h0)
            assert torch.equal(out, ref_out) and torch.equal(h_n, ref_h_n), case
            # compute_dtype=torch.bfloat16 without grad: the casts fused into the tiny pass, against the
            # casts done here and the ops' bfloat16 path
            low = grukit.GRU(I, H, L, bias=bias, compute_dtype=torch.bfloat16).eval()
            low.load_state_dict(g.state_dict())
            ran = tiny()
            with torch.no_grad():
                out16, h_n16 = low(x, h0)
                assert tiny() == ran + 1, case
                g16 = grukit.GRU(I, H, L, bias=bias, dtype=torch.bfloat16)
                g16.load_state_dict(g.state_dict())
                ref16, ref_h16 = _by_layer_ops(g16, x.bfloat16(), None if h0 is None else h0.bfloat16())
            assert out16.dtype == torch.float32 and h_n16.dtype == torch.float32
            assert torch.equal(out16, ref16.float()) and torch.equal(h_n16, ref_h16.float()), case
            # training: forward and backward both tiny, against the ops' forward and backward
            x.requires_grad_(True)
            if h0 is not None:
                h0.requires_grad_(True)
            inputs = [x] + ([h0] if h0 is not None else []) + list(g.parameters())
            w_out, w_h = torch.randn(T, B, H), torch.randn(L, B, H)
            ran = tiny()
            out, h_n = g.train()(x, h0)
            grads = torch.autograd.grad((out * w_out).sum() + (h_n * w_h).sum(), inputs)
            assert tiny() == ran + 2, case
            ref_out, ref_h_n = _by_layer_ops(g, x, h0)
            ref_grads = torch.autograd.grad((ref_out * w_out).sum() + (ref_h_n * w_h).sum(), inputs)
            assert torch.equal(out, ref_out) and torch.equal(h_n, ref_h_n), case
            for k, (a, b) in enumerate(zip(grads, ref_grads)):
                assert torch.equal(a, b), (case, k)
            # and against torch.nn.GRU, to float32 tolerance
            ref = torch.nn.GRU(I, H, L, bias=bias)
            ref.load_state_dict(g.state_dict())
            t_out, t_h_n = ref(x, h0)
            t_inputs = inputs[: len(inputs) - len(list(g.parameters()))] + list(ref.parameters())
            t_grads = torch.autograd.grad((t_out * w_out).sum() + (t_h_n * w_h).sum(), t_inputs)
            assert_close(out, t_out, torch.float32, f"{case} output against torch.nn.GRU")
            assert_close(h_n, t_h_n, torch.float32, f"{case} h_n against torch.nn.GRU")
            for a, b in zip(grads, t_grads):
                assert_close(a, b, torch.float32, f"{case} gradient against torch.nn.GRU")
    finally:
        torch.set_num_threads(before_threads)

"""torch.func transforms, forward-mode AD, per-sample gradients and empty batches on grukit.GRU,
each against torch.nn.GRU with the same weights; and the native path kept for the normal case.

The native ops have no batching rule or forward derivative, so under a
transform grukit computes with the readable reference (grukit.backend.reference_only).
"""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from conftest import assert_close
from torch.func import functional_call, grad, jacfwd, jacrev, jvp, vmap
from torch.nn.utils._per_sample_grad import call_for_per_sample_grads

import grukit
from grukit import backend, functional, kernels

F64 = torch.float64

# torch's first forward-mode AD (make_dual) scripts its jvp decompositions with torch.jit.script,
# which warns that it is deprecated: torch's doing, for torch.nn.GRU as for grukit.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def pair(layers=2, bidirectional=True, batch_first=False, dtype=F64):
    ref = torch.nn.GRU(3, 4, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first).to(dtype)
    return grukit.GRU.from_torch(ref), ref


@pytest.mark.parametrize("bidirectional", [False, True])
def test_grad_of_functional_call(bidirectional):
    gru, ref = pair(bidirectional=bidirectional)
    x = torch.randn(5, 2, 3, dtype=F64)

    def loss(m):
        return lambda p: functional_call(m, p, (x,))[0].pow(2).sum()

    got = grad(loss(gru))(dict(gru.named_parameters()))
    want = grad(loss(ref))(dict(ref.named_parameters()))
    assert got.keys() == want.keys()
    for name in got:
        assert_close(got[name], want[name], F64, name)


def test_vmap_over_inputs_matches_a_loop():
    gru, ref = pair()
    xs = torch.randn(6, 5, 3, dtype=F64)  # six unbatched sequences
    hs = torch.randn(6, 4, 4, dtype=F64)
    out, h_n = vmap(gru)(xs, hs)
    # torch.nn.GRU has no batching rule for vmap: compare with a loop over it
    for i in range(6):
        o, h = ref(xs[i], hs[i])
        assert_close(out[i], o, F64, "output")
        assert_close(h_n[i], h, F64, "h_n")


def test_per_sample_grads_by_vmap_of_grad():
    gru, ref = pair(layers=1, bidirectional=False)
    params = {k: v.detach() for k, v in gru.named_parameters()}
    xs = torch.randn(4, 5, 1, 3, dtype=F64)

    def loss(p, x):
        return functional_call(gru, p, (x,))[1].sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, xs)
    for i in range(4):
        ref.zero_grad()
        ref(xs[i])[1].sum().backward()
        for name, p in ref.named_parameters():
            assert_close(per_sample[name][i], p.grad, F64, name)


@pytest.mark.parametrize("transform", [jacrev, jacfwd])
def test_jacobians(transform):
    gru, ref = pair()
    x = torch.randn(4, 2, 3, dtype=F64)
    h0 = torch.randn(4, 2, 4, dtype=F64)
    got = transform(lambda a, b: gru(a, b)[1], argnums=(0, 1))(x, h0)
    want = transform(lambda a, b: ref(a, b)[1], argnums=(0, 1))(x, h0)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, F64, transform.__name__)


def test_jvp_and_forward_ad():
    gru, ref = pair(batch_first=True)
    x, v = torch.randn(2, 5, 3, dtype=F64), torch.randn(2, 5, 3, dtype=F64)
    (out, t_out) = jvp(lambda a: gru(a)[0], (x,), (v,))
    (out_ref, t_ref) = jvp(lambda a: ref(a)[0], (x,), (v,))
    assert_close(out, out_ref, F64, "output")
    assert_close(t_out, t_ref, F64, "tangent")
    with fwAD.dual_level():  # forward AD outside torch.func
        tangent = fwAD.unpack_dual(gru(fwAD.make_dual(x, v))[0]).tangent
    assert_close(tangent, t_ref, F64, "forward AD tangent")


def test_cell_under_transforms_and_no_grad_stream():
    cell = grukit.GRUCell(3, 4).double()
    ref = torch.nn.GRUCell(3, 4).double()
    ref.load_state_dict(cell.state_dict())
    xs, hs = torch.randn(5, 2, 3, dtype=F64), torch.randn(5, 2, 4, dtype=F64)
    with torch.no_grad():
        cell(xs[0], hs[0])  # a no-grad stream of these shapes has started (its checks are cached)
        got = vmap(cell)(xs, hs)  # and must not hand vmap's batched tensors to the native step
    assert_close(got, torch.stack([ref(x, h) for x, h in zip(xs, hs)]), F64, "vmap of GRUCell")
    g = grad(lambda x: cell(x, hs[0]).sum())(xs[0])
    assert_close(g, grad(lambda x: ref(x, hs[0]).sum())(xs[0]), F64, "grad of GRUCell")


@pytest.mark.parametrize("batch_first", [False, True])
def test_call_for_per_sample_grads(batch_first):
    gru, ref = pair(batch_first=batch_first)
    x = torch.randn(2, 5, 3, dtype=F64) if batch_first else torch.randn(5, 2, 3, dtype=F64)
    for m in (gru, ref):
        call_for_per_sample_grads(m, batch_first=batch_first, loss_reduction="sum")(x)[0].sum().backward()
    for (name, p), q in zip(gru.named_parameters(), ref.parameters(), strict=True):
        assert p.grad_sample.shape == (2, *p.shape)
        assert_close(p.grad_sample, q.grad_sample, F64, name)


@pytest.mark.parametrize("cls", ["GRU", "GRUCell"])
def test_empty_batch_gives_empty_outputs_and_zero_gradients(cls):
    if cls == "GRU":
        gru, ref = pair()
        x = torch.randn(5, 0, 3, dtype=F64, requires_grad=True)
    else:
        gru, ref = grukit.GRUCell(3, 4).double(), torch.nn.GRUCell(3, 4).double()
        x = torch.randn(0, 3, dtype=F64, requires_grad=True)
    outs, refs = gru(x), ref(x)
    outs, refs = (outs, refs) if isinstance(outs, tuple) else ((outs,), (refs,))
    for o, r in zip(outs, refs, strict=True):
        assert o.shape == r.shape and o.numel() == 0
    sum(o.sum() for o in outs).backward()
    assert x.grad.shape == x.shape
    for p in gru.parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0


def test_zero_width_cell_and_full_dropout():
    cell = grukit.GRUCell(10, 0)
    assert cell(torch.randn(3, 10)).shape == (3, 0)
    gru = grukit.GRU(3, 4, num_layers=2, dropout=1.0).train()
    torch.nn.init.constant_(gru.bias_ih_l1, 5.0)  # layer 1 sees only zeros, so its output is its biases' doing
    out, _ = gru(torch.randn(5, 2, 3))
    ref = torch.nn.GRU(3, 4, num_layers=2, dropout=1.0).train()
    ref.load_state_dict(gru.state_dict())
    assert_close(out, ref(torch.randn(5, 2, 3))[0], torch.float32, "dropout=1 zeroes layer 1's input")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(bias="False"), "bias should be of type bool, got: str"),
        (dict(batch_first="yes"), "batch_first should be of type bool, got: str"),
        (dict(bias=1), "bias should be of type bool, got: int"),
    ],
)
def test_flags_must_be_bools(kwargs, match):
    with pytest.raises(TypeError, match=match):
        grukit.GRU(3, 4, **kwargs)


def test_native_path_is_kept_for_plain_tensors(monkeypatch):
    if not kernels.available():
        pytest.skip("the native kernel could not be built here")
    gru = grukit.GRU(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, requires_grad=True)
    assert backend.layer_fn(x, x, gru.weight_ih_l0) is kernels.ops.gru_directions
    assert backend.cell_fn(x, x, gru.weight_ih_l0) is kernels.gru_cell

    def refuse(*args, **kwargs):
        raise AssertionError("the reference ran where the native op should have")

    monkeypatch.setattr(functional, "gru_directions", refuse)
    monkeypatch.setattr(functional, "gru_cell", refuse)
    out, h_n = gru(x)
    (out.sum() + h_n.sum()).backward()
    with torch.no_grad():
        grukit.GRUCell(3, 4)(torch.randn(2, 3), torch.randn(2, 4))


def test_reference_only_inside_transforms_and_for_empty_tensors():
    x = torch.randn(5, 2, 3)
    assert not backend.reference_only((x,))
    assert backend.reference_only((x[:, :0],))  # an empty batch
    seen = []
    vmap(lambda t: seen.append(backend.reference_only((t,))) or t)(x)
    grad(lambda t: seen.append(backend.reference_only((t,))) or t.sum())(x)
    with fwAD.dual_level():
        seen.append(backend.reference_only((x,)))
    assert seen == [True, True, True]

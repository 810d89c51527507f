"""grukit.GRU's forward with autograd on: the whole stack in one native call forward and one
backward, joined by an autograd node written in C++ (kernels.ops.train_stack, autograd.cpp; taken
by modules.GRU._direct_forward).

It must give the reference's outputs and every gradient, be taken exactly where it applies,
leave the gradients of frozen inputs None, keep double backward exact, and work with the
autograd features users combine it with (checkpointing, retain_graph, version checks)."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import assert_close, require_native

import grukit
from grukit import backend
from grukit.kernels import ops


@pytest.fixture(scope="module", autouse=True)
def _native():
    require_native()


@pytest.fixture
def taken(monkeypatch):
    """How many forwards went through the training stack."""
    count = [0]
    real = ops.train_stack

    def counting(*args):
        count[0] += 1
        return real(*args)

    monkeypatch.setattr(ops, "train_stack", counting)
    return count


def _grads(model, x, hx, reference: bool):
    """Outputs and the gradients of x, hx and every parameter under a loss that weighs every output."""
    if reference:
        backend.set_backend("reference")
    try:
        for p in model.parameters():
            p.grad = None
        xs = x.detach().requires_grad_(x.requires_grad)
        hs = None if hx is None else hx.detach().requires_grad_(hx.requires_grad)
        out, h_n = model(xs, hs)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
        ((out * weights).sum() + h_n.pow(2).sum()).backward()
        grads = [xs.grad, None if hs is None else hs.grad] + [p.grad for p in model.parameters()]
        return out.detach(), h_n.detach(), grads
    finally:
        backend.set_backend(None)


def _assert_matches_reference(taken, model, x, hx) -> None:
    """One forward and backward through the training stack, then the same by the reference: outputs and
    every gradient equal (float64), the same gradients None."""
    out, h_n, grads = _grads(model, x, hx, reference=False)
    assert taken[0] == 1
    ref_out, ref_h, ref_grads = _grads(model, x, hx, reference=True)
    assert taken[0] == 1
    assert_close(out, ref_out, torch.float64, "output")
    assert_close(h_n, ref_h, torch.float64, "h_n")
    names = ["x", "hx"] + [n for n, _ in model.named_parameters()]
    for name, g, r in zip(names, grads, ref_grads):
        assert (g is None) == (r is None), name
        if g is not None:
            assert_close(g, r, torch.float64, f"d{name}")


GRID = list(
    itertools.product(
        [1, 2],  # layers
        [False, True],  # bidirectional
        [True, False],  # bias
        [True, False],  # reset_after
        [False, True],  # batch_first
        [True, False],  # batched
        ["none", "given", "requires_grad"],  # hx
    )
)


@pytest.mark.parametrize("layers, bidirectional, bias, reset_after, batch_first, batched, hx", GRID)
def test_train_stack_matches_reference(taken, layers, bidirectional, bias, reset_after, batch_first, batched, hx):
    torch.manual_seed(0)
    model = grukit.GRU(
        5, 7, layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional, reset_after=reset_after
    ).double()
    D, T, B = (2 if bidirectional else 1), 6, 3
    shape = ((B, T, 5) if batch_first else (T, B, 5)) if batched else (T, 5)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    h = None
    if hx != "none":
        h = torch.randn((layers * D, B, 7) if batched else (layers * D, 7), dtype=torch.float64)
        h.requires_grad_(hx == "requires_grad")
    _assert_matches_reference(taken, model, x, h)


@pytest.mark.parametrize(
    "options, mode",
    [
        (dict(layer_norm=True), "train"),
        (dict(layer_norm=True, zoneout=0.3), "eval"),
        (dict(zoneout=0.3, recurrent_dropout=0.2, weight_dropout=0.2), "eval"),
        (dict(dropout=0.5), "eval"),
    ],
)
def test_train_stack_runs_the_cells_without_masks(taken, options, mode):
    torch.manual_seed(1)
    model = grukit.GRU(4, 6, 2, bidirectional=True, dtype=torch.float64, **options)
    with torch.no_grad():  # the norms' parameters away from 1 and 0, so that a misplaced gradient shows
        for name in model._norm_names:
            getattr(model, name).add_(0.3 * torch.randn(18, dtype=torch.float64))
    model.train(mode == "train")
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    _assert_matches_reference(taken, model, x, None)


@pytest.mark.parametrize(
    "options",
    [
        dict(zoneout=0.3),
        dict(zoneout=0.2, layer_norm=True),
        dict(recurrent_dropout=0.3),
        dict(weight_dropout=0.3),
        dict(zoneout=0.2, recurrent_dropout=0.2, weight_dropout=0.2, layer_norm=True),
        dict(zoneout=0.25, recurrent_dropout=0.25, reset_after=False),
    ],
)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("own_generator", [True, False])
def test_masked_training_takes_the_stack_with_the_per_layer_paths_masks(taken, options, bidirectional, own_generator):
    """In training, the masks of zoneout, recurrent dropout and DropConnect are drawn before the
    stack, layer by layer, from the model's generator (or torch's) as the per-layer path draws
    them: the same outputs and every gradient as the reference from the same seed, and the
    generator left where the reference leaves it."""
    torch.manual_seed(5)
    D = 2 if bidirectional else 1
    model = grukit.GRU(4, 6, 2, bidirectional=bidirectional, dtype=torch.float64, **options).train()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2 * D, 3, 6, dtype=torch.float64, requires_grad=True)
    results, after = [], []
    for reference in (False, True):
        if own_generator:
            model.generator = torch.Generator().manual_seed(11)
        else:
            torch.manual_seed(11)
        results.append(_grads(model, x, h, reference))
        after.append(torch.rand(3, generator=model.generator))  # the next draw: the same if as far advanced
    assert taken[0] == 1
    (out, h_n, grads), (ref_out, ref_h, ref_grads) = results
    assert_close(out, ref_out, torch.float64, "output")
    assert_close(h_n, ref_h, torch.float64, "h_n")
    for name, g, r in zip(["x", "hx"] + [n for n, _ in model.named_parameters()], grads, ref_grads):
        assert_close(g, r, torch.float64, f"d{name}")
    assert torch.equal(after[0], after[1])


def test_masked_training_stack_double_backward_and_a_bad_hx_leaves_the_generator_alone(taken):
    torch.manual_seed(6)
    model = grukit.GRU(3, 4, 2, zoneout=0.3, recurrent_dropout=0.2, weight_dropout=0.2, dtype=torch.float64).train()
    model.generator = torch.Generator()
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    params = tuple(model.parameters())
    names = [n for n, _ in model.named_parameters()]

    def f(x, *ps):
        model.generator.manual_seed(3)  # the same masks at every call gradcheck makes
        out, h_n = torch.func.functional_call(model, dict(zip(names, ps)), (x,))
        return out.tanh().sum() + h_n.sum()

    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))
    assert taken[0] > 0
    state = model.generator.get_state()
    with pytest.raises(ValueError, match="hx"):
        model(x, torch.zeros(2, 2, 5, dtype=torch.float64))  # H = 5, not 4: the checked path names it
    assert torch.equal(model.generator.get_state(), state)


@pytest.mark.parametrize(
    "make",
    [
        lambda: grukit.GRU(4, 6, input_dropout=0.3).train(),
        lambda: grukit.GRU(4, 6, 2, dropout=0.5).train(),
    ],
)
def test_input_dropout_and_dropout_between_layers_take_the_per_layer_path(taken, make):
    model = make()
    model(torch.randn(5, 3, 4))[0].sum().backward()
    assert taken[0] == 0
    model(torch.randn(5, 3, 4), lengths=torch.tensor([5, 2, 4]))[0].sum().backward()
    assert taken[0] == 0


@pytest.mark.parametrize(
    "options", [dict(), dict(layer_norm=True), dict(zoneout=0.2, weight_dropout=0.2, recurrent_dropout=0.2)]
)
def test_compute_dtype_trains_through_the_stack_with_the_per_layer_paths_numbers(taken, options):
    """Mixed precision: the casts to bfloat16 around the stack are differentiable, so the float32
    parameters get float32 gradients, bit for bit those of the per-layer path."""
    torch.manual_seed(8)
    model = grukit.GRU(4, 6, 2, compute_dtype=torch.bfloat16, **options).train()
    model.generator = torch.Generator()
    x = torch.randn(5, 3, 4, requires_grad=True)
    results = []
    for lengths in (None, torch.full((3,), 5)):  # lengths: the per-layer path
        model.generator.manual_seed(9)
        model.zero_grad()
        xs = x.detach().requires_grad_()
        out, h_n = model(xs, lengths=lengths)
        (out.pow(2).sum() + h_n.sum()).backward()
        results.append([out.detach(), h_n.detach(), xs.grad] + [p.grad for p in model.parameters()])
    assert taken[0] == 1
    for a, b in zip(*results):
        assert a.dtype == torch.float32 and torch.equal(a, b)


def test_frozen_parameters_get_no_gradient_and_nothing_requiring_grad_takes_no_graph(taken):
    model = grukit.GRU(4, 6, 2)
    model.weight_hh_l1.requires_grad_(False)
    model.bias_ih_l0.requires_grad_(False)
    model.bias_hh_l0.requires_grad_(False)
    model(torch.randn(5, 3, 4))[0].sum().backward()
    assert taken[0] == 1
    assert model.weight_hh_l1.grad is None and model.bias_ih_l0.grad is None and model.bias_hh_l0.grad is None
    assert model.weight_ih_l0.grad is not None and model.bias_hh_l1.grad is not None
    model.requires_grad_(False)
    out, _ = model(torch.randn(5, 3, 4))
    assert taken[0] == 1 and out.grad_fn is None and not out.requires_grad


@pytest.mark.parametrize("which", ["input", "hx", "layer_norm gain"])
def test_any_one_tensor_requiring_grad_makes_the_call_record(taken, which):
    # the module's check of what requires grad, one tensor at a time, everything else frozen
    torch.manual_seed(4)
    model = grukit.GRU(4, 6, layer_norm=which == "layer_norm gain").requires_grad_(False)
    x, hx = torch.randn(5, 3, 4), torch.randn(1, 3, 6)
    leaf = x if which == "input" else hx if which == "hx" else model.get_parameter(model._norm_names[0])
    leaf.requires_grad_()
    out, h_n = model(x, hx)
    assert taken[0] == 1 and out.requires_grad and h_n.requires_grad
    (grad,) = torch.autograd.grad(out.sum() + h_n.sum(), leaf)
    assert grad.shape == leaf.shape and grad.abs().sum() > 0


def test_double_backward_is_exact():
    torch.manual_seed(2)
    model = grukit.GRU(3, 4, 2, bidirectional=True).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(4, 2, 4, dtype=torch.float64, requires_grad=True)
    params = tuple(model.parameters())

    def f(x, h, *ps):
        out, h_n = torch.func.functional_call(model, dict(zip([n for n, _ in model.named_parameters()], ps)), (x, h))
        return out.tanh().sum() + h_n.sum()

    assert torch.autograd.gradcheck(f, (x, h, *params))
    assert torch.autograd.gradgradcheck(f, (x, h, *params))


def _packed_last_state(model, x):
    lengths = torch.tensor([x.shape[0]] + [max(1, x.shape[0] - 2)] * (x.shape[1] - 1))
    return model(torch.nn.utils.rnn.pack_padded_sequence(x, lengths))[1]


@pytest.mark.parametrize(
    "make, call, stack",
    [
        (lambda: grukit.GRU(3, 4), None, True),
        (lambda: grukit.GRU(3, 4, 2, bidirectional=True, reset_after=False), "hx", True),
        (lambda: grukit.GRU(3, 4, layer_norm=True), None, True),
        (lambda: grukit.GRU(3, 4, zoneout=0.3, recurrent_dropout=0.2, weight_dropout=0.2), "seeded", True),
        (lambda: grukit.GRU(3, 4, 2, dropout=0.3), "seeded", False),  # the per-layer path
        (lambda: grukit.GRU(3, 4), _packed_last_state, False),
    ],
    ids=["plain", "bidirectional-hx", "layer_norm", "masks", "dropout-between-layers", "packed"],
)
def test_batched_gradients_equal_one_gradient_at_a_time(taken, make, call, stack):
    """torch.autograd.grad(..., is_grads_batched=True), which jacobian(vectorize=True) uses, runs
    the backward under torch's legacy vmap: the gradients arrive batched, without storage. Each of
    the batch's gradients must equal the one computed alone, as with torch.nn.GRU."""
    torch.manual_seed(0)
    model = make().double().train()
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    hx = torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True) if call == "hx" else None
    inputs = [x, *([hx] if hx is not None else []), *model.parameters()]
    torch.manual_seed(1)  # (the masks of "masks" and "dropout-between-layers")
    outs = [call(model, x)] if callable(call) else list(model(x, hx))
    assert taken[0] == (1 if stack else 0)
    g = [torch.randn(6, *o.shape, dtype=o.dtype) for o in outs]
    batched = torch.autograd.grad(outs, inputs, g, is_grads_batched=True, retain_graph=True)
    for i in range(6):
        alone = torch.autograd.grad(outs, inputs, [t[i] for t in g], retain_graph=True)
        for b, a in zip(batched, alone):
            assert a.abs().sum() > 0
            assert_close(b[i], a, torch.float64, "batched gradient")


def test_vectorized_jacobian_equals_torchs():
    torch.manual_seed(3)
    theirs = torch.nn.GRU(3, 4, 2, bidirectional=True).double()
    ours = grukit.GRU.from_torch(theirs)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    jac = [torch.autograd.functional.jacobian(lambda t, m=m: m(t)[0], x, vectorize=True) for m in (ours, theirs)]
    assert jac[0].shape == (4, 2, 8, 4, 2, 3)
    assert_close(jac[0], jac[1], torch.float64, "jacobian")


def test_autocast_leaves_the_precision_to_the_module(taken):
    """Under CPU autocast the module computes as without it, bit for bit: in its own dtype, or in
    compute_dtype where that is set (the README says so)."""
    torch.manual_seed(4)
    for model in (grukit.GRU(3, 8, 2), grukit.GRU(3, 8, compute_dtype=torch.bfloat16)):
        x = torch.randn(6, 2, 3, requires_grad=True)
        results = []
        for autocast in (False, True):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out, h_n = model(x)
            (gx,) = torch.autograd.grad(out.sum() + h_n.sum(), x)
            results.append((out, h_n, gx))
        assert results[1][0].dtype == torch.float32
        for a, b in zip(*results):
            assert torch.equal(a, b)
    assert taken[0] == 4


def test_checkpointing_retain_graph_and_version_checks():
    torch.manual_seed(3)
    model = grukit.GRU(4, 6, 2)
    x = torch.randn(5, 3, 4, requires_grad=True)
    plain = torch.autograd.grad(model(x)[0].sum(), (x, *model.parameters()))
    ckpt = torch.utils.checkpoint.checkpoint(lambda t: model(t)[0], x, use_reentrant=False)
    for a, b in zip(plain, torch.autograd.grad(ckpt.sum(), (x, *model.parameters()))):
        assert torch.equal(a, b)
    out = model(x)[0].sum()
    first = torch.autograd.grad(out, x, retain_graph=True)[0]
    assert torch.equal(first, torch.autograd.grad(out, x)[0])  # the saved states survive the first backward
    out = model(x)[0].sum()
    with torch.no_grad():
        model.weight_hh_l0.mul_(2)  # modified in place after the forward saved it
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_training_converges_like_the_per_layer_path():
    """A few Adam steps through the stack and through the per-layer ops give the same weights."""
    torch.manual_seed(4)
    x, y = torch.randn(8, 4, 3), torch.randn(4, 5)
    models = [grukit.GRU(3, 5, 2) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    for i, model in enumerate(models):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(5):
            opt.zero_grad()
            x_in = x.clone().requires_grad_(i == 1)  # i == 1: same path, x needing a gradient too
            _, h_n = model(x_in, lengths=None if i == 0 else torch.full((4,), 8))  # lengths: the per-layer ops
            torch.nn.functional.mse_loss(h_n[-1], y).backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

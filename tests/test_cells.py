"""The cells (LayerNorm-GRU, zoneout, recurrent / input / weight dropout):
native against the readable reference, the reference against the papers'
equations, masks, options off == the plain GRU, and clear errors.

Tolerances as tests/test_native.py: float64 1e-10, float32 1e-5 (conftest.TOL);
bfloat16 against the float32 reference within BF16_TOL.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close, require_native
from torch.nn.utils.rnn import pack_padded_sequence

import grukit
from grukit import backend, functional, kernels

BF16_TOL = 3e-2  # max |native bf16 - fp32 reference| / max(1, max |reference|)
BF16_TOL_ALL = 5e-2  # every option at once, two layers: measured 0.011-0.037 over mask seeds

OPTIONS = {
    "layer_norm": dict(layer_norm=True),
    "zoneout": dict(zoneout=0.3),
    "recurrent_dropout": dict(recurrent_dropout=0.3),
    "input_dropout": dict(input_dropout=0.3),
    "weight_dropout": dict(weight_dropout=0.3),
    "all": dict(layer_norm=True, zoneout=0.2, recurrent_dropout=0.2, input_dropout=0.1, weight_dropout=0.2),
    "before+zoneout+recurrent": dict(reset_after=False, zoneout=0.25, recurrent_dropout=0.25),
}


@pytest.fixture(scope="module", autouse=True)
def _native():
    require_native()
    yield
    backend.set_backend(None)


def _model(kw, dtype, *, bidir=True, layers=2, seed=0):
    torch.manual_seed(seed)
    g = grukit.GRU(5, 8, num_layers=layers, bidirectional=bidir, dtype=dtype, **kw)
    if g.layer_norm:  # gains and biases away from 1 and 0, so that a mixed-up parameter shows
        with torch.no_grad():
            for name in g._norm_names:
                getattr(g, name).add_(torch.randn(24, dtype=dtype) * 0.3)
    return g


def _run(g, be, x, h0, lengths, mask_seed=1, packed=False):
    """Outputs and every gradient (x, h0, all parameters) under one backend; masks from mask_seed."""
    backend.set_backend(be)
    x = x.detach().clone().requires_grad_()
    h0 = h0.detach().clone().requires_grad_()
    g.zero_grad()
    torch.manual_seed(mask_seed)
    if packed:
        out, h_n = g(pack_padded_sequence(x, lengths, enforce_sorted=False), h0)
        out = out.data
    else:
        out, h_n = g(x, h0, lengths=lengths)
    gen = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum() + (
        h_n * torch.randn(h_n.shape, generator=gen, dtype=h_n.dtype)
    ).sum()
    loss.backward()
    return [out.detach(), h_n.detach(), x.grad, h0.grad] + [p.grad for p in g.parameters()]


def _inputs(dtype, bidir=True, layers=2, T=7, B=3):
    x = torch.randn(T, B, 5, dtype=dtype)
    h0 = torch.randn(layers * (2 if bidir else 1), B, 8, dtype=dtype)
    return x, h0


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("lengths", [None, [7, 3, 5]])
@pytest.mark.parametrize("bidir", [False, True])
def test_native_matches_reference(option, dtype, training, lengths, bidir):
    g = _model(OPTIONS[option], dtype, bidir=bidir).train(training)
    x, h0 = _inputs(dtype, bidir)
    lens = None if lengths is None else torch.tensor(lengths)
    ref = _run(g, "reference", x, h0, lens)
    nat = _run(g, "native", x, h0, lens)
    names = ["output", "h_n", "dx", "dh0"] + [n for n, _ in g.named_parameters()]
    for name, a, b in zip(names, nat, ref):
        if dtype == torch.float32:  # both sides round in float32; the error scales with the tensor's size
            # (every option, two bidirectional layers: gradients up to 20, and each side 1e-5 to 5e-5 from the
            # float64 result; the 1e-5 absolute tolerance would hold only for tensors of size about 1)
            scale = max(1.0, float(b.abs().max()))
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale, msg=lambda m: f"{option} {name}: {m}")
        else:
            assert_close(a, b, dtype, f"{option} {name}")


@pytest.mark.parametrize("option", ["layer_norm", "all", "before+zoneout+recurrent"])
def test_packed_sequence_matches_reference(option):
    g = _model(OPTIONS[option], torch.float64).train()
    x, h0 = _inputs(torch.float64)
    lens = torch.tensor([7, 3, 5])
    for a, b in zip(_run(g, "native", x, h0, lens, packed=True), _run(g, "reference", x, h0, lens, packed=True)):
        assert_close(a, b, torch.float64, option)


@pytest.mark.parametrize("option", ["layer_norm", "zoneout", "recurrent_dropout", "all"])
def test_bfloat16_native_within_tolerance_of_float32_reference(option):
    g32 = _model(OPTIONS[option], torch.float32).train()
    g16 = _model(OPTIONS[option], torch.bfloat16).train()
    g32.load_state_dict({k: v.float() for k, v in g16.state_dict().items()})  # the same bf16-rounded weights
    x, h0 = _inputs(torch.bfloat16)
    ref = _run(g32, "reference", x.float(), h0.float(), torch.tensor([7, 3, 5]))
    nat = _run(g16, "native", x, h0, torch.tensor([7, 3, 5]))
    for a, b in zip(nat, ref):
        err = float((a.float() - b).abs().max()) / max(1.0, float(b.abs().max()))
        assert err < (BF16_TOL_ALL if option == "all" else BF16_TOL), (option, err)


@pytest.mark.parametrize("option", ["layer_norm", "zoneout", "all"])
def test_compute_dtype_bfloat16_gives_float32_gradients(option):
    g = _model({**OPTIONS[option], "compute_dtype": torch.bfloat16}, torch.float32).train()
    x, h0 = _inputs(torch.float32)
    nat = _run(g, "native", x, h0, None)
    g.compute_dtype = None
    ref = _run(g, "reference", x, h0, None)
    for a, b in zip(nat, ref):
        assert a.dtype == torch.float32
        err = float((a - b).abs().max()) / max(1.0, float(b.abs().max()))
        assert err < (BF16_TOL_ALL if option == "all" else BF16_TOL), (option, err)


@pytest.mark.parametrize("be", ["reference", "native"])
@pytest.mark.parametrize("option", ["layer_norm", "zoneout", "recurrent_dropout", "before+zoneout+recurrent"])
def test_gradcheck(be, option):
    backend.set_backend(be)
    torch.manual_seed(0)
    g = grukit.GRU(2, 3, num_layers=2, bidirectional=True, dtype=torch.float64, **OPTIONS[option]).train()
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in g.named_parameters()]
    lens = torch.tensor([4, 2])

    def fn(x, h0, *ps):
        torch.manual_seed(3)  # the same masks at every evaluation
        return torch.func.functional_call(g, dict(zip(names, ps)), (x, h0), {"lengths": lens})

    assert torch.autograd.gradcheck(fn, (x, h0, *g.parameters()), atol=1e-8)


def test_layer_norm_reference_is_torch_layer_norm():
    v = torch.randn(4, 6, 24, dtype=torch.float64)
    gain, bias = torch.randn(24, dtype=torch.float64), torch.randn(24, dtype=torch.float64)
    expected = torch.nn.functional.layer_norm(v, (24,), gain, bias, eps=1e-5)
    assert_close(functional.layer_norm(v, gain, bias), expected, torch.float64)


def test_layer_norm_gru_follows_its_equations():
    """One step of LayerNorm-GRU written out with torch.nn.functional.layer_norm over the 3H features."""
    g = _model(OPTIONS["layer_norm"], torch.float64, bidir=False, layers=1)
    x, h = torch.randn(1, 3, 5, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    ln = lambda v, a, b: torch.nn.functional.layer_norm(v, (24,), a, b, eps=1e-5)  # noqa: E731
    gi = ln(x[0] @ g.weight_ih_l0.T, g.ln_gain_ih_l0, g.ln_bias_ih_l0) + g.bias_ih_l0
    gh = ln(h @ g.weight_hh_l0.T, g.ln_gain_hh_l0, g.ln_bias_hh_l0) + g.bias_hh_l0
    r = torch.sigmoid(gi[:, :8] + gh[:, :8])
    z = torch.sigmoid(gi[:, 8:16] + gh[:, 8:16])
    n = torch.tanh(gi[:, 16:] + r * gh[:, 16:])
    expected = (1 - z) * n + z * h
    for be in ("reference", "native"):
        backend.set_backend(be)
        out, _ = g(x, h[None])
        assert_close(out[0].detach(), expected.detach(), torch.float64, be)


@pytest.mark.parametrize("be", ["reference", "native"])
def test_zoneout_eval_is_the_expectation(be):
    """eval: h_t = p h_{t-1} + (1 - p) h'_t, with h'_t the plain GRU step (Krueger et al. 2017)."""
    backend.set_backend(be)
    p = 0.35
    g = _model(dict(zoneout=p), torch.float64, bidir=False, layers=1).eval()
    plain = grukit.GRUCell(5, 8, dtype=torch.float64)
    plain.load_state_dict({k[:-3]: v for k, v in g.state_dict().items()})
    x, h0 = _inputs(torch.float64, bidir=False, layers=1)
    h, expected = h0[0], []
    for t in range(x.shape[0]):
        h = p * h + (1 - p) * plain(x[t], h)
        expected.append(h)
    out, _h_n = g(x, h0)
    assert_close(out.detach(), torch.stack(expected).detach(), torch.float64)


@pytest.mark.parametrize("be", ["reference", "native"])
def test_zoneout_mask_of_ones_keeps_the_state(be):
    """m_t = 1 everywhere: every unit keeps h0 at every step."""
    x, h0 = _inputs(torch.float64, bidir=False, layers=1)
    w = [torch.randn(24, 5, dtype=torch.float64), torch.randn(24, 8, dtype=torch.float64), None, None]
    fn = functional.gru_layer if be == "reference" else kernels.gru_layer
    out, h_n = fn(x, h0[0], *w, zoneout_keep=torch.ones(7, 3, 8, dtype=torch.float64))
    assert torch.equal(out, h0[0].expand(7, 3, 8)) and torch.equal(h_n, h0[0])


@pytest.mark.parametrize("be", ["reference", "native"])
def test_recurrent_dropout_mask_of_zeros_cuts_the_recurrent_products(be):
    """m_h = 0: the gates see no h, but z * h still carries the state."""
    x, h0 = _inputs(torch.float64, bidir=False, layers=1)
    w = [
        torch.randn(24, 5, dtype=torch.float64),
        torch.randn(24, 8, dtype=torch.float64),
        torch.randn(24, dtype=torch.float64),
        torch.randn(24, dtype=torch.float64),
    ]
    fn = functional.gru_layer if be == "reference" else kernels.gru_layer
    out, _ = fn(x, h0[0], *w, h_mask=torch.zeros(3, 8, dtype=torch.float64))
    gi = x @ w[0].T + w[2]  # (T, B, 3H)
    h, b_hr, b_hz, b_hn = h0[0], *w[3].chunk(3)
    for t in range(7):
        r = torch.sigmoid(gi[t, :, :8] + b_hr)
        z = torch.sigmoid(gi[t, :, 8:16] + b_hz)
        h = (1 - z) * torch.tanh(gi[t, :, 16:] + r * b_hn) + z * h
    assert_close(out[-1], h, torch.float64)


@pytest.mark.parametrize("be", ["reference", "native"])
def test_options_at_zero_are_the_plain_gru_bit_for_bit(be):
    backend.set_backend(be)
    zero = dict(zoneout=0.0, recurrent_dropout=0.0, input_dropout=0.0, weight_dropout=0.0)
    a, b = _model(zero, torch.float32).train(), _model({}, torch.float32).train()
    x, h0 = _inputs(torch.float32)
    for u, v in zip(_run(a, be, x, h0, torch.tensor([7, 3, 5])), _run(b, be, x, h0, torch.tensor([7, 3, 5]))):
        assert torch.equal(u, v)


@pytest.mark.parametrize("option", ["zoneout", "recurrent_dropout", "input_dropout", "weight_dropout"])
def test_same_seed_same_masks_and_eval_draws_none(option):
    g = _model(OPTIONS[option], torch.float32).train()
    x, h0 = _inputs(torch.float32)
    with torch.no_grad():
        runs = []
        for seed in (5, 5, 6):
            torch.manual_seed(seed)
            runs.append(g(x, h0)[0])
        assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
        g.generator = torch.Generator().manual_seed(9)
        first = g(x, h0)[0]
        g.generator = torch.Generator().manual_seed(9)
        assert torch.equal(first, g(x, h0)[0])  # masks from the module's generator
        g.eval()
        state = torch.get_rng_state()
        g(x, h0)
        assert torch.equal(state, torch.get_rng_state())  # eval draws nothing


def test_masks_are_drawn_per_sequence_and_per_step_as_documented():
    """recurrent dropout: (D, B, H), one per sequence; zoneout: (D, T, B, H), fresh each step."""
    seen = {}

    def spy(x, h0, weights, **kw):
        seen["h_mask"], seen["zoneout"] = kw["h_mask"], kw["zoneout_keep"]
        return functional.gru_directions(x, h0, weights, **kw)

    g = _model(dict(zoneout=0.5, recurrent_dropout=0.5), torch.float32, layers=1).train()
    x, h0 = _inputs(torch.float32, layers=1)
    functional.gru(
        x,
        h0,
        g._layer_weights(),
        num_layers=1,
        bidirectional=True,
        training=True,
        zoneout=0.5,
        recurrent_dropout=0.5,
        layer_fn=spy,
    )
    assert seen["h_mask"].shape == (2, 3, 8) and set(seen["h_mask"].unique().tolist()) == {0.0, 2.0}
    assert seen["zoneout"].shape == (2, 7, 3, 8) and set(seen["zoneout"].unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("seed", [0, 1, -5, 2**62 + 12345, -(2**63)])
def test_zoneout_mask_native_fill_gives_the_reference_hash_bits(seed):
    require_native()
    fill = kernels.loaded_function("bernoulli_mask_")
    for p in (0.0, 0.1, 0.5, 0.999):
        threshold = round(p * 2**32)
        for dtype in kernels.DTYPES:
            out = torch.empty(3, 1001, 7, dtype=dtype)  # not a multiple of any vector width
            fill(out, seed, threshold)
            expected = (functional.zoneout.hash_uniform32(seed, out.numel()) < threshold).to(dtype).view(out.shape)
            assert torch.equal(out, expected), (seed, p, dtype)


def test_zoneout_masks_name_a_bad_probability_or_count():
    like = torch.zeros(())
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"zoneout p must be in \[0, 1\)"):
            functional.zoneout.zoneout_masks(p, (1, 2, 3, 4), like)
    with pytest.raises(ValueError, match="n >= 0"):
        functional.zoneout.hash_uniform32(0, -1)
    with pytest.raises(ValueError, match="64-bit signed seed"):
        functional.zoneout.hash_uniform32(2**63, 4)


def test_zoneout_masks_have_rate_p_and_no_pattern():
    """The hash's masks as Bernoulli(p) draws: the rate, and no correlation between neighbouring
    units or steps (binomial standard error at n = 10^6 is below 5e-4)."""
    like = torch.zeros(())
    for p in (0.05, 0.1, 0.5, 0.9):
        torch.manual_seed(3)
        m = functional.zoneout.zoneout_masks(p, (1, 100, 100, 100), like)  # (D, T, B, H)
        assert abs(m.mean().item() - p) < 3e-3, p
        c = m - p
        var = p * (1 - p)
        for a, b in ((c[..., 1:], c[..., :-1]), (c[:, 1:], c[:, :-1])):  # unit j and j+1; step t and t+1
            assert abs((a * b).mean().item() / var) < 5e-3, p
    torch.manual_seed(3)
    first = functional.zoneout.zoneout_masks(0.3, (1, 5, 4, 6), like)
    second = functional.zoneout.zoneout_masks(0.3, (1, 5, 4, 6), like)
    torch.manual_seed(3)
    assert not torch.equal(first, second) and torch.equal(
        first, functional.zoneout.zoneout_masks(0.3, (1, 5, 4, 6), like)
    )


def test_layer_norm_parameters_are_named_and_initialised():
    g = grukit.GRU(4, 6, bidirectional=True, layer_norm=True)
    names = [n for n, _ in g.named_parameters()]
    assert names[-8:] == [
        "ln_gain_ih_l0",
        "ln_bias_ih_l0",
        "ln_gain_hh_l0",
        "ln_bias_hh_l0",
        "ln_gain_ih_l0_reverse",
        "ln_bias_ih_l0_reverse",
        "ln_gain_hh_l0_reverse",
        "ln_bias_hh_l0_reverse",
    ]
    assert torch.equal(g.ln_gain_hh_l0, torch.ones(18)) and torch.equal(g.ln_bias_ih_l0_reverse, torch.zeros(18))
    assert "layer_norm=True" in repr(g)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(zoneout=1.0), "zoneout must be in"),
        (dict(zoneout=float("nan")), "zoneout must be in"),
        (dict(recurrent_dropout=-0.1), "recurrent_dropout must be in"),
        (dict(weight_dropout="0.2"), "weight_dropout must be a float"),
        (dict(layer_norm=1), "layer_norm must be a bool"),
        (dict(layer_norm=True, reset_after=False), "needs reset_after=True"),
    ],
)
def test_bad_options_are_named(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        grukit.GRU(4, 6, **kw)


@pytest.mark.parametrize("option", ["layer_norm", "zoneout", "weight_dropout"])
def test_export_refuses_options_it_cannot_represent(option):
    g = grukit.GRU(4, 6, **OPTIONS[option])
    for call in (g.to_torch, g.keras_weights):
        with pytest.raises(ValueError, match=option):
            call()


@pytest.mark.parametrize("be", ["reference", "native"])
@pytest.mark.parametrize(
    "name,value,match",
    [
        ("bias_hh_l0", torch.zeros(1), r"bias_hh_l0 must have shape \(24,\), got \(1,\)"),
        ("bias_ih_l0", torch.zeros(10), r"bias_ih_l0 must have shape \(24,\)"),
        ("weight_hh_l0", torch.zeros(24, 9), r"weight_hh_l0 must have shape \(24, 8\)"),
        ("ln_gain_hh_l0", torch.zeros(23), r"ln_gain_hh_l0 must have shape \(24,\)"),
        ("bias_hh_l0", torch.zeros(24, dtype=torch.float64), "bias_hh_l0 has dtype torch.float64"),
    ],
)
def test_module_names_a_wrong_parameter(be, name, value, match):
    backend.set_backend(be)
    g = grukit.GRU(5, 8, layer_norm=True)
    setattr(g, name, torch.nn.Parameter(value))
    with pytest.raises((ValueError, TypeError), match=match):
        g(torch.randn(3, 2, 5))


def test_functional_names_a_wrong_parameter():
    x, h0 = torch.randn(3, 2, 5), torch.randn(2, 8)
    w = [torch.randn(24, 5), torch.randn(24, 8), torch.randn(24), torch.randn(10)]
    with pytest.raises(ValueError, match=r"b_hh must have shape \(24,\)"):
        functional.gru_layer(x, h0, *w)
    with pytest.raises(TypeError, match=r"w_hh has dtype torch.float64"):
        functional.gru_layer(x, h0, w[0], w[1].double())


@pytest.mark.parametrize(
    "args,match",
    [
        (dict(b_hh=torch.zeros(1, 1)), "b_hh must be"),
        (dict(w_hh=torch.zeros(1, 24, 9)), "w_hh must be"),
        (dict(h0=torch.zeros(1, 2, 9)), "h0 must be"),
        (dict(norms=torch.zeros(1, 4, 5)), "norms must be"),
        (dict(zoneout=torch.zeros(1, 3, 2, 7)), "zoneout mask must be"),
        (dict(h_mask=torch.zeros(1, 2, 7)), "recurrent dropout mask must be"),
        (dict(b_ih=torch.zeros(1, 24, dtype=torch.float64)), "b_ih has dtype"),
    ],
)
def test_native_op_checks_every_tensor_it_reads(args, match):
    base = dict(
        x=torch.randn(3, 2, 5),
        h0=torch.zeros(1, 2, 8),
        w_ih=torch.randn(1, 24, 5),
        w_hh=torch.randn(1, 24, 8),
        b_ih=torch.zeros(1, 24),
        b_hh=torch.zeros(1, 24),
        lengths=None,
        norms=None,
        zoneout=None,
        h_mask=None,
    )
    base.update(args)
    with pytest.raises(RuntimeError, match=match):
        torch.ops.grukit.gru_layer(*base.values(), 0.0, True, False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("H", [128, 150])
def test_layer_norm_in_a_batch_one_team_matches_reference(dtype, H):
    """Batch 1 on two threads splits each step's units between a team; LN's statistics are then combined."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        g = grukit.GRU(16, H, layer_norm=True, zoneout=0.2, dtype=dtype).train()
        with torch.no_grad():
            for name in g._norm_names:
                getattr(g, name).add_(torch.randn(3 * H, dtype=dtype) * 0.3)
        x, h0 = torch.randn(6, 1, 16, dtype=dtype), torch.randn(1, 1, H, dtype=dtype)
        for train in (True, False):
            g.train(train)
            ref = _run(g, "reference", x, h0, None)
            nat = _run(g, "native", x, h0, None)
            for a, b in zip(nat, ref):
                if dtype == torch.float64:
                    assert_close(a, b, dtype, f"H={H} train={train}")
                else:  # the team combines partial statistics in another order than the reference: float32 rounding
                    torch.testing.assert_close(a, b, rtol=1e-4, atol=5e-5, msg=lambda m: f"H={H} train={train}: {m}")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("H", [160, 150])
def test_layer_norm_team_and_one_thread_give_identical_bits(H):
    """The batch-1 LayerNorm-GRU runs as a team or alone by measurement (driver.cpp, TeamChoice); one
    thread standing in for the team reduces the statistics slice by slice in the team's order, so the
    outputs and every gradient are the same bits whichever the load picks."""
    torch.manual_seed(3)
    g = grukit.GRU(24, H, layer_norm=True, zoneout=0.1)
    with torch.no_grad():
        for name in g._norm_names:
            getattr(g, name).add_(torch.randn(3 * H) * 0.3)
    x, h0 = torch.randn(9, 1, 24), torch.randn(1, 1, H)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    runs = {}
    try:
        for policy in ("team", "alone", "measured"):
            kernels.ops.set_team_policy(policy)
            got = []
            for _ in range(12):
                g.eval()
                with torch.no_grad():
                    out_eval = g(x, h0)[0]
                g.train()
                g.generator = torch.Generator().manual_seed(5)
                out, h_n = g(x, h0)
                grads = torch.autograd.grad(out.pow(2).sum() + h_n.sum(), list(g.parameters()))
                got.append([out_eval, out, h_n, *grads])
            runs[policy] = got
    finally:
        kernels.ops.set_team_policy("measured")
        torch.set_num_threads(threads)
    first = runs["team"][0]
    for policy, results in runs.items():
        for tensors in results:
            for a, b in zip(tensors, first):
                assert torch.equal(a, b), policy

"""PyTorch's generic module tests (test/test_modules.py) on the nn.GRU and nn.GRUCell entries.

The samples, reference functions and error cases are torch's own: the nn.GRU and
nn.GRUCell entries of ``torch.testing._internal.common_modules.module_db``, read
from the installed torch, with ``module_cls`` swapped for grukit's class. The
test bodies are written here, following the assertions of PyTorch's
test/test_modules.py (TestModule and TestModuleCPUOnly, CPU, as of torch 2.13);
one pytest case per test that PyTorch instantiates for these two entries on the
CPU (``test_<name>_nn_<Module>_cpu_<dtype>[_train|_eval]``). Tests that only
run on an accelerator (device transfer, CPU/GPU parity) and those whose modules
take ``inplace`` are not instantiated for the CPU and are not here.

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
import io
import itertools
import pickle
from unittest import mock

import pytest
import torch
from dropin.target import SWAP
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db
from torch.testing._internal.common_utils import (
    freeze_rng_state,
    get_tensors_from,
    gradcheck,
    gradgradcheck,
    mock_wrapper,
)
from torch.utils._pytree import tree_flatten, tree_leaves, tree_map_only, tree_unflatten

INFOS = {}
for _info in module_db:
    if _info.module_cls in SWAP:
        INFOS[_info.module_cls.__name__] = copy.copy(_info)
        INFOS[_info.module_cls.__name__].module_cls = SWAP[_info.module_cls]


def cases(dtypes=(torch.float32, torch.float64), train_only=False):
    """(module name, dtype, training) as torch's @modules decorator instantiates them on the CPU."""
    out = []
    for name, info in INFOS.items():
        flags = [True] if train_only or not info.train_and_eval_differ else [True, False]
        out += [
            pytest.param(name, d, t, id=f"{name}-{str(d)[6:]}-{'train' if t else 'eval'}")
            for d, t in itertools.product(dtypes, flags)
        ]
    return out


def samples(name, dtype, training, requires_grad=False, device="cpu"):
    info = INFOS[name]
    return [
        s
        for s in info.module_inputs_func(
            info, device=device, dtype=dtype, requires_grad=requires_grad, training=training
        )
        if s.forward_input is not None
    ]


def build(name, s, dtype, training):
    m = INFOS[name].module_cls(*s.constructor_input.args, **s.constructor_input.kwargs)
    m.to("cpu").to(dtype)
    m.train(training)
    return m


def call(m, s):
    return m(*s.forward_input.args, **s.forward_input.kwargs)


def as_tuple(out):
    """GRU returns (output, h_n), GRUCell one tensor."""
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def assert_equal(a, b, **tol):
    for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True):
        torch.testing.assert_close(x, y, **tol)


@pytest.mark.parametrize("name,dtype,training", cases())
def test_forward(name, dtype, training):
    for s in samples(name, dtype, training):
        with freeze_rng_state():
            m = build(name, s, dtype, training)
            out = call(m, s)
            if s.reference_fn is not None:  # the unbatched output equals the batched one's only row
                assert_equal(out, s.reference_fn(m, *s.forward_input.args, **s.forward_input.kwargs))
            m.float() if dtype == torch.float32 else m.double()
            call(m, s)
            assert all(p.dtype == dtype and p.device.type == "cpu" for p in m.parameters())


@pytest.mark.parametrize("name,dtype,training", cases())
def test_factory_kwargs(name, dtype, training):
    for s in samples(name, dtype, training):
        args, kwargs = s.constructor_input.args, s.constructor_input.kwargs
        new = mock_wrapper(torch.nn.Parameter.__new__)
        with mock.patch.object(torch.nn.Parameter, "__new__", new):
            INFOS[name].module_cls(*args, **kwargs)
        made = [get_tensors_from(a, k) for a, k in new.mock.call_args_list]
        assert any(t and not get_tensors_from(args, kwargs).intersection(t) for t in made)  # it creates parameters
        m = INFOS[name].module_cls(*args, **kwargs, device="cpu", dtype=dtype)
        assert all(p.device.type == "cpu" and p.dtype == dtype for p in m.parameters())


@pytest.mark.parametrize("name,dtype,training", cases())
def test_repr(name, dtype, training):
    for s in samples(name, dtype, training):
        m = build(name, s, dtype, training)
        assert repr(m) and str(m)


@pytest.mark.parametrize("name,dtype,training", cases())
def test_save_load(name, dtype, training):
    for s in samples(name, dtype, training):
        with freeze_rng_state():
            m = build(name, s, dtype, training)
            sd = m.state_dict()
            out = call(m, s)
            buf = io.BytesIO()
            torch.save(m, buf)
            buf.seek(0)
            assert_equal(torch.load(buf, weights_only=False)(*s.forward_input.args, **s.forward_input.kwargs), out)
            buf = io.BytesIO()
            torch.save(sd, buf)
            for weights_only in (False, True):
                buf.seek(0)
                assert_equal(torch.load(buf, weights_only=weights_only), sd)
            assert pickle.loads(pickle.dumps(m)).state_dict().keys() == sd.keys()


def _non_contiguous(obj):
    def one(t):
        if t.dim() == 0:
            return t
        out = torch.repeat_interleave(t, 2, dim=-1)[..., ::2].detach()
        out.requires_grad = t.requires_grad
        return out

    return tree_map_only(torch.Tensor, one, obj)


def _backward(out, grads):
    for o, g in zip(tree_leaves(out), tree_leaves(grads)):
        if o.requires_grad:
            o.backward(g, retain_graph=True)


@pytest.mark.parametrize("name,dtype,training", cases())
def test_non_contiguous_tensors(name, dtype, training):
    for s in samples(name, dtype, training, requires_grad=True):
        m = build(name, s, dtype, training)
        args = s.forward_input.args
        with freeze_rng_state():
            ref = as_tuple(m(*args))
            g_out = tuple(o.detach().clone().normal_() for o in ref)
            _backward(ref, g_out)
        ref_grads = [a.grad.clone() for a in args] + [p.grad.clone() for p in m.parameters()]
        for in_args, g in itertools.product((args, _non_contiguous(args)), (g_out, _non_contiguous(g_out))):
            for t in list(in_args) + list(m.parameters()):
                t.grad = None
            with freeze_rng_state():
                out = as_tuple(m(*in_args))
                _backward(out, g)
            assert_equal(out, ref)
            assert_equal([a.grad for a in in_args], ref_grads[: len(args)], atol=1e-4, rtol=0)
            assert_equal([p.grad for p in m.parameters()], ref_grads[len(args) :])


def _gradients(name, dtype, training, check):
    for s in samples(name, dtype, training, requires_grad=True):
        m = build(name, s, dtype, training)
        params = tuple(m.parameters())
        args = s.forward_input.args

        def fn(*flat):
            new = tree_unflatten(list(flat), spec)
            with freeze_rng_state():
                return tree_leaves(m(*new[: len(args)]))

        flat, spec = tree_flatten(args + params)
        assert check(fn, flat)  # the total derivative
        for p in params:
            p.requires_grad = False
        for p in params:  # and each parameter's partial derivative
            p.requires_grad = True
            flat, spec = tree_flatten(args + params)
            assert check(fn, flat)
            p.requires_grad = False


# torch's test_modules checks through common_utils' wrappers, which add check_batched_grad (the
# backward under vmap, as jacobian(vectorize=True) runs it) and take the entry's fast_mode (None:
# fast, unless torch's slow-gradcheck job asks for the full Jacobian).
@pytest.mark.parametrize("name,dtype,training", cases(dtypes=(torch.float64,)))
def test_grad(name, dtype, training):
    """The full numerical Jacobian, as torch's slow-gradcheck job checks it (fast mode checks one
    random projection of it); half a minute for both entries."""
    _gradients(name, dtype, training, lambda f, x: gradcheck(f, x, nondet_tol=0.0, fast_mode=False))


# The options that make a module compute differently in training (torch's dropout between
# layers; grukit's own dropouts and zoneout): a module with all of them off computes the same
# function in both modes.
_MODE_OPTIONS = ("dropout", "input_dropout", "recurrent_dropout", "weight_dropout", "zoneout")


def _modes_agree_to_second_order(name, dtype) -> bool:
    """For every sample whose module has no mode-dependent option on, asserts that the eval-mode
    module gives the train-mode one's outputs, gradients and second-order products, bit for bit;
    returns False (having checked nothing) where some sample's module has such an option on, or
    where the eval samples are not the train samples (which the train case checks numerically)."""

    def key(s):
        shapes = [tuple(t.shape) for t in tree_leaves(s.forward_input.args) if isinstance(t, torch.Tensor)]
        return repr((s.constructor_input.args, s.constructor_input.kwargs, shapes))

    evals = samples(name, dtype, False, requires_grad=True)
    if sorted(map(key, evals)) != sorted(map(key, samples(name, dtype, True, requires_grad=True))):
        return False
    built = []
    for s in evals:
        m = build(name, s, dtype, True)
        if any(getattr(m, option, 0) for option in _MODE_OPTIONS):
            return False
        built.append((s, m))
    for s, m in built:
        args = s.forward_input.args
        flat, spec = tree_flatten(args + tuple(m.parameters()))
        inputs = [t for t in flat if isinstance(t, torch.Tensor) and t.requires_grad]
        results = []
        for training in (True, False):
            m.train(training)
            with freeze_rng_state():
                torch.manual_seed(0)
                out = tree_leaves(m(*tree_unflatten(list(flat), spec)[: len(args)]))
                g_out = [torch.randn_like(o) for o in out]
                grads = torch.autograd.grad(out, inputs, g_out, create_graph=True)
                v = [torch.randn_like(g) for g in grads]
                second = torch.autograd.grad(grads, inputs, v, allow_unused=True)
            results.append([t.detach() for t in (*out, *grads)] + [t for t in second if t is not None])
        assert len(results[0]) == len(results[1]) > len(inputs)
        for a, b in zip(*results):
            assert torch.equal(a, b)
    return True


@pytest.mark.parametrize("name,dtype,training", cases(dtypes=(torch.float64,)))
def test_gradgrad(name, dtype, training):
    """As torch checks it: fast mode unless the entry says otherwise. Its slow mode took 3.8 minutes
    per case here (second derivatives through the reference's small ops); the stack's second
    derivatives get the full check in test_train_path.py (test_double_backward_is_exact, and with
    every training mask).

    torch instantiates it in both modes. Where no sample's module has a mode-dependent option
    on (torch's GRU samples have no dropout), the eval case asserts that eval mode computes what
    train mode does, outputs, gradients and second-order products bit for bit, and leaves the
    numerical check of second derivatives to the train case, which covers the same function."""
    if not training and _modes_agree_to_second_order(name, dtype):
        return
    fast = INFOS[name].gradcheck_fast_mode
    _gradients(name, dtype, training, lambda f, x: gradgradcheck(f, x, nondet_tol=0.0, fast_mode=fast))


@pytest.mark.parametrize("name,dtype,training", cases())
def test_memory_format(name, dtype, training):
    for s in samples(name, dtype, training, requires_grad=True):
        with freeze_rng_state():
            m = build(name, s, dtype, training)
            args = s.forward_input.args
            ref = as_tuple(call(m, s))
            diff_in = [t for t in tree_leaves((args, tuple(m.parameters()))) if t.requires_grad]
            g_out = tuple(torch.rand_like(o) for o in ref)
            ref_grads = torch.autograd.grad(ref, diff_in, g_out) if training else None
            for fmt in (torch.preserve_format, torch.contiguous_format):
                m.to(memory_format=fmt)
                out = as_tuple(call(m, s))
                if fmt != torch.contiguous_format:
                    assert_equal(out, ref)
                assert all(o.is_contiguous() for o in out)
                if training:
                    diff_in = [t for t in tree_leaves((args, tuple(m.parameters()))) if t.requires_grad]
                    grads = torch.autograd.grad(out, diff_in, g_out)
                    assert all(g.is_contiguous() for g in grads)
                    if fmt != torch.contiguous_format:
                        assert_equal(grads, ref_grads)


@pytest.mark.parametrize("name,dtype,training", cases(train_only=True))
def test_if_train_and_eval_modes_differ(name, dtype, training):
    for s in samples(name, dtype, training):
        m = build(name, s, dtype, training)
        del m.training
        try:
            call(m, s)
        except AttributeError as e:  # forward read self.training: the entry must say the modes differ
            assert "'training'" in str(e) and INFOS[name].train_and_eval_differ


@pytest.mark.parametrize("name,dtype,training", cases())
def test_errors(name, dtype, training):
    info = INFOS[name]
    for e in info.module_error_inputs_func(info, device="cpu", dtype=dtype, requires_grad=False, training=training):
        s = e.module_error_input
        c = s.constructor_input
        if e.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
            with pytest.raises(e.error_type, match=e.error_regex):
                info.module_cls(*c.args, **c.kwargs)
        else:
            m = info.module_cls(*c.args, **c.kwargs)
            with pytest.raises(e.error_type, match=e.error_regex):
                call(m, s)


@pytest.fixture
def swap_flag():
    yield torch.__future__.set_swap_module_params_on_conversion
    torch.__future__.set_swap_module_params_on_conversion(False)


@pytest.mark.parametrize("set_grad", [True, False])
@pytest.mark.parametrize("swap", [True, False])
@pytest.mark.parametrize("name,dtype,training", cases(dtypes=(torch.float32,)))
def test_to(name, dtype, training, swap, set_grad, swap_flag):
    info = INFOS[name]
    swap_flag(swap)
    for s in info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=False, training=training):
        m = info.module_cls(*s.constructor_input.args, **s.constructor_input.kwargs)
        for n, p in list(m.named_parameters()):  # set up without .to(), the method under test
            new = torch.nn.Parameter(p.detach().clone().to("cpu", dtype))
            setattr(m, n, new)
            if set_grad:
                new.grad = torch.randn_like(new)
        if swap and not set_grad:
            out = call(m, s)
            (out[0] if isinstance(out, tuple) else out).sum().backward()
            m.to(dtype=torch.half)
            m.to(dtype=torch.float32)
        prev = dtype
        for d in info.dtypes:
            no_swap = d == prev
            prev = d
            ids, cdatas = [id(p) for p in m.parameters()], [p._cdata for p in m.parameters()]
            g_ids = [id(p.grad) for p in m.parameters()] if set_grad else []
            g_cdatas = [p.grad._cdata for p in m.parameters()] if set_grad else []
            m.to(device="cpu", dtype=d)
            ps = list(m.parameters())
            assert all(isinstance(p, torch.nn.Parameter) and p.device.type == "cpu" and p.dtype == d for p in ps)
            assert [id(p) for p in ps] == ids
            if set_grad:
                assert all(p.grad.dtype == d for p in ps)
            if swap:
                assert all(a != p._cdata for a, p in zip(cdatas, ps))
                if set_grad:
                    assert all((a == p.grad._cdata) == no_swap for a, p in zip(g_cdatas, ps))
            else:
                assert [p._cdata for p in ps] == cdatas
                if set_grad:
                    assert [p.grad._cdata for p in ps] == g_cdatas and [id(p.grad) for p in ps] == g_ids


@pytest.mark.parametrize("swap", [True, False])
@pytest.mark.parametrize("name,dtype,training", cases(dtypes=(torch.float32,)))
def test_to_empty(name, dtype, training, swap, swap_flag):
    info = INFOS[name]
    with torch.device("meta"):
        inputs = info.module_inputs_func(info, device=None, dtype=dtype, requires_grad=False, training=training)
    swap_flag(swap)
    for s in inputs:
        with torch.device("meta"):
            m = info.module_cls(*s.constructor_input.args, **s.constructor_input.kwargs)
        ids, cdatas = [id(p) for p in m.parameters()], [p._cdata for p in m.parameters()]
        m.to_empty(device=torch.device("cpu"))
        ps = list(m.parameters())
        assert all(isinstance(p, torch.nn.Parameter) and p.device.type == "cpu" and p.dtype == dtype for p in ps)
        assert all(a != p._cdata for a, p in zip(cdatas, ps))
        assert ([id(p) for p in ps] == ids) if swap else all(a != id(p) for a, p in zip(ids, ps))


@pytest.mark.parametrize("name,dtype,training", cases())
def test_device_ctx_init(name, dtype, training):
    from torch._subclasses.meta_utils import assert_metadata_eq

    info = INFOS[name]
    cpu = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=False, training=training)
    with torch.device("meta"):
        meta = info.module_inputs_func(info, device=None, dtype=dtype, requires_grad=False, training=training)
    for s_cpu, s_meta in zip(cpu, meta):
        m_cpu = info.module_cls(*s_cpu.constructor_input.args, **s_cpu.constructor_input.kwargs)
        with torch.device("meta"):
            m = info.module_cls(*s_meta.constructor_input.args, **s_meta.constructor_input.kwargs)
        for p_meta, p_cpu in itertools.chain(
            zip(m.parameters(), m_cpu.parameters()), zip(m.buffers(), m_cpu.buffers())
        ):
            assert p_meta.is_meta
            assert_metadata_eq(_equal, p_meta, p_cpu)


def _equal(a, b, msg=None):
    assert a == b, msg

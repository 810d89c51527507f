"""The engines of the peers benchmark, each built for one shape from one torch.nn.GRU.

An :class:`Engine` has the two calls that are timed (``infer``, ``train``)
and, for the check before timing, ``outputs`` (output (T, B, D*H) and h_n
(L*D, B, H), numpy; h_n None where the engine does not return it) and
``grads`` (the weights' gradients of sum(output * g), in torch.nn.GRU's names
and layout). Engines that do not train have ``train = None``.

An engine whose package is not installed raises :class:`Missing` with the
line that installs it. Shapes legend as in :mod:`grukit.bench`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..bench import Config, _infer, _train
from ..modules import GRU

BENCH_EXTRA = "pip install 'grukit[bench]'"


class Missing(Exception):
    """An optional engine that cannot run here; the message says how to install it."""


@dataclass
class Case:
    """One shape's inputs, shared by every engine: the reference weights, x, the loss weights g."""

    cfg: Config
    ref: nn.GRU  # float32, the weights every engine gets
    x: torch.Tensor  # (T, B, I)
    g: torch.Tensor  # (T, B, D*H): training loss = sum(output * g)
    threads: int


@dataclass
class Engine:
    name: str
    precision: str  # "fp32" or "bf16"
    infer: Callable[[], object]
    outputs: Callable[[], tuple]
    train: Callable[[], object] | None = None
    grads: Callable[[], dict] | None = None
    version: str = ""
    note: str = ""


def make_case(cfg: Config, threads: int, seed: int = 0) -> Case:
    torch.manual_seed(seed)
    ref = nn.GRU(cfg.I, cfg.H, cfg.L, bidirectional=cfg.bidirectional)
    D = 2 if cfg.bidirectional else 1
    return Case(cfg, ref, torch.randn(cfg.T, cfg.B, cfg.I), torch.randn(cfg.T, cfg.B, D * cfg.H), threads)


def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def torch_module_engine(
    name: str, precision: str, model: nn.Module, case: Case, version: str, note: str = ""
) -> Engine:
    """torch.nn.GRU or grukit.GRU: the benchmark's own inference and training steps."""
    infer, train = _infer(model, case.x), _train(model, case.x, case.g)

    def outputs():
        y, h = infer()
        return _np(y), _np(h)

    def grads():
        train()
        return {n: _np(p.grad) for n, p in model.named_parameters()}

    return Engine(name, precision, infer, outputs, train, grads, version, note)


def torch_engine(case: Case) -> Engine:
    return torch_module_engine("torch", "fp32", case.ref, case, torch.__version__, "torch.nn.GRU")


def grukit_engine(case: Case) -> Engine:
    from .. import __version__, backend

    model = GRU.from_torch(case.ref)
    return torch_module_engine(
        "grukit", "fp32", model, case, __version__, f"backend {backend.active(case.x, model.weight_ih_l0)}"
    )


def grukit_bf16_engine(case: Case) -> Engine:
    from .. import __version__

    model = GRU.from_torch(case.ref)
    model.compute_dtype = torch.bfloat16  # bf16 compute, float32 weights and gradients
    return torch_module_engine("grukit-bf16", "bf16", model, case, __version__, "compute_dtype=torch.bfloat16")


def _layer_state(ref: nn.GRU, layer: int) -> dict[str, torch.Tensor]:
    """One layer of a torch.nn.GRU's state_dict, renamed to layer 0."""
    tag = f"_l{layer}"
    return {
        k.replace(tag, "_l0"): v for k, v in ref.state_dict().items() if k.endswith(tag) or k.endswith(tag + "_reverse")
    }


def keras_engine(case: Case) -> Engine:
    """Keras 3 on its torch backend: one GRU (Bidirectional(GRU) if D = 2) per layer, batch-first."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        raise Missing("keras is not installed: pip install 'keras>=3' (a dev dependency of grukit)") from None
    if keras.backend.backend() != "torch":
        raise Missing(
            f"Keras runs on its {keras.backend.backend()!r} backend in this process; this benchmark needs KERAS_BACKEND=torch"
        )
    cfg, D = case.cfg, 2 if case.cfg.bidirectional else 1
    layers, per_layer = [], []
    for k in range(cfg.L):
        gru = keras.layers.GRU(cfg.H, return_sequences=True, reset_after=True)
        layer = keras.layers.Bidirectional(gru) if D == 2 else gru
        layer.build((cfg.B, cfg.T, cfg.I if k == 0 else D * cfg.H))
        single = GRU(cfg.I if k == 0 else D * cfg.H, cfg.H, bidirectional=cfg.bidirectional)
        single.load_state_dict(_layer_state(case.ref, k))
        layer.set_weights(single.keras_weights())
        layers.append(layer)
        per_layer.append(layer.trainable_weights)  # forward layer's kernel, recurrent_kernel, bias; then backward's
    x = case.x.transpose(0, 1).contiguous()  # (B, T, I)
    g = case.g.transpose(0, 1).contiguous()  # (B, T, D*H)
    variables = [v for vs in per_layer for v in vs]

    def forward(training: bool):
        y = x
        for layer in layers:
            y = layer(y, training=training)
        return y  # (B, T, D*H)

    def infer():
        with torch.no_grad():
            return forward(False)

    def train():
        for v in variables:
            v.value.grad = None
        (forward(True) * g).sum().backward()

    def outputs():
        return _np(infer().transpose(0, 1)), None

    def grads():
        train()
        out = {}
        for k, vs in enumerate(per_layer):
            as_torch = GRU.from_keras([_np(v.value.grad) for v in vs], batch_first=False)  # gradients in torch's layout
            out.update({n.replace("_l0", f"_l{k}"): _np(p) for n, p in as_torch.named_parameters()})
        return out

    return Engine("keras", "fp32", infer, outputs, train, grads, keras.__version__, "Keras 3, torch backend")

"""The readable reference: the definition of correct for every fast path.

Shapes legend (used in every file of grukit):
    T time steps, B batch, I input features, H hidden units,
    D directions (1 or 2), L layers.

One file per cell, each with its equations and the paper they come from:

    gru.py        the GRU step (Cho et al. 2014), both reset conventions
    layernorm.py  LayerNorm-GRU (Ba, Kiros & Hinton 2016, as Haste applies it)
    zoneout.py    zoneout (Krueger et al. 2017)
    dropout.py    recurrent, input and weight (DropConnect) dropout
    mingru.py     minGRU (Feng et al. 2024), sequential and log-space parallel
    layer.py      the time loop and the stack of layers, written once

Everything here is plain differentiable torch code: autograd provides the
backward pass. The native kernels (``grukit.kernels``) must agree with it.
"""

from .gru import gru_cell, gru_step
from .layer import gru, gru_directions, gru_layer
from .layernorm import layer_norm
from .mingru import mingru, mingru_g, mingru_layer, mingru_log_g, mingru_parallel, mingru_sequential, mingru_step

__all__ = [
    "gru",
    "gru_cell",
    "gru_directions",
    "gru_layer",
    "gru_step",
    "layer_norm",
    "mingru",
    "mingru_g",
    "mingru_layer",
    "mingru_log_g",
    "mingru_parallel",
    "mingru_sequential",
    "mingru_step",
]

"""Exact weight conversion between grukit.GRU, torch.nn.GRU and Keras.

torch / grukit store ``weight_ih`` (3H, I), ``weight_hh`` (3H, H) and two
biases (3H,) with gates stacked r | z | n.
Keras stores ``kernel`` (I, 3H), ``recurrent_kernel`` (H, 3H) and ``bias``
(2, 3H) [input bias; recurrent bias] when reset_after=True, or a single (3H,)
bias when reset_after=False, with gates stacked z | r | h.
A Keras ``Bidirectional(GRU)`` lists the forward layer's arrays, then the
backward layer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


def _swap_rz(t: Tensor, dim: int) -> Tensor:
    """r|z|n <-> z|r|n along ``dim`` (the swap is its own inverse)."""
    a, b, c = t.chunk(3, dim=dim)
    return torch.cat([b, a, c], dim=dim)


def gru_from_torch(cls, module: nn.GRU):
    if not isinstance(module, nn.GRU):
        raise TypeError(f"from_torch expects a torch.nn.GRU, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError("torch.nn.GRU has no proj_size; got a module with proj_size != 0")
    w = module.weight_ih_l0
    out = cls(
        module.input_size,
        module.hidden_size,
        module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=module.dropout,
        bidirectional=module.bidirectional,
        device=w.device,
        dtype=w.dtype,
    )
    out.load_state_dict(module.state_dict())
    out.train(module.training)
    return out


def _refuse_options(gru, target: str) -> None:
    """A clear error for a cell option the target format cannot represent."""
    for name in gru.cell_options():
        raise ValueError(
            f"{target} cannot represent {name}={getattr(gru, name)!r}: only the plain GRU has an exact equivalent there"
        )


def gru_to_torch(gru) -> nn.GRU:
    _refuse_options(gru, "torch.nn.GRU (to_torch)")
    if not gru.reset_after:
        raise ValueError(
            "to_torch() needs reset_after=True: torch.nn.GRU only computes the reset-after "
            "convention, so a reset_after=False GRU has no exact torch equivalent"
        )
    w = gru.weight_ih_l0
    out = nn.GRU(
        gru.input_size,
        gru.hidden_size,
        gru.num_layers,
        bias=gru.bias,
        batch_first=gru.batch_first,
        dropout=gru.dropout,
        bidirectional=gru.bidirectional,
        device=w.device,
        dtype=w.dtype,
    )
    out.load_state_dict(gru.state_dict())
    out.train(gru.training)
    return out


def _direction_from_keras(arrays: Sequence[np.ndarray], dtype) -> tuple[dict[str, Tensor], bool]:
    """Arrays of one Keras GRU -> (torch-layout tensors, reset_after)."""
    kernel, recurrent = (torch.as_tensor(np.asarray(a), dtype=dtype) for a in arrays[:2])
    if kernel.dim() != 2 or kernel.shape[1] % 3:
        raise ValueError(f"Keras kernel must have shape (I, 3H), got {tuple(kernel.shape)}")
    H = kernel.shape[1] // 3
    if tuple(recurrent.shape) != (H, 3 * H):
        raise ValueError(f"Keras recurrent_kernel must have shape ({H}, {3 * H}), got {tuple(recurrent.shape)}")
    params = {"weight_ih": _swap_rz(kernel.T, 0), "weight_hh": _swap_rz(recurrent.T, 0)}
    reset_after = True
    if len(arrays) == 3:
        bias = torch.as_tensor(np.asarray(arrays[2]), dtype=dtype)
        if tuple(bias.shape) == (2, 3 * H):
            params["bias_ih"], params["bias_hh"] = _swap_rz(bias[0], 0), _swap_rz(bias[1], 0)
        elif tuple(bias.shape) == (3 * H,):
            reset_after = False  # Keras reset_after=False has one bias, on the input side
            params["bias_ih"], params["bias_hh"] = _swap_rz(bias, 0), torch.zeros_like(bias)
        else:
            raise ValueError(f"Keras GRU bias must have shape (2, {3 * H}) or ({3 * H},), got {tuple(bias.shape)}")
    return params, reset_after


def gru_from_keras(
    cls, weights, *, reset_after: bool | None = None, batch_first: bool = True, dtype=torch.float32, device=None
):
    """Weights of a Keras GRU (2 or 3 arrays) or Bidirectional(GRU) (4 or 6).

    ``reset_after`` is read from the bias shape; weights without a bias
    (``use_bias=False``) do not show it, so it must then be given.
    """
    if not isinstance(weights, (list, tuple)) or len(weights) not in (2, 3, 4, 6):
        n = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
        raise ValueError(
            "from_keras expects the list from a Keras GRU's get_weights() (2 or 3 arrays) "
            f"or a Bidirectional(GRU)'s (4 or 6 arrays), got {n}"
        )
    bidirectional = len(weights) in (4, 6)
    per = len(weights) // 2 if bidirectional else len(weights)
    directions = [_direction_from_keras(weights[i : i + per], dtype) for i in range(0, len(weights), per)]
    conventions = {ra for _, ra in directions}
    if len(conventions) != 1:
        raise ValueError("the two directions of a Bidirectional(GRU) disagree on reset_after")
    found = conventions.pop()
    if per == 2:
        if reset_after is None:
            raise ValueError(
                "these Keras weights have no bias, so reset_after cannot be read from them: pass reset_after=True or False"
            )
        found = bool(reset_after)
    elif reset_after is not None and bool(reset_after) != found:
        raise ValueError(f"reset_after={reset_after} contradicts the Keras bias shape, which means reset_after={found}")
    first = directions[0][0]
    H, I = first["weight_hh"].shape[1], first["weight_ih"].shape[1]
    gru = cls(
        I,
        H,
        bias=per == 3,
        batch_first=batch_first,
        bidirectional=bidirectional,
        device=device,
        dtype=dtype,
        reset_after=found,
    )
    state = {}
    for d, (params, _) in enumerate(directions):
        suffix = "_l0" + ("_reverse" if d == 1 else "")
        state.update({name + suffix: t for name, t in params.items()})
    gru.load_state_dict(state)
    return gru


def gru_keras_weights(gru) -> list[np.ndarray]:
    _refuse_options(gru, "a Keras GRU layer (keras_weights)")
    """Arrays for Keras ``set_weights`` (one layer; Bidirectional if D = 2)."""
    if gru.num_layers != 1:
        raise ValueError(f"a Keras GRU layer has one layer; this GRU has num_layers={gru.num_layers}")
    out: list[np.ndarray] = []
    for suffix in ("_l0", "_l0_reverse")[: gru.num_directions]:
        p: dict[str, Any] = {
            n: getattr(gru, n + suffix, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
        arrays = [_swap_rz(p["weight_ih"].detach(), 0).T, _swap_rz(p["weight_hh"].detach(), 0).T]
        if gru.bias:
            b_ih, b_hh = _swap_rz(p["bias_ih"].detach(), 0), _swap_rz(p["bias_hh"].detach(), 0)
            # reset_after=False: b_hh sits outside the reset gate, so it folds into one bias
            arrays.append(torch.stack([b_ih, b_hh]) if gru.reset_after else b_ih + b_hh)
        out.extend(a.cpu().numpy().copy() for a in arrays)
    return out

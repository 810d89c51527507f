"""The model registry: which recurrent layer a task's model runs (``--cell``).

Every task builds its recurrent layer with :func:`recurrent`, so every task
offers every cell, and ``--dtype`` reaches every cell through
:func:`set_compute_dtype`. The cells (equations and papers in
grukit.functional):

    gru     grukit.GRU, torch.nn.GRU to the letter (Cho et al. 2014)
    lngru   grukit.GRU(layer_norm=True): LayerNorm-GRU (Ba et al. 2016)
    mingru  grukit.MinGRU: minGRU (Feng et al. 2024), gates from x_t only,
            in its default (sequential, native scan) mode

Every layer is called the same way, ``layer(x, h0=None, lengths=...)``, and
returns ``(output, h_n)`` with h_n (L*D, B, H). The messages name the CLI
flags, since this module is where the tasks' flags meet the layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from ..mingru import MinGRU
from ..modules import GRU

M = TypeVar("M", bound=nn.Module)

CELLS = ("gru", "lngru", "mingru")  # --cell choices; the first is the default

# Options grukit.GRU has and grukit.MinGRU does not: it reads one direction,
# and its gates see only x_t (h enters only the final mix), with no dropout of
# any kind.
_MINGRU_LACKS = ("bidirectional", "dropout", "zoneout", "recurrent_dropout", "input_dropout", "weight_dropout")


def check(cell: str, **options) -> None:
    """Raise ValueError naming the flag if ``cell`` is unknown or an option that is on does not apply to it."""
    if cell not in CELLS:
        raise ValueError(f"--cell must be one of {', '.join(CELLS)}, got {cell!r}")
    if cell == "mingru":
        for name in _MINGRU_LACKS:
            if options.get(name):
                flag = "--" + name.replace("_", "-")
                hint = "; MinGRU has no dropout between layers" if name == "dropout" else ""
                raise ValueError(f"{flag} is not available for --cell mingru{hint}")


def recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    batch_first: bool = True,
    dropout: float = 0.0,
    bidirectional: bool = False,
    zoneout: float = 0.0,
    recurrent_dropout: float = 0.0,
    weight_dropout: float = 0.0,
    input_dropout: float = 0.0,
) -> nn.Module:
    """The recurrent layer named by ``cell``: I -> D*H features per step, ``num_layers`` deep.

    ``dropout`` is between layers (torch.nn.GRU's); callers pass 0 for one layer.
    """
    options: dict[str, Any] = dict(  # floats and a bool, passed on by name
        dropout=dropout,
        bidirectional=bidirectional,
        zoneout=zoneout,
        recurrent_dropout=recurrent_dropout,
        weight_dropout=weight_dropout,
        input_dropout=input_dropout,
    )
    check(cell, **options)
    if cell == "mingru":
        return MinGRU(input_size, hidden_size, num_layers, batch_first=batch_first)
    return GRU(input_size, hidden_size, num_layers, batch_first=batch_first, layer_norm=cell == "lngru", **options)


@dataclass(frozen=True)
class Cell:
    """A cell and its options, as the tasks' flags name them; a model's recurrent layers are built from it."""

    name: str = "gru"  # one of CELLS
    zoneout: float = 0.0  # the options of the GRU cells, off by default
    recurrent_dropout: float = 0.0
    weight_dropout: float = 0.0

    def layer(self, input_size: int, hidden_size: int, **options) -> nn.Module:
        """:func:`recurrent` of this cell; ``options``: its structural ones (num_layers, dropout, ...)."""
        return recurrent(
            self.name,
            input_size,
            hidden_size,
            zoneout=self.zoneout,
            recurrent_dropout=self.recurrent_dropout,
            weight_dropout=self.weight_dropout,
            **options,
        )


def directions(layer: nn.Module) -> int:
    """D: 2 for a bidirectional layer, else 1."""
    return 2 if getattr(layer, "bidirectional", False) else 1


def set_compute_dtype(model: M, dtype: torch.dtype | None) -> M:
    """Make every recurrent layer in ``model`` compute in ``dtype`` (None: its parameters' dtype)."""
    for m in model.modules():
        if isinstance(m, (GRU, MinGRU)):  # both take compute_dtype (mixed precision, parameters keep their dtype)
            m.compute_dtype = dtype
    return model

"""Several models trained independently in one run; the output is their mean.

:func:`grukit.training.fit` trains each member of an :class:`Ensemble` as it
would train the member alone: its own batch order every epoch (its own
random stream, see ``member_generator`` in loop.py), its own gradient
clipping, and its own best epoch on the validation part, whose weights it
keeps. The kept ensemble is each member's best state; the members' outputs
are averaged, which lowers the variance that comes from the initialisation
and from the order of the batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Ensemble(nn.Module):
    """Members with the same signature, whose outputs are averaged (:meth:`mean`).

    A subclass defines ``forward`` with the members' own arguments, as ``def
    forward(self, x, lengths): return self.mean(x, lengths)``: torch.export (ONNX's
    default exporter) matches dynamic shapes to named parameters, one per argument."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def mean(self, *inputs: Tensor) -> Tensor:
        """The mean of the members' outputs for the same inputs."""
        return torch.stack([m(*inputs) for m in self.members]).mean(0)

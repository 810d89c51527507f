"""Which GRU the drop-in tests run on: grukit's (default) or torch's own.

``GRUKIT_DROPIN_TARGET=torch pytest tests/test_dropin_*.py`` runs the very same
tests on torch.nn.GRU / torch.nn.GRUCell, so the two pass counts can be compared.
"""

from __future__ import annotations

import os

import torch

import grukit

TARGET = os.environ.get("GRUKIT_DROPIN_TARGET", "grukit")
if TARGET not in ("grukit", "torch"):
    raise ValueError(f"GRUKIT_DROPIN_TARGET must be 'grukit' or 'torch', got {TARGET!r}")

GRU = grukit.GRU if TARGET == "grukit" else torch.nn.GRU
GRUCell = grukit.GRUCell if TARGET == "grukit" else torch.nn.GRUCell
SWAP = {torch.nn.GRU: GRU, torch.nn.GRUCell: GRUCell}

"""grukit: a readable, exact and fast gated recurrent unit for PyTorch."""

from . import functional
from .mingru import MinGRU
from .cell import GRUCell
from .determinism import use_deterministic
from .modules import GRU

__all__ = ["GRU", "GRUCell", "MinGRU", "functional", "use_deterministic", "__version__"]
__version__ = "0.1.0"

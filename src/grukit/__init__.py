"""grukit: a readable, exact and fast gated recurrent unit for PyTorch."""

from . import functional
from .cell import GRUCell
from .determinism import use_deterministic
from .errors import DeviceError, DTypeError, OptionTypeError, ShapeError
from .mingru import MinGRU
from .modules import GRU

__all__ = [
    "GRU",
    "DTypeError",
    "DeviceError",
    "GRUAutoencoder",
    "GRUCell",
    "GRUClassifier",
    "GRUForecaster",
    "GRURegressor",
    "GRUTextClassifier",
    "MinGRU",
    "OptionTypeError",
    "ShapeError",
    "__version__",
    "functional",
    "use_deterministic",
]
__version__ = "0.1.0"

_ESTIMATORS = ("GRUClassifier", "GRUForecaster", "GRURegressor", "GRUTextClassifier")


def __getattr__(name: str):
    """The scikit-learn estimators, imported on first use so `import grukit` never imports scikit-learn."""
    if name in _ESTIMATORS:
        from . import estimators  # ImportError in one line when scikit-learn is missing

        return getattr(estimators, name)
    if name == "GRUAutoencoder":
        from .estimators_autoencoder import GRUAutoencoder

        return GRUAutoencoder
    raise AttributeError(f"module 'grukit' has no attribute {name!r}")

"""grukit: a readable, exact and fast gated recurrent unit for PyTorch."""

from . import functional
from .errors import DeviceError, DTypeError, OptionTypeError, ShapeError
from .mingru import MinGRU
from .cell import GRUCell
from .determinism import use_deterministic
from .modules import GRU

__all__ = ["GRU", "GRUCell", "MinGRU", "functional", "use_deterministic", "ShapeError", "DTypeError", "DeviceError",
           "OptionTypeError", "__version__", "GRUClassifier", "GRUForecaster", "GRURegressor", "GRUTextClassifier", "GRUAutoencoder"]
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

"""grukit's exception classes: each is also the class torch.nn.GRU raises for the same mistake.

Code written against torch (``except RuntimeError``, ``assertRaisesRegex(ValueError, ...)``)
and code written against grukit (``except ValueError``, ``except TypeError``) both catch
them. Their messages start with torch's wording (so PyTorch's own message regexes
match) and go on with grukit's expected and actual values.

    mistake                           torch raises    grukit raises
    wrong shape of input / hx         RuntimeError    ShapeError(ValueError, RuntimeError)
      (wrong rank of input / hx)      ValueError      ShapeError
    input dtype != weight dtype       ValueError      DTypeError(TypeError, ValueError, RuntimeError)
      (GRUCell)                       RuntimeError    DTypeError
    input and weights on two devices  RuntimeError    DeviceError(ValueError, RuntimeError)
    dropout that is not a number      ValueError      OptionTypeError(TypeError, ValueError)
"""

from __future__ import annotations

__all__ = ["DTypeError", "DeviceError", "OptionTypeError", "ShapeError"]


class ShapeError(ValueError, RuntimeError):
    """A tensor (input, hx, a parameter) has the wrong rank or size."""


class DTypeError(TypeError, ValueError, RuntimeError):
    """A tensor's dtype is not the weights' dtype (or not floating point)."""


class DeviceError(ValueError, RuntimeError):
    """A tensor is not on the weights' device."""


class OptionTypeError(TypeError, ValueError):
    """A constructor option has the wrong type where torch reports it as a ValueError."""

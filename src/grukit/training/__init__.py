"""Training: the generic loop, checkpoints and plots. Knows nothing of any task."""

from . import logs
from .checkpoint import load_tensors, read_json, save_tensors, write_json
from .loop import LoopConfig, Objective, fit

__all__ = ["LoopConfig", "Objective", "fit", "load_tensors", "logs", "read_json", "save_tensors", "write_json"]

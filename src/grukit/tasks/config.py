"""Every task's options: a frozen dataclass whose fields the CLI turns into flags.

A task's ``Config`` subclasses :class:`TaskConfig`; every field is made with
:func:`option`, whose help text the CLI shows, so a task's defaults and their
documentation live in one place. ``validate`` checks every value (finite
numbers, ranges, thread counts, sizes that fit in memory) before a run writes
anything; the same checks run on a config.json read back from disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from ..training import LoopConfig, logs
from . import cells


def option(default: Any, help: str, **metadata) -> Any:
    """A config field with a default and the help text the CLI shows for it."""
    return field(default=default, metadata={"help": help, **metadata})


REFIT_HELP = (
    "after training, train again from the same initialisation on all the training data (the validation part "
    "too), each model (ensemble member) for the epochs after which it was kept, and score that model; "
    "choose settings by the validation scores, which are the first model's"
)


@dataclass(frozen=True)
class TaskConfig:
    """Options every task has. Subclasses override defaults by redeclaring."""

    epochs: int = option(10, "passes over the training data")
    lr: float = option(1e-3, "Adam learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    grad_clip: float = option(1.0, "max gradient norm (0 = no clipping)")
    patience: int = option(0, "early stop after this many epochs without improvement (0 = never)")
    seed: int = option(0, "random seed for initialisation, splits and shuffling")
    progress: bool = option(True, "show a progress bar")
    threads: int = option(
        1,
        "CPU threads for torch while training and scoring (0 = torch's default; small GRUs rarely gain from more, and a busy second core can make 2 threads many times slower than 1)",
    )
    dtype: str = option(
        "float32",
        "the recurrent layer's compute dtype: float32, or bfloat16 (mixed precision: float32 parameters and optimiser)",
    )
    cell: str = option(
        "gru",
        f"recurrent cell: {', '.join(cells.CELLS)} (gru = torch.nn.GRU's, lngru = layer-normalised GRU, mingru = minGRU, gates from the input only)",
    )
    zoneout: float = option(
        0.0,
        "zoneout probability: in training each hidden unit keeps its previous value with this probability (gru, lngru)",
    )
    recurrent_dropout: float = option(
        0.0, "dropout on the hidden state where it enters the gates, one mask per sequence (gru, lngru)"
    )
    weight_dropout: float = option(0.0, "DropConnect on the recurrent weights, one mask per batch (gru, lngru)")
    deterministic: bool = option(
        False,
        "bit-identical results when the same command runs again with the same --threads (torch's deterministic algorithms on; see grukit.determinism)",
    )
    log: str = option(
        "none",
        "per-epoch log besides history.jsonl: csv (DIR/log.csv) or tensorboard (DIR/tensorboard/, needs `pip install 'grukit[log]'`)",
        choices=logs.LOGS,
    )

    def loop(self) -> LoopConfig:
        return LoopConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LoopConfig)})

    def at_least(self, low, *names: str) -> None:
        """Raise ValueError naming the flag if any of these fields is below ``low``, NaN or infinite."""
        for name in names:
            value = getattr(self, name)
            if not (value >= low and math.isfinite(value)):  # NaN fails every comparison
                what = "a finite number >= " if isinstance(value, float) else ">= "
                raise ValueError(f"--{name.replace('_', '-')} must be {what}{low}, got {value}")

    def within(self, low: float, high: float, *names: str, closed_low: bool = False) -> None:
        """Raise ValueError naming the flag if a field is outside (low, high), or [low, high) with
        ``closed_low`` (NaN and infinities are outside every range)."""
        for name in names:
            value = getattr(self, name)
            inside = (low <= value if closed_low else low < value) and value < high
            if not inside:
                span = f"{'[' if closed_low else '('}{low:g}, {high:g})"
                raise ValueError(f"--{name.replace('_', '-')} must be in {span}, got {value}")

    def validate(self) -> None:
        """Raise ValueError naming the flag for out-of-range values."""
        self.at_least(1, "epochs")
        for name in ("lr",):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"--{name} must be a finite number > 0, got {value}")
        self.at_least(0, "weight_decay", "grad_clip", "patience", "threads")
        check_threads(self.threads)
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.dtype not in COMPUTE_DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {self.dtype!r}")
        for name in ("zoneout", "recurrent_dropout", "weight_dropout"):
            if not 0 <= getattr(self, name) < 1:  # also rejects nan and inf
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        cells.check(
            self.cell,
            zoneout=self.zoneout,
            recurrent_dropout=self.recurrent_dropout,
            weight_dropout=self.weight_dropout,
        )
        logs.check(self.log)
        check_memory(self)

    def recurrent_cell(self) -> cells.Cell:
        """The cell --cell, --zoneout, --recurrent-dropout and --weight-dropout name."""
        return cells.Cell(
            self.cell,
            zoneout=self.zoneout,
            recurrent_dropout=self.recurrent_dropout,
            weight_dropout=self.weight_dropout,
        )


M = TypeVar("M", bound=torch.nn.Module)

COMPUTE_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}  # --dtype -> the layers' compute_dtype


def with_dtype(model: M, cfg: TaskConfig) -> M:
    """Set every recurrent layer in ``model``, whatever its cell, to compute in ``cfg.dtype`` (parameters stay float32)."""
    return cells.set_compute_dtype(model, COMPUTE_DTYPES[cfg.dtype])


def max_threads() -> int:
    """The most --threads accepted: 4 per CPU this process may run on (more only thrashes, and
    libgomp starts every thread asked for, up to the process limit)."""
    return 4 * (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def check_threads(n: int) -> None:
    """--threads (or a run's config.json) within [0, max_threads()]."""
    if n > max_threads():
        raise ValueError(f"--threads must be at most {max_threads()} (4 per CPU of this machine), got {n}")


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch CPU threads (0 = leave torch's setting).

    Small recurrent models gain little from intra-op threads, and on a busy
    machine two threads measured 10-20x slower than one (GunPoint, 20 epochs,
    2 cores under load: 40-108 s vs 5-7 s)."""
    check_threads(n)  # also a config.json's value, on eval and predict
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def memory_bytes() -> int:
    """Physical memory of this machine (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def recurrent_parameters(cfg: Any) -> int:
    """About how many parameters the recurrent layers of ``cfg`` hold: 3H(I+H) per layer and
    direction (and ensemble member), with the input taken as wide as the hidden state (an estimate, for the memory check)."""
    hidden = getattr(cfg, "hidden_size", 0)
    width = max(hidden, getattr(cfg, "embedding_size", 0), getattr(cfg, "embed_dim", 0))
    layers = getattr(cfg, "num_layers", 1) * (2 if getattr(cfg, "bidirectional", False) else 1)
    return 3 * hidden * (width + hidden) * layers * getattr(cfg, "ensemble", 1)


def check_memory(cfg: Any) -> None:
    """Refuse sizes whose weights, gradients and optimiser state (4 float32 copies) cannot fit in memory."""
    need, have = 16 * recurrent_parameters(cfg), memory_bytes()
    if have and need > have // 2:
        raise ValueError(
            f"--hidden-size {cfg.hidden_size} needs about {need / 2**30:.3g} GiB for the recurrent weights, "
            f"gradients and optimiser state; this machine has {have / 2**30:.3g} GiB: choose a smaller --hidden-size"
        )

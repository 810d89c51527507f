"""What every task shares: its config, its run directory, and its registry.

A task is a subclass of :class:`Task` with a frozen dataclass ``Config``
(every field made with :func:`option`, whose help text the CLI shows). The
CLI builds its options from that dataclass, so a task's defaults and their
documentation live in one place.

Run directory written by every task:
    DIR/config.json   {"task": name, "config": {...}, "state": {...}}
                      ("state": what the task learned from the data besides
                      the weights, e.g. a vocabulary or scaling; JSON only)
    DIR/model.safetensors, checkpoint.safetensors, history.jsonl, loss.png
                      (written by grukit.training.fit)
    DIR/metrics.json  final test metrics
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from .. import __version__, backend
from ..training import LoopConfig, load_tensors, read_json, write_json
from ..training.loop import MODEL_FILE
from . import cells


def option(default: Any, help: str, **metadata) -> Any:
    """A config field with a default and the help text the CLI shows for it."""
    return field(default=default, metadata={"help": help, **metadata})


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
    threads: int = option(1, "CPU threads for torch while training and scoring (0 = torch's default; small GRUs rarely gain from more, and a busy second core can make 2 threads many times slower than 1)")
    dtype: str = option("float32", "the recurrent layer's compute dtype: float32, or bfloat16 (mixed precision: float32 parameters and optimiser)")
    cell: str = option("gru", f"recurrent cell: {', '.join(cells.CELLS)} (gru = torch.nn.GRU's, lngru = layer-normalised GRU, mingru = minGRU, gates from the input only)")
    zoneout: float = option(0.0, "zoneout probability: in training each hidden unit keeps its previous value with this probability (gru, lngru)")
    recurrent_dropout: float = option(0.0, "dropout on the hidden state where it enters the gates, one mask per sequence (gru, lngru)")
    weight_dropout: float = option(0.0, "DropConnect on the recurrent weights, one mask per batch (gru, lngru)")

    def loop(self) -> LoopConfig:
        return LoopConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LoopConfig)})

    def at_least(self, low, *names: str) -> None:
        """Raise ValueError naming the flag if any of these fields is below ``low``, NaN or infinite."""
        for name in names:
            value = getattr(self, name)
            if not (value >= low and math.isfinite(value)):  # NaN fails every comparison
                what = "a finite number >= " if isinstance(value, float) else ">= "
                raise ValueError(f"--{name.replace('_', '-')} must be {what}{low}, got {value}")

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
        cells.check(self.cell, zoneout=self.zoneout, recurrent_dropout=self.recurrent_dropout, weight_dropout=self.weight_dropout)

    def recurrent_cell(self) -> cells.Cell:
        """The cell --cell, --zoneout, --recurrent-dropout and --weight-dropout name."""
        return cells.Cell(self.cell, zoneout=self.zoneout, recurrent_dropout=self.recurrent_dropout, weight_dropout=self.weight_dropout)


COMPUTE_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}  # --dtype -> the layers' compute_dtype


def with_dtype(model: torch.nn.Module, cfg: TaskConfig) -> torch.nn.Module:
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


class Task:
    """Base class. Subclasses set ``name``, ``summary``, ``Config``, ``datasets``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    datasets: ClassVar[dict[str, str]] = {}  # built-in data set name -> description

    def __init_subclass__(cls, **kwargs):
        """Every task's ``train`` first builds/loads the native kernel (announced on
        stderr, once), so the build is never inside its clock (``train_seconds``)
        nor behind a frozen progress bar."""
        super().__init_subclass__(**kwargs)
        train = cls.__dict__.get("train")
        if train is not None and not getattr(train, "_kernel_first", False):

            @functools.wraps(train)
            def train_after_build(self, *args, **kw):
                backend.prepare()
                return train(self, *args, **kw)

            train_after_build._kernel_first = True  # type: ignore[attr-defined]
            cls.train = train_after_build

    def train(self, cfg: TaskConfig, out: Path, *, resume: bool = False) -> dict:
        raise NotImplementedError

    def evaluate(self, run: Path, data: str | None = None) -> dict:
        raise NotImplementedError(f"task {self.name!r} has no eval")

    def predict(self, run: Path, args: tuple[str, ...], data: str | None = None) -> None:
        raise NotImplementedError(f"task {self.name!r} has no predict; see `grukit tasks`")

    def generate(self, run: Path, prompt: str, length: int, temperature: float) -> str:
        raise NotImplementedError(f"task {self.name!r} has no generate; see `grukit tasks`")


def save_run(out: Path, task: Task, cfg: TaskConfig, state: dict | None = None) -> None:
    write_json(out / "config.json", {"task": task.name, "config": dataclasses.asdict(cfg), "state": state or {}, "grukit_version": __version__})


def load_run(run: Path, task: Task) -> tuple[TaskConfig, dict]:
    """The config and state of a saved run of ``task``."""
    path = Path(run) / "config.json"
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or not isinstance(meta.get("state", {}), dict):
        raise ValueError(f"{path}: not a grukit run config (an object with a 'config' object)")
    if meta.get("task") != task.name:
        raise ValueError(f"{run} holds a {meta.get('task')!r} run, not {task.name!r}")
    values = {}
    for f in dataclasses.fields(task.Config):
        if f.name not in meta["config"]:
            continue  # an older run: the field's default
        value, kind = meta["config"][f.name], type(f.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if f.default is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise ValueError(f"{path}: {f.name} must be {kind.__name__}, got {value!r}")
        values[f.name] = value
    cfg = task.Config(**values)
    cfg.validate()
    return cfg, meta.get("state", {})


def load_weights(run: Path, model: torch.nn.Module) -> torch.nn.Module:
    weights, _ = load_tensors(Path(run) / MODEL_FILE)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise ValueError(f"{Path(run) / MODEL_FILE} does not fit this run's model: {str(e).splitlines()[0]}") from None
    return model.eval()


def run_task_name(run: Path) -> str:
    """The task a run directory belongs to (read from its config.json)."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run directory")
    meta = read_json(run / "config.json")
    name = meta.get("task") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise ValueError(f"{run / 'config.json'}: not a grukit run config (an object with a 'config' object)")
    if not isinstance(name, str):
        raise ValueError(f"{run / 'config.json'} names no task")
    return name

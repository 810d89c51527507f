"""The task template: one train sequence for every task, and the run directory it writes.

A task supplies its parts and the template runs them in order::

    load_data(cfg)                  -> raw data (files, a built-in set, arrays)
    prepare(cfg, raw, holdout=...)  -> (State, data): splits, scaling, encoding
    resolve(cfg, state)             -> cfg with its automatic values filled in
    build(cfg, state)               -> the model (its recurrent cell from the registry)
    objective(cfg, state, data)     -> batches, loss and validation metrics for the loop
    calibrate(model, cfg, state, data) -> state with what the trained model adds (optional)
    score(model, cfg, state, data)  -> Scored: test metrics and the plots to draw
    summarize(metrics)              -> a Table the CLI prints after training

``State`` is the task's frozen dataclass of what it learned from the data
besides the weights (a vocabulary, a scaling): JSON values only. Every write
to the run directory happens here or in the training loop, only on the
runtime's writer (rank 0), never in a task:

    DIR/config.json   {"task": name, "config": {...}, "state": {...}}
    DIR/model.safetensors, checkpoint.safetensors, history.jsonl, loss.png
                      (written by grukit.training.fit)
    DIR/metrics.json  final test metrics, and the task's plots (*.png)

With ``refit`` (a config field of the tasks that implement ``refit_objective``,
e.g. ``grukit train regress --refit``) a second phase follows the training: the
model is trained again from the same initial weights on all the training data
(the fitting and the validation part), each model (ensemble member) for the
number of epochs after which the first phase kept its weights, with the same
random streams, and that model is the run's (model.safetensors) and is scored
on the test part. The first phase's kept weights stay in validated.safetensors;
metrics.json's ``validation`` are theirs (the refitted model has seen the
validation part), and ``refit`` holds the epochs and their test metrics:

    DIR/validated.safetensors  the first phase's best weights on the validation part
    DIR/refit_checkpoint.safetensors, refit_history.jsonl  the refit phase (resumable)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from .. import backend
from ..determinism import deterministic
from ..training import write_json
from ..training.ensemble import Ensemble
from ..training.loop import MODEL_FILE, VALIDATED_FILE, chosen_epochs, fit, refit
from ..training.runtime import SINGLE, Runtime
from .config import TaskConfig, option, torch_threads, with_dtype
from .results import Generated, Table
from .rundir import check_finite_metrics, check_resume, load_run, load_weights, run_task_name, save_run


@dataclass(frozen=True)
class TaskState:
    """Base of a task's state. Fields hold JSON values (lists, not tuples).

    ``after_fit`` names the fields ``calibrate`` sets from the trained model
    (a resumed run recomputes them, so they are not compared on resume)."""

    after_fit: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # as it will read back

    @classmethod
    def from_json(cls: type[S], values: dict, where: str) -> S:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        missing = [
            n
            for n, f in fields.items()
            if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if unknown or missing:
            what = "; ".join(
                p
                for p in (
                    f"unknown {', '.join(unknown)}" if unknown else "",
                    f"missing {', '.join(missing)}" if missing else "",
                )
                if p
            )
            raise ValueError(f"{where}: 'state' does not fit a {cls.__name__} ({what})")
        return cls(**values)


@dataclass
class Scored:
    """What ``score`` returns: the metrics, and the plots the template draws into the run."""

    metrics: dict
    plots: Mapping[str, Callable[[Path], None]] = field(default_factory=dict)  # file name -> draw(path)


C = TypeVar("C", bound=TaskConfig)  # a task's Config
S = TypeVar("S", bound=TaskState)  # a task's State
M = TypeVar("M", bound=nn.Module)  # the model a task's build makes


@dataclass
class Fitted(Generic[C, S, M]):
    """A trained model with everything that made it (the result of :meth:`Task.fit`)."""

    cfg: C
    state: S
    data: Any
    model: M
    history: list[dict]
    seconds: float
    validated: M | None = None  # with refit: the model of the first phase (best on the validation part)
    refit_epochs: list[int] = field(default_factory=list)  # with refit: the epochs each model was refitted for
    refit_history: list[dict] = field(default_factory=list)


class Task(Generic[C, S, M]):
    """Base class. Subclasses set ``name``, ``summary``, ``Config``, ``State``, ``datasets`` and the parts.

    Generic over the task's Config, State and model classes (``class AddingTask(Task[AddingConfig,
    AddingState, Adder])``), so each part takes and returns the task's own types."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""  # one line for `grukit tasks` and the train command's help
    Config: type[C]  # set by each task (a ClassVar cannot name a type variable)
    State: type[S]
    datasets: ClassVar[dict[str, str]] = {}  # built-in data set name -> description
    monitor_label: ClassVar[str] = ""  # how loss.png names the monitored metric

    def __init_subclass__(cls, **kwargs):
        """A task that replaces ``train`` still builds/loads the native kernel first (announced
        on stderr, once), so the build is never inside its clock nor behind a frozen bar."""
        super().__init_subclass__(**kwargs)
        train = cls.__dict__.get("train")
        if train is not None and not getattr(train, "_kernel_first", False):

            @functools.wraps(train)
            def train_after_build(self, *args, **kw):
                backend.prepare()
                return train(self, *args, **kw)

            train_after_build._kernel_first = True
            cls.train = train_after_build

    # ---- the parts a task supplies ---------------------------------------------

    def load_data(self, cfg: C) -> Any:
        raise NotImplementedError

    def prepare(self, cfg: C, raw: Any, *, holdout: bool = True) -> tuple[S, Any]:
        """Split and encode ``raw``; without ``holdout`` no test part is kept (an estimator's fit)."""
        raise NotImplementedError

    def resolve(self, cfg: C, state: S) -> C:
        return cfg

    def build(self, cfg: C, state: S) -> M:
        raise NotImplementedError

    def objective(self, cfg: C, state: S, data: Any):
        raise NotImplementedError

    def calibrate(self, model: M, cfg: C, state: S, data: Any) -> S:
        """The state with what the trained model adds to it (e.g. a prediction interval); by default unchanged."""
        return state

    def score(self, model: M, cfg: C, state: S, data: Any) -> Scored:
        raise NotImplementedError

    def refit_objective(self, cfg: C, state: S, data: Any):
        """The objective of the refit phase (``refit``): ``objective``'s batches over all the training
        data, the fitting and the validation part together (its ``validate`` is not called)."""
        raise NotImplementedError(f"task {self.name!r} has no --refit")

    def summarize(self, metrics: dict) -> Table:
        return Table(("metric", "value"), tuple((k, v) for k, v in metrics.items() if isinstance(v, (int, float))))

    def evaluate_file(self, cfg: C, state: S, model: M, data: str) -> dict:
        raise NotImplementedError(f"task {self.name!r} cannot be scored on another file")

    def predictions(self, cfg: C, state: S, model: M, args: tuple[str, ...], data: str | None) -> Table:
        raise NotImplementedError(f"task {self.name!r} has no predict; see `grukit tasks`")

    def generate(self, run: Path, prompt: str, length: int, temperature: float) -> str | Generated:
        """Text for the CLI to print, or a :class:`Generated` whose files the CLI writes."""
        raise NotImplementedError(f"task {self.name!r} has no generate; see `grukit tasks`")

    def export_example(self, cfg: C, state: S) -> tuple[tuple, list[str], dict]:
        """Example inputs of the model's forward, their names, and which axes vary (for ONNX export)."""
        raise NotImplementedError(f"task {self.name!r} has no export yet")

    def export_model(self, cfg: C, state: S, model: M) -> nn.Module:
        """The module ONNX export writes: the trained model, with any prediction step that the state
        holds outside it (e.g. regress's ``--blend-linear`` ridge) folded in."""
        return model

    # ---- the template -------------------------------------------------------------

    def fit(
        self,
        cfg: C,
        raw: Any = None,
        *,
        out: Path | None = None,
        resume: bool = False,
        runtime: Runtime = SINGLE,
        holdout: bool = True,
    ) -> Fitted[C, S, M]:
        """Prepare the data, build the model and train it (writing the run in ``out``, if given)."""
        cfg.validate()
        backend.prepare()  # the kernel build is never inside the clock
        # torch's global generator is seeded here and per epoch (dropout), then given back as it was:
        # the caller's own random numbers after fit are those it would have drawn without it
        with torch_threads(cfg.threads), deterministic(cfg.deterministic), torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            raw = self.load_data(cfg) if raw is None else raw
            state, data = self.prepare(cfg, raw, holdout=holdout)
            cfg = self.resolve(cfg, state)
            cfg.validate()
            model = self.new_model(cfg, state)
            refitting = bool(getattr(cfg, "refit", False))
            if refitting:  # the initial weights, for the refit phase; its objective (or its error) before any write
                initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
                refit_objective = self.refit_objective(cfg, state, data)
            if out is not None and resume:
                check_resume(out, self, cfg, state, model)  # before anything is written
            if out is not None and runtime.writer:
                save_run(out, self, cfg, state, runtime)
            start = time.perf_counter()
            title = f"{self.name}: {out}" if out is not None else self.name
            objective = self.objective(cfg, state, data)
            history = fit(
                model,
                objective,
                cfg.loop(),
                out,
                resume=resume,
                runtime=runtime,
                title=title,
                monitor_label=self.monitor_label,
                model_file=VALIDATED_FILE if refitting else MODEL_FILE,
            )
            # calibrate (e.g. an interval from the validation errors) on the model that has not seen the validation part
            calibrated = self.calibrate(model, cfg, state, data)
            if calibrated != state and out is not None and runtime.writer:
                save_run(out, self, cfg, calibrated, runtime)
            if not refitting:
                return Fitted(cfg, calibrated, data, model, history, time.perf_counter() - start)
            members = len(model.members) if isinstance(model, Ensemble) else 0
            epochs = chosen_epochs(history, objective.monitor, objective.mode, members)
            final = self.new_model(cfg, state)
            final.load_state_dict(initial)
            refit_history = refit(final, refit_objective, cfg.loop(), epochs, out, resume=resume, runtime=runtime)
            seconds = time.perf_counter() - start
            return Fitted(cfg, calibrated, data, final, history, seconds, model, epochs, refit_history)

    def train(self, cfg: C, out: Path, *, resume: bool = False, runtime: Runtime = SINGLE) -> dict:
        """The CLI's `train`: fit, score on the test part, write metrics.json and the plots; returns the metrics."""
        fitted = self.fit(cfg, out=Path(out), resume=resume, runtime=runtime)
        with torch_threads(fitted.cfg.threads), deterministic(fitted.cfg.deterministic):
            start = time.perf_counter()
            scored = self.score(fitted.model, fitted.cfg, fitted.state, fitted.data)
            if fitted.validated is not None:
                before = self.score(fitted.validated, fitted.cfg, fitted.state, fitted.data).metrics
        metrics = {**scored.metrics, "train_seconds": round(fitted.seconds + time.perf_counter() - start, 2)}
        if fitted.validated is not None:
            metrics = with_refit(metrics, before, fitted.refit_epochs)
        if runtime.writer:
            for name, draw in scored.plots.items():
                draw(Path(out) / name)
            write_json(Path(out) / "metrics.json", metrics)
        return metrics

    train._kernel_first = True  # type: ignore[attr-defined]

    def new_model(self, cfg: C, state: S) -> M:
        """``build``'s model with the recurrent layers computing in ``cfg.dtype``."""
        return with_dtype(self.build(cfg, state), cfg)

    def load(self, run: Path) -> tuple[C, S, M]:
        """The config, state and trained model of a saved run (model in eval mode)."""
        cfg, state = load_run(run, self)
        return cfg, state, load_weights(run, self.new_model(cfg, state))

    def evaluate(self, run: Path, data: str | None = None) -> dict:
        """The run's test metrics (recomputed), or its metrics on the file ``data``."""
        cfg, state, model = self.load(run)
        with torch_threads(cfg.threads):
            if data is None:
                _, prepared = self.prepare(cfg, self.load_data(cfg))
                metrics = self.score(model, cfg, state, prepared).metrics
                if getattr(cfg, "refit", False) and (Path(run) / VALIDATED_FILE).is_file():
                    validated = load_weights(run, self.new_model(cfg, state), VALIDATED_FILE)
                    before = self.score(validated, cfg, state, prepared).metrics
                    metrics = with_refit(metrics, before, None)
            else:
                metrics = self.evaluate_file(cfg, state, model, data)
        check_finite_metrics(metrics, run)
        return metrics

    def predict(self, run: Path, args: tuple[str, ...] = (), data: str | None = None) -> Table:
        """Predictions of a saved run, as a table the caller prints or writes."""
        cfg, state, model = self.load(run)
        with torch_threads(cfg.threads):
            return self.predictions(cfg, state, model, tuple(args), data)


def with_refit(metrics: dict, before: dict, epochs: list[int] | None) -> dict:
    """A refitted model's metrics with the first phase's: its ``validation`` (the refitted model has
    seen the validation part, so its own would mislead), and under ``refit`` the epochs and the first
    phase's test numbers (``without_refit``)."""
    out = dict(metrics)
    if "validation" in before:
        out["validation"] = before["validation"]
    numbers = {k: v for k, v in before.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out["refit"] = {**({"epochs": epochs} if epochs is not None else {}), "without_refit": numbers}
    return out


__all__ = [
    "Fitted",
    "Generated",
    "Scored",
    "Table",
    "Task",
    "TaskConfig",
    "TaskState",
    "load_run",
    "load_weights",
    "option",
    "run_task_name",
    "save_run",
]

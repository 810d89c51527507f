"""A run directory on disk: config.json (task, config, state), the weights, and their checks.

Everything read back is validated like a flag: a config.json of the wrong
shape, a state that does not fit the task, weights that are missing, extra,
misshapen or not finite are each one clear error naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import __version__
from ..training import load_tensors, read_json, write_json
from ..training.loop import MODEL_FILE, STATE_FILE, check_state_fits

if TYPE_CHECKING:
    from .base import C, M, S, Task, TaskConfig, TaskState


def save_run(out: Path, task: Task, cfg: TaskConfig, state: TaskState, runtime: Any = None) -> None:
    """config.json: the task, its config and state, and how it was trained (processes, backend)."""
    how = {"world_size": getattr(runtime, "world_size", 1), "backend": getattr(runtime, "backend", "") or "none"}
    write_json(
        Path(out) / "config.json",
        {
            "task": task.name,
            "config": dataclasses.asdict(cfg),
            "state": state.to_json(),
            "runtime": how,
            "grukit_version": __version__,
        },
    )


def load_run(run: Path, task: Task[C, S, Any]) -> tuple[C, S]:
    """The config and state of a saved run of ``task``, validated like flags."""
    path = Path(run) / "config.json"
    meta = read_json(path)
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("config"), dict)
        or not isinstance(meta.get("state", {}), dict)
    ):
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
    return cfg, task.State.from_json(meta.get("state", {}), str(path))


def check_resume(run: Path, task: Task, cfg: TaskConfig, state: TaskState, model: nn.Module) -> None:
    """Raise ValueError, changing nothing, unless the run can continue with this data and model."""
    saved_cfg, saved = load_run(run, task)
    if getattr(saved_cfg, "refit", False) != getattr(cfg, "refit", False):
        was = "with" if getattr(saved_cfg, "refit", False) else "without"
        raise ValueError(
            f"cannot resume {run}: it was trained {was} --refit, which cannot change on resume; nothing was changed"
        )
    trained_w: float = getattr(saved_cfg, "blend_linear", 0.0)
    asked_w: float = getattr(cfg, "blend_linear", 0.0)
    if trained_w != asked_w:
        raise ValueError(
            f"cannot resume {run}: it was trained with --blend-linear {trained_w:g}, which cannot change on resume "
            f"(got {asked_w:g}); nothing was changed"
        )
    new = state.to_json()
    for key, value in saved.to_json().items():
        if key not in type(state).after_fit and new.get(key) != value:
            raise ValueError(
                f"cannot resume {run}: the data now gives a different {key!r} than the run was trained with "
                "(same --data and data options needed); nothing was changed"
            )
    tensors, meta = load_tensors(Path(run) / STATE_FILE)
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    fit_state_dict(model, weights, Path(run) / STATE_FILE, "cannot resume: ")
    try:
        progress = json.loads(meta["state"])
    except (KeyError, ValueError):
        return  # no readable training state: the loop's load says so
    if isinstance(progress, dict):
        check_state_fits(progress, model, Path(run) / STATE_FILE)


def fit_state_dict(model: nn.Module, weights: dict[str, torch.Tensor], path: Path, prefix: str = "") -> None:
    """Load ``weights`` into ``model``, or raise ValueError naming the missing, extra or misshapen tensors."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    shapes = [
        f"{k} {tuple(weights[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    if missing or extra or shapes:
        parts = [
            f"missing {', '.join(missing[:5])}" if missing else "",
            f"unexpected {', '.join(extra[:5])}" if extra else "",
            f"wrong shape {', '.join(shapes[:3])}" if shapes else "",
        ]
        raise ValueError(f"{prefix}{path} does not fit this run's model: {'; '.join(p for p in parts if p)}")
    model.load_state_dict(weights)


def load_weights(run: Path, model: M, name: str = MODEL_FILE) -> M:
    """The run's kept weights (or the file ``name`` of the run) in ``model``; refuses weights that are not finite."""
    path = Path(run) / name
    weights, _ = load_tensors(path)
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(
            f"{path}: the weights {', '.join(bad[:3])} hold NaN or inf (the run diverged); "
            "train again with a lower --lr or with --grad-clip"
        )
    fit_state_dict(model, weights, path)
    return model.eval()


def check_finite_metrics(metrics: Any, run: Path, where: str = "") -> None:
    """Raise FloatingPointError if any number in the metrics is NaN or infinite (never report it as success)."""
    if isinstance(metrics, dict):
        for k, v in metrics.items():
            check_finite_metrics(v, run, f"{where}.{k}" if where else str(k))
    elif isinstance(metrics, (list, tuple)):
        for i, v in enumerate(metrics):
            check_finite_metrics(v, run, f"{where}[{i}]")
    elif isinstance(metrics, float) and not math.isfinite(metrics):
        raise FloatingPointError(f"{run}: the metric {where} is {metrics}: the model's outputs are not finite")


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

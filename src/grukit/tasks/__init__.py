"""Tasks from the source material, each reachable from ``grukit train TASK``."""

from __future__ import annotations

from .adding import AddingTask
from .autoencoder import AutoencoderTask
from .base import Task, TaskConfig, TaskState, option
from .classify import ClassifyTask
from .forecast import ForecastTask
from .lm import LMTask
from .music import MusicTask
from .regress import RegressTask
from .speech import SpeechTask

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        AddingTask(),
        ClassifyTask(),
        RegressTask(),
        ForecastTask(),
        LMTask(),
        AutoencoderTask(),
        MusicTask(),
        SpeechTask(),
    )
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Task", "TaskConfig", "TaskState", "get_task", "option"]

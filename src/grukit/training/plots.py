"""Pictures a person can look at: training curves (PNGs, drawn without pyplot; see grukit.figures)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..figures import new_figure, save_figure

# What a history key means, for axis labels and legends; a task may add its own
# through ``labels`` (an objective's ``labels`` attribute, in fit).
METRIC_LABELS = {
    "train_loss": "training loss",
    "val_loss": "validation loss",
    "val_accuracy": "validation accuracy",
    "val_score": "validation score (accuracy - 0.01 x loss)",
    "val_bpc": "validation bits per character",
    "val_mae": "validation MAE",
    "val_mae_scaled": "validation MAE (scaled targets)",
}
MARKERS_UP_TO = 20  # epochs; longer runs are drawn as plain lines, markers would blur into one


def metric_label(key: str, labels: dict[str, str] | None = None) -> str:
    """The human name of a history key: ``labels``, then METRIC_LABELS, then the key spelled out."""
    if labels and key in labels:
        return labels[key]
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    return ("validation " + key[4:] if key.startswith("val_") else key).replace("_", " ")


def run_title(run_dir: str | Path) -> str:
    """``"TASK: DIR"`` when DIR holds a task's config.json (tasks write it before training), else ``DIR``."""
    try:
        task = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8")).get("task")
    except (OSError, ValueError, AttributeError):
        task = None
    return f"{task}: {run_dir}" if isinstance(task, str) else str(run_dir)


def history_figure(
    history: list[dict],
    monitor: str,
    *,
    title: str | None = None,
    labels: dict[str, str] | None = None,
    kept: int | Sequence[int] | None = None,
) -> Figure:
    """The figure :func:`plot_history` saves (returned open, so tests can inspect it).

    Losses on the left axis, the monitored metric (when it is not the validation
    loss) on the right; ``kept`` is the history's ``epoch`` whose weights were kept
    (an ensemble's: one per member), each marked with a vertical line. The x axis
    counts epochs from 1, like the progress bar.
    """
    epochs = [r["epoch"] + 1 for r in history]
    style: dict[str, Any] = {"marker": "o" if len(history) <= MARKERS_UP_TO else None, "markersize": 4}
    fig, ax = new_figure((6.4, 4.0), layout="constrained")
    ax.plot(
        epochs,
        [r["train_loss"] for r in history],
        "-",
        color="tab:blue",
        label=metric_label("train_loss", labels),
        **style,
    )
    if all("val_loss" in r for r in history):
        ax.plot(
            epochs,
            [r["val_loss"] for r in history],
            "-",
            color="tab:orange",
            label=metric_label("val_loss", labels),
            **style,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(labels.get("loss", "loss") if labels else "loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    if monitor != "val_loss" and all(monitor in r for r in history):
        ax2 = ax.twinx()
        ax2.plot(
            epochs, [r[monitor] for r in history], "--", color="tab:green", label=metric_label(monitor, labels), **style
        )
        ax2.set_ylabel(metric_label(monitor, labels))
        more = ax2.get_legend_handles_labels()
        handles, names = handles + more[0], names + more[1]
    marks = sorted({e + 1 for e in ([kept] if isinstance(kept, int) else kept or []) if e >= 0})
    if marks:
        for x in marks:
            ax.axvline(x, color="0.35", linestyle=":", linewidth=1.2, gid="kept")
        x = marks[-1]
        right = x > (epochs[0] + epochs[-1]) / 2  # text on the side with room
        ax.annotate(
            f"kept: epoch{'s' if len(marks) > 1 else ''} {', '.join(map(str, marks))}",
            xy=(x, 1),
            xycoords=("data", "axes fraction"),
            xytext=(-4 if right else 4, -4),
            textcoords="offset points",
            ha="right" if right else "left",
            va="top",
            fontsize=8,
            color="0.25",
            gid="kept-label",
        )
    ax.set_title(title or "training history")
    fig.legend(
        handles, names, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=8
    )  # below the axes: no curve crosses it
    return fig


def plot_history(
    history: list[dict],
    path: str | Path,
    monitor: str,
    *,
    title: str | None = None,
    labels: dict[str, str] | None = None,
    kept: int | Sequence[int] | None = None,
) -> None:
    """Draw :func:`history_figure` to ``path`` (a PNG), atomically."""
    save_figure(history_figure(history, monitor, title=title, labels=labels, kept=kept), path)

"""Pictures a person can look at: training curves (written with matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: str | Path) -> None:
    """Save to a temporary name then rename, so a reader never sees half a PNG."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def plot_history(history: list[dict], path: str | Path, monitor: str, *, title: str = "", monitor_label: str = "") -> None:
    """Train loss (and validation loss) per epoch; the monitored metric on the right."""
    epochs = [r["epoch"] + 1 for r in history]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
    if all("val_loss" in r for r in history):
        ax.plot(epochs, [r["val_loss"] for r in history], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    lines, labels = ax.get_legend_handles_labels()
    if monitor != "val_loss" and all(monitor in r for r in history):
        ax2 = ax.twinx()
        ax2.plot(epochs, [r[monitor] for r in history], "^--", color="tab:green", label=monitor)
        ax2.set_ylabel(monitor_label or monitor)
        more = ax2.get_legend_handles_labels()
        lines, labels = lines + more[0], labels + more[1]
    ax.legend(lines, labels, loc="best")
    ax.set_title(title or "training history")
    save_figure(fig, path)

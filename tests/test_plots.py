"""loss.png: the run named, axes named by their metric, the kept epoch marked, legend clear of the curves."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch

from grukit.training import LoopConfig, fit, loop
from grukit.training.plots import MARKERS_UP_TO, history_figure, metric_label, plot_history, run_title

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(n, monitor="val_score"):
    return [
        {"epoch": i, "train_loss": 1 / (i + 1), "val_loss": 1.1 / (i + 1), monitor: i / n, "seconds": 0.1}
        for i in range(n)
    ]


def kept_lines(fig):
    return [line for ax in fig.axes for line in ax.lines if line.get_gid() == "kept"]


def markers(fig):
    return {line.get_marker() for ax in fig.axes for line in ax.lines if line.get_gid() != "kept"}


@pytest.mark.parametrize("n,kept", [(6, 3), (MARKERS_UP_TO, 0), (MARKERS_UP_TO + 1, 20), (120, 77)])
def test_figure_names_run_axes_and_kept_epoch(n, kept):
    fig = history_figure(history(n), "val_score", title="classify: runs/gp", kept=kept)
    ax, ax2 = fig.axes
    assert ax.get_title() == "classify: runs/gp"
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"
    assert ax2.get_ylabel() == "validation score (accuracy - 0.01 x loss)"
    (line,) = kept_lines(fig)
    assert list(line.get_xdata()) == [kept + 1, kept + 1]  # the x axis counts epochs from 1
    assert [t.get_text() for t in ax.texts] == [f"kept: epoch {kept + 1}"]
    assert markers(fig) == ({"o"} if n <= MARKERS_UP_TO else {"None"})
    fig.canvas.draw()  # the legend lies wholly below the axes, so no curve crosses it
    (legend,) = fig.legends
    box, plot = legend.get_window_extent(), ax.get_window_extent()
    assert box.y1 < plot.y0
    assert [t.get_text() for t in legend.get_texts()] == [
        "training loss",
        "validation loss",
        "validation score (accuracy - 0.01 x loss)",
    ]


def test_an_ensembles_kept_epochs_are_each_marked():
    fig = history_figure(history(8), "val_score", kept=[5, 2, 5, -1])  # a member never improved: no mark
    assert sorted(line.get_xdata()[0] for line in kept_lines(fig)) == [3, 6]
    assert [t.get_text() for t in fig.axes[0].texts] == ["kept: epochs 3, 6"]


def test_no_kept_epoch_and_loss_monitor_draw_one_axis():
    fig = history_figure(history(4, "val_loss"), "val_loss")
    assert len(fig.axes) == 1 and not kept_lines(fig) and fig.axes[0].get_title() == "training history"


def test_labels_override_and_unknown_keys_are_spelled_out():
    assert metric_label("val_bpc") == "validation bits per character"
    assert metric_label("val_top5_error") == "validation top5 error"
    assert metric_label("val_bpc", {"val_bpc": "bpc (held-out)"}) == "bpc (held-out)"
    fig = history_figure(history(3, "val_f1"), "val_f1", labels={"val_f1": "validation macro F1"})
    assert fig.axes[1].get_ylabel() == "validation macro F1"


@pytest.mark.parametrize("n", [5, 60])
def test_plot_history_writes_a_png(tmp_path, n):
    plot_history(history(n), tmp_path / "loss.png", "val_score", title="t", kept=n // 2)
    data = (tmp_path / "loss.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_run_title_reads_the_task_from_config_json(tmp_path):
    assert run_title(tmp_path) == str(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"task": "adding", "config": {}}))
    assert run_title(tmp_path) == f"adding: {tmp_path}"
    (tmp_path / "config.json").write_text("[1, 2")
    assert run_title(tmp_path) == str(tmp_path)


class Line:
    """y = 2x + 1; the monitor is the validation loss, so the kept epoch is its minimum."""

    monitor, mode = "val_loss", "min"
    labels: ClassVar[dict[str, str]] = {"val_loss": "validation MSE"}

    def batches(self, epoch, gen):
        x = torch.randn(32, 1, generator=gen)
        return [(x, 2 * x + 1)]

    def loss(self, model, batch):
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1])

    def validate(self, model):
        x = torch.linspace(-1, 1, 16).unsqueeze(1)
        return {"val_loss": self.loss(model, (x, 2 * x + 1)).item()}


def test_fit_marks_the_epoch_whose_weights_it_kept(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(loop, "plot_history", lambda h, path, monitor, **kw: seen.update(kw, history=h))
    hist = fit(
        torch.nn.Linear(1, 1), Line(), LoopConfig(epochs=6, lr=0.3, progress=False), tmp_path, title="line: here"
    )
    best = min(hist, key=lambda r: r["val_loss"])["epoch"]
    assert seen["kept"] == best and seen["title"] == "line: here" and seen["labels"] == Line.labels


def test_grukit_leaves_the_users_matplotlib_alone(tmp_path):
    """Importing grukit and its estimators and writing plots must not choose a backend for the
    process (a notebook's inline one would stop showing figures) nor import pyplot (whose figure
    list would keep every plot alive): figures are drawn on their own (grukit.figures)."""
    import os
    import subprocess
    import sys

    script = f"""
import sys, numpy as np, matplotlib
import grukit
from grukit import GRUClassifier
from grukit.training.plots import plot_history
from grukit.evaluation.classification import plot_confusion
from grukit.evaluation.clustering import plot_embedding
out = {str(tmp_path)!r}
plot_history({history(4)!r}, out + "/loss.png", "val_score")
plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], out + "/cm.png")
plot_embedding(np.random.default_rng(0).normal(size=(8, 2)), np.arange(8) % 2, list("abababab"), out + "/emb.png")
print("pyplot" if "matplotlib.pyplot" in sys.modules else "no pyplot", matplotlib.rcParams["backend"])
"""
    env = {**os.environ, "MPLBACKEND": "svg"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["no", "pyplot", "svg"]
    for name in ("loss.png", "cm.png", "emb.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)


def test_a_failed_save_keeps_the_old_png_and_leaves_no_temporary_file(tmp_path):
    """save_figure writes a temporary file and renames it: a save that fails half way (here after
    writing part of the file, as a full disk would) leaves the PNG already at the path as it was,
    and nothing else in its folder."""
    from grukit.figures import new_figure, save_figure

    path = tmp_path / "plot.png"
    fig, ax = new_figure((3, 2))
    ax.plot([0, 1], [1, 0])
    save_figure(fig, path)
    before = path.read_bytes()
    assert before.startswith(PNG_SIGNATURE)

    fig, ax = new_figure((3, 2))
    ax.plot([0, 1], [0, 1])

    def half_written(fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(PNG_SIGNATURE)
        raise OSError("No space left on device")

    fig.savefig = half_written  # type: ignore[method-assign]
    with pytest.raises(OSError, match="No space left"):
        save_figure(fig, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]

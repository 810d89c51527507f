"""Per-epoch logs for other tools (``--log csv|tensorboard``), beside history.jsonl.

    DIR/log.csv           csv: one row per epoch, the columns of history.jsonl
                          (epoch, train_loss, val_..., seconds), as Keras' and
                          Lightning's CSVLogger write them
    DIR/tensorboard/      tensorboard: event files, one scalar per column,
                          step = the epoch column

A logger is opened by :func:`open_logger` when fit starts, gets every finished
epoch's row through ``log(row)``, and is closed when fit ends or is interrupted.
On resume from epoch k, rows at or after k are dropped first (csv rewrites its
file from the history of epochs < k; tensorboard purges them through
SummaryWriter's ``purge_step``), so the log always agrees with history.jsonl.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .checkpoint import atomic_write_bytes

LOGS = ("none", "csv", "tensorboard")
CSV_FILE = "log.csv"
TENSORBOARD_DIR = "tensorboard"
INSTALL_HINT = "pip install 'grukit[log]'"


class Logger(Protocol):
    def log(self, row: dict) -> None: ...

    def close(self) -> None: ...


def check(kind: str) -> None:
    """Raise ValueError if ``kind`` is unknown or its package is missing (before any file is written)."""
    if kind not in LOGS:
        raise ValueError(f"--log must be one of {', '.join(LOGS)}, got {kind!r}")
    if kind == "tensorboard":
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        except ImportError:
            raise ValueError(f"--log tensorboard needs the tensorboard package: {INSTALL_HINT}") from None


def open_logger(kind: str, run_dir: str | Path, before: Sequence[dict] = ()) -> Logger:
    """The logger ``kind`` names, writing into ``run_dir``; ``before``: the history of the epochs
    already run (on resume), which the log is made to hold and nothing after."""
    check(kind)
    if kind == "csv":
        return CsvLogger(Path(run_dir) / CSV_FILE, list(before))
    if kind == "tensorboard":
        return TensorBoardLogger(Path(run_dir) / TENSORBOARD_DIR, list(before))
    return NoLogger()


class NoLogger:
    def log(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _columns(row: dict) -> list[str]:
    """epoch and train_loss first, seconds last, the validation metrics between in the row's order."""
    middle = [k for k in row if k not in ("epoch", "train_loss", "seconds")]
    return [k for k in ("epoch", "train_loss") if k in row] + middle + (["seconds"] if "seconds" in row else [])


class CsvLogger:
    """DIR/log.csv, rewritten from the earlier epochs' rows, then one row written and flushed per epoch."""

    def __init__(self, path: Path, before: list[dict]) -> None:
        self.columns = _columns(before[0]) if before else None
        text = io.StringIO()
        if self.columns:
            writer = csv.DictWriter(text, self.columns, extrasaction="ignore", restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(before)
        atomic_write_bytes(path, text.getvalue().encode())
        self.file = path.open("a", newline="", encoding="utf-8")
        self.writer = (
            csv.DictWriter(self.file, self.columns, extrasaction="ignore", restval="", lineterminator="\n")
            if self.columns
            else None
        )

    def log(self, row: dict) -> None:
        if self.writer is None:  # the first row names the columns
            self.columns = _columns(row)
            self.writer = csv.DictWriter(
                self.file, self.columns, extrasaction="ignore", restval="", lineterminator="\n"
            )
            self.writer.writeheader()
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardLogger:
    """Event files under DIR/tensorboard/, through torch.utils.tensorboard.SummaryWriter."""

    def __init__(self, log_dir: Path, before: list[dict]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        earlier = log_dir.is_dir() and any(log_dir.glob("events.out.tfevents.*"))
        start = before[-1]["epoch"] + 1 if before else 0
        # purge_step: TensorBoard drops the earlier files' events at or after the resumed epoch
        self.writer = SummaryWriter(str(log_dir), purge_step=start if earlier and start > 0 else None)
        if not earlier:  # --log added on resume: the earlier epochs too
            for row in before:
                self.log(row)

    def log(self, row: dict) -> None:
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()  # visible to a running TensorBoard at once

    def close(self) -> None:
        self.writer.close()

"""The training loop every task uses: model-agnostic, seeded, resumable.

A task hands :func:`fit` a :class:`Objective` (its batches, its loss and its
validation metrics); the loop owns the optimiser, gradient clipping, the
progress bar, early stopping and the run directory:

    DIR/model.safetensors       best weights so far (by ``objective.monitor``)
    DIR/checkpoint.safetensors  last finished epoch: weights + optimiser, to resume
    DIR/history.jsonl           one JSON line per epoch
    DIR/loss.png                the curves of history.jsonl
    DIR/log.csv, DIR/tensorboard/  with ``log`` set (see logs.py)

Without a run directory (an estimator's fit) nothing is written and the best
weights are kept in memory. With a :class:`Runtime` of several processes each
takes its share of every epoch's batches and only rank 0 writes.

Every epoch draws its randomness from a generator seeded with (seed, epoch),
so a run resumed after epoch k continues exactly as the uninterrupted run.

An :class:`~grukit.training.ensemble.Ensemble` trains as its members would
alone, one after the other in every epoch: member k draws its batches and
dropout from its own stream (``member_generator``; member 0's is the single
model's), clips its own gradients and stops on its own ``patience``; each is
validated on its own, and the kept ensemble (model.safetensors) holds every
member's weights from its own best epoch. The history row is the ensemble's
(its validation metrics at that epoch's weights, the members' mean training
loss) plus ``memberK_train_loss`` and ``memberK_<monitor>`` for every member
that trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint, logs
from .ensemble import Ensemble
from .plots import plot_history, run_title
from .runtime import SINGLE, Runtime

MODEL_FILE = "model.safetensors"
STATE_FILE = "checkpoint.safetensors"
HISTORY_FILE = "history.jsonl"
VALIDATED_FILE = "validated.safetensors"  # with refit: the best weights on the validation part (the fit phase's)
REFIT_STATE_FILE = "refit_checkpoint.safetensors"  # the refit phase's last finished epoch, to resume
REFIT_HISTORY_FILE = "refit_history.jsonl"


@dataclass(frozen=True)
class LoopConfig:
    epochs: int = 10  # passes over the training batches
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    patience: int = 0  # stop after this many epochs without improvement; 0 = never
    seed: int = 0  # seeds initialisation and every epoch's shuffling
    progress: bool = True  # show a progress bar
    log: str = "none"  # per-epoch log besides history.jsonl: none, csv or tensorboard (logs.py)


class Objective(Protocol):
    monitor: str  # key of validate()'s dict used to keep the best weights
    mode: str  # "min" or "max"

    def batches(self, epoch: int, generator: torch.Generator) -> Iterable[Any]: ...

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor: ...

    def validate(self, model: torch.nn.Module) -> dict[str, float]: ...


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def member_generator(seed: int, epoch: int, member: int) -> torch.Generator:
    """The stream of an ensemble member's epoch: member 0 draws the single model's; member k > 0 one
    seeded with 32 bits that NumPy's SeedSequence hashes from (seed, epoch, k). (torch's CPU generator
    keeps only the low 32 bits of its seed, so an offset above them would repeat member 0's stream.)"""
    if member == 0:
        return epoch_generator(seed, epoch)
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch, member]).generate_state(1)[0]))


def check_state_fits(state: dict[str, Any], model: torch.nn.Module, path: Path) -> None:
    """Raise ValueError unless a training state (the checkpoint's JSON part) can continue ``model``: an
    ensemble's holds one best epoch per member. (Before the members were independent, an ensemble shared
    its batches and its best epoch, and its checkpoint cannot continue that way.)"""
    if isinstance(model, Ensemble):
        best = state.get("best_epoch")
        if not (isinstance(best, list) and len(best) == len(model.members)):
            raise ValueError(
                f"{path}: the training state of an ensemble whose members shared their batches and best epoch "
                f"(an earlier grukit), not of {len(model.members)} independent members; it cannot be resumed: "
                "train the run again"
            )


def _read_history(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] < upto]


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best if mode == "min" else value > best


def fit(
    model: torch.nn.Module,
    objective: Objective,
    cfg: LoopConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    runtime: Runtime = SINGLE,
    title: str = "",
    monitor_label: str = "",
    model_file: str = MODEL_FILE,
) -> list[dict]:
    """Train ``model`` in place; returns the history, one dict per epoch.

    At the end the model holds the best weights (by the objective's monitor; an
    :class:`Ensemble`, each member's own best).
    Raises FloatingPointError, keeping the last good files, if the loss or the
    weights stop being finite. ``title`` heads loss.png (default: "TASK: DIR"
    from DIR/config.json); ``monitor_label`` names the monitored metric there,
    and an objective may name its other metrics with a ``labels`` dict.
    ``model_file`` names the file in ``run_dir`` that holds the best weights
    (a run that is refitted keeps them in VALIDATED_FILE; see :func:`refit`).
    """
    logs.check(cfg.log)  # a missing package is one line before anything is written
    if cfg.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {cfg.epochs}")
    if objective.mode not in ("min", "max"):
        raise ValueError(f"objective.mode must be 'min' or 'max', got {objective.mode!r}")
    run_dir = Path(run_dir) if run_dir is not None else None
    out = run_dir if runtime.writer else None  # the run directory this process writes, if any
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # An ensemble's members share this optimiser: AdamW updates each parameter from its own state and
    # skips those without a gradient, so a member's steps are those its own optimiser would take.
    members = list(model.members) if isinstance(model, Ensemble) else []
    n = len(members)
    state: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": -1, "stale": 0}
    if members:
        state = {"epoch": 0, "best": [None] * n, "best_epoch": [-1] * n, "stale": [0] * n}
    history: list[dict] = []
    if resume:
        if run_dir is None:
            raise ValueError("resume needs the run directory to continue")
        state = checkpoint.load_training_state(run_dir / STATE_FILE, model, optimizer)
        check_state_fits(state, model, run_dir / STATE_FILE)
        history = _read_history(run_dir / HISTORY_FILE, state["epoch"])
    best_weights = None  # in memory, where this process writes no run directory
    kept: dict[str, torch.Tensor] = {}  # an ensemble's: each member's state from its best epoch so far
    if members:
        kept = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if resume and run_dir is not None and (run_dir / model_file).is_file():
            kept, _ = checkpoint.load_tensors(run_dir / model_file)
    trained = [runtime.wrap(m) for m in members] if members else runtime.wrap(model)  # DistributedDataParallel
    logger: logs.Logger = logs.NoLogger()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.remove_stale_temporaries(out)  # left by a run killed during a write
        _write_history(out, history)
        logger = logs.open_logger(cfg.log, out, history)
    try:
        for epoch in range(state["epoch"], cfg.epochs):
            if members:
                training = [k for k in range(n) if not (cfg.patience and state["stale"][k] >= cfg.patience)]
                if not training:
                    break
                row, scores = _run_members(model, members, objective, optimizer, cfg, epoch, runtime, trained, training)
                history.append(row)
                for k in training:
                    if _better(scores[k], state["best"][k], objective.mode):
                        state["best"][k], state["best_epoch"][k], state["stale"][k] = scores[k], epoch, 0
                        kept.update(
                            {f"members.{k}.{name}": v.detach().clone() for name, v in members[k].state_dict().items()}
                        )
                    else:
                        state["stale"][k] += 1
                if out is not None and epoch in state["best_epoch"]:  # a member improved
                    checkpoint.save_tensors(out / model_file, kept)
            else:
                if cfg.patience and state["stale"] >= cfg.patience:
                    break
                row = _run_epoch(model, objective, optimizer, cfg, epoch, runtime, trained)
                history.append(row)
                if _better(row[objective.monitor], state["best"], objective.mode):
                    state.update(best=row[objective.monitor], best_epoch=epoch, stale=0)
                    if out is not None:
                        checkpoint.save_tensors(out / model_file, model.state_dict())
                    else:
                        best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    state["stale"] += 1
            state["epoch"] = epoch + 1
            if out is not None:  # the history first: a kill between the two leaves a row the resumed run recomputes
                _write_history(out, history)
                checkpoint.save_training_state(out / STATE_FILE, model, optimizer, state)
            logger.log(row)
    finally:  # the loss plot once, at the end or on interrupt (every epoch cost GunPoint 3-4x its training time)
        logger.close()
        if out is not None and history:
            labels = {
                **(getattr(objective, "labels", None) or {}),
                **({objective.monitor: monitor_label} if monitor_label else {}),
            }
            plot_history(
                history,
                out / "loss.png",
                objective.monitor,
                title=title or run_title(out),
                labels=labels or None,
                kept=state.get("best_epoch"),
            )
    if out is not None:
        best, _ = checkpoint.load_tensors(out / model_file)
        model.load_state_dict(best)
    elif members:
        model.load_state_dict(kept)
    elif best_weights is not None:
        model.load_state_dict(best_weights)
    return history


def chosen_epochs(history: list[dict], monitor: str, mode: str, members: int = 0) -> list[int]:
    """How many epochs :func:`fit` trained until the weights it kept: one count for a single model
    (``members`` 0), one per member of an ensemble of ``members``; read from its history as the
    loop chose (the first epoch of the best monitored value). Raises ValueError if no epoch was
    kept (the monitored metric was never a number)."""
    columns = [f"member{k}_{monitor}" for k in range(members)] if members else [monitor]
    counts = []
    for column in columns:
        best, epoch = None, -1
        for row in history:
            if column in row and _better(float(row[column]), best, mode):
                best, epoch = float(row[column]), int(row["epoch"])
        if epoch < 0:
            raise ValueError(
                f"no epoch was kept on the validation part ({column} was never a number): nothing to refit"
            )
        counts.append(epoch + 1)
    return counts


def refit(
    model: torch.nn.Module,
    objective: Objective,
    cfg: LoopConfig,
    epochs: list[int],
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    runtime: Runtime = SINGLE,
) -> list[dict]:
    """The refit phase: train ``model`` (given at its initial weights) for ``epochs`` passes over
    ``objective.batches``, one count for a single model or one per member of an :class:`Ensemble`,
    with no validation, and keep the weights of the last pass; returns the history (one row per epoch).

    After :func:`fit` chose the epochs on the validation part (:func:`chosen_epochs`), this trains
    the same model from the same initialisation on all the training data (the objective's batches
    then cover the fitting and the validation part): every epoch and member draws the stream it drew
    in ``fit`` (``member_generator``), with a new optimiser of the same settings. In ``run_dir`` it
    writes REFIT_HISTORY_FILE, REFIT_STATE_FILE after every epoch and, at the end, MODEL_FILE: the
    refitted weights. With ``resume`` it continues REFIT_STATE_FILE exactly, as ``fit`` does, when that
    refit had the same epoch counts and optimiser settings; otherwise (the first phase kept other
    epochs after it was resumed with other options) it starts again.
    """
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    targets = [int(e) for e in epochs]
    if len(targets) != len(members) or any(e < 1 for e in targets):
        raise ValueError(f"refit needs one epoch count >= 1 per model ({len(members)}), got {epochs}")
    run_dir = Path(run_dir) if run_dir is not None else None
    out = run_dir if runtime.writer else None
    shown = dataclasses.replace(cfg, epochs=max(targets))  # the progress bar's "epoch k/N"
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    settings = [cfg.lr, cfg.weight_decay, cfg.grad_clip, cfg.seed]
    state: dict[str, Any] = {"epoch": 0, "epochs": targets, "settings": settings}
    history: list[dict] = []
    saved = run_dir / REFIT_STATE_FILE if run_dir is not None else None
    if resume and saved is not None and saved.is_file():
        _, meta = checkpoint.load_tensors(saved)
        before = json.loads(meta.get("state", "{}"))
        if [before.get("epochs"), before.get("settings")] == [targets, settings]:  # else another refit: restart
            state = checkpoint.load_training_state(saved, model, optimizer)
            history = _read_history(saved.with_name(REFIT_HISTORY_FILE), state["epoch"])
    trained = [runtime.wrap(m) for m in members]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _write_history(out, history, REFIT_HISTORY_FILE)
    n = len(members)
    for epoch in range(state["epoch"], max(targets)):
        start, losses = time.perf_counter(), {}
        for k in range(n):
            if epoch < targets[k]:
                what = f" refit member {k + 1}/{n}" if n > 1 else " refit"
                gen = member_generator(cfg.seed, epoch, k)
                losses[k] = _train_epoch(members[k], objective, optimizer, shown, epoch, runtime, trained[k], gen, what)
        row: dict[str, Any] = {"epoch": epoch, "train_loss": sum(losses.values()) / len(losses)}
        row["seconds"] = round(time.perf_counter() - start, 3)
        _show(row, shown, runtime)
        if n > 1:
            row.update({f"member{k}_train_loss": v for k, v in losses.items()})
        history.append(row)
        state["epoch"] = epoch + 1
        if out is not None:
            _write_history(out, history, REFIT_HISTORY_FILE)
            checkpoint.save_training_state(out / REFIT_STATE_FILE, model, optimizer, state)
    if out is not None:
        checkpoint.save_tensors(out / MODEL_FILE, model.state_dict())
    model.eval()
    return history


def _write_history(run_dir: Path, history: list[dict], name: str = HISTORY_FILE) -> None:
    checkpoint.atomic_write_bytes(run_dir / name, "".join(json.dumps(r) + "\n" for r in history).encode())


def _check_weights(model: torch.nn.Module, epoch: int) -> None:
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(
            f"the weights became NaN or inf in epoch {epoch + 1} ({', '.join(bad[:3])}); training stopped, "
            "the last good epoch is kept: lower --lr or set --grad-clip > 0"
        )


def _run_epoch(
    model, objective: Objective, optimizer, cfg: LoopConfig, epoch: int, runtime: Runtime = SINGLE, trained=None
) -> dict:
    start = time.perf_counter()
    train_loss = _train_epoch(
        model, objective, optimizer, cfg, epoch, runtime, trained, epoch_generator(cfg.seed, epoch)
    )
    model.eval()
    with torch.no_grad():
        metrics = objective.validate(model)
    row = {"epoch": epoch, "train_loss": train_loss, "seconds": round(time.perf_counter() - start, 3)}
    row.update({k: float(v) for k, v in metrics.items()})
    _show(row, cfg, runtime)
    return row


def _run_members(
    model,
    members: list,
    objective: Objective,
    optimizer,
    cfg: LoopConfig,
    epoch: int,
    runtime: Runtime,
    trained,
    training,
) -> tuple[dict, dict[int, float]]:
    """One epoch of each of the ensemble's ``members`` listed in ``training`` (indices), each on its own
    batches, then validated on its own; returns the ensemble's history row and each trained member's
    monitored metric."""
    start, losses, scores, columns = time.perf_counter(), {}, {}, {}
    for k in training:
        member, what = members[k], f" member {k + 1}/{len(members)}"
        gen = member_generator(cfg.seed, epoch, k)
        losses[k] = _train_epoch(member, objective, optimizer, cfg, epoch, runtime, trained[k], gen, what)
        member.eval()
        with torch.no_grad():
            scores[k] = float(objective.validate(member)[objective.monitor])
        columns.update({f"member{k}_train_loss": losses[k], f"member{k}_{objective.monitor}": scores[k]})
    model.eval()
    with torch.no_grad():
        metrics = objective.validate(model)  # the ensemble of this epoch's weights
    row = {"epoch": epoch, "train_loss": sum(losses.values()) / len(losses)}
    row.update({k: float(v) for k, v in metrics.items()})
    row["seconds"] = round(time.perf_counter() - start, 3)
    _show(row, cfg, runtime)
    return {**row, **columns}, scores


def _train_epoch(
    model,
    objective: Objective,
    optimizer,
    cfg: LoopConfig,
    epoch: int,
    runtime: Runtime,
    trained,
    gen: torch.Generator,
    what: str = "",
) -> float:
    """One pass over ``objective.batches(epoch, gen)``, dropout seeded from ``gen``: the mean training loss."""
    model.train()
    torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))  # dropout et al.
    batches = objective.batches(epoch, gen)  # the same in every process: each trains on its slice
    trained = model if trained is None else trained
    total = len(batches) if isinstance(batches, Sized) else None
    bar = tqdm(
        batches,
        total=total,
        desc=f"epoch {epoch + 1}/{cfg.epochs}{what}",
        disable=None if cfg.progress and runtime.writer else True,
        leave=False,
        dynamic_ncols=True,
    )
    loss_sum, count = 0.0, 0
    for batch in bar:
        optimizer.zero_grad(set_to_none=True)  # every member's: a step updates only the one trained here
        loss = objective.loss(trained, runtime.split(batch))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}; lower --lr or check the data")
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        loss_sum, count = loss_sum + loss.item(), count + 1
        bar.set_postfix(loss=f"{loss_sum / count:.4f}", refresh=False)
    bar.close()
    if count == 0:
        raise ValueError("the training split produced no batches; it is empty or smaller than one batch")
    _check_weights(model, epoch)
    return runtime.mean(loss_sum / count)


def _show(row: dict, cfg: LoopConfig, runtime: Runtime) -> None:
    """The epoch's line under the progress bar."""
    if cfg.progress and runtime.writer:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch")
        tqdm.write(f"epoch {row['epoch'] + 1}/{cfg.epochs}: {shown}")

"""Sequence regression: one number per sequence (the tutorial's regression).

Data: a UCR-layout TSV (target first, then the values) or a ``.ts`` file with
``@targetLabel true`` (a TRAIN file or its folder; a TEST file beside it is the
test split, else ``--test-fraction`` is held out), the toy set, or Covid3Month
(bundled with aeon; the Monash TSER archive's format).

Targets are standardised with the mean and std of the training part only
(the part that fits the weights); the model's outputs are mapped back before
scoring. Scores: MAE, RMSE and R^2 on the test split, beside the
predict-the-training-mean baseline and, for equal-length series, ridge
regression on the flattened series.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..data import numeric
from ..evaluation import regression as reg_eval
from ..training import fit, write_json
from . import _sequence as seq
from .base import Task, TaskConfig, load_run, load_weights, option, save_run, torch_threads, with_dtype

DATASETS = {
    "toy": "1000 x 10 steps x 8 features; y = (sum of x0 + count of positive x1 steps) / sqrt(10) + noise (learnable)",
    **numeric.TSER_DATASETS,
}


@dataclass(frozen=True)
class RegressConfig(TaskConfig):
    data: Optional[str] = option(None, "your data: a .tsv (target first) or .ts (@targetLabel true) TRAIN file or its folder")
    dataset: str = option("toy", "built-in data set, used when --data is not given (Covid3Month needs: pip install 'grukit[data]')", choices=list(DATASETS))
    epochs: int = option(60, "passes over the training split")
    lr: float = option(3e-3, "Adam learning rate")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    hidden_size: int = option(32, "GRU hidden units per direction")
    num_layers: int = option(1, "stacked GRU layers")
    bidirectional: bool = option(False, "read each sequence in both directions")
    dropout: float = option(0.0, "dropout before the head (and between layers)")
    pooling: str = option("mean", "how the GRU outputs become one vector (mean suits targets that sum over steps)", choices=list(seq.POOLINGS))
    batch_size: int = option(32, "sequences per batch")
    normalize: str = option("global", "inputs: global = training mean/std per channel, series = z-normalise each series (drops its level)", choices=[n for n in seq.NORMALIZE if n != "auto"])
    patch: int = option(0, "consecutive steps fed as one GRU step (0 = auto: at most ~32 steps)")
    val_fraction: float = option(0.2, "share of the training split held out to pick the best epoch")
    test_fraction: float = option(0.2, "share held out for testing when the data has no test split")

    def validate(self) -> None:
        super().validate()
        self.at_least(1, "hidden_size", "num_layers", "batch_size")
        if self.patch < 0:
            raise ValueError(f"--patch must be >= 0, got {self.patch}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in (0, 1), got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")


def load_sets(cfg: RegressConfig) -> tuple[numeric.SeriesSet, numeric.SeriesSet | None]:
    if cfg.data is not None:
        train_file, test_file = numeric.find_split_files(cfg.data)
        return numeric.read_series(train_file), numeric.read_series(test_file) if test_file else None
    if cfg.dataset == "toy":
        return numeric.toy_regression(seed=cfg.seed), None
    if cfg.dataset not in numeric.TSER_DATASETS:
        raise ValueError(f"unknown --dataset {cfg.dataset!r}; built-in: {', '.join(DATASETS)}")
    return tuple(numeric.read_series(p) for p in numeric.builtin_files(cfg.dataset))


def encode(items: numeric.SeriesSet, state: dict) -> tuple[torch.Tensor, torch.Tensor]:
    if items.channels != state["channels"]:
        raise ValueError(f"{items.source}: series with {items.channels} channel(s), the model was trained on {state['channels']}")
    series, _ = seq.normalize_series(items.series, state["normalize"], state.get("norm_stats"))
    return seq.pad(series)


def prepare(cfg: RegressConfig) -> dict:
    """Splits, scaling and encoded tensors, deterministically from cfg (targets scaled)."""
    train, test = load_sets(cfg)
    y_all = train.numeric_targets()
    if test is None:
        keep, held = seq.random_split(len(train), cfg.test_fraction, cfg.seed + 101)
        train, test, y_all = train.subset(keep), train.subset(held), y_all[keep]
    if len(train) < 2:
        raise ValueError(f"{train.source}: need at least 2 training series, got {len(train)}")
    fit_idx, val_idx = seq.random_split(len(train), cfg.val_fraction, cfg.seed + 202)
    y_fit = y_all[fit_idx]
    _, stats = seq.normalize_series(train.subset(fit_idx).series, cfg.normalize)
    state = {
        "channels": train.channels,
        "normalize": cfg.normalize,
        "norm_stats": stats or None,
        "patch": cfg.patch or seq.auto_patch(int(train.lengths.max())),
        "target_mean": float(y_fit.mean()),
        "target_std": float(y_fit.std()) if y_fit.std() > 0 else 1.0,
    }
    scale = lambda y: torch.from_numpy(((y - state["target_mean"]) / state["target_std"]).astype(np.float32))  # noqa: E731
    x, ln = encode(train, state)
    xt, lnt = encode(test, state)
    f, v = torch.from_numpy(fit_idx), torch.from_numpy(val_idx)
    return {
        "state": state,
        "fit": (x[f], ln[f], scale(y_fit)),
        "val": (x[v], ln[v], scale(y_all[val_idx])),
        "test": (xt, lnt, scale(test.numeric_targets())),
        "raw": {"y_train": y_all, "y_test": test.numeric_targets()},
    }


def build_model(cfg: RegressConfig, state: dict) -> seq.SequenceModel:
    return with_dtype(seq.SequenceModel(
        state["channels"], 1, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, bidirectional=cfg.bidirectional,
        dropout=cfg.dropout, pooling=cfg.pooling, patch=state["patch"], cell=cfg.recurrent_cell(),
    ), cfg)


def predict_values(model, x: torch.Tensor, ln: torch.Tensor, state: dict) -> np.ndarray:
    """Model outputs mapped back to the targets' units: (N,)."""
    out = seq.predict(model, x, ln)[:, 0].double().numpy()
    return out * state["target_std"] + state["target_mean"]


class _Objective:
    monitor, mode = "val_loss", "min"

    def __init__(self, cfg: RegressConfig, parts: dict) -> None:
        self.cfg, self.fit, self.val = cfg, parts["fit"], parts["val"]

    def batches(self, epoch: int, gen: torch.Generator):
        return seq.batches(*self.fit, self.cfg.batch_size, gen)

    def loss(self, model, batch) -> torch.Tensor:
        x, ln, y = batch
        return nn.functional.mse_loss(model(x, ln)[:, 0], y)

    def validate(self, model) -> dict[str, float]:
        x, ln, y = self.val
        pred = seq.predict(model, x, ln)[:, 0]
        return {"val_loss": nn.functional.mse_loss(pred, y).item(), "val_mae_scaled": (pred - y).abs().mean().item()}


def score(model, parts: dict, state: dict) -> dict:
    x, ln, _ = parts["test"]
    y_train, y_test = parts["raw"]["y_train"], parts["raw"]["y_test"]
    metrics = reg_eval.scores(y_test, predict_values(model, x, ln, state))
    baselines = {"predict_mean": reg_eval.mean_baseline(y_train, y_test)}
    xtr = torch.cat([parts["fit"][0], parts["val"][0]])
    lntr = torch.cat([parts["fit"][1], parts["val"][1]])
    if len(set(lntr.tolist()) | set(ln.tolist())) == 1 and xtr.shape[1:] == x.shape[1:]:
        ytr = np.concatenate([parts["fit"][2].numpy(), parts["val"][2].numpy()]) * state["target_std"] + state["target_mean"]  # fit|val order, as xtr
        baselines["ridge"] = reg_eval.ridge_baseline(xtr.numpy(), ytr, x.numpy(), y_test)
    versus = ", ".join(f"{name} {b['mae']:.4g} / {b['r2']:.3f}" for name, b in baselines.items())
    metrics.update(summary=f"test MAE / R^2 {metrics['mae']:.4g} / {metrics['r2']:.3f} (baselines: {versus})", baselines=baselines, test_size=int(len(y_test)))
    return metrics


class RegressTask(Task):
    name = "regress"
    summary = "sequence regression: one number per series (.tsv/.ts, toy, Covid3Month); MAE, RMSE, R^2 vs predict-the-mean"
    Config = RegressConfig
    datasets = DATASETS

    def train(self, cfg: RegressConfig, out: Path, *, resume: bool = False) -> dict:
        cfg.validate()
        torch.manual_seed(cfg.seed)
        parts = prepare(cfg)
        model = build_model(cfg, parts["state"])
        save_run(out, self, cfg, parts["state"])
        start = time.perf_counter()
        with torch_threads(cfg.threads):
            fit(model, _Objective(cfg, parts), cfg.loop(), out, resume=resume)
            metrics = score(model, parts, parts["state"])
        metrics.update(train_seconds=round(time.perf_counter() - start, 2), data=cfg.data or cfg.dataset, train_size=int(len(parts["raw"]["y_train"])))
        write_json(out / "metrics.json", metrics)
        return metrics

    def _load(self, run: Path):
        cfg, state = load_run(run, self)
        return cfg, state, load_weights(run, build_model(cfg, state))

    def evaluate(self, run: Path, data: str | None = None) -> dict:
        cfg, state, model = self._load(run)
        with torch_threads(cfg.threads):
            return self._evaluate(cfg, state, model, data)

    def _evaluate(self, cfg, state: dict, model, data: str | None) -> dict:
        if data is None:
            return score(model, prepare(cfg), state)
        path = Path(data)
        if path.is_dir():
            train_file, test_file = numeric.find_split_files(path)
            path = test_file or train_file
        items = numeric.read_series(path)
        y = items.numeric_targets()
        x, ln = encode(items, state)
        return {**reg_eval.scores(y, predict_values(model, x, ln, state)), "test_size": len(y), "data": data}

    def predict(self, run: Path, args: tuple[str, ...], data: str | None = None) -> None:
        if args or data is None:
            raise ValueError("predict for regress reads sequences from a file: grukit predict DIR --data FILE")
        _, state, model = self._load(run)
        items = numeric.read_series(data)
        x, ln = encode(items, state)
        for i, v in enumerate(predict_values(model, x, ln, state), 1):
            print(f"{i}\t{v:.6g}")

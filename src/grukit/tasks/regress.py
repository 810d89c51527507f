"""Sequence regression: one number per sequence (the tutorial's regression).

Data: a UCR-layout TSV (target first, then the values) or a ``.ts`` file with
``@targetLabel true`` (a TRAIN file or its folder; a TEST file beside it is the
test split, else ``--test-fraction`` is held out), the toy set, Covid3Month
(bundled with aeon; the Monash TSER archive's format), or ISLP's NYSE days
(``nyse``: log_volume from 5 lags of 3 series, ISLP lab 10.9.6's split; see
grukit.data.stocks), scored also beside ISLP's linear AR models fitted in the
same run and the lab's published R^2.

Targets are standardised with the mean and std of the training part only
(the part that fits the weights); the model's outputs are mapped back before
scoring. Scores: MAE, RMSE and R^2 on the test split, beside the
predict-the-training-mean baseline and, for equal-length series, ridge
regression on the flattened series.

``--skip linear`` adds a linear map of the whole flattened series to the
model's output (equal-length series), so the model contains a linear
autoregression and the GRU learns what it leaves. ``--ensemble N`` trains N
models independently in one run (each from its own initialisation, with its
own batch order and its own best epoch on the validation part; see
grukit.training.fit) and predicts their mean. ``--refit`` then trains the
model again from the same initialisation on the fitting and the validation
part together, each member for the epochs it was kept after, and scores that
model (the scaling stays the fitting part's; see grukit.tasks.base).
``--blend-linear W`` predicts ``(1 - W) * model + W * ridge``, where the ridge
regression of the flattened series (equal lengths; the ridge baseline's model)
is fitted in closed form on the whole training part before training and kept in
the run's state; the GRU trains and is chosen on its own outputs, unaware of it.
Averaging a network with a linear model this way is a forecast combination: the
two err differently, and their mean can beat both (README: Beating the linear
AR on NYSE). Choose W on data the model is not scored on.
The validation part is a random ``--val-fraction`` of the training
sequences, or with ``--val-split last`` the last ones in the file's order
(for sequences in time order: the model is chosen on the latest).

metrics.json also holds ``validation``: the kept model's MAE, RMSE and R^2 on
the validation part (in the targets' units), the numbers to choose settings by.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import numeric, stocks
from ..evaluation import regression as reg_eval
from . import _sequence as seq
from .base import Scored, Task, TaskConfig, TaskState, option
from .config import REFIT_HELP
from .results import Table

DATASETS = {
    "toy": "1000 x 10 steps x 8 features; y = (sum of x0 + count of positive x1 steps) / sqrt(10) + noise (learnable)",
    **numeric.TSER_DATASETS,
    "nyse": "ISLP's NYSE 1962-1986: log_volume from days t-5..t-1 of 3 series (5 x 3), ISLP's train flag (4276 / 1770; pip install --no-deps ISLP)",
    "nyse_day": "nyse plus the predicted day's weekday one-hot on every step (5 x 8)",
}
NYSE_DAY = {"nyse": False, "nyse_day": True}  # built-in NYSE sets -> weekday inputs
SKIPS = ("none", "linear")


@dataclass(frozen=True)
class RegressConfig(TaskConfig):
    data: str | None = option(
        None, "your data: a .tsv (target first) or .ts (@targetLabel true) TRAIN file or its folder"
    )
    dataset: str = option(
        "toy",
        "built-in data set, used when --data is not given (Covid3Month needs: pip install 'grukit[data]')",
        choices=list(DATASETS),
    )
    epochs: int = option(60, "passes over the training split")
    lr: float = option(3e-3, "Adam learning rate")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    hidden_size: int = option(32, "GRU hidden units per direction")
    num_layers: int = option(1, "stacked GRU layers")
    bidirectional: bool = option(False, "read each sequence in both directions")
    dropout: float = option(0.0, "dropout before the head (and between layers)")
    pooling: str = option(
        "mean",
        "how the GRU outputs become one vector (mean suits targets that sum over steps)",
        choices=list(seq.POOLINGS),
    )
    skip: str = option(
        "none",
        "linear = add a linear map of the whole flattened series (e.g. the lags) to the output: the model holds a linear autoregression and the GRU learns what it leaves (equal-length series)",
        choices=list(SKIPS),
    )
    ensemble: int = option(
        1,
        "train this many models independently (each its own initialisation, batch order and best epoch on the validation part) and average their predictions",
    )
    batch_size: int = option(32, "sequences per batch")
    normalize: str = option(
        "global",
        "inputs: global = training mean/std per channel, series = z-normalise each series (drops its level)",
        choices=[n for n in seq.NORMALIZE if n != "auto"],
    )
    patch: int = option(0, "consecutive steps fed as one GRU step (0 = auto: at most ~32 steps)")
    val_fraction: float = option(0.2, "share of the training split held out to pick the best epoch")
    val_split: str = option(
        "random",
        "which training sequences are the validation part: random, or last = the last ones in the file's order (sequences in time order: validate on the latest)",
        choices=list(seq.VAL_SPLITS),
    )
    test_fraction: float = option(0.2, "share held out for testing when the data has no test split")
    refit: bool = option(False, REFIT_HELP)
    blend_linear: float = option(
        0.0,
        "predict (1 - W) * model + W * ridge regression of the flattened series (fitted on the training part; equal-length series); 0 = the model alone",
    )

    def validate(self) -> None:
        super().validate()
        self.at_least(1, "hidden_size", "num_layers", "batch_size", "ensemble")
        if self.patch < 0:
            raise ValueError(f"--patch must be >= 0, got {self.patch}")
        self.within(0, 1, "val_fraction", "test_fraction")
        if self.val_split not in seq.VAL_SPLITS:
            raise ValueError(f"--val-split must be one of {', '.join(seq.VAL_SPLITS)}, got {self.val_split!r}")
        self.within(0, 1, "dropout", "blend_linear", closed_low=True)


@dataclass(frozen=True)
class RegressState(TaskState):
    channels: int  # channels per step
    normalize: str  # series | global | none
    norm_stats: dict | None  # global: per-channel mean and std of the training part
    patch: int  # steps fed as one GRU step
    target_mean: float  # the training targets' mean and std: the model predicts scaled targets
    target_std: float
    length: int = 0  # the training series' common length (0 when they differ)
    # --blend-linear: {"weight": W, "coef": [T*C floats], "intercept": b}, the ridge in scaled-target units
    blend: dict | None = None


Sets = tuple[numeric.SeriesSet, numeric.SeriesSet | None]  # training set, test set or None


def load_sets(cfg: RegressConfig) -> Sets:
    if cfg.data is not None:
        train_file, test_file = numeric.find_split_files(cfg.data)
        return numeric.read_series(train_file), numeric.read_series(test_file) if test_file else None
    if cfg.dataset == "toy":
        return numeric.toy_regression(seed=cfg.seed), None
    if cfg.dataset in NYSE_DAY:
        return stocks.nyse_sets(stocks.load_nyse(f"--dataset {cfg.dataset}"), day=NYSE_DAY[cfg.dataset])
    if cfg.dataset not in numeric.TSER_DATASETS:
        raise ValueError(f"unknown --dataset {cfg.dataset!r}; built-in: {', '.join(DATASETS)}")
    train_file, test_file = numeric.builtin_files(cfg.dataset)
    return numeric.read_series(train_file), numeric.read_series(test_file)


def encode(items: numeric.SeriesSet, state: RegressState) -> tuple[torch.Tensor, torch.Tensor]:
    if items.channels != state.channels:
        raise ValueError(
            f"{items.source}: series with {items.channels} channel(s), the model was trained on {state.channels}"
        )
    series, _ = seq.normalize_series(items.series, state.normalize, state.norm_stats)
    return seq.pad(series)


def prepare(cfg: RegressConfig, raw: Sets, *, holdout: bool = True) -> tuple[RegressState, dict]:
    """Splits, scaling and encoded tensors, deterministically from cfg (targets scaled).
    Without ``holdout`` no test part is kept."""
    train, test = raw[0], raw[1] if holdout else None
    y_all = train.numeric_targets()
    if holdout and test is None:
        keep, held = seq.random_split(len(train), cfg.test_fraction, cfg.seed + 101)
        train, test, y_all = train.subset(keep), train.subset(held), y_all[keep]
    if len(train) < 2:
        raise ValueError(f"{train.source}: need at least 2 training series, got {len(train)}")
    if cfg.val_split == "last":
        fit_idx, val_idx = seq.last_split(len(train), cfg.val_fraction)
    else:
        fit_idx, val_idx = seq.random_split(len(train), cfg.val_fraction, cfg.seed + 202)
    y_fit = y_all[fit_idx]
    _, stats = seq.normalize_series(train.subset(fit_idx).series, cfg.normalize)
    lengths = train.lengths
    if cfg.blend_linear > 0 and not (lengths == lengths[0]).all():
        raise ValueError(f"{train.source}: --blend-linear needs training series of one length; these differ")
    state = RegressState(
        train.channels,
        cfg.normalize,
        stats or None,
        cfg.patch or seq.auto_patch(int(lengths.max())),
        float(y_fit.mean()),
        float(y_fit.std()) if y_fit.std() > 0 else 1.0,
        int(lengths[0]) if (lengths == lengths[0]).all() else 0,
    )
    state = RegressState.from_json(state.to_json(), "regress")  # exactly as it reads back from config.json
    scale = lambda y: torch.from_numpy(((y - state.target_mean) / state.target_std).astype(np.float32))  # noqa: E731
    x, ln = encode(train, state)
    if cfg.blend_linear > 0:  # the ridge on every training series, in the units the model predicts
        y_scaled = (y_all - state.target_mean) / state.target_std
        coef, intercept = reg_eval.ridge_fit(x.double().numpy(), y_scaled)
        state = replace(state, blend={"weight": cfg.blend_linear, "coef": coef.tolist(), "intercept": intercept})
    f, v = torch.from_numpy(fit_idx), torch.from_numpy(val_idx)
    data = {
        "fit": (x[f], ln[f], scale(y_fit)),
        "val": (x[v], ln[v], scale(y_all[val_idx])),
        "test": None,
        "y_train": y_all,
        "y_val": y_all[val_idx],
        "split": (fit_idx, val_idx),  # of the training series
    }
    if test is not None:
        xt, lnt = encode(test, state)
        data.update(test=(xt, lnt, scale(test.numeric_targets())), y_test=test.numeric_targets())
    return state, data


def nyse_baselines(name: str, split: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """ISLP's linear AR models fitted on the same days: the 15 lags, and the lags + weekday one-hot.
    Fitted on the training days and scored on the test days; with ``split`` (indices of the training
    days: the fitting part, the validation part), fitted on the fitting part and scored on the
    validation part, beside the model's validation scores."""
    nyse = stocks.load_nyse(f"--dataset {name}")
    fits = {"ar": stocks.nyse_design(nyse), "ar_day": stocks.nyse_design(nyse, day=True)}
    if split is not None:
        f, v = split
        return {
            key: reg_eval.least_squares_baseline(a[t][f], y[t][f], a[t][v], y[t][v]) for key, (a, y, t) in fits.items()
        }
    return {key: reg_eval.least_squares_baseline(a[t], y[t], a[~t], y[~t]) for key, (a, y, t) in fits.items()}


def build_model(cfg: RegressConfig, state: RegressState) -> seq.SequenceModel | seq.Ensemble:
    if cfg.skip == "linear" and not state.length:
        raise ValueError("--skip linear needs training series of one length; these differ")
    members = [build_member(cfg, state) for _ in range(cfg.ensemble)]
    return seq.Ensemble(members) if len(members) > 1 else members[0]


def build_member(cfg: RegressConfig, state: RegressState) -> seq.SequenceModel:
    return seq.SequenceModel(
        state.channels,
        1,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        bidirectional=cfg.bidirectional,
        dropout=cfg.dropout,
        pooling=cfg.pooling,
        patch=state.patch,
        cell=cfg.recurrent_cell(),
        linear_skip=state.length * state.channels if cfg.skip == "linear" else 0,
    )


def predict_values(
    model, x: torch.Tensor, ln: torch.Tensor, state: RegressState, blend: dict | bool = True
) -> np.ndarray:
    """Predictions in the targets' units: (N,). The run's ``--blend-linear`` ridge is mixed in unless
    ``blend`` is False; a dict ``blend`` mixes in that ridge instead."""
    out = seq.predict(model, x, ln)[:, 0].double().numpy()
    mix = state.blend if blend is True else blend or None
    if mix is not None:
        out = (1 - mix["weight"]) * out + mix["weight"] * linear_part(mix, x)
    return out * state.target_std + state.target_mean


def linear_part(blend: dict, x: torch.Tensor) -> np.ndarray:
    """The blend's ridge prediction (scaled targets) for encoded equal-length series (N, T, C)."""
    flat = x.reshape(len(x), -1).double().numpy()
    if flat.shape[1] != len(blend["coef"]):
        raise ValueError(
            f"--blend-linear: the model's linear part reads {len(blend['coef'])} values per series "
            f"(the training series' steps x channels), got series of {x.shape[1]} steps x {x.shape[2]} channels"
        )
    return flat @ np.asarray(blend["coef"], np.float64) + blend["intercept"]


class LinearBlend(nn.Module):
    """A model and the run's ``--blend-linear`` ridge as one module (for ONNX export): outputs
    ``(1 - W) * model(x, lengths) + W * (x.flatten(1) @ coef + intercept)`` in the model's units."""

    coef: torch.Tensor
    intercept: torch.Tensor

    def __init__(self, model: nn.Module, blend: dict) -> None:
        super().__init__()
        self.model, self.weight = model, float(blend["weight"])
        self.register_buffer("coef", torch.tensor(blend["coef"], dtype=torch.float32)[:, None])
        self.register_buffer("intercept", torch.tensor([float(blend["intercept"])], dtype=torch.float32))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        linear = x.reshape(x.shape[0], -1).to(torch.float32) @ self.coef + self.intercept
        return (1 - self.weight) * self.model(x, lengths) + self.weight * linear


class _Objective:
    monitor, mode = "val_loss", "min"
    fit: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (x, lengths, y)

    def __init__(self, cfg: RegressConfig, data: dict) -> None:
        self.cfg, self.fit, self.val = cfg, data["fit"], data["val"]

    def batches(self, epoch: int, gen: torch.Generator):
        return seq.batches(*self.fit, self.cfg.batch_size, gen)

    def loss(self, model, batch) -> torch.Tensor:
        x, ln, y = batch
        return nn.functional.mse_loss(model(x, ln)[:, 0], y)

    def validate(self, model) -> dict[str, float]:
        x, ln, y = self.val
        pred = seq.predict(model, x, ln)[:, 0]
        return {"val_loss": nn.functional.mse_loss(pred, y).item(), "val_mae_scaled": (pred - y).abs().mean().item()}


class RegressTask(Task[RegressConfig, RegressState, "seq.SequenceModel | seq.Ensemble"]):
    name = "regress"
    summary = "sequence regression: one number per series (.tsv/.ts, toy, Covid3Month, NYSE); MAE, RMSE, R^2 vs predict-the-mean"
    Config = RegressConfig
    State = RegressState
    datasets = DATASETS
    monitor_label = "validation loss (MSE of scaled targets)"

    def load_data(self, cfg: RegressConfig) -> Sets:
        return load_sets(cfg)

    def prepare(self, cfg: RegressConfig, raw: Sets, *, holdout: bool = True):
        return prepare(cfg, raw, holdout=holdout)

    def build(self, cfg: RegressConfig, state: RegressState) -> seq.SequenceModel | seq.Ensemble:
        return build_model(cfg, state)

    def objective(self, cfg: RegressConfig, state: RegressState, data: dict) -> _Objective:
        return _Objective(cfg, data)

    def refit_objective(self, cfg: RegressConfig, state: RegressState, data: dict) -> _Objective:
        both = tuple(torch.cat([f, v]) for f, v in zip(data["fit"], data["val"]))  # padded alike: one encode
        return _Objective(cfg, {**data, "fit": both})

    def score(self, model, cfg: RegressConfig, state: RegressState, data: dict) -> Scored:
        x, ln, _ = data["test"]
        y_train, y_test = data["y_train"], data["y_test"]
        metrics = reg_eval.scores(y_test, predict_values(model, x, ln, state))
        xv, lnv, _ = data["val"]
        val_blend: dict | bool = True  # the run's own: none without --blend-linear
        if state.blend is not None:  # validated with a ridge of the fitting part only, as the model
            coef, intercept = reg_eval.ridge_fit(data["fit"][0].double().numpy(), data["fit"][2].double().numpy())
            val_blend = {**state.blend, "coef": coef.tolist(), "intercept": intercept}
            metrics["blend"] = {
                "weight": state.blend["weight"],
                "model": reg_eval.scores(y_test, predict_values(model, x, ln, state, blend=False)),
                "model_validation": reg_eval.scores(data["y_val"], predict_values(model, xv, lnv, state, blend=False)),
            }
        validation = reg_eval.scores(data["y_val"], predict_values(model, xv, lnv, state, blend=val_blend))
        baselines = {"predict_mean": reg_eval.mean_baseline(y_train, y_test)}
        xtr = torch.cat([data["fit"][0], data["val"][0]])
        lntr = torch.cat([data["fit"][1], data["val"][1]])
        if len(set(lntr.tolist()) | set(ln.tolist())) == 1 and xtr.shape[1:] == x.shape[1:]:
            ytr = (
                np.concatenate([data["fit"][2].numpy(), data["val"][2].numpy()]) * state.target_std + state.target_mean
            )  # fit|val order, as xtr
            baselines["ridge"] = reg_eval.ridge_baseline(xtr.numpy(), ytr, x.numpy(), y_test)
        if cfg.data is None and cfg.dataset in NYSE_DAY:
            baselines.update(nyse_baselines(cfg.dataset))
            metrics["published"] = stocks.ISLP_PUBLISHED
            metrics["validation_baselines"] = nyse_baselines(cfg.dataset, data["split"])
        versus = ", ".join(f"{name} {b['mae']:.4g} / {b['r2']:.3f}" for name, b in baselines.items())
        metrics.update(
            summary=f"test MAE / R^2 {metrics['mae']:.4g} / {metrics['r2']:.3f} (baselines: {versus})",
            baselines=baselines,
            validation={k: v for k, v in validation.items() if np.isfinite(v)},  # R^2 needs 2 distinct targets
            test_size=len(y_test),
            data=cfg.data or cfg.dataset,
            train_size=len(y_train),
        )
        return Scored(metrics)

    def summarize(self, metrics: dict) -> Table:
        baselines = metrics.get("baselines", {})
        models = [metrics] + list(baselines.values())
        rows = tuple((m, *(b.get(m) for b in models)) for m in ("mae", "rmse", "r2"))
        size = f", {metrics['test_size']} test sequences" if "test_size" in metrics else ""
        notes: tuple[str, ...] = (f"trained in {metrics['train_seconds']} s",) if "train_seconds" in metrics else ()
        if "blend" in metrics:
            alone = metrics["blend"]["model"]
            notes += (
                f"grukit = {1 - metrics['blend']['weight']:g} x GRU + {metrics['blend']['weight']:g} x ridge "
                f"(--blend-linear); the GRU alone: MAE {alone['mae']:.4g}, R^2 {alone['r2']:.3f}",
            )
        if "published" in metrics:
            notes += (
                "published test R^2 (ISLP lab 10.9.6): "
                + ", ".join(f"{k} {v}" for k, v in metrics["published"].items()),
            )
        return Table(
            ("test", "grukit", *baselines), rows, title=f"regress {metrics.get('data', '')}{size}".strip(), notes=notes
        )

    def evaluate_file(self, cfg: RegressConfig, state: RegressState, model, data: str) -> dict:
        path = Path(data)
        if path.is_dir():
            train_file, test_file = numeric.find_split_files(path)
            path = test_file or train_file
        items = numeric.read_series(path)
        y = items.numeric_targets()
        x, ln = encode(items, state)
        return {**reg_eval.scores(y, predict_values(model, x, ln, state)), "test_size": len(y), "data": data}

    def predictions(
        self, cfg: RegressConfig, state: RegressState, model, args: tuple[str, ...], data: str | None
    ) -> Table:
        if args or data is None:
            raise ValueError("predict for regress reads sequences from a file: grukit predict DIR --data FILE")
        items = seq.series_to_predict(data, state.length)
        x, ln = encode(items, state)
        return Table(
            ("id", "prediction"), tuple((i, float(v)) for i, v in enumerate(predict_values(model, x, ln, state), 1))
        )

    def export_model(self, cfg: RegressConfig, state: RegressState, model) -> nn.Module:
        return model if state.blend is None else LinearBlend(model, state.blend).eval()

    def export_example(self, cfg: RegressConfig, state: RegressState) -> tuple[tuple, list[str], dict]:
        from .classify import sequence_example

        args, names, axes = sequence_example(state)
        if cfg.skip == "linear" or state.blend is not None:  # their width fixes the length: only the batch may vary
            x = torch.randn(2, state.length, state.channels)
            args, axes = (x, torch.tensor([state.length, max(1, state.length // 2)])), {**axes, "x": {0: "batch"}}
        return args, names, axes

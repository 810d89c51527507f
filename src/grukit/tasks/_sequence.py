"""What the sequence-level tasks (classify, regress) share: one model, padded
batches with lengths, splits and input scaling. Generic, so other tasks can
reuse it.

The model reads a right-padded batch and its lengths, runs its recurrent
layer (a cell of grukit.tasks.cells) with ``lengths=`` (so padding never
leaks into the state), pools the outputs over
each sequence's valid steps and maps the pooled vector to ``out_size`` numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..training import ensemble as training
from .cells import Cell, directions

POOLINGS = ("last", "mean", "max", "last+mean", "last+mean+max")


class SequenceModel(nn.Module):
    """[Embedding or step patching] -> recurrent layer -> pooling over valid steps -> MLP head.

    Args:
        input_size: I, channels per step (ignored when ``vocab_size`` is set).
        out_size: numbers out per sequence (classes, or 1 for regression).
        hidden_size, num_layers, bidirectional, dropout: the recurrent layer's.
        pooling: one of POOLINGS; "last" is each direction's final state.
        vocab_size / embed_dim: token ids in, an embedding first (0 = padding).
        word_dropout: with token ids, the share of words whose whole vector is
            zeroed in training (the rest scaled up; Gal & Ghahramani 2016).
        patch: consecutive steps fed as one step (T -> ceil(T / patch)), which
            shortens long series; 1 = off.
        cell: the recurrent layer's cell and its options (default: grukit.GRU).
        linear_skip: T * I, the flattened width of equal-length float inputs;
            > 0 adds a linear map of the whole input to the output, so the
            model holds a linear autoregression and the recurrent path learns
            what it leaves (0 = off).
    """

    def __init__(
        self,
        input_size: int,
        out_size: int,
        *,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
        vocab_size: int = 0,
        embed_dim: int = 0,
        patch: int = 1,
        cell: Cell = Cell(),
        linear_skip: int = 0,
        word_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"--pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.pooling, self.patch, self.word_dropout = pooling, patch, word_dropout
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0) if vocab_size else None
        gru_in = embed_dim if vocab_size else input_size * patch
        self.gru = cell.layer(
            gru_in,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        D = directions(self.gru)
        pooled = D * hidden_size * len(pooling.split("+"))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(pooled, hidden_size), nn.ReLU(), nn.Linear(hidden_size, out_size))
        self.skip = nn.Linear(linear_skip, out_size) if linear_skip else None

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:  # (B, T, I) float or (B, T) ids -> (B, out)
        skip = self.skip(x.flatten(1)) if self.skip is not None else 0.0
        if self.embedding is not None:
            x = self.embedding(x)  # (B, T, E)
            if self.training and self.word_dropout > 0:
                x = x * nn.functional.dropout(x.new_ones(x.shape[:2] + (1,)), self.word_dropout)  # whole words
        elif self.patch > 1:
            x, lengths = patch_steps(x, lengths, self.patch)  # (B, T/p, p*I)
        out, h_n = self.gru(x, lengths=lengths)  # (B, T, D*H), (L*D, B, H)
        return self.head(self.drop(pool(out, h_n, lengths, self.pooling, directions(self.gru)))) + skip


class Ensemble(training.Ensemble):
    """SequenceModels trained independently in one run (grukit.training.fit: each member its own
    batch order and its own best epoch); the output is their mean."""

    # the members' own signature, not *inputs: torch.export (ONNX's default exporter) matches its
    # dynamic shapes to the parameters, one per argument
    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.mean(x, lengths)


def patch_steps(x: Tensor, lengths: Tensor, patch: int) -> tuple[Tensor, Tensor]:
    """(B, T, I) -> (B, ceil(T/p), p*I): p consecutive steps become one."""
    B, T, I = x.shape
    pad = (-T) % patch
    if pad:
        x = torch.cat([x, x.new_zeros(B, pad, I)], dim=1)
    return x.reshape(B, (T + pad) // patch, patch * I), (lengths + patch - 1) // patch


def pool(out: Tensor, h_n: Tensor, lengths: Tensor, how: str, directions: int) -> Tensor:
    """Pool GRU outputs (B, T, D*H) over each sequence's valid steps -> (B, k*D*H)."""
    B, T, _ = out.shape
    valid = (torch.arange(T, device=out.device)[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
    parts = []
    for kind in how.split("+"):
        if kind == "last":
            parts.append(h_n[-directions:].transpose(0, 1).reshape(B, -1))  # (B, D*H)
        elif kind == "mean":
            parts.append(out.sum(1) / lengths[:, None].to(out.dtype))  # padded steps are zero
        else:
            parts.append(out.masked_fill(~valid, float("-inf")).amax(1))
    return torch.cat(parts, dim=-1)


# ---- batches ----------------------------------------------------------------


def pad(series: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """List of (T_i, C) arrays (or (T_i,) id arrays) -> right-padded (N, T, C) and lengths (N,)."""
    lengths = torch.tensor([len(s) for s in series], dtype=torch.int64)
    T = int(lengths.max())
    first = series[0]
    out = np.zeros((len(series), T) + first.shape[1:], dtype=first.dtype)
    for i, s in enumerate(series):
        out[i, : len(s)] = s
    return torch.from_numpy(out), lengths


def batches(x: Tensor, lengths: Tensor, y: Tensor, batch_size: int, gen: torch.Generator | None = None) -> list:
    """(x, lengths, y) mini-batches, shuffled when ``gen`` is given, each trimmed
    to its longest sequence."""
    n = len(lengths)
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    out = []
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        ln = lengths[idx]
        out.append((x[idx, : int(ln.max())], ln, y[idx]))
    return out


def augment(x: Tensor, lengths: Tensor, strength: float, gen: torch.Generator) -> Tensor:
    """Random variants of a float batch (B, T, C) for training on small data sets:
    each series and channel scaled by 1 + strength * N(0, 1), shifted in time by
    up to strength * T/4 steps (the edge value repeated), and jittered by
    strength/2 * N(0, 1) noise; padding stays zero. Um et al. 2017, "Data
    augmentation of wearable sensor data", sec. 3 (jittering, scaling)."""
    if strength <= 0:
        return x
    B, T, C = x.shape
    valid = (torch.arange(T)[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
    max_shift = int(strength * T / 4)
    if max_shift > 0:
        shift = torch.randint(-max_shift, max_shift + 1, (B,), generator=gen)  # (B,)
        t = torch.arange(T)[None, :] - shift[:, None]  # (B, T): source step of each step
        t = torch.minimum(t.clamp(min=0), (lengths - 1)[:, None])
        x = torch.gather(x, 1, t.unsqueeze(-1).expand(B, T, C))
    scale = 1 + strength * torch.randn(B, 1, C, generator=gen)
    noise = 0.5 * strength * torch.randn(B, T, C, generator=gen)
    return torch.where(valid, x * scale + noise, torch.zeros(()))


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, lengths: Tensor, batch_size: int = 256) -> Tensor:
    """The model's outputs for all N sequences, in order: (N, out)."""
    model.eval()
    outs = [model(xb, lb) for xb, lb, _ in batches(x, lengths, torch.zeros(len(lengths)), batch_size)]
    return torch.cat(outs)


class LabelObjective:
    """Cross-entropy on one label per sequence over (x, lengths, y) batches (classify, speech words).

    The best epoch has the highest validation accuracy, ties (common on small
    sets) broken by the lower validation loss: val_loss alone picks
    near-untrained models on tiny sets, where a few confident mistakes
    outweigh many right answers."""

    monitor, mode = "val_score", "max"

    def __init__(self, batch_size: int, fit: tuple[Tensor, Tensor, Tensor], val: tuple) -> None:
        self.batch_size, self.fit, self.val = batch_size, fit, val

    def batches(self, epoch: int, gen: torch.Generator) -> list:
        return batches(*self.fit, self.batch_size, gen)

    def loss(self, model: nn.Module, batch) -> Tensor:
        x, ln, y = batch
        return nn.functional.cross_entropy(model(x, ln), y)

    def validate(self, model: nn.Module) -> dict[str, float]:
        x, ln, y = self.val
        logits = predict(model, x, ln)
        loss = nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
        return {"val_loss": loss, "val_accuracy": acc, "val_score": acc - 0.01 * min(loss, 10.0)}


# ---- splits and scaling -----------------------------------------------------


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): ``fraction`` of each class held out (at least one
    of every class with >= 2 members), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    keep: list[np.integer] = []
    held: list[np.integer] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == c)[0])
        k = min(len(idx) - 1, max(1, int(round(fraction * len(idx))))) if fraction > 0 else 0
        held.extend(idx[:k])
        keep.extend(idx[k:])
    return np.sort(np.array(keep, dtype=np.int64)), np.sort(np.array(held, dtype=np.int64))


def random_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) with round(fraction * n) held out (at least 1 if fraction > 0)."""
    idx = np.random.default_rng(seed).permutation(n)
    k = min(n - 1, max(1, int(round(fraction * n)))) if fraction > 0 else 0
    return np.sort(idx[k:]), np.sort(idx[:k])


VAL_SPLITS = ("random", "last")


def last_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): the last round(fraction * n) held out (at least 1 if fraction > 0),
    in order; for sequences in time order (e.g. days), a validation part after the fitting part."""
    k = min(n - 1, max(1, int(round(fraction * n)))) if fraction > 0 else 0
    return np.arange(n - k, dtype=np.int64), np.arange(n - k, n, dtype=np.int64)


NORMALIZE = ("auto", "series", "global", "none")


def normalize_series(series: list[np.ndarray], how: str, stats: dict | None = None) -> tuple[list[np.ndarray], dict]:
    """Scale inputs: "series" z-normalises each channel of each series on its own
    (the UCR convention); "global" uses per-channel mean/std of the training
    split (``stats``; computed when None); "none" leaves them. Returns (series, stats)."""
    if how == "series":
        out = []
        for s in series:
            mu, sd = s.mean(0, keepdims=True), s.std(0, keepdims=True)
            out.append(((s - mu) / np.where(sd > 1e-8, sd, 1.0)).astype(np.float32))
        return out, {}
    if how == "global":
        if stats is None:
            allv = np.concatenate(series, axis=0)  # (sum T, C)
            sd = allv.std(0)
            stats = {"mean": allv.mean(0).tolist(), "std": np.where(sd > 1e-8, sd, 1.0).tolist()}
        mu, sd = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
        return [((s - mu) / sd).astype(np.float32) for s in series], stats
    if how == "none":
        return series, {}
    raise ValueError(f"--normalize must be one of series, global, none, got {how!r}")


def auto_patch(max_length: int, target_steps: int = 32) -> int:
    """A patch size that brings the longest series to at most ~target_steps GRU steps."""
    return max(1, math.ceil(max_length / target_steps))


def series_to_predict(path: str, length: int):  # -> grukit.data.numeric.SeriesSet
    """The series in a file given to ``predict``. A .ts file says whether it has labels. A UCR
    TSV may have them or not: with ``length`` (the training series' common length, 0 when they
    differed) a row of ``length`` values is unlabelled and a row of ``length + 1`` starts with a
    label, which is dropped; any other width is an error saying what was expected."""
    from ..data import numeric

    if Path(path).suffix.lower() == ".ts":
        return numeric.read_series(path)
    items = numeric.read_tsv(path, labelled=False)
    width = max(len(s) for s in items.series)
    if length and width == length + 1:
        return numeric.read_tsv(path)
    if length and width != length:
        raise ValueError(
            f"{path}: rows of {width} values; this model was trained on series of {length} steps, so expected "
            f"{length} values per row (or a label then {length} values)"
        )
    if not length:
        return numeric.read_tsv(path)  # unequal training lengths: the UCR layout, a label first
    return items

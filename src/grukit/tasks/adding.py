"""Binary addition: the GRU learns the carry.

Two non-negative integers are written as bit strings, least significant bit
first, and fed one pair of bits per step; after the last bit one (0, 0) step
lets the final carry out. At every step the model predicts one bit of the
sum. A model that learned the carry rule adds numbers of any length, so it is
trained on numbers of at most ``max_bits`` bits and tested on 64-bit ones.

Held-out pairs: every pair (a, b) is assigned to train / validation / test by
a fixed hash, so the pairs the model is scored on were never trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from .base import Scored, Task, TaskConfig, TaskState, option
from .cells import Cell
from .results import Table

TEST_BITS = (8, 16, 32, 64)


@dataclass(frozen=True)
class AddingConfig(TaskConfig):
    epochs: int = option(8, "passes of --steps batches each")
    lr: float = option(0.01, "Adam learning rate")
    hidden_size: int = option(16, "GRU hidden units")
    max_bits: int = option(8, "training numbers have at most this many bits (2..30)")
    steps: int = option(100, "training batches per epoch")
    batch_size: int = option(64, "pairs per batch")
    eval_pairs: int = option(1000, "held-out pairs scored per bit length")

    def validate(self) -> None:
        super().validate()
        if not 2 <= self.max_bits <= 30:
            raise ValueError(f"--max-bits must be in [2, 30], got {self.max_bits}")
        self.at_least(1, "hidden_size", "steps", "batch_size", "eval_pairs")


class Adder(nn.Module):
    """Recurrent layer (a GRU by default) over bit pairs + a linear read-out of one sum bit per step."""

    def __init__(self, hidden_size: int, cell: Cell = Cell()) -> None:
        super().__init__()
        self.gru = cell.layer(2, hidden_size)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, bits: Tensor) -> Tensor:  # (B, T, 2) -> logits (B, T)
        out, _ = self.gru(bits)  # (B, T, H)
        return self.head(out).squeeze(-1)


# ---- data ------------------------------------------------------------------


def split_of(a: Tensor, b: Tensor) -> Tensor:
    """0 train, 1 validation, 2 test: a fixed hash of the pair (a, b < 2**30)."""
    h = ((a * 73856093) ^ (b * 19349663)) % 10
    return torch.where(h < 2, 2, torch.where(h < 3, 1, 0))


def to_bits(x: Tensor, n: int) -> Tensor:
    """(N,) int64 -> (N, n) float bits, least significant first."""
    return ((x.unsqueeze(-1) >> torch.arange(n)) & 1).float()


def sample_pairs(count: int, max_bits: int, split: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` pairs below 2**max_bits that belong to ``split``."""
    got_a, got_b, have = [], [], 0
    while have < count:
        a = torch.randint(0, 2**max_bits, (2 * count,), generator=gen)
        b = torch.randint(0, 2**max_bits, (2 * count,), generator=gen)
        keep = split_of(a, b) == split
        got_a.append(a[keep])
        got_b.append(b[keep])
        have += int(keep.sum())
    return torch.cat(got_a)[:count], torch.cat(got_b)[:count]


def encode(a: Tensor, b: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Inputs (N, n+1, 2) and target sum bits (N, n+1) for n-bit operands."""
    x = torch.stack([to_bits(a, n + 1), to_bits(b, n + 1)], dim=-1)
    return x, to_bits(a + b, n + 1)


def encode_ints(pairs: list[tuple[int, int]], n: int) -> Tensor:
    """Python ints of any size -> (N, n+1, 2) bits (for numbers past int64)."""
    rows = [[((a >> i) & 1, (b >> i) & 1) for i in range(n + 1)] for a, b in pairs]
    return torch.tensor(rows, dtype=torch.float32)


def decode(bits: Tensor) -> list[int]:
    """(N, n) 0/1 bits, least significant first -> Python ints."""
    return [sum(int(v) << i for i, v in enumerate(row)) for row in bits.round().long().tolist()]


@torch.no_grad()
def add(model: Adder, pairs: list[tuple[int, int]]) -> list[int]:
    """The sums the model computes for arbitrary-size non-negative ints."""
    n = max(max(a.bit_length(), b.bit_length()) for a, b in pairs) or 1
    logits = model(encode_ints(pairs, n))  # (N, n+1)
    return decode((logits > 0).long())


def exact_accuracy(model: Adder, n_bits: int, count: int, seed: int) -> float:
    """Share of random n-bit pairs whose whole sum the model gets right."""
    rng = random.Random(seed * 7919 + n_bits)
    pairs = [(rng.getrandbits(n_bits), rng.getrandbits(n_bits)) for _ in range(count)]
    got = add(model, pairs)
    return sum(g == a + b for g, (a, b) in zip(got, pairs)) / count


class _Objective:
    monitor, mode = "val_accuracy", "max"

    def __init__(self, cfg: AddingConfig) -> None:
        self.cfg = cfg
        a, b = sample_pairs(cfg.eval_pairs, cfg.max_bits, 1, torch.Generator().manual_seed(cfg.seed + 1))
        self.val = encode(a, b, cfg.max_bits)

    def batches(self, epoch: int, gen: torch.Generator):
        c = self.cfg
        return [encode(*sample_pairs(c.batch_size, c.max_bits, 0, gen), c.max_bits) for _ in range(c.steps)]

    def loss(self, model: Adder, batch) -> Tensor:
        x, y = batch
        return nn.functional.binary_cross_entropy_with_logits(model(x), y)

    def validate(self, model: Adder) -> dict[str, float]:
        x, y = self.val
        logits = model(x)
        exact = ((logits > 0).float() == y).all(dim=1).float().mean()
        return {
            "val_loss": nn.functional.binary_cross_entropy_with_logits(logits, y).item(),
            "val_accuracy": exact.item(),
        }


@dataclass(frozen=True)
class AddingState(TaskState):
    """Nothing is learned from data besides the weights: the pairs are made from the seed."""


class AddingTask(Task[AddingConfig, AddingState, Adder]):
    name = "adding"
    summary = "binary addition: learn the carry on short numbers, add 64-bit numbers exactly"
    Config = AddingConfig
    State = AddingState
    datasets: ClassVar[dict[str, str]] = {"synthetic": "pairs of random integers, made on the fly (the only data set)"}
    monitor_label = "validation accuracy (exact sums)"

    def load_data(self, cfg: AddingConfig) -> None:
        return None  # made on the fly from the seed

    def prepare(self, cfg: AddingConfig, raw: None, *, holdout: bool = True) -> tuple[AddingState, None]:
        return AddingState(), None

    def build(self, cfg: AddingConfig, state: AddingState) -> Adder:
        return Adder(cfg.hidden_size, cfg.recurrent_cell())

    def objective(self, cfg: AddingConfig, state: AddingState, data: None) -> _Objective:
        return _Objective(cfg)

    def score(self, model: Adder, cfg: AddingConfig, state: AddingState, data: None) -> Scored:
        model.eval()
        with torch.no_grad():
            a, b = sample_pairs(cfg.eval_pairs, cfg.max_bits, 2, torch.Generator().manual_seed(cfg.seed + 2))
            x, y = encode(a, b, cfg.max_bits)
            pred = (model(x) > 0).float()
            return Scored(
                {
                    "accuracy": (pred == y).all(dim=1).float().mean().item(),  # held-out pairs, training length
                    "bit_accuracy": (pred == y).float().mean().item(),
                    "accuracy_by_bits": {str(n): exact_accuracy(model, n, cfg.eval_pairs, cfg.seed) for n in TEST_BITS},
                    "test_pairs": cfg.eval_pairs,
                    "max_bits": cfg.max_bits,
                }
            )

    def summarize(self, metrics: dict) -> Table:
        rows = [
            (
                f"held-out pairs of <= {metrics['max_bits']} bits (the training length)",
                metrics["accuracy"],
                metrics["bit_accuracy"],
            )
        ]
        rows += [(f"random {n}-bit pairs", acc, None) for n, acc in metrics["accuracy_by_bits"].items()]
        return Table(
            ("test", "exact sums", "bits right"),
            tuple(rows),
            title=f"binary addition, {metrics['test_pairs']} pairs per test",
            notes=(f"trained in {metrics['train_seconds']} s",) if "train_seconds" in metrics else (),
        )

    def evaluate_file(self, cfg, state, model, data: str) -> dict:
        raise ValueError("the adding task makes its own data; --data is not used")

    def predictions(self, cfg, state, model: Adder, args: tuple[str, ...], data: str | None) -> Table:
        if data is not None:
            raise ValueError("predict for adding takes two numbers, not --data: grukit predict DIR 123 456")
        if len(args) != 2:
            raise ValueError(f"predict for adding takes two non-negative integers, got {len(args)} value(s)")
        try:
            a, b = (int(v) for v in args)
        except ValueError:
            raise ValueError(
                f"predict for adding takes two non-negative integers, got {args[0]!r} {args[1]!r}"
            ) from None
        if a < 0 or b < 0:
            raise ValueError(f"the numbers must be non-negative, got {a} and {b}")
        got = add(model, [(a, b)])[0]
        verdict = "correct" if got == a + b else f"WRONG, the true sum is {a + b}"
        return Table(("a", "b", "sum", "correct"), ((a, b, got, got == a + b),), text=f"{a} + {b} = {got}  ({verdict})")

    def export_example(self, cfg: AddingConfig, state: AddingState) -> tuple[tuple, list[str], dict]:
        bits = encode_ints([(5, 9), (123, 45)], 8)  # (B, T, 2)
        return (bits,), ["bits"], {"bits": {0: "batch", 1: "steps"}}

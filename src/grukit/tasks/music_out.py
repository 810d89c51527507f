"""What `grukit generate` makes of a music run's sampled steps: a MIDI file, a piano-roll PNG and a WAV.

The task returns these as writers (:class:`Generated`); the CLI decides the
paths and calls them. Tempo: BPM quarter notes per minute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.midi import midi_bytes
from ..data.synth import write_wav
from ..training.checkpoint import atomic_write_bytes
from . import music_model as mm
from .results import Generated

BPM = 90  # tempo of the files written, quarter notes per minute
COLOURS = ("tab:red", "tab:orange", "tab:green", "tab:blue")  # soprano, alto, tenor, bass


def draw_roll(notes: np.ndarray, step: float, length: int, prompt: int, title: str, path: Path) -> None:
    """Every note as a bar (pitch on y, quarter notes on x), each voice its colour; the prompt shaded."""
    from matplotlib.patches import Rectangle

    from ..figures import new_figure, save_figure

    fig, ax = new_figure((min(4 + length * step / 8, 16), 4.5))
    voices = int(notes[:, 0].max()) + 1 if len(notes) else 1
    for v in range(voices):
        mine = notes[notes[:, 0] == v]
        name = mm.VOICE_NAMES[v] if voices == mm.VOICES else None
        for (a, b), pitch in zip(mine[:, 2:], mine[:, 1]):
            ax.add_patch(Rectangle((a * step, pitch - 0.4), (b - a) * step, 0.8, color=COLOURS[v % 4]))
        if name:
            ax.plot([], [], color=COLOURS[v % 4], linewidth=6, label=name)  # a legend entry for the voice
    if prompt:
        ax.axvspan(0, prompt * step, color="0.9", zorder=0, label="prompt")
    low, high = (int(notes[:, 1].min()), int(notes[:, 1].max())) if len(notes) else (60, 72)
    ax.set_ylim(low - 2, high + 2)
    ax.set_xlim(0, max(length * step, step))
    ax.set_xlabel("time (quarter notes)")
    ax.set_ylabel("MIDI pitch (60 = middle C)")
    ax.set_title(title)
    if voices == mm.VOICES or prompt:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=5, frameon=False)
    save_figure(fig, path)


def generated(steps: np.ndarray, encoding: str, step: float, prompt: int) -> Generated:
    """The files of sampled ``steps`` (the first ``prompt`` of them from the prompt)."""
    notes = mm.roll_notes(steps) if encoding == "roll" else mm.voice_notes(steps)
    length = len(steps)
    midi = midi_bytes(notes, step, length, bpm=BPM)
    seconds_per_step = step * 60 / BPM
    voices = 1 if encoding == "roll" else mm.VOICES
    pitches = f"pitches {notes[:, 1].min()}-{notes[:, 1].max()}" if len(notes) else "no notes (all rests)"
    text = (
        f"{length} steps of {step} quarter notes ({prompt} from the prompt, {length - prompt} generated), "
        f"{len(notes)} notes in {voices} voice(s), {pitches}, {length * seconds_per_step:.1f} s at {BPM} bpm"
    )

    def write_midi(path: Path) -> str:
        atomic_write_bytes(path, midi)
        return f"{path} (MIDI, {voices} track(s) of notes after a tempo track)"

    def write_png(path: Path) -> str:
        draw_roll(notes, step, length, prompt, f"grukit music ({encoding}): {length} steps", path)
        return f"{path} (piano roll)"

    def write_audio(path: Path) -> str:
        return write_wav(midi, notes, seconds_per_step, length, path)

    return Generated(text, {".mid": write_midi, ".png": write_png, ".wav": write_audio})

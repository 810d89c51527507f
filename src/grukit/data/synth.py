"""Notes to sound: FluidSynth with a General MIDI soundfont where one is installed, else a plain numpy synth.

Debian ships both (``apt-get install fluidsynth timgm6mb-soundfont``; ``make
synth`` does it as root). Without them, :func:`additive_wav` sums a few
harmonics per note under a short attack and an exponential decay: no
instruments, but the right pitches at the right times. Both write 16-bit WAV
files (FluidSynth in stereo, the numpy synth in mono), atomically.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from ..training.checkpoint import atomic_write_bytes

RATE = 22050  # samples per second of the WAV files written
SOUNDFONTS = (
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
)
HARMONICS = (1.0, 0.5, 0.25, 0.125)  # amplitude of partials 1..4 of the numpy synth


def fluidsynth() -> tuple[str, str] | None:
    """(program, soundfont) when FluidSynth and a General MIDI soundfont are installed, else None.

    GRUKIT_SOUNDFONT names another soundfont; GRUKIT_SOUNDFONT=none turns FluidSynth off."""
    program = shutil.which("fluidsynth")
    wanted = os.environ.get("GRUKIT_SOUNDFONT", "")
    if wanted.lower() == "none" or program is None:
        return None
    font = next((f for f in ((wanted,) if wanted else SOUNDFONTS) if Path(f).is_file()), None)
    return (program, font) if font else None


def fluidsynth_wav(midi: bytes, path: Path, program: str, font: str) -> None:
    """Render the MIDI file ``midi`` to ``path`` with FluidSynth (raises OSError if it fails)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        src, out = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        src.write_bytes(midi)
        done = subprocess.run(
            [program, "-ni", "-q", "-g", "0.8", "-r", str(RATE), "-T", "wav", "-F", str(out), font, str(src)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            raise OSError(f"fluidsynth failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[:200]}")
        os.replace(out, path)


def additive(notes: np.ndarray, seconds_per_step: float, length: int) -> np.ndarray:
    """Float samples in [-1, 1] of ``notes`` ([voice, pitch, start, end] rows), ``length`` steps long."""
    total = int(round(length * seconds_per_step * RATE)) + RATE // 4  # a quarter second for the last release
    out = np.zeros(total)
    for _, pitch, a, b in notes:
        start, stop = int(a * seconds_per_step * RATE), int(b * seconds_per_step * RATE)
        t = (
            np.arange(min(stop - start + RATE // 10, total - start)) / RATE
        )  # (S,) seconds since the onset, release included
        freq = 440.0 * 2.0 ** ((pitch - 69) / 12)
        tone = sum(
            h * np.sin(2 * np.pi * freq * (k + 1) * t) for k, h in enumerate(HARMONICS) if freq * (k + 1) < RATE / 2
        )
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-2.0 * t)  # 10 ms attack, then decay
        held = (stop - start) / RATE
        envelope = envelope * np.clip(1 - (t - held) / 0.1, 0, 1)  # 100 ms release after the note ends
        out[start : start + len(t)] += tone * envelope
    peak = np.abs(out).max()
    return out / peak * 0.8 if peak > 0 else out


def additive_wav(notes: np.ndarray, seconds_per_step: float, length: int, path: Path) -> None:
    samples = additive(notes, seconds_per_step, length)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    atomic_write_bytes(path, buf.getvalue())


def write_wav(midi: bytes, notes: np.ndarray, seconds_per_step: float, length: int, path: Path) -> str:
    """Write the piece as a WAV file at ``path``; returns which synthesiser made it (one line)."""
    found = fluidsynth()
    if found is not None:
        try:
            fluidsynth_wav(midi, path, *found)
            return f"{path} (fluidsynth, soundfont {found[1]})"
        except (OSError, subprocess.SubprocessError) as e:
            reason = f"fluidsynth failed: {e}"
    else:
        reason = (
            "no fluidsynth with a General MIDI soundfont; `make synth` or apt-get install fluidsynth timgm6mb-soundfont"
        )
    additive_wav(notes, seconds_per_step, length, path)
    return f"{path} (grukit's numpy additive synth: {reason})"

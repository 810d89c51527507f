"""Audio in: PCM WAV files read with the standard library's ``wave``, mixed to
mono, and resampled to a common rate with a windowed-sinc interpolator in torch.

Resampling (Smith, "Digital Audio Resampling", https://ccrma.stanford.edu/~jos/resample/):
the output sample n sits at input position p = n * orig / new and is

    y[n] = sum_k x[k] * 2 fc * sinc(2 fc (p - k)) * w(p - k)

with the cutoff fc (cycles per input sample) just below the lower of the two
Nyquist frequencies, fc = rolloff * min(1, new / orig) / 2, so downsampling
filters out what the new rate cannot hold, and w a Hann window spanning
``zeros`` zero crossings of the sinc on each side. Any pair of rates works
(no common factor needed): with g = gcd(orig, new) the taps repeat every
new / g outputs, so they are computed once per phase (polyphase) when there
are at most 4096 phases, else per output sample.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

MIN_RATE, MAX_RATE = 1_000, 384_000  # sample rates accepted for resampling, Hz


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples, rate): a PCM WAV file (8, 16, 24 or 32-bit, any channel count) as
    float32 in [-1, 1], channels averaged to mono. One-line ValueError for files
    that are unreadable, not PCM WAV, or empty."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such audio file") from None
    except (wave.Error, EOFError, OSError) as e:
        raise ValueError(
            f"{path}: not a readable PCM WAV file ({e or type(e).__name__}); "
            "convert it, e.g. `ffmpeg -i IN -acodec pcm_s16le OUT.wav`"
        ) from None
    if channels < 1 or width not in (1, 2, 3, 4):
        raise ValueError(f"{path}: {channels} channel(s) of {8 * width}-bit samples; expected 8, 16, 24 or 32-bit PCM")
    usable = len(raw) // (width * channels) * width * channels
    if usable == 0:
        raise ValueError(f"{path}: empty audio (no samples)")
    x = _pcm_to_float(raw[:usable], width).reshape(-1, channels)  # (T, channels)
    return x.mean(1).astype(np.float32), rate


def _pcm_to_float(raw: bytes, width: int) -> np.ndarray:
    """Little-endian PCM bytes -> float64 in [-1, 1]; 8-bit WAV is unsigned, the rest signed."""
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        return v.astype(np.float64) / float(1 << 23)
    dtype = {2: "<i2", 4: "<i4"}[width]
    return np.frombuffer(raw, dtype).astype(np.float64) / float(1 << (8 * width - 1))


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV file (clipped)."""
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())


def check_rate(rate: int, where: str = "") -> None:
    """One-line ValueError for a sample rate that cannot be resampled (0, negative, absurd)."""
    if not (isinstance(rate, (int, np.integer)) and MIN_RATE <= rate <= MAX_RATE):
        at = f"{where}: " if where else ""
        raise ValueError(f"{at}sample rate {rate} Hz cannot be resampled (supported: {MIN_RATE} to {MAX_RATE} Hz)")


def resample(x: Tensor, orig: int, new: int, *, zeros: int = 16, rolloff: float = 0.945, chunk: int = 16384) -> Tensor:
    """Resample the last axis of ``x`` (..., N) from ``orig`` Hz to ``new`` Hz -> (..., ceil(N * new / orig))."""
    check_rate(orig)
    check_rate(new)
    if orig == new:
        return x
    n_in = x.shape[-1]
    n_out = math.ceil(n_in * new / orig)
    fc = rolloff * min(1.0, new / orig) / 2  # cycles per input sample
    half = zeros / (2 * fc)  # window half-width, input samples
    k = torch.arange(-math.ceil(half), math.ceil(half) + 1, dtype=torch.int64)  # (K,) tap offsets
    step = math.gcd(orig, new)  # p's fractional part is a multiple of step / new: new / step phases
    table = (
        _taps(torch.arange(new // step, dtype=torch.float64) * step / new, k, fc, half) if new // step <= 4096 else None
    )
    margin = len(k)
    flat = torch.nn.functional.pad(
        x.reshape(-1, n_in).to(torch.float64), (margin, margin)
    )  # (B, N + 2K): zeros outside
    out = []
    for start in range(0, n_out, chunk):
        n = torch.arange(start, min(start + chunk, n_out), dtype=torch.int64)  # (n,)
        base, rem = (n * orig) // new, (n * orig) % new  # (n,) integer and fractional (x new) parts of p, exact
        taps = table[rem // step] if table is not None else _taps(rem.to(torch.float64) / new, k, fc, half)  # (n, K)
        idx = base[:, None] + k[None, :] + margin  # (n, K) input samples used, in the padded signal
        gathered = flat.index_select(1, idx.reshape(-1)).reshape(len(flat), *idx.shape)  # (B, n, K)
        out.append((gathered * taps).sum(-1))  # (B, n)
    y = torch.cat(out, dim=-1) if out else flat[:, :0]
    return y.to(x.dtype).reshape(*x.shape[:-1], n_out)


def _taps(frac: Tensor, k: Tensor, fc: float, half: float) -> Tensor:
    """(P, K) filter taps for output positions whose fractional parts are ``frac`` (P,)."""
    t = frac[:, None] - k[None, :].to(torch.float64)  # (P, K) p - input index
    window = torch.where(t.abs() <= half, torch.cos(math.pi * t / (2 * half)) ** 2, 0.0)  # Hann
    return 2 * fc * torch.sinc(2 * fc * t) * window


def load_audio(path: str | Path, rate: int) -> Tensor:
    """A WAV file as a float32 mono tensor (N,) at ``rate`` Hz."""
    samples, orig = read_wav(path)
    check_rate(orig, str(path))
    return resample(torch.from_numpy(samples), orig, rate)

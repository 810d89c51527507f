"""Speech features in plain torch: power spectrogram (torch.stft), a triangular
mel filter bank, log-mel energies, and MFCCs as their orthonormal DCT-II.

    frames       25 ms Hann windows every 10 ms (400 / 160 samples at 16 kHz), n_fft 512
    mel scale    m = 2595 log10(1 + f / 700)  (HTK; O'Shaughnessy 1987)
    filter bank  n_mels triangles with centres equally spaced in m from 20 Hz to rate / 2;
                 each rises from its left neighbour's centre to 1 at its own and falls to
                 the right neighbour's (peak 1, "HTK" normalisation)
    log-mel      log(filter bank @ |STFT|^2 + 1e-10)
    MFCC         c_k = sqrt(2/M) * s_k * sum_m logmel_m cos(pi k (m + 1/2) / M), s_0 = 1/sqrt(2)
                 (DCT-II, orthonormal; Davis & Mermelstein 1980), first n_mfcc kept
    normalised   per utterance: each coefficient minus its mean over time, over its std
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

RATE = 16_000  # Hz, every file is resampled to this
N_FFT, WIN, HOP = 512, 400, 160  # samples: 32 ms FFT, 25 ms window, 10 ms hop at 16 kHz
FMIN = 20.0  # Hz, lowest filter edge
FEATURES = ("mfcc", "logmel")


def hz_to_mel(f):
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int = N_FFT, rate: int = RATE, fmin: float = FMIN) -> Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters over the FFT bins' frequencies, peak 1."""
    bins = torch.linspace(0.0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (F,) Hz
    edges = mel_to_hz(
        torch.linspace(float(hz_to_mel(fmin)), float(hz_to_mel(rate / 2)), n_mels + 2, dtype=torch.float64)
    )  # (M+2,)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1) each
    rise = (bins[None, :] - left) / (centre - left)  # (M, F)
    fall = (right - bins[None, :]) / (right - centre)  # (M, F)
    return rise.minimum(fall).clamp(min=0.0).to(torch.float32)


@functools.lru_cache(maxsize=8)
def dct_matrix(n_in: int, n_out: int) -> Tensor:
    """(n_out, n_in) rows of the orthonormal DCT-II: D @ D.T = I when n_out == n_in."""
    m = torch.arange(n_in, dtype=torch.float64)  # (M,)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]  # (K, 1)
    d = math.sqrt(2.0 / n_in) * torch.cos(math.pi * k * (m + 0.5) / n_in)  # (K, M)
    d[0] /= math.sqrt(2.0)
    return d.to(torch.float32)


def power_spectrogram(x: Tensor) -> Tensor:
    """(N,) samples -> (T, n_fft // 2 + 1) |STFT|^2, frames centred (zero padded at the ends)."""
    spec = torch.stft(
        x,
        N_FFT,
        hop_length=HOP,
        win_length=WIN,
        window=torch.hann_window(WIN, dtype=x.dtype),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # (F, T)
    return (spec.real**2 + spec.imag**2).T  # (T, F)


def log_mel(x: Tensor, n_mels: int = 40) -> Tensor:
    """(N,) samples at RATE -> (T, n_mels) log mel energies."""
    return torch.log(power_spectrogram(x) @ mel_filterbank(n_mels).T + 1e-10)  # (T, M)


def mfcc(x: Tensor, n_mfcc: int = 13, n_mels: int = 40) -> Tensor:
    """(N,) samples at RATE -> (T, n_mfcc) mel-frequency cepstral coefficients."""
    return log_mel(x, n_mels) @ dct_matrix(n_mels, n_mfcc).T  # (T, C)


def normalise(feats: Tensor) -> Tensor:
    """Per-utterance mean and variance normalisation of (T, C) features, channel by channel."""
    sd = feats.std(0, unbiased=False, keepdim=True)  # (1, C)
    return (feats - feats.mean(0, keepdim=True)) / torch.where(sd > 1e-5, sd, torch.ones(()))


def features(x: Tensor, kind: str = "mfcc", n_mfcc: int = 13, n_mels: int = 40) -> Tensor:
    """(N,) samples at RATE -> (T, C) normalised features: ``kind`` mfcc (C = n_mfcc) or logmel (C = n_mels)."""
    if kind not in FEATURES:
        raise ValueError(f"--features must be one of {', '.join(FEATURES)}, got {kind!r}")
    if n_mfcc > n_mels:
        raise ValueError(f"--n-mfcc ({n_mfcc}) cannot exceed --n-mels ({n_mels})")
    feats = mfcc(x, n_mfcc, n_mels) if kind == "mfcc" else log_mel(x, n_mels)
    return normalise(feats)

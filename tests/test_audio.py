"""The audio pipeline against numpy references: WAV reading, the resampler, the
mel filter bank, the DCT-II, the spectrogram and the normalisation."""

from __future__ import annotations

import math
import struct
import wave

import numpy as np
import pytest
import torch

from grukit.data import audio
from grukit.data import audio_features as af


def write_pcm(path, samples: np.ndarray, rate: int, width: int = 2) -> None:
    """(T, C) floats in [-1, 1] as a PCM WAV of ``width`` bytes per sample, written by hand."""
    scale = float(1 << (8 * width - 1)) - 1
    ints = np.round(np.asarray(samples, np.float64) * scale).astype(np.int64).reshape(-1)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints)
    channels = samples.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def wav_header_with_rate(path, rate: int, n: int = 100) -> None:
    """A 16-bit mono WAV claiming ``rate`` Hz (wave refuses to write 0)."""
    data = np.zeros(n, "<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    path.write_bytes(
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_wav_every_width_and_stereo_to_mono(tmp_path, width):
    t = np.arange(800) / 8000
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.cos(2 * np.pi * 220 * t)
    write_pcm(tmp_path / "s.wav", np.stack([left, right], 1), 8000, width)
    x, rate = audio.read_wav(tmp_path / "s.wav")
    assert rate == 8000 and x.dtype == np.float32 and x.shape == (800,)
    tol = {1: 2e-2, 2: 1e-4, 3: 1e-6, 4: 1e-6}[width]
    np.testing.assert_allclose(x, (left + right) / 2, atol=tol)


@pytest.mark.parametrize("orig", [8000, 22050, 44100, 48000, 11025])
def test_resampled_sine_keeps_its_frequency(orig):
    f = 1000.0
    x = torch.from_numpy(np.sin(2 * np.pi * f * np.arange(orig) / orig)).float()  # 1 s
    y = audio.resample(x, orig, 16000).numpy()
    assert y.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.fft.rfftfreq(len(y), 1 / 16000)[spectrum.argmax()] == pytest.approx(f, abs=1.0)
    ref = np.sin(2 * np.pi * f * np.arange(16000) / 16000)
    np.testing.assert_allclose(y[400:-400], ref[400:-400], atol=2e-3)  # the edges see the zeros outside


def test_resampling_removes_what_the_new_rate_cannot_hold():
    t = np.arange(44100) / 44100
    x = torch.from_numpy(np.sin(2 * np.pi * 10000 * t)).float()  # above 16 kHz's Nyquist (8 kHz)
    assert audio.resample(x, 44100, 16000)[400:-400].abs().max() < 0.01  # would alias to 6 kHz unfiltered


def test_resample_batches_and_round_trips():
    x = torch.randn(2, 3, 1000, dtype=torch.float64)
    smooth = torch.from_numpy(
        np.convolve(np.random.default_rng(0).standard_normal(3000), np.hanning(40), "same")
    ).reshape(3, 1000)
    up = audio.resample(smooth, 8000, 24000)
    assert up.shape == (3, 3000)
    back = audio.resample(up, 24000, 8000)
    torch.testing.assert_close(back[:, 50:-50], smooth[:, 50:-50], atol=1e-3 * smooth.abs().max().item(), rtol=0)
    assert audio.resample(x, 16000, 16000) is x


@pytest.mark.parametrize("rate", [0, 10, 10_000_000])
def test_absurd_rates_are_one_line(tmp_path, rate):
    wav_header_with_rate(tmp_path / "r.wav", rate)
    with pytest.raises(ValueError, match=rf"r\.wav: sample rate {rate} Hz cannot be resampled"):
        audio.load_audio(tmp_path / "r.wav", 16000)


def test_unreadable_and_empty_audio_are_one_line(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    (tmp_path / "zero.wav").write_bytes(b"")
    write_pcm(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    for name, message in [
        ("junk.wav", "not a readable PCM WAV"),
        ("zero.wav", "not a readable PCM WAV"),
        ("empty.wav", "empty audio"),
        ("missing.wav", "no such audio file"),
    ]:
        with pytest.raises(ValueError, match=message) as e:
            audio.read_wav(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)


def numpy_mel_filterbank(n_mels, n_fft, rate, fmin):
    """Independent reference: loops over filters and bins."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    pts = inv(np.linspace(mel(fmin), mel(rate / 2), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    fb = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        for j, f in enumerate(freqs):
            if pts[m] <= f <= pts[m + 1]:
                fb[m, j] = (f - pts[m]) / (pts[m + 1] - pts[m])
            elif pts[m + 1] < f <= pts[m + 2]:
                fb[m, j] = (pts[m + 2] - f) / (pts[m + 2] - pts[m + 1])
    return fb


@pytest.mark.parametrize("n_mels", [23, 40, 64])
def test_mel_filterbank_matches_numpy(n_mels):
    fb = af.mel_filterbank(n_mels).numpy()
    assert fb.shape == (n_mels, af.N_FFT // 2 + 1)
    np.testing.assert_allclose(fb, numpy_mel_filterbank(n_mels, af.N_FFT, af.RATE, af.FMIN), atol=1e-6)
    assert (fb.sum(1) > 0).all() and fb.max() <= 1.0
    centres = fb.argmax(1)
    assert (np.diff(centres) >= 0).all()  # in frequency order


def test_dct_is_orthonormal_and_matches_the_formula():
    d = af.dct_matrix(40, 40).double().numpy()
    np.testing.assert_allclose(d @ d.T, np.eye(40), atol=1e-6)
    x = np.random.default_rng(0).standard_normal(40)
    n = np.arange(40)
    ref = np.array([np.sum(x * np.cos(np.pi * k * (n + 0.5) / 40)) for k in range(13)]) * np.sqrt(2 / 40)
    ref[0] /= np.sqrt(2)
    np.testing.assert_allclose(af.dct_matrix(40, 13).double().numpy() @ x, ref, atol=1e-5)


def test_power_spectrogram_matches_numpy_frames():
    x = np.random.default_rng(1).standard_normal(4000).astype(np.float32)
    spec = af.power_spectrogram(torch.from_numpy(x)).numpy()
    assert spec.shape == (1 + 4000 // af.HOP, af.N_FFT // 2 + 1)
    padded = np.pad(x.astype(np.float64), af.N_FFT // 2)
    win = np.zeros(af.N_FFT)
    off = (af.N_FFT - af.WIN) // 2
    win[off : off + af.WIN] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(af.WIN) / af.WIN)  # periodic Hann, centred
    for t in (0, 7, 20):
        frame = padded[t * af.HOP : t * af.HOP + af.N_FFT] * win
        np.testing.assert_allclose(spec[t], np.abs(np.fft.rfft(frame)) ** 2, rtol=1e-3, atol=1e-3)


def test_mfcc_of_a_tone_and_normalisation():
    x = torch.from_numpy(np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)).float()
    mel = af.log_mel(x, 40)
    hz = af.mel_to_hz(np.linspace(float(af.hz_to_mel(af.FMIN)), float(af.hz_to_mel(8000)), 42))[1:-1].numpy()
    assert abs(hz[mel[50].argmax()] - 1000) < 100  # the loudest filter is the one at 1 kHz
    feats = af.features(x, "mfcc", 13, 40)
    assert feats.shape == (101, 13) and torch.isfinite(feats).all()
    torch.testing.assert_close(feats.mean(0), torch.zeros(13), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="--features must be one of"):
        af.features(x, "plp")
    assert math.isfinite(float(af.features(torch.zeros(100), "logmel").abs().max()))  # silence: no NaN

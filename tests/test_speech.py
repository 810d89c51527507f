"""The speech task end to end on WAV files the tests make (tones and chirps per
class; tone bursts as "digits" for CTC), its errors, and the audio pipeline on
real recorded speech (Debian's pocketsphinx-testdata)."""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from grukit.cli import main
from grukit.data import speech_sets
from grukit.data.audio import write_wav
from grukit.evaluation.speech import edit_distance, greedy_decode, wer

TINY = ["--hidden-size", "16", "--batch-size", "8", "--no-progress", "--lr", "0.01"]
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def sound(kind: str, seconds: float, rate: int, rng) -> np.ndarray:
    """A tone (Hz given as a number) or a rising chirp, with noise, at ``rate``."""
    t = np.arange(int(seconds * rate)) / rate
    if kind == "chirp":
        phase = 2 * np.pi * (300 * t + 1200 * t**2 / (2 * seconds))  # 300 -> 1500 Hz
    else:
        phase = 2 * np.pi * float(kind) * t
    return 0.5 * np.sin(phase) + 0.03 * rng.standard_normal(len(t))


def write_words(root: Path, per_class: int = 12) -> Path:
    """LOW/, HIGH/, CHIRP/ folders of WAVs at mixed rates and lengths."""
    rng = np.random.default_rng(0)
    for label, kind in (("low", "300"), ("high", "2000"), ("chirp", "chirp")):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            rate = (8000, 16000, 22050)[i % 3]
            write_wav(root / label / f"{i}.wav", sound(kind, rng.uniform(0.25, 0.5), rate, rng), rate)
    return root


TONES = {"0": 400.0, "1": 1000.0, "2": 2200.0}  # tone-burst "digits"


def write_strings(root: Path, n: int = 60, csv: bool = False) -> dict[str, str]:
    """Utterances of 1-3 tone bursts (0.1 s each, 0.06 s apart) with X.txt transcripts or a CSV;
    returns each file's digits."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    rows, truth = ["file,transcript"], {}
    for i in range(n):
        digits = [str(d) for d in rng.integers(0, 3, rng.integers(1, 4))]
        parts = [np.zeros(800)]
        for d in digits:
            parts += [sound(str(TONES[d]), 0.1, 16000, rng), 0.03 * rng.standard_normal(960)]
        write_wav(root / f"u{i}.wav", np.concatenate(parts), 16000)
        truth[f"u{i}.wav"] = " ".join(digits)
        words = " ".join(digits) if i % 2 else " ".join(["zero", "one", "two"][int(d)] for d in digits)
        if csv:
            rows.append(f"u{i}.wav,{words}")
        else:
            (root / f"u{i}.txt").write_text(words + "\n")
    if csv:
        (root / "list.csv").write_text("\n".join(rows) + "\n")
    return truth


@pytest.fixture(scope="module")
def words_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    data = write_words(root / "words")
    out = root / "run"
    result = run(
        "train", "speech", "--data", data, "--out", out, "--epochs", "8", "--test-fraction", "0.25", *TINY, "--json"
    )
    return data, out, json.loads(result.output[: result.output.rindex("}") + 1])


def test_words_learned_from_wav_folders(words_run):
    data, out, metrics = words_run
    assert metrics["accuracy"] >= 0.8, metrics  # chance is 1/3
    assert metrics["baselines"]["majority_class"]["accuracy"] <= 0.34
    assert metrics["classes"] == ["chirp", "high", "low"] and not metrics["synthetic"]
    assert (out / "confusion.png").stat().st_size > 1000
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["test_size"] == 9
    again = json.loads(run("eval", out, "--data", data, "--json").output)
    assert again["accuracy"] >= 0.8 and again["test_size"] == 36


def test_predict_prints_label_and_probability(words_run, tmp_path):
    data, out, _ = words_run
    rng = np.random.default_rng(5)
    write_wav(tmp_path / "new_high.wav", sound("2000", 0.4, 44100, rng), 44100)  # a rate never trained on
    lines = run("predict", out, tmp_path / "new_high.wav", data / "low" / "0.wav").output.strip().splitlines()
    assert lines[0].split("\t")[:2] == [str(tmp_path / "new_high.wav"), "high"]
    assert lines[1].split("\t")[1] == "low" and 0.5 < float(lines[1].split("\t")[2]) <= 1.0


def test_speech_commands_testing_list_names_the_test_files(tmp_path):
    data = write_words(tmp_path / "words", per_class=6)
    (data / "_background_noise_").mkdir()
    write_wav(data / "_background_noise_" / "noise.wav", np.zeros(1600), 16000)
    (data / "testing_list.txt").write_text("low/0.wav\nhigh/0.wav\nchirp/0.wav\nchirp/1.wav\n")
    items = speech_sets.read_label_folders(data)
    assert len(items) == 18 and sorted(u.path for u in items if u.split == "test")[0].endswith("chirp/0.wav")
    assert sum(u.split == "test" for u in items) == 4


@pytest.mark.parametrize("layout", ["txt", "csv"])
def test_ctc_learns_tone_burst_digit_strings(tmp_path, layout):
    root = tmp_path / "strings"
    truth = write_strings(root, csv=layout == "csv")
    data = root / "list.csv" if layout == "csv" else root
    untrained = run(
        "train",
        "speech",
        "--ctc",
        "--data",
        data,
        "--out",
        tmp_path / "r0",
        "--epochs",
        "1",
        *TINY,
        "--lr",
        "1e-5",
        "--json",
    )
    assert json.loads(untrained.output[: untrained.output.rindex("}") + 1])["wer"] > 0.8
    out = tmp_path / "run"
    result = run("train", "speech", "--ctc", "--data", data, "--out", out, "--epochs", "15", *TINY, "--json")
    metrics = json.loads(result.output[: result.output.rindex("}") + 1])
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert min(h["val_wer"] for h in history) < 0.1 and history[-1]["val_loss"] < history[0]["val_loss"] / 5, history
    assert metrics["wer"] < 0.15 and metrics["string_accuracy"] > 0.8, metrics
    wavs = [root / "u1.wav", root / "u2.wav", root / "u3.wav"]
    said = [line.split("\t") for line in run("predict", out, *wavs).output.strip().splitlines()]
    assert [s[0] for s in said] == [str(w) for w in wavs]
    assert sum(s[1] == truth[w.name] for s, w in zip(said, wavs)) >= 2, (said, truth)


def test_wer_greedy_decoding_and_transcripts():
    assert edit_distance(["1", "2", "3"], ["1", "3", "4", "5"]) == 3
    assert wer(["1 2 3", "4"], ["1 2 3", ""]) == pytest.approx(0.25)
    lp = torch.log(
        torch.tensor([[[0.1, 0.9, 0.0], [0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.0, 0.1, 0.9]]]) + 1e-9
    )
    assert greedy_decode(lp, torch.tensor([5])) == [[1, 1, 2]] and greedy_decode(lp, torch.tensor([2])) == [[1]]
    assert speech_sets.digit_tokens("Four oh 7, 12", "t") == "4 0 7 1 2"


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("one_label", [], "needs WAV files in at least two label sub-folders"),
        ("bad_transcript", ["--ctc"], r"u0\.txt: transcript 'one two x' has 'x', outside the vocabulary"),
        ("empty_wav", [], r"bad\.wav: empty audio"),
        ("junk_wav", [], r"bad\.wav: not a readable PCM WAV"),
        ("no_transcript", ["--ctc"], r"u0\.wav: no transcript u0\.txt"),
    ],
)
def test_bad_data_is_one_line(tmp_path, setup, args, message):
    data = tmp_path / "data"
    if setup == "one_label":
        (data / "yes").mkdir(parents=True)
        write_wav(data / "yes" / "a.wav", np.zeros(1600), 16000)
    elif setup in ("bad_transcript", "no_transcript"):
        write_strings(data, n=4)
        (data / "u0.txt").write_text("one two x\n") if setup == "bad_transcript" else (data / "u0.txt").unlink()
    else:
        write_words(data, per_class=3)
        (data / "low" / "bad.wav").write_bytes(b"" if setup == "empty_wav" else b"RIFF....junk")
        if setup == "empty_wav":
            write_wav(data / "low" / "bad.wav", np.zeros(0), 16000)
    result = run("train", "speech", "--data", data, "--out", tmp_path / "run", "--epochs", "1", *TINY, *args, ok=False)
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert re.search(message, result.output), result.output
    assert not (tmp_path / "run").exists()


def test_predict_errors_are_one_line(words_run, tmp_path):
    _, out, _ = words_run
    fmt = struct.pack("<HHIIHH", 1, 1, 0, 0, 2, 16)
    (tmp_path / "zero.wav").write_bytes(
        b"RIFF"
        + struct.pack("<I", 36 + 4)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", 4)
        + b"\0\0\0\0"
    )
    for args, message in [
        ([tmp_path / "zero.wav"], "sample rate 0 Hz cannot be resampled"),
        ([], "reads WAV files"),
        ([tmp_path / "none.wav"], "no such audio file"),
    ]:
        result = run("predict", out, *args, ok=False)
        assert result.exit_code == 1 and message in result.output and result.output.count("\n") == 1, result.output


@pytest.mark.skipif(
    not LIBRIVOX.is_dir() and not os.environ.get("GRUKIT_REQUIRE_SPEECH"),
    reason="real speech comes from Debian's pocketsphinx-testdata: sudo apt-get install -y pocketsphinx-testdata (make speech-tools)",
)
def test_real_recorded_speech_runs_through_the_pipeline(words_run, tmp_path):
    """LibriVox recordings (pocketsphinx-testdata): loading, resampling, features and predict run;
    no accuracy is claimed (the model knows tones, and these are sentences)."""
    from grukit.data import audio
    from grukit.data import audio_features as af

    wavs = sorted(LIBRIVOX.glob("*.wav"))
    assert len(wavs) >= 3
    for wav in wavs[:3]:
        _samples, rate = audio.read_wav(wav)
        x = audio.load_audio(wav, af.RATE)
        assert rate == 16000 and 1.0 < len(x) / af.RATE < 30 and x.abs().max() > 0.05  # real audio, not silence
        down = audio.resample(x, 16000, 22050)
        write_wav(tmp_path / wav.name, down.numpy(), 22050)  # the same speech at another rate
        feats = af.features(audio.load_audio(tmp_path / wav.name, af.RATE))
        assert feats.shape[1] == 13 and bool(feats.isfinite().all()) and abs(len(feats) - len(af.features(x))) <= 1
    _, out, _ = words_run
    lines = run("predict", out, *wavs[:2], tmp_path / wavs[0].name).output.strip().splitlines()
    assert len(lines) == 3 and all(line.split("\t")[1] in ("chirp", "high", "low") for line in lines)
    first = (LIBRIVOX / "transcription").read_text().splitlines()[0]
    with pytest.raises(ValueError, match="outside the vocabulary"):  # a sentence is not a digit string
        speech_sets.digit_tokens(first, "transcription")

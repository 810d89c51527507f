"""The music task: MIDI in and out, the two encodings, the baselines, the chorale cache, train -> eval -> generate.

MIDI files are made here with mido (four voices walking around their ranges);
the chorale tests read two chorales of music21's corpus into a cache under
tmp_path, and skip where music21 is not installed.
"""

from __future__ import annotations

import json
import sys
import wave

import numpy as np
import pytest
from click.testing import CliRunner

from grukit.cli import main
from grukit.data.midi import midi_bytes, read_midi
from grukit.tasks import music as music_task
from grukit.tasks import music_model as mm

mido = pytest.importorskip("mido")

CENTRES = (72, 65, 57, 48)  # soprano, alto, tenor, bass
TINY = [
    "--epochs",
    "2",
    "--hidden-size",
    "8",
    "--batch-size",
    "4",
    "--seq-len",
    "16",
    "--embedding-size",
    "4",
    "--no-progress",
]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r, *needles):
    assert r.exit_code != 0, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    for needle in needles:
        assert needle in lines[0], r.output


def write_piece(path, seed, quarters=16, voices=4, tpb=96):
    """A type-1 MIDI file: ``voices`` tracks of quarter notes (the last voice in half notes) on random walks."""
    rng = np.random.default_rng(seed)
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    for v in range(voices):
        track, pitch, t = mido.MidiTrack(), CENTRES[v], 0
        beats = 2 if v == voices - 1 else 1
        while t < quarters:
            pitch = int(np.clip(pitch + rng.integers(-2, 3), CENTRES[v] - 5, CENTRES[v] + 5))
            track += [
                mido.Message("note_on", note=pitch, velocity=70, channel=v, time=0),
                mido.Message("note_off", note=pitch, velocity=0, channel=v, time=beats * tpb),
            ]
            t += beats
        mid.tracks.append(track)
    mid.save(str(path))
    return path


def midi_folder(folder, n=6, **kw):
    folder.mkdir()
    for i in range(n):
        write_piece(folder / f"p{i}.mid", i, **kw)
    return folder


def notes_of(path):
    """Per track of a written file: [(pitch, on tick, off tick)], and the file's end tick."""
    mid, out, end = mido.MidiFile(str(path)), [], 0
    for track in mid.tracks:
        tick, on, notes = 0, {}, []
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity:
                on[msg.note] = tick
            elif msg.type in ("note_on", "note_off"):
                notes.append((msg.note, on.pop(msg.note), tick))
        end = max(end, tick)
        if notes:
            out.append(notes)
    return out, end, mid.ticks_per_beat


# ---- MIDI and the encodings ---------------------------------------------------------


def test_read_midi_quantises_orders_voices_and_round_trips(tmp_path):
    notes = read_midi(write_piece(tmp_path / "a.mid", 0), step=0.5)
    assert sorted(set(notes[:, 0])) == [0, 1, 2, 3]
    means = [notes[notes[:, 0] == v, 1].mean() for v in range(4)]
    assert means == sorted(means, reverse=True)  # voice 0 is the highest
    assert (notes[notes[:, 0] == 0, 3] - notes[notes[:, 0] == 0, 2] == 2).all()  # quarter notes are two eighth steps
    assert notes[:, 3].max() == 32
    again = read_midi_bytes(tmp_path, midi_bytes(notes, 0.5, 40), 0.5)
    np.testing.assert_array_equal(again, notes)


def read_midi_bytes(tmp_path, data, step):
    (tmp_path / "b.mid").write_bytes(data)
    return read_midi(tmp_path / "b.mid", step)


def test_voice_tokens_and_roll_frames_decode_to_the_same_notes(tmp_path):
    notes = read_midi(write_piece(tmp_path / "a.mid", 1), step=0.5)
    tokens = mm.to_voices(notes)
    assert tokens.shape == (32, 4) and set(tokens[:, 3]) <= set(range(40, 56)) | {mm.HOLD}
    back = mm.voice_notes(tokens)
    np.testing.assert_array_equal(
        back[np.lexsort((back[:, 2], back[:, 0]))], notes[np.lexsort((notes[:, 2], notes[:, 0]))]
    )
    one = notes[notes[:, 0] == 3]  # the bass in half notes; a roll merges repeated notes, so compare sounding steps
    frames = mm.to_roll(one)
    assert frames.sum() == (one[:, 3] - one[:, 2]).sum()
    np.testing.assert_array_equal(mm.to_roll(mm.roll_notes(frames)), frames)


def test_baselines_are_fitted_frequencies_and_the_most_likely_repeat_eps():
    rng = np.random.default_rng(0)
    a = np.zeros((60, mm.KEYS), np.float32)
    a[:, 10] = 1
    a[:, 20] = np.repeat(rng.integers(0, 2, 15), 4)  # key 20 changes at most every fourth frame
    fit = music_task.baselines([a], "roll")
    assert fit["key_freq"][10] == pytest.approx(60.5 / 61) and fit["key_freq"][0] == pytest.approx(0.5 / 61)
    freq = np.array(fit["key_freq"])

    def direct(eps):  # the repeat baseline's NLL of frames 1.., computed the long way
        p = (1 - eps) * a[:-1] + eps * freq
        return -np.log(np.where(a[1:] > 0, p, 1 - p)).sum()

    eps = fit["repeat_eps"]
    assert 0 < eps < 1 and direct(eps) <= min(direct(eps * 1.3), direct(eps / 1.3))
    state = music_task.MusicState("roll", 0.5, "t", [0], 0, **fit, ranges=[[31, 41]])
    nll = music_task.baseline_nll([a], state)
    first = -(a[0] * np.log(freq) + (1 - a[0]) * np.log1p(-freq)).sum()
    assert nll["repeat"] == pytest.approx(first + direct(eps))
    assert nll["frequency"] == pytest.approx(-(a * np.log(freq) + (1 - a) * np.log1p(-freq)).sum())
    assert nll["repeat"] < nll["frequency"]


# ---- one-line errors --------------------------------------------------------------


def test_no_notes_no_midi_files_and_a_missing_extra_are_one_line(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    mid.save(str(empty / "silent.mid"))
    one_line_error(run("train", "music", "--data", empty, "--out", tmp_path / "r1", *TINY), "silent.mid: no notes")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("not music")
    one_line_error(
        run("train", "music", "--data", tmp_path / "texts", "--out", tmp_path / "r2", *TINY), "no MIDI files"
    )
    monkeypatch.setitem(sys.modules, "mido", None)  # as if not installed
    one_line_error(
        run("train", "music", "--data", midi_folder(tmp_path / "m"), "--out", tmp_path / "r3", *TINY),
        "pip install 'grukit[music]'",
    )
    monkeypatch.setitem(sys.modules, "music21", None)
    one_line_error(run("train", "music", "--out", tmp_path / "r4", *TINY), "pip install 'grukit[music]'")
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 5))


def test_voices_need_four_voice_pieces(tmp_path):
    folder = midi_folder(tmp_path / "trios", voices=3)
    one_line_error(
        run("train", "music", "--data", folder, "--encoding", "voices", "--out", tmp_path / "r", *TINY), "four voices"
    )


# ---- train, eval, generate ----------------------------------------------------------


@pytest.mark.parametrize("encoding", ["roll", "voices"])
def test_train_eval_generate_writes_midi_png_and_wav(tmp_path, monkeypatch, encoding):
    monkeypatch.chdir(tmp_path)
    folder = midi_folder(tmp_path / "data")
    out = tmp_path / "run"
    r = run("train", "music", "--data", folder, "--encoding", encoding, "--out", out, *TINY)
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    baseline = "frequency_nll" if encoding == "roll" else "unigram_nll"
    assert (
        metrics["test_pieces"] == 1
        and metrics["test_steps"] == 32
        and 0 < metrics["nll"] < 1e3
        and metrics[baseline] > 0
    )
    if encoding == "roll":
        assert 0 < metrics["repeat_nll"] < metrics["frequency_nll"] and "not directly comparable" in r.output
    r = run("eval", out, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["nll"] == pytest.approx(metrics["nll"], abs=1e-4), r.output
    r = run("eval", out, "--data", folder / "p5.mid", "--json")  # the test piece (the last of six), read as a file
    assert r.exit_code == 0 and json.loads(r.output)["nll"] == pytest.approx(metrics["nll"], abs=1e-4), r.output

    r = run(
        "generate",
        out,
        "--length",
        "24",
        "--temperature",
        "0.8",
        "--prompt",
        folder / "p0.mid",
        "--out",
        tmp_path / "g" / "new.mid",
    )
    assert r.exit_code == 0, r.output
    assert "32 from the prompt, 24 generated" in r.output
    tracks, end, tpb = notes_of(tmp_path / "g" / "new.mid")
    assert end == (32 + 24) * tpb // 2  # the prompt's 32 eighth steps, then 24 new ones
    if encoding == "voices":
        trio = write_piece(tmp_path / "trio.mid", 0, voices=3)
        one_line_error(run("generate", out, "--prompt", trio), "writes four voices; the file has 3")
        assert len(tracks) == 4
        for t, centre in zip(tracks, CENTRES):  # each voice in its training range, one note at a time
            assert all(centre - 5 <= p <= centre + 5 for p, _, _ in t)
            spans = sorted((a, b) for _, a, b in t)
            assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    else:
        assert len(tracks) == 1 and all(CENTRES[3] - 5 <= p <= CENTRES[0] + 5 for p, _, _ in tracks[0])
    assert (tmp_path / "g" / "new.png").stat().st_size > 1000
    with wave.open(str(tmp_path / "g" / "new.wav")) as w:
        assert w.getnchannels() in (1, 2) and w.getsampwidth() == 2  # FluidSynth writes stereo, the numpy synth mono
        seconds = w.getnframes() / w.getframerate()
        assert (
            56 * 0.5 * 60 / 90 <= seconds <= 56 * 0.5 * 60 / 90 + 8
        )  # the piece, then at most a few seconds of release

    monkeypatch.setenv("GRUKIT_SOUNDFONT", "none")
    r = run("generate", out, "--length", "8")
    assert r.exit_code == 0 and "numpy additive synth" in r.output, r.output
    tracks, end, tpb = notes_of(tmp_path / "generated.mid")
    assert end == 8 * tpb // 2
    with wave.open(str(tmp_path / "generated.wav")) as w:
        assert w.getnchannels() == 1 and w.getnframes() / w.getframerate() == pytest.approx(
            8 * 0.5 * 60 / 90 + 0.25, abs=0.01
        )
        assert np.abs(np.frombuffer(w.readframes(w.getnframes()), "<i2")).max() > 1000  # not silence


def test_the_gru_learns_a_pattern_the_baselines_cannot(tmp_path):
    """Arpeggios: every frame differs from the last, so the repeat baseline is poor; the GRU can learn the cycle."""
    folder = tmp_path / "arp"
    folder.mkdir()
    for i in range(6):
        mid = mido.MidiFile(ticks_per_beat=96)
        track = mido.MidiTrack()
        for pitch in [60, 64, 67, 72] * 32:
            track += [
                mido.Message("note_on", note=pitch, velocity=70, time=0),
                mido.Message("note_off", note=pitch, velocity=0, time=48),
            ]
        mid.tracks.append(track)
        mid.save(str(folder / f"a{i}.mid"))
    r = run(
        "train",
        "music",
        "--data",
        folder,
        "--out",
        tmp_path / "run",
        "--epochs",
        "120",
        "--patience",
        "0",
        "--hidden-size",
        "16",
        "--lr",
        "0.02",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["nll"] < 0.25 * min(m["frequency_nll"], m["repeat_nll"]), (
        m
    )  # it leaves the log(4) plateau by about epoch 90


# ---- the chorales and their cache -------------------------------------------------------


def test_chorales_are_read_once_then_from_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("music21")
    from grukit.data import music

    monkeypatch.setenv("GRUKIT_CACHE", str(tmp_path / "cache"))
    pieces, names = music.load_chorales(0.5, max_pieces=2)
    assert len(pieces) == 2 and len(names) == 2 and "bwv" in names[0]
    for p in pieces:
        assert sorted(set(p[:, 0])) == [0, 1, 2, 3]
        soprano, bass = p[p[:, 0] == 0, 1], p[p[:, 0] == 3, 1]
        assert soprano.min() >= 55 and soprano.max() <= 84 and bass.min() >= 33 and bass.max() <= 67
    cached = list((tmp_path / "cache").glob("bach-chorales-*.npz"))
    assert len(cached) == 1

    def fail(*a):
        raise AssertionError("parsed again")

    monkeypatch.setattr(music, "parse_chorale", fail)
    again, _ = music.load_chorales(0.5, max_pieces=2)
    assert all((a == b).all() for a, b in zip(again, pieces))
    cached[0].write_bytes(b"not an npz")  # a damaged cache is rebuilt, not trusted
    monkeypatch.undo()
    monkeypatch.setenv("GRUKIT_CACHE", str(tmp_path / "cache"))
    rebuilt, _ = music.load_chorales(0.5, max_pieces=2)
    assert all((a == b).all() for a, b in zip(rebuilt, pieces))

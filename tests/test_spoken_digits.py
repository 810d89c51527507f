"""The built-in spoken digits: synthesised with espeak-ng and flite, split by
voice, cached by settings; one line when the synthesisers are missing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from grukit.cli import main
from grukit.data import audio, speech_sets
from grukit.data import spoken_digits as sd

HAVE = all(shutil.which(b) for b in ("espeak-ng", "flite"))
needs_engines = pytest.mark.skipif(
    not HAVE and not os.environ.get("GRUKIT_REQUIRE_SPEECH"),
    reason=f"espeak-ng/flite not installed and not installable here ({sd.INSTALL}; `make speech-tools` as root)",
)


def test_missing_engines_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["train", "speech", "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "espeak-ng and flite not found: install with `sudo apt-get install -y espeak-ng flite`" in result.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_test_voices_are_never_trained_on():
    for engine in ("espeak-ng", "flite"):
        assert not set(sd.voices(engine, "train")) & set(sd.voices(engine, "test"))
    accents = [{v.split("+")[0] for v in sd.voices("espeak-ng", s)} for s in ("train", "test")]
    variants = [{v.split("+")[1] for v in sd.voices("espeak-ng", s)} for s in ("train", "test")]
    assert not accents[0] & accents[1] and not variants[0] & variants[1]
    jobs = sd.plan(sd.DigitSpec(train_per_engine=60, test_per_engine=20))
    for engine in ("espeak-ng", "flite"):
        test = [j for j in jobs if j["engine"] == engine and j["split"] == "test"]
        assert len(test) == 20 and sorted({j["target"] for j in test}) == sorted(sd.WORDS)  # every digit tested


@needs_engines
@pytest.mark.parametrize("strings", [False, True])
def test_synthesis_cached_by_settings(tmp_path, monkeypatch, strings):
    spec = sd.DigitSpec(strings=strings, train_per_engine=10, test_per_engine=4, seed=3)
    folder = sd.build(spec, progress=False, root=tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["synthesised"] and len(manifest["files"]) == 28
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporary folder left
    items = sd.utterances(folder)
    assert {(u.group, u.split) for u in items} == {(e, s) for e in ("espeak-ng", "flite") for s in ("train", "test")}
    rates = set()
    for u in items[::5]:
        x, rate = audio.read_wav(u.path)
        rates.add(rate)
        assert 0.2 < len(x) / rate < 6 and np.abs(x).max() > 0.05
    assert 22050 in rates and rates & {8000, 16000}  # espeak-ng and flite keep their own rates
    if strings:
        assert sd.utterances(folder)[0].target == speech_sets.digit_tokens(
            Path(items[0].path).with_suffix(".txt").read_text(), "t"
        )
        assert len(speech_sets.read_transcripts(folder)) == 28  # the cache is also a --ctc --data folder
    else:
        assert len(speech_sets.read_label_folders(folder)) == 28  # and a Speech Commands folder
    monkeypatch.setattr(sd, "synthesise", lambda job, dest: pytest.fail("a cached set was synthesised again"))
    assert sd.build(spec, progress=False, root=tmp_path) == folder
    assert sd.cache_dir(spec, tmp_path) == folder
    for change in ({"seed": 4}, {"snr_db": (20.0, 20.0)}, {"test_per_engine": 5}):
        assert sd.cache_dir(sd.DigitSpec(**{**spec.__dict__, **change}), tmp_path) != folder


@needs_engines
def test_builtin_words_task_reports_per_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = CliRunner().invoke(
        main,
        [
            "train",
            "speech",
            "--out",
            str(tmp_path / "run"),
            "--train-count",
            "40",
            "--test-count",
            "20",
            "--epochs",
            "2",
            "--hidden-size",
            "8",
            "--no-progress",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output[: result.output.rindex("}") + 1])
    assert metrics["synthetic"] and "SYNTHESISED" in metrics["data"] and "SYNTHESISED" in metrics["summary"]
    assert {"accuracy_espeak-ng", "accuracy_flite"} <= set(metrics) and metrics["test_size"] == 40
    assert metrics["baselines"]["majority_class"]["accuracy"] == pytest.approx(0.1)

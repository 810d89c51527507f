"""The built-in speech set: spoken digits SYNTHESISED offline with two speech
synthesisers, espeak-ng and flite (Debian packages), with added white noise.

No recorded spoken-word corpus installs offline, so this set is synthetic: it
measures whether a GRU generalises to synthetic voices it never heard, not how
it does on human speech (JapaneseVowels in ``grukit train classify`` is the
real-speech benchmark).

Voices. espeak-ng: accents x voice variants, with speaking rate (-s) and pitch
(-p) drawn per utterance; the test voices pair held-out accents with held-out
variants, so no test voice's accent or variant is trained on. flite: its
voices kal, kal16, awb, slt train and rms (US male) tests; duration stretch and
target pitch are drawn per utterance. espeak-ng writes 22.05 kHz, flite 8 or
16 kHz; files keep their engine's rate (the task resamples to 16 kHz).

Noise: white noise at an SNR drawn uniformly from ``snr_db`` per file.

Cache: $XDG_CACHE_HOME/grukit (else ~/.cache/grukit), one folder per settings
(their hash), made in a temporary folder and renamed into place when complete.
It is the Speech Commands layout (words: LABEL/*.wav) or WAV files with .txt
transcripts (strings), plus manifest.json naming each file's engine, voice and
split. Synthesis runs ``os.cpu_count()`` processes at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .audio import read_wav, write_wav
from .speech_sets import Utterance

INSTALL = "sudo apt-get install -y espeak-ng flite"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ESPEAK_ACCENTS = {
    "train": ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029"],
    "test": ["en-gb-x-gbclan", "en-gb-x-gbcwmd"],
}
ESPEAK_VARIANTS = {"train": ["m1", "m2", "m3", "m4", "f1", "f2"], "test": ["m7", "f4"]}
FLITE_VOICES = {"train": ["kal", "kal16", "awb", "slt"], "test": ["rms"]}
VERSION = 2  # bump when the synthesis changes, so old caches are not reused


@dataclass(frozen=True)
class DigitSpec:
    """What to synthesise; every field is part of the cache key."""

    strings: bool = False  # False: single digits (words); True: strings of 2-5 digits (CTC)
    train_per_engine: int = 600  # training utterances per engine
    test_per_engine: int = 200  # test utterances per engine
    snr_db: tuple = (10.0, 30.0)  # white-noise SNR range, dB
    seed: int = 0


def voices(engine: str, split: str) -> list[str]:
    if engine == "espeak-ng":
        return [f"{a}+{v}" for a in ESPEAK_ACCENTS[split] for v in ESPEAK_VARIANTS[split]]
    return list(FLITE_VOICES[split])


def check_engines() -> None:
    """One-line error when a synthesiser is missing."""
    missing = [b for b in ("espeak-ng", "flite") if shutil.which(b) is None]
    if missing:
        raise OSError(
            f"the built-in spoken digits are synthesised with espeak-ng and flite; {' and '.join(missing)} "
            f"not found: install with `{INSTALL}` (or give your own recordings with --data)"
        )


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grukit"


def plan(spec: DigitSpec) -> list[dict]:
    """Every file to make: name, text, tokens or label, engine, voice, split, prosody, SNR and noise seed."""
    rng = random.Random(spec.seed)
    jobs = []
    for engine in ("espeak-ng", "flite"):
        for split, count in (("train", spec.train_per_engine), ("test", spec.test_per_engine)):
            names = voices(engine, split)
            for i in range(count):
                voice = names[i // 10 % len(names)]  # each voice says the ten digits in turn
                digits = [rng.randrange(10) for _ in range(rng.randint(2, 5))] if spec.strings else [i % 10]
                prosody = (
                    [rng.randint(120, 220), rng.randint(20, 80)]
                    if engine == "espeak-ng"
                    else [round(rng.uniform(0.8, 1.3), 3), rng.randint(90, 170)]
                )
                target = " ".join(map(str, digits))
                stem = f"{engine}-{split}-{i:05d}"
                jobs.append(
                    {
                        "file": f"{stem}.wav" if spec.strings else f"{WORDS[digits[0]]}/{stem}.wav",
                        "text": " ".join(WORDS[d] for d in digits),
                        "target": target if spec.strings else WORDS[digits[0]],
                        "engine": engine,
                        "voice": voice,
                        "split": split,
                        "prosody": prosody,
                        "snr_db": round(rng.uniform(*spec.snr_db), 2),
                        "noise_seed": rng.randrange(2**31),
                    }
                )
    return jobs


def synthesise(job: dict, folder: Path) -> None:
    """Make one file: synthesise, add noise, write (and the transcript beside it for strings)."""
    path = folder / job["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.wav")
    if job["engine"] == "espeak-ng":
        rate, pitch = job["prosody"]
        cmd = ["espeak-ng", "-v", job["voice"], "-s", str(rate), "-p", str(pitch), "-w", str(raw), job["text"]]
    else:
        stretch, f0 = job["prosody"]
        cmd = [
            "flite",
            "-voice",
            job["voice"],
            "--setf",
            f"duration_stretch={stretch}",
            "--setf",
            f"int_f0_target_mean={f0}",
            "-t",
            job["text"],
            "-o",
            str(raw),
        ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or not raw.is_file():
        raise OSError(f"{' '.join(cmd[:3])} failed: {(done.stderr or done.stdout).strip()[:200]}")
    x, rate = read_wav(raw)
    raw.unlink()
    rng = np.random.default_rng(job["noise_seed"])
    power = float(np.mean(x.astype(np.float64) ** 2)) or 1e-8
    noisy = x + rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (job["snr_db"] / 10))
    write_wav(path, noisy / max(1.0, float(np.abs(noisy).max())), rate)
    if "/" not in job["file"]:
        path.with_suffix(".txt").write_text(job["target"] + "\n")


def cache_dir(spec: DigitSpec, root: Path | None = None) -> Path:
    """The cache folder of ``spec``: named by a hash of the settings and the voice lists."""
    key = hashlib.sha256(
        json.dumps(
            {"v": VERSION, **asdict(spec), "voices": [ESPEAK_ACCENTS, ESPEAK_VARIANTS, FLITE_VOICES]}, sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    return (root or cache_root()) / f"spoken-digits-{'strings' if spec.strings else 'words'}-{key}"


def build(spec: DigitSpec, *, progress: bool = True, root: Path | None = None) -> Path:
    """The cached folder for ``spec``, synthesised first if missing."""
    final = cache_dir(spec, root)
    if (final / "manifest.json").is_file():
        return final
    check_engines()
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        jobs = plan(spec)
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:  # each job is a subprocess
            done = pool.map(lambda j: synthesise(j, tmp), jobs)
            for _ in tqdm(
                done,
                total=len(jobs),
                desc="synthesising spoken digits",
                disable=None if progress else True,
                leave=False,
            ):
                pass
        manifest = [{k: j[k] for k in ("file", "target", "engine", "voice", "split")} for j in jobs]
        (tmp / "manifest.json").write_text(
            json.dumps({"synthesised": True, "spec": asdict(spec), "files": manifest}, indent=1)
        )
        try:
            tmp.rename(final)
        except OSError:  # another process finished the same set first
            if not (final / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def utterances(folder: Path) -> list[Utterance]:
    """The set in a cached folder, with each file's engine and split."""
    files = json.loads((folder / "manifest.json").read_text())["files"]
    return [Utterance(str(folder / f["file"]), f["target"], f["engine"], f["split"]) for f in files]

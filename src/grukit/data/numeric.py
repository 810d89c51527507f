"""Numeric sequence data sets: UCR/UEA TSV files, sktime/aeon ``.ts`` files,
the UCR sets bundled with aeon, and the tutorials' toy data.

Every reader returns a :class:`SeriesSet`: a list of series, each a float32
array (T_i, C) (T_i steps of C channels; lengths may differ), and one target
string per series (a class label, or a number for regression; the task turns
them into what it needs).

Formats:
    UCR TSV (UCR 2018 archive): one series per line, the label (or target)
        first, then the values, tab separated (commas or spaces are accepted
        too). Unequal lengths are padded with trailing NaN in the archive;
        those are dropped here. One file per split: NAME_TRAIN.tsv / NAME_TEST.tsv.
    .ts (sktime/aeon): ``#`` comments, ``@key value`` header lines, then
        ``@data``; each line holds the channels separated by ``:`` and the
        values of one channel separated by ``,``; the last ``:`` field is the
        label or target (when ``@classLabel true`` / ``@targetLabel true``).
        Missing values are ``?``. Time-stamped series are not supported.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Published 1-NN-DTW test accuracy (full warping window, UCR/UEA archive
# pages; Bagnall et al. 2017 / Ruiz et al. 2021) of the UCR sets aeon bundles.
UCR_DATASETS: dict[str, tuple[str, float]] = {
    "GunPoint": ("univariate, 150 steps, 2 classes: gun draw vs pointing (50 train / 150 test)", 0.907),
    "ItalyPowerDemand": ("univariate, 24 steps, 2 classes: winter vs summer daily power demand (67 / 1029)", 0.950),
    "ArrowHead": ("univariate, 251 steps, 3 classes of arrowhead outlines (36 / 175)", 0.703),
    "BasicMotions": ("6 channels (accelerometer + gyroscope), 100 steps, 4 activities (40 / 40)", 0.975),
    "JapaneseVowels": ("12 LPC channels, 7-29 steps (unequal), 9 speakers (270 / 370)", 0.949),
}
# Regression sets aeon bundles (the Monash TSER archive's format).
TSER_DATASETS: dict[str, str] = {
    "Covid3Month": "univariate, 84 days of confirmed COVID-19 cases per country -> death rate (140 train / 61 test)",
}

SPLIT_SUFFIXES = (".ts", ".tsv", ".txt", ".csv")


class MissingExtraError(ValueError):
    """An optional dependency (the ``data`` extra) is not installed."""


@dataclass
class SeriesSet:
    """Series (each (T_i, C) float32) and one raw target string per series."""

    series: list[np.ndarray]
    targets: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.series)

    @property
    def channels(self) -> int:
        return self.series[0].shape[1]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.series], dtype=np.int64)

    def subset(self, idx) -> SeriesSet:
        return SeriesSet([self.series[i] for i in idx], [self.targets[i] for i in idx], self.source)

    def numeric_targets(self) -> np.ndarray:
        """The targets as float64, for regression; ValueError naming the first bad one."""
        out = np.empty(len(self.targets))
        for i, t in enumerate(self.targets):
            try:
                out[i] = float(t)
            except ValueError:
                raise ValueError(f"{self.source}: series {i + 1} has target {t!r}, which is not a number") from None
            if not math.isfinite(out[i]):
                raise ValueError(f"{self.source}: series {i + 1} has a non-finite target {t!r}")
        return out


def _check_file(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, expected a data file")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (cannot decode it as UTF-8)") from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty")
    return text


def _floats(values: list[str], where: str) -> np.ndarray:
    try:
        return np.array(
            [float("nan") if v.strip() in ("?", "", "NaN", "nan") else float(v) for v in values], dtype=np.float64
        )
    except ValueError:
        bad = next(v for v in values if not _is_float(v))
        raise ValueError(f"{where}: {bad.strip()!r} is not a number") from None


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return v.strip() in ("?", "")


def _finish(values: np.ndarray, where: str, min_length: int) -> np.ndarray:
    """Drop trailing NaN padding; refuse NaN inside, too-short series; -> (T, C) float32."""
    valid = ~np.isnan(values).any(axis=1)  # (T,)
    length = int(np.nonzero(valid)[0][-1]) + 1 if valid.any() else 0
    values = values[:length]
    if length < min_length:
        raise ValueError(f"{where}: the series has {length} value(s), need at least {min_length}")
    if np.isnan(values).any():
        raise ValueError(f"{where}: missing values inside the series (only trailing padding is allowed)")
    if not np.isfinite(values).all():
        raise ValueError(f"{where}: the series holds an infinite value")
    return values.astype(np.float32)


def read_tsv(path: str | Path, *, min_length: int = 2, labelled: bool = True) -> SeriesSet:
    """A UCR archive file: the label first, then the values (one channel).
    ``labelled=False``: every field is a value (the targets are empty)."""
    path = Path(path)
    first = 1 if labelled else 0
    series, targets, width = [], [], 0
    for lineno, line in enumerate(_check_file(path).splitlines(), 1):
        if not line.strip():
            continue
        sep = "\t" if "\t" in line else "," if "," in line else None
        fields = line.strip().split(sep) if sep is None else line.rstrip("\r\n").split(sep)
        where = f"{path}, line {lineno}"
        if len(fields) < 1 + first:
            raise ValueError(f"{where}: expected a label then the values, got {len(fields)} field(s)")
        width = width or len(fields)
        if len(fields) != width:
            raise ValueError(
                f"{where}: {len(fields) - first} values, earlier lines have {width - first} (pad shorter series with NaN, as the UCR archive does)"
            )
        series.append(_finish(_floats(fields[first:], where)[:, None], where, min_length))
        targets.append(_label(fields[0]) if labelled else "")
    return SeriesSet(series, targets, str(path))


def _label(text: str) -> str:
    """'1.0000000e+00' -> '1' (UCR files write integer labels as floats); else stripped."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else text


_HEADER_TRUE = re.compile(r"^@(classlabel|targetlabel)\s+true\b", re.IGNORECASE)


def read_ts(path: str | Path, *, min_length: int = 2) -> SeriesSet:
    """A sktime/aeon ``.ts`` file (univariate or multivariate, equal or unequal length)."""
    path = Path(path)
    header: dict[str, str] = {}
    labelled, in_data, channels = False, False, None
    series, targets = [], []
    for lineno, raw in enumerate(_check_file(path).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}, line {lineno}"
        if not in_data:
            if not line.startswith("@"):
                raise ValueError(f"{where}: expected an @header line or @data before the data")
            key, _, value = line[1:].partition(" ")
            key = key.lower()
            if key == "data":
                in_data = True
            elif key == "timestamps" and value.strip().lower() == "true":
                raise ValueError(f"{path}: time-stamped .ts files are not supported; write the values only")
            header[key] = value.strip()
            labelled = labelled or bool(_HEADER_TRUE.match(line))
            continue
        parts = line.split(":")
        if labelled:
            if len(parts) < 2:
                raise ValueError(f"{where}: expected channels then ':label', found no ':'")
            parts, target = parts[:-1], _label(parts[-1])
        else:
            target = ""
        if channels is None:
            channels = len(parts)
        elif len(parts) != channels:
            raise ValueError(f"{where}: {len(parts)} channel(s), but earlier series have {channels}")
        dims = [_floats(p.split(","), where) for p in parts]
        length = max(len(d) for d in dims)
        values = np.full((length, channels), np.nan)  # (T, C)
        for c, d in enumerate(dims):
            values[: len(d), c] = d
        series.append(_finish(values, where, min_length))
        targets.append(target)
    if not in_data:
        raise ValueError(f"{path}: no @data line; is this a .ts file?")
    if not series:
        raise ValueError(f"{path}: no series after @data")
    return SeriesSet(series, targets, str(path))


def read_series(path: str | Path, *, min_length: int = 2) -> SeriesSet:
    """Read a ``.ts`` file or a UCR TSV file (any other suffix)."""
    path = Path(path)
    return (
        read_ts(path, min_length=min_length) if path.suffix.lower() == ".ts" else read_tsv(path, min_length=min_length)
    )


def find_split_files(path: str | Path) -> tuple[Path, Path | None]:
    """The TRAIN file and its TEST file (None when there is none) for ``--data``.

    ``path`` is a TRAIN file (its TEST file is the same name with TEST for
    TRAIN), any other single file (no test file: the task splits it), or a
    folder holding NAME_TRAIN.{ts,tsv,txt,csv} and NAME_TEST.*.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        trains = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and "_TRAIN" in p.name.upper() and p.suffix.lower() in SPLIT_SUFFIXES
        )
        if not trains:
            raise FileNotFoundError(f"{path}: no *_TRAIN.ts / *_TRAIN.tsv file in this folder")
        ts = [p for p in trains if p.suffix.lower() == ".ts"]
        train = (ts or trains)[0]
    else:
        train = path
    test = None
    idx = train.name.upper().rfind("TRAIN")
    if idx >= 0:
        for case in ("TEST", "test", "Test"):
            candidate = train.with_name(train.name[:idx] + case + train.name[idx + 5 :])
            if candidate.is_file():
                test = candidate
                break
    return train, test


def aeon_data_dir() -> Path:
    """The folder of data files bundled with aeon, found without importing aeon."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or spec.origin is None:
        raise MissingExtraError(
            "the built-in UCR/UEA data sets come with the optional package aeon: pip install 'grukit[data]' (or pip install aeon)"
        )
    folder = Path(spec.origin).parent / "datasets" / "data"
    if not folder.is_dir():
        raise MissingExtraError(
            f"aeon is installed but has no bundled data folder at {folder}; reinstall it: pip install --force-reinstall aeon"
        )
    return folder


def builtin_files(name: str) -> tuple[Path, Path]:
    """TRAIN and TEST ``.ts`` files of an aeon-bundled set (``UCR_DATASETS`` or ``TSER_DATASETS``)."""
    folder = aeon_data_dir() / name
    train, test = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
    if not (train.is_file() and test.is_file()):
        raise MissingExtraError(f"the installed aeon does not bundle {name} (looked in {folder}); pip install -U aeon")
    return train, test


# ---- the tutorials' toy data ----------------------------------------------


def toy_classification(n: int = 1000, steps: int = 10, features: int = 8, seed: int = 0) -> SeriesSet:
    """The tutorial's toy set: Gaussian inputs, labels drawn independently at
    random (so ~0.5 accuracy is the right answer: nothing can be learned)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, steps, features)).astype(np.float32)  # (N, T, I)
    y = rng.integers(0, 2, n)
    return SeriesSet(list(x), [str(v) for v in y], "toy")


def toy_regression(n: int = 1000, steps: int = 10, features: int = 8, seed: int = 0) -> SeriesSet:
    """Toy regression (tutorial shapes) whose target depends on the sequence:
    y = (sum_t x[t, 0] + sum_t sign(x[t, 1])) / sqrt(T) + 0.1 noise: a running
    sum and a running count of positive steps, which a GRU accumulates; a
    linear model gets the first term but only part of the second, and the
    predict-the-mean baseline gets neither."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, steps, features)).astype(np.float32)  # (N, T, I)
    y = (x[:, :, 0].sum(1) + np.sign(x[:, :, 1]).sum(1)) / np.sqrt(steps) + 0.1 * rng.standard_normal(n)
    return SeriesSet(list(x), [repr(float(v)) for v in y], "toy")

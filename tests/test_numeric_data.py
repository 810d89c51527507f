"""Readers of numeric sequence files (UCR TSV, .ts), built-in sets, toy data, splits, scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grukit.data import numeric
from grukit.tasks import _sequence as seq
from grukit.tasks.config import torch_threads

TS_UNEQUAL = """# a comment
@problemName Tiny
@timeStamps false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1,2,3:4,5,6:a
1,2:3,4:b
0.5,?,?,?:1,2,?,?:a
"""


def test_read_tsv_labels_values_and_nan_padding(tmp_path):
    f = tmp_path / "X_TRAIN.tsv"
    f.write_text("1.0000e+00\t0.1\t0.2\t0.3\n2\t1\t2\tNaN\n")
    s = numeric.read_tsv(f)
    assert s.targets == ["1", "2"]
    assert [x.shape for x in s.series] == [(3, 1), (2, 1)]
    np.testing.assert_allclose(s.series[1][:, 0], [1, 2])
    assert s.series[0].dtype == np.float32


def test_read_tsv_accepts_commas_and_spaces(tmp_path):
    (tmp_path / "c.csv").write_text("a,1,2,3\nb,4,5,6\n")
    (tmp_path / "s.txt").write_text("  1  1.5  2.5\n 0 3 4\n")
    assert numeric.read_tsv(tmp_path / "c.csv").targets == ["a", "b"]
    assert numeric.read_tsv(tmp_path / "s.txt").series[1][:, 0].tolist() == [3, 4]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("1\t0.1\tabc\n", "'abc' is not a number"),
        ("1\t0.5\n", "need at least 2"),
        ("1\n", "expected a label then the values"),
        ("1\t0.1\tNaN\t0.3\n", "missing values inside"),
        ("1\t0.1\tinf\t0.3\n", "infinite"),
        ("1\t0.1\t0.2\t0.3\n2\t0.1\t0.2\n", "line 2: 2 values, earlier lines have 3"),
    ],
)
def test_read_tsv_bad_content(tmp_path, content, message):
    f = tmp_path / "bad.tsv"
    f.write_text(content)
    with pytest.raises(ValueError, match=message):
        numeric.read_tsv(f)


def test_read_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        numeric.read_series(tmp_path / "missing.tsv")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        numeric.read_series(tmp_path)
    (tmp_path / "bin.tsv").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="not a text file"):
        numeric.read_series(tmp_path / "bin.tsv")


def test_read_ts_multivariate_unequal_and_missing(tmp_path):
    f = tmp_path / "tiny_TRAIN.ts"
    f.write_text(TS_UNEQUAL)
    s = numeric.read_ts(f, min_length=1)
    assert s.targets == ["a", "b", "a"]
    assert [x.shape for x in s.series] == [(3, 2), (2, 2), (1, 2)]
    np.testing.assert_allclose(s.series[0], [[1, 4], [2, 5], [3, 6]])
    assert s.channels == 2 and s.lengths.tolist() == [3, 2, 1]
    with pytest.raises(ValueError, match="need at least 2"):
        numeric.read_ts(f)


def test_read_ts_unlabelled_and_regression_targets(tmp_path):
    f = tmp_path / "r.ts"
    f.write_text("@problemName r\n@targetlabel true\n@data\n1,2,3:0.25\n4,5,6:-1.5e1\n")
    assert numeric.read_ts(f).numeric_targets().tolist() == [0.25, -15.0]
    g = tmp_path / "u.ts"
    g.write_text("@classLabel false\n@data\n1,2,3\n4,5,6\n")
    assert numeric.read_ts(g).targets == ["", ""]
    h = tmp_path / "bad.ts"
    h.write_text("@targetlabel true\n@data\n1,2,3:x\n")
    with pytest.raises(ValueError, match="'x', which is not a number"):
        numeric.read_ts(h).numeric_targets()


@pytest.mark.parametrize(
    "content, message",
    [
        ("@classLabel true a\n1,2,3:a\n", "expected an @header"),
        ("@classLabel true a\n", "no @data line"),
        ("@classLabel true a\n@data\n", "no series after @data"),
        ("@classLabel true a\n@data\n1,2,3\n", "found no ':'"),
        ("@classLabel true a\n@data\n1,2:3,4:a\n1,2:a\n", "1 channel"),
        ("@timeStamps true\n@data\n(0,1),(1,2):a\n", "time-stamped"),
    ],
)
def test_read_ts_bad_content(tmp_path, content, message):
    f = tmp_path / "bad.ts"
    f.write_text(content)
    with pytest.raises(ValueError, match=message):
        numeric.read_ts(f)


def test_find_split_files(tmp_path):
    (tmp_path / "Set_TRAIN.tsv").write_text("1\t1\t2\n")
    (tmp_path / "Set_TEST.tsv").write_text("1\t1\t2\n")
    assert numeric.find_split_files(tmp_path) == (tmp_path / "Set_TRAIN.tsv", tmp_path / "Set_TEST.tsv")
    assert numeric.find_split_files(tmp_path / "Set_TRAIN.tsv")[1] == tmp_path / "Set_TEST.tsv"
    (tmp_path / "other.tsv").write_text("1\t1\t2\n")
    assert numeric.find_split_files(tmp_path / "other.tsv") == (tmp_path / "other.tsv", None)
    with pytest.raises(FileNotFoundError, match="no such file"):
        numeric.find_split_files(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*_TRAIN"):
        numeric.find_split_files(empty)


def test_missing_aeon_gives_install_hint(monkeypatch):
    monkeypatch.setattr(numeric.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(numeric.MissingExtraError, match=r"pip install 'grukit\[data\]'"):
        numeric.builtin_files("GunPoint")


def test_builtin_sets_read_when_aeon_is_installed():
    pytest.importorskip("aeon")
    for name, expect in (("ItalyPowerDemand", (67, 24, 1)), ("BasicMotions", (40, 100, 6))):
        train, test = (numeric.read_series(p) for p in numeric.builtin_files(name))
        assert (len(train), len(train.series[0]), train.channels) == expect
        assert len(test) > 0
    jv, _ = numeric.builtin_files("JapaneseVowels")
    lengths = numeric.read_series(jv).lengths
    assert lengths.min() < lengths.max()  # unequal lengths


def test_toy_sets():
    c = numeric.toy_classification(seed=1)
    assert len(c) == 1000 and c.series[0].shape == (10, 8) and set(c.targets) == {"0", "1"}
    r = numeric.toy_regression(seed=1)
    y = r.numeric_targets()
    assert y.std() > 0.5 and len(r) == 1000
    np.testing.assert_array_equal(numeric.toy_regression(seed=1).series[3], r.series[3])


def test_stratified_split_keeps_every_class():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2)
    keep, held = seq.stratified_split(labels, 0.2, seed=0)
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(17))
    assert sorted(labels[held].tolist()) == [0, 0, 1, 2]
    again = seq.stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(again[1], held)
    keep, held = seq.random_split(10, 0.3, seed=0)
    assert len(held) == 3 and len(np.intersect1d(keep, held)) == 0


def test_normalize_series_and_global():
    rng = np.random.default_rng(0)
    s = [(rng.standard_normal((20, 2)) * [1, 10] + [5, -3]).astype(np.float32) for _ in range(4)]
    z, stats = seq.normalize_series(s, "series")
    assert stats == {} and np.allclose(z[0].mean(0), 0, atol=1e-5) and np.allclose(z[0].std(0), 1, atol=1e-4)
    g, stats = seq.normalize_series(s, "global")
    allg = np.concatenate(g)
    assert np.allclose(allg.mean(0), 0, atol=1e-5) and np.allclose(allg.std(0), 1, atol=1e-4)
    g2, _ = seq.normalize_series(s[:1], "global", stats)
    np.testing.assert_allclose(g2[0], g[0], rtol=1e-6)
    const = [np.ones((5, 1), np.float32)]
    assert np.isfinite(seq.normalize_series(const, "series")[0][0]).all()
    with pytest.raises(ValueError, match="--normalize"):
        seq.normalize_series(s, "bogus")


def test_pad_batches_patch_and_pooling_ignore_padding():
    series = [np.arange(5, dtype=np.float32)[:, None], np.arange(3, dtype=np.float32)[:, None]]
    x, ln = seq.pad(series)
    assert x.shape == (2, 5, 1) and ln.tolist() == [5, 3] and x[1, 3:].abs().sum() == 0
    xp, lp = seq.patch_steps(x, ln, 2)
    assert xp.shape == (2, 3, 2) and lp.tolist() == [3, 2]
    got = seq.batches(x, ln, torch.tensor([0, 1]), 1, torch.Generator().manual_seed(0))
    assert sorted(b[1].item() for b in got) == [3, 5] and all(b[0].shape[1] == b[1].item() for b in got)
    torch.manual_seed(0)
    for pooling in seq.POOLINGS:
        model = seq.SequenceModel(1, 2, hidden_size=4, bidirectional=True, pooling=pooling).eval()
        short = model(x[1:, :3], ln[1:])
        padded = model(x[1:], ln[1:])
        torch.testing.assert_close(short, padded, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="--pooling"):
        seq.SequenceModel(1, 2, pooling="median")


def test_augment_keeps_padding_and_is_seeded():
    x = torch.ones(3, 8, 2)
    ln = torch.tensor([8, 5, 2])
    x[1, 5:] = 0
    x[2, 2:] = 0
    a = seq.augment(x, ln, 0.2, torch.Generator().manual_seed(0))
    b = seq.augment(x, ln, 0.2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert a[1, 5:].abs().sum() == 0 and a[2, 2:].abs().sum() == 0
    assert not torch.equal(a, x)
    assert seq.augment(x, ln, 0.0, torch.Generator()) is x


def test_torch_threads_is_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(0):
        assert torch.get_num_threads() == before

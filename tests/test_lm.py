"""Language-model task: chunk split, bpc, sampling, and the CLI end to end on small text files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from grukit.cli import main
from grukit.tasks import lm

TINY = [
    "--epochs",
    "2",
    "--steps",
    "3",
    "--batch-size",
    "4",
    "--seq-len",
    "16",
    "--hidden-size",
    "16",
    "--embedding-size",
    "8",
    "--no-progress",
]
VERSE = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_split_chunks_is_contiguous_and_interleaved():
    chunks = lm.split_chunks(10_000, 16, "x")
    assert len(chunks) == 50 and chunks[0][0] == 0 and chunks[-1][1] == 10_000
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert [p for _, _, p in chunks[:10]] == [0] * 8 + [1, 2]
    assert len(lm.split_chunks(400, 16, "x")) == 10  # short text: fewer, longer chunks
    with pytest.raises(ValueError, match="too few for --seq-len 16: need at least 170"):
        lm.split_chunks(100, 16, "x")


def test_encode_skips_unknown_characters():
    ids, skipped = lm.encode("abxa", "ab")
    np.testing.assert_array_equal(ids, [0, 1, 0])
    assert skipped == 1


def test_bits_per_char_of_a_uniform_model_is_log2_vocab():
    model = lm.CharLM(8, 4, 4, 1, 0.0)
    for p in model.parameters():
        torch.nn.init.zeros_(p)  # all logits 0: uniform over 8 characters
    bpc, count = lm.bits_per_char(model, [np.arange(8), np.arange(3)])
    assert bpc == pytest.approx(3.0) and count == 7 + 2


def test_pieces_cover_each_span():
    parts = lm.pieces(np.arange(3000), [(0, 2500), (2600, 2700)])
    assert [len(p) for p in parts] == [lm.EVAL_LEN + 1, lm.EVAL_LEN + 1, 2500 - 2 * lm.EVAL_LEN, 100]
    assert sum(len(p) - 1 for p in parts) == 2499 + 99  # every id but the first of each span is predicted, once
    assert [len(p) for p in lm.pieces(np.arange(600), [(0, 600)], length=256)] == [257, 257, 88]
    assert len(lm.pieces(np.arange(3000), [(0, 3000)], limit=300, length=256)) == 2  # stops once 300 are scored


def test_sample_rejects_unknown_prompt_characters():
    model = lm.CharLM(3, 4, 4, 1, 0.0)
    text = lm.sample(model, "ab\n", "ab", 5, 1.0, torch.Generator().manual_seed(0))
    assert text.startswith("ab") and len(text) == 7 and set(text) <= set("ab\n")
    with pytest.raises(ValueError, match="never saw: 'Zx'"):
        lm.sample(model, "ab\n", "axZ", 5, 1.0)


def test_train_eval_generate_end_to_end(tmp_path):
    text = tmp_path / "verse.txt"
    text.write_text(VERSE * 40)
    out = tmp_path / "run"
    r = run("train", "lm", "--data", text, "--out", out, *TINY)
    assert r.exit_code == 0, r.output
    for name in ("config.json", "model.safetensors", "metrics.json", "history.jsonl", "loss.png"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["vocab_size"] == len(set(VERSE)) and math.isfinite(m["bpc"])
    assert m["trigram_bpc"] < m["unigram_bpc"] < math.log2(m["vocab_size"]) + 0.5
    assert m["test_chars"] > 0 and isinstance(m["sample"], str)

    r = run("eval", "--json", out)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["bpc"] == pytest.approx(m["bpc"], abs=1e-3)
    new = tmp_path / "new.txt"
    new.write_text("To be, or not to be? #\n")
    r = run("eval", "--json", out, "--data", new)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["skipped_chars"] == 2  # '?' and '#' are not in the vocabulary

    r = run("generate", out, "--prompt", "To be", "--length", "30", "--temperature", "0.5")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("To be") and len(r.output.rstrip("\n")) >= 30
    r = run("generate", out, "--prompt", "Zebra", "--length", "5")
    assert r.exit_code == 1 and "never saw" in r.output and "Traceback" not in r.output

    r = run("train", "lm", "--resume", out, "--epochs", "3")
    assert r.exit_code == 0, r.output
    assert len((out / "history.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "content, args, message",
    [
        (None, [], "no such file"),
        (b"", [], "the file is empty"),
        (b"caf\xe9 au lait\n", [], "not valid UTF-8"),
        (b"short text\n", [], "too few for --seq-len 16"),
        (VERSE.encode() * 40, ["--max-chars", "-1"], "--max-chars must be >= 0"),
        (VERSE.encode() * 40, ["--dataset", "nope"], "Invalid value for '--dataset'"),
    ],
)
def test_bad_inputs_give_one_clear_line(tmp_path, content, args, message):
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    r = run("train", "lm", "--data", path, "--out", tmp_path / "run", *TINY, *args)
    assert r.exit_code != 0
    assert message in r.output and "Traceback" not in r.output


def test_bfloat16_train_and_generate(tmp_path):
    text = tmp_path / "verse.txt"
    text.write_text(VERSE * 40)
    out = tmp_path / "run"
    r = run("train", "lm", "--data", text, "--out", out, *TINY, "--dtype", "bfloat16")
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(m["bpc"]) and m["bpc"] < math.log2(m["vocab_size"]) + 0.5
    assert json.loads(run("eval", "--json", out).output)["bpc"] == pytest.approx(m["bpc"], abs=1e-3)
    r = run("generate", out, "--prompt", "To be", "--length", "20")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("To be")


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_generate_refuses_a_temperature_that_is_not_a_positive_number(tmp_path, value):
    from click.testing import CliRunner

    from grukit.cli.main import main

    result = CliRunner().invoke(main, ["generate", str(tmp_path), "--temperature", value])
    assert result.exit_code == 2 and "--temperature" in result.output and "Traceback" not in result.output

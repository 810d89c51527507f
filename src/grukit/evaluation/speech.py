"""Scoring transcripts: greedy CTC decoding and the word error rate.

WER = (substitutions + deletions + insertions) / reference words, summed over
the set (Levenshtein distance over words, every edit costing 1). Here the
words are digits, so it is the digit error rate.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance between two sequences (one row of the table at a time)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate of hypotheses against references (strings of space-separated words)."""
    words = sum(len(r.split()) for r in refs)
    if words == 0:
        raise ValueError("word error rate of references without words")
    return sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps, strict=True)) / words


def greedy_decode(log_probs: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """Best path: the most likely symbol per frame, repeats merged, blanks dropped. log_probs (B, T, V)."""
    best = log_probs.argmax(-1)  # (B, T)
    out = []
    for b in range(best.shape[0]):
        path = best[b, : int(lengths[b])].tolist()
        out.append([s for i, s in enumerate(path) if s != blank and (i == 0 or s != path[i - 1])])
    return out


__all__ = ["edit_distance", "greedy_decode", "wer"]

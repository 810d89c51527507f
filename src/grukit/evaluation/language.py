"""Bits per character, and the count-based baselines a language model must beat.

bpc = mean over predicted characters of -log2 p(c_t | c_<t). The baselines
are estimated on the training text and scored on the same evaluation text:

    unigram:  p(c) = (N(c) + 1) / (N + V)                        (add-one)
    n-gram:   p_k(c | x) = (N(x c) + a * p_{k-1}(c | x')) / (N(x) + a)
              x the k previous characters, x' the k-1 previous ones; a
              Dirichlet prior on each context's distribution, centred on the
              shorter context's (MacKay & Peto 1995, "A hierarchical
              Dirichlet language model", interpolated form).
"""

from __future__ import annotations

import math

import numpy as np


def _codes(ids: np.ndarray, k: int, vocab: int) -> np.ndarray:
    """(n-k+1,) int64 codes of every run of k consecutive ids."""
    code = np.zeros(len(ids) - k + 1, dtype=np.int64)
    for j in range(k):
        code = code * vocab + ids[j : len(ids) - k + 1 + j]
    return code


def _lookup(table: tuple[np.ndarray, np.ndarray], codes: np.ndarray) -> np.ndarray:
    keys, counts = table
    if len(keys) == 0:
        return np.zeros(len(codes))
    pos = np.minimum(np.searchsorted(keys, codes), len(keys) - 1)
    return np.where(keys[pos] == codes, counts[pos], 0).astype(np.float64)


def ngram_probs(train: np.ndarray, text: np.ndarray, vocab: int, order: int, alpha: float = 1.0) -> np.ndarray:
    """(len(text),) probability of each character of ``text`` under the smoothed ``order``-gram."""
    train, text = np.asarray(train, dtype=np.int64), np.asarray(text, dtype=np.int64)
    order = max(1, min(order, int(math.log(2**62) / math.log(max(vocab, 2)))))  # codes must fit in int64
    p = (np.bincount(train, minlength=vocab)[text] + 1.0) / (len(train) + vocab)
    for k in range(1, order):  # context of k characters
        if len(train) <= k or len(text) <= k:
            break
        joint = _codes(train, k + 1, vocab)
        table = np.unique(joint, return_counts=True)
        ctx_table = np.unique(joint // vocab, return_counts=True)
        q = _codes(text, k + 1, vocab)  # the ngram ending at each position i >= k
        n_joint, n_ctx = _lookup(table, q), _lookup(ctx_table, q // vocab)
        p[k:] = (n_joint + alpha * p[k:]) / (n_ctx + alpha)
    return p


def bpc_from_probs(p: np.ndarray) -> float:
    return float(-np.mean(np.log2(p)))


def ngram_bpc(train: np.ndarray, text: np.ndarray, vocab: int, order: int, alpha: float = 1.0) -> float:
    """Bits per character of ``text`` under the ``order``-gram fitted on ``train`` (order 1 = unigram)."""
    return bpc_from_probs(ngram_probs(train, text, vocab, order, alpha))

"""A bag-of-words baseline for text classification: TF-IDF of word uni- and bigrams
and L2-regularised logistic regression, in plain torch (no scikit-learn).

Features, as scikit-learn's ``TfidfVectorizer(ngram_range=(1, 2))`` computes them:
    tf(t, d)  = count of term t (a word or two consecutive words) in document d
    idf(t)    = ln((1 + N) / (1 + df(t))) + 1        N training documents, df(t) of them hold t
    x_d       = tf(., d) * idf / ||tf(., d) * idf||_2  (a row of the sparse (N, V) matrix X)
Terms come from the training documents only (those in at least ``min_df`` of them);
other terms are dropped.

Model: softmax regression, logits = X W + b, minimising
    mean_d CE(logits_d, y_d) + ||W||^2 / (2 C N)
which is scikit-learn's ``LogisticRegression(C=C)`` objective (sum of losses +
||W||^2 / (2C)) divided by N, solved by full-batch L-BFGS. C is chosen on a
validation part, as the GRU's epoch is.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections import Counter

import numpy as np
import torch

from ..data.text import tokenize
from .classification import scores


@contextlib.contextmanager
def _quiet():
    """torch warns that CSR tensors are in beta; their products are 10-20x faster than COO's here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        yield


def _csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with _quiet():
        return torch.sparse_csr_tensor(crow, col, val, size, check_invariants=False)  # built sorted and in range


def terms(text: str) -> list[str]:
    """The document's words and pairs of consecutive words ("not good")."""
    words = tokenize(text)
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


class Tfidf:
    """TF-IDF features over the training documents' uni- and bigrams."""

    def __init__(self, texts: list[str], min_df: int = 2) -> None:
        df = Counter(t for doc in texts for t in set(terms(doc)))
        kept = sorted(t for t, n in df.items() if n >= min_df)
        self.index = {t: i for i, t in enumerate(kept)}
        n = len(texts)
        self.idf = torch.tensor([math.log((1 + n) / (1 + df[t])) + 1 for t in kept], dtype=torch.float64)  # (V,)

    def __len__(self) -> int:
        return len(self.index)

    def transform(self, texts: list[str]) -> torch.Tensor:
        """(N, V) sparse CSR float64, each row L2-normalised (a row with no known term stays zero)."""
        cols, counts, crow = [], [], [0]
        for doc in texts:
            c = Counter(self.index[t] for t in terms(doc) if t in self.index)
            cols += sorted(c)
            counts += [c[i] for i in sorted(c)]
            crow.append(len(cols))
        col = torch.tensor(cols, dtype=torch.int64)
        val = torch.tensor(counts, dtype=torch.float64) * self.idf[col]  # (nnz,)
        row = torch.repeat_interleave(torch.arange(len(texts)), torch.tensor(crow).diff())  # (nnz,)
        norm = torch.zeros(len(texts), dtype=torch.float64).index_add_(0, row, val * val).sqrt()  # (N,)
        return _csr(torch.tensor(crow), col, val / norm[row], (len(texts), len(self)))


def logistic_regression(
    x: torch.Tensor, y: np.ndarray, num_classes: int, c: float = 1.0, max_iter: int = 300
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (V, K), b (K,)) minimising the mean cross-entropy + ||W||^2 / (2 C N), by L-BFGS.

    The gradient is written out (autograd through a sparse product is many times slower):
        P = softmax(X W + b), G = (P - onehot(y)) / N       (N, K)
        dL/dW = X^T G + W / (C N),  dL/db = sum_d G_d
    """
    n, v = x.shape
    with _quiet():
        xt = x.t().to_sparse_csr()  # (V, N)
    onehot = torch.nn.functional.one_hot(
        torch.as_tensor(np.asarray(y), dtype=torch.int64), num_classes
    ).double()  # (N, K)
    w = torch.zeros(v, num_classes, dtype=torch.float64)
    b = torch.zeros(num_classes, dtype=torch.float64)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        logits = torch.sparse.mm(x, w) + b  # (N, K)
        logp = torch.log_softmax(logits, dim=1)
        g = (logp.exp() - onehot) / n  # (N, K)
        w.grad = torch.sparse.mm(xt, g) + w / (c * n)  # (V, K)
        b.grad = g.sum(0)  # (K,)
        return -(logp * onehot).sum() / n + (w * w).sum() / (2 * c * n)

    with torch.no_grad():
        opt.step(closure)
    return w, b


C_GRID = (1.0, 10.0, 100.0)  # inverse regularisation strengths tried on the validation part


def tfidf_baseline(
    fit: tuple[list[str], np.ndarray],
    val: tuple[list[str], np.ndarray],
    test: tuple[list[str], np.ndarray],
    num_classes: int,
    min_df: int = 2,
) -> dict:
    """TF-IDF (uni+bigrams in at least ``min_df`` training texts) + logistic regression: C picked
    from C_GRID by accuracy on ``val`` after training on ``fit``, then refit on fit + val and
    scored on ``test``. Each part is (texts, integer labels). Returns accuracy, macro F1 and C."""

    def fit_score(train_texts, y_train, texts, y, c) -> dict:
        features = Tfidf(train_texts, min_df)
        w, b = logistic_regression(features.transform(train_texts), y_train, num_classes, c)
        return scores(np.asarray(y), (features.transform(texts) @ w + b).argmax(1).numpy(), num_classes)

    best = max(C_GRID, key=lambda c: fit_score(*fit, *val, c)["accuracy"])  # ties: the smallest C
    result = fit_score(fit[0] + val[0], np.concatenate([fit[1], val[1]]), *test, best)
    return {**result, "C": best}

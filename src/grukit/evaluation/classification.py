"""Classification scores: accuracy, macro F1, the confusion matrix and its picture,
and the baselines a classifier must beat (majority class, 1-nearest-neighbour).

Macro F1 is the unweighted mean over classes of F1_k = 2 P_k R_k / (P_k + R_k)
(P_k, R_k: precision and recall of class k; a class never predicted and never
present is left out, one never predicted but present scores 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import new_figure, save_figure


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("accuracy of an empty set")
    return float((y_true == y_pred).mean())


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted, present = cm.sum(0), cm.sum(1)
    scores = []
    for k in range(num_classes):
        if predicted[k] == 0 and present[k] == 0:
            continue
        denom = predicted[k] + present[k]  # 2TP + FP + FN
        scores.append(2 * tp[k] / denom)
    return float(np.mean(scores)) if scores else 0.0


def scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred, num_classes)}


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray, num_classes: int) -> dict:
    """Always predict the most frequent training class."""
    guess = int(np.bincount(np.asarray(y_train, dtype=np.int64), minlength=num_classes).argmax())
    return scores(y_test, np.full(len(y_test), guess), num_classes)


def nearest_neighbour_baseline(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, num_classes: int
) -> dict:
    """1-NN with Euclidean distance on equal-length series (N, T*C), the UCR archive's simplest baseline."""
    a, b = x_train.reshape(len(x_train), -1).astype(np.float64), x_test.reshape(len(x_test), -1).astype(np.float64)
    d = (b * b).sum(1)[:, None] - 2 * b @ a.T + (a * a).sum(1)[None, :]  # (N_test, N_train)
    return scores(y_test, np.asarray(y_train)[d.argmin(1)], num_classes)


def plot_confusion(
    cm: np.ndarray, class_names: list[str], path: str | Path, title: str = "confusion matrix (test)"
) -> None:
    """Counts in each cell, rows normalised for the colour so small classes show."""
    k = len(class_names)
    size = min(12.0, 2.5 + 0.5 * k)
    fig, ax = new_figure((size, size * 0.85))
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(
        range(k), [str(c)[:12] for c in class_names], rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center"
    )
    ax.set_yticks(range(k), [str(c)[:12] for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    color="white" if share[i, j] > 0.5 else "black",
                    fontsize=8 if k > 10 else 10,
                )
    ax.set_title(title)
    save_figure(fig, path)

"""Classification metrics on a held-out split, with coverage at a confidence threshold."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class ClassificationReport:
    """Metrics of a classifier on held-out data.

    ``coverage`` is the share of inputs whose top probability is at least
    ``threshold`` (the model "answers" them); ``precision_at_coverage`` is the
    macro precision on those answered inputs only.
    """

    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    coverage: float
    precision_at_coverage: float
    threshold: float
    samples: int
    labels: list[str]
    per_class: list[dict[str, Any]] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)

    def headline(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
            "coverage": self.coverage,
            "precision_at_coverage": self.precision_at_coverage,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _macro_precision(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> tuple[float, list[float]]:
    precisions = []
    for k in range(n):
        predicted = y_pred == k
        precisions.append(float((y_true[predicted] == k).mean()) if predicted.any() else 0.0)
    present = [p for k, p in enumerate(precisions) if (y_true == k).any() or (y_pred == k).any()]
    return (float(np.mean(present)) if present else 0.0), precisions


def classification_report(
    y_true: np.ndarray | list[int],
    probabilities: np.ndarray,
    labels: list[str],
    threshold: float = 0.9,
) -> ClassificationReport:
    """Compute accuracy, per-class and macro precision/recall/F1, the confusion
    matrix, and coverage at ``threshold``.

    Args:
        y_true: true class indices, shape (n,).
        probabilities: predicted class probabilities, shape (n, len(labels)).
        labels: class names in index order.
        threshold: minimum top probability for an input to count as answered.
    """
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    n = len(labels)
    pred = probs.argmax(axis=1)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_class = []
    f1s, recalls = [], []
    macro_p, precisions = _macro_precision(y, pred, n)
    for k in range(n):
        support = int((y == k).sum())
        recall = float(confusion[k, k] / support) if support else 0.0
        p = precisions[k]
        f1 = 2 * p * recall / (p + recall) if (p + recall) else 0.0
        per_class.append({"label": labels[k], "precision": p, "recall": recall, "f1": f1, "support": support})
        if support or (pred == k).any():
            f1s.append(f1)
            recalls.append(recall)
    answered = probs.max(axis=1) >= threshold
    coverage = float(answered.mean()) if len(y) else 0.0
    p_at_cov = _macro_precision(y[answered], pred[answered], n)[0] if answered.any() else 0.0
    return ClassificationReport(
        accuracy=float((pred == y).mean()) if len(y) else 0.0,
        macro_precision=macro_p,
        macro_recall=float(np.mean(recalls)) if recalls else 0.0,
        macro_f1=float(np.mean(f1s)) if f1s else 0.0,
        coverage=coverage,
        precision_at_coverage=p_at_cov,
        threshold=threshold,
        samples=int(len(y)),
        labels=list(labels),
        per_class=per_class,
        confusion=confusion.tolist(),
    )

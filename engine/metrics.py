"""Scores of a classifier's predictions: confusion matrix, per-class precision, recall and
F1, confidence, and which test images it got wrong. Pure functions of arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_CLASSES = 10


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """(10, 10) counts: row = true digit, column = predicted digit."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
    flat = np.bincount(labels * NUM_CLASSES + predictions, minlength=NUM_CLASSES ** 2)
    return flat.reshape(NUM_CLASSES, NUM_CLASSES)


@dataclass(frozen=True)
class ClassScores:
    """Per-class precision, recall (= per-class accuracy), F1 and support, as arrays of 10."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray

    @property
    def macro_f1(self) -> float:
        return float(np.nanmean(self.f1))


def class_scores(matrix: np.ndarray) -> ClassScores:
    """Scores from a confusion matrix; NaN where a class was never predicted or present."""
    matrix = np.asarray(matrix, dtype=np.float64)
    correct = np.diag(matrix)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = correct / predicted
        recall = correct / actual
        f1 = 2 * precision * recall / (precision + recall)
    f1 = np.where((precision + recall) == 0, 0.0, f1)
    return ClassScores(precision, recall, f1, actual.astype(np.int64))


def accuracy(matrix: np.ndarray) -> float:
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else float("nan")


def mistakes(labels: np.ndarray, probabilities: np.ndarray, *,
             true_digit: int | None = None, predicted_digit: int | None = None,
             correct: bool = False, most_confident_first: bool = True) -> np.ndarray:
    """Indices of misclassified (or, with `correct=True`, correctly classified) images,
    optionally only one true/predicted pair, sorted by the confidence of the prediction."""
    labels = np.asarray(labels)
    predictions = np.argmax(probabilities, axis=1)
    confidence = np.max(probabilities, axis=1)
    chosen = (predictions == labels) if correct else (predictions != labels)
    if true_digit is not None:
        chosen &= labels == true_digit
    if predicted_digit is not None:
        chosen &= predictions == predicted_digit
    indices = np.flatnonzero(chosen)
    order = np.argsort(confidence[indices], kind="stable")
    return indices[order[::-1]] if most_confident_first else indices[order]


def summary(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """JSON-ready scores: accuracy, per-class accuracy, confusion matrix, macro F1."""
    predictions = np.argmax(probabilities, axis=1)
    matrix = confusion_matrix(labels, predictions)
    scores = class_scores(matrix)
    return {
        "accuracy": accuracy(matrix),
        "per_class_accuracy": [None if np.isnan(v) else float(v) for v in scores.recall],
        "confusion_matrix": matrix.tolist(),
        "macro_f1": scores.macro_f1,
        "count": int(len(labels)),
    }


def test_report(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """The scores saved with every model (rounded for meta.json)."""
    scores = summary(labels, probabilities)
    return {"test_accuracy": round(scores["accuracy"], 6),
            "per_class_accuracy": [None if v is None else round(v, 6)
                                   for v in scores["per_class_accuracy"]],
            "confusion_matrix": scores["confusion_matrix"],
            "macro_f1": round(scores["macro_f1"], 6)}

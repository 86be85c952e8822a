"""Confusion matrix, per-class scores and the mistakes finder, against counts done by hand."""

import numpy as np
import pytest

from engine import metrics


def test_confusion_matrix_counts_rows_as_truth():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 2, 2])
    matrix = metrics.confusion_matrix(labels, predictions)
    assert matrix[0, 0] == 1 and matrix[0, 1] == 1
    assert matrix[1, 1] == 2 and matrix[1, 2] == 1
    assert matrix[2, 2] == 1 and matrix.sum() == 6
    assert metrics.accuracy(matrix) == pytest.approx(4 / 6)


def test_class_scores_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 2, 2])
    scores = metrics.class_scores(metrics.confusion_matrix(labels, predictions))
    # digit 1: predicted 3 times, 2 right -> precision 2/3; 3 true ones, 2 found -> recall 2/3
    assert scores.precision[1] == pytest.approx(2 / 3)
    assert scores.recall[1] == pytest.approx(2 / 3)
    # digit 2: precision 1/2, recall 1 -> F1 = 2 * 0.5 * 1 / 1.5
    assert scores.f1[2] == pytest.approx(2 / 3)
    assert np.isnan(scores.recall[5])          # never present
    assert list(scores.support[:3]) == [2, 3, 1]


def test_mistakes_filters_and_sorts_by_confidence():
    labels = np.array([3, 3, 5, 5])
    probabilities = np.full((4, 10), 0.01)
    probabilities[0, 8] = 0.9    # 3 read as 8, sure
    probabilities[1, 8] = 0.5    # 3 read as 8, unsure
    probabilities[2, 5] = 0.7    # right
    probabilities[3, 3] = 0.6    # 5 read as 3
    assert list(metrics.mistakes(labels, probabilities)) == [0, 3, 1]
    assert list(metrics.mistakes(labels, probabilities, most_confident_first=False)) == [1, 3, 0]
    assert list(metrics.mistakes(labels, probabilities, true_digit=3, predicted_digit=8)) == [0, 1]
    assert list(metrics.mistakes(labels, probabilities, correct=True)) == [2]


def test_report_of_a_perfect_model(mnist):
    labels = mnist.test_labels
    probabilities = np.eye(10, dtype=np.float32)[labels]
    report = metrics.test_report(labels, probabilities)
    assert report["test_accuracy"] == 1.0
    assert report["per_class_accuracy"] == [1.0] * 10
    assert np.trace(np.array(report["confusion_matrix"])) == 10_000

"""engine.run_diagnosis on real runs that show each problem (small, and away from chaotic
regimes, so every CPU trains them the same way to within what the thresholds allow), and
the 'rose' threshold on a history built from numbers."""

from __future__ import annotations

import pytest

from engine import build_model
from engine.config import TrainConfig
from engine.run_diagnosis import ROSE_FRACTION, diagnose
from engine.training import EpochRecord, History, split_training_data


def kinds_after(mnist, **values) -> list[str]:
    config = TrainConfig(**{"lr_schedule": "constant", **values})
    images, labels, val_images, val_labels = split_training_data(
        mnist.train_images, mnist.train_labels, config)
    model = build_model("numpy", config)
    model.fit(images, labels, validation=(val_images, val_labels))
    return [finding.kind for finding in diagnose(model.history, config)]


def test_a_healthy_run_is_fine(mnist):
    assert kinds_after(mnist, hidden_sizes=(64,), train_size=6000, epochs=3) == ["fine"]


def test_a_learning_rate_far_too_high_explodes(mnist):
    kinds = kinds_after(mnist, hidden_sizes=(64,), train_size=3000, epochs=3,
                        optimizer="adam", learning_rate=0.5)
    assert kinds[0] == "exploded" and "fine" not in kinds


def test_tiny_steps_leave_the_loss_flat_and_accuracy_at_chance(mnist):
    kinds = kinds_after(mnist, hidden_sizes=(64, 64), activation="sigmoid", train_size=3000,
                        epochs=4, optimizer="sgd", learning_rate=0.05)
    assert set(kinds) == {"chance", "flat"}


def test_a_big_network_on_few_images_overfits(mnist):
    kinds = kinds_after(mnist, hidden_sizes=(256,), train_size=600, epochs=20,
                        validation_fraction=0.2)
    assert kinds == ["overfitting"]


def test_dropout_and_augmentation_put_validation_above_training(mnist):
    kinds = kinds_after(mnist, hidden_sizes=(256,), train_size=1000, epochs=10,
                        validation_fraction=0.2, dropout=0.5, augmentation="light")
    assert kinds == ["fine", "regularised"]


def _history(losses: list[float]) -> History:
    return History(epochs=[EpochRecord(epoch=i + 1, fraction=1.0, train_loss=loss,
                                       train_accuracy=0.9, val_loss=None, val_accuracy=0.9,
                                       val_per_class_accuracy=None, learning_rate=0.03,
                                       seconds=1.0) for i, loss in enumerate(losses)],
                   status="completed")


@pytest.mark.parametrize("last, rose", [(0.2 * (1 + ROSE_FRACTION) * 1.01, True),
                                        (0.2 * (1 + ROSE_FRACTION) * 0.99, False)])
def test_a_loss_that_rose_past_its_best_by_the_threshold(last, rose):
    kinds = [finding.kind for finding in diagnose(_history([0.8, 0.2, last]),
                                                  TrainConfig())]
    assert ("rose" in kinds) is rose and ("fine" in kinds) is not rose


def test_no_epoch_no_finding():
    assert diagnose(History(), TrainConfig()) == []

"""Adapting a trained model to people's own digits: fine-tune a copy on the custom digits
mixed with MNIST (so it keeps reading MNIST) and score it, before and after, on custom
digits it never trained on and on MNIST's test set.

The given model is never changed (the dashboard shares its shipped models between
visitors). Loading the digits is left to `engine.custom`, saving to `engine.registry`,
running in the background to `ui.jobs`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import build_model, metrics
from engine.config import AUGMENTATIONS, TrainConfig
from engine.training import (NUM_CLASSES, Classifier, OnBatch, OnEpoch, StopFlag,
                             as_model_input, per_class_accuracy)

if TYPE_CHECKING:     # loading custom digits pulls in scipy; adapting does not need it
    from engine.custom import CustomDigits

EPOCHS = 3
LEARNING_RATE_FACTOR = 0.3
MIN_DIGITS = 20
MIN_PER_LABEL = 2       # one to learn from and one to check with
# Custom digits are repeated until an epoch sees about this many, so a few dozen drawings
# still weigh against thousands of MNIST images.
CUSTOM_EXAMPLES_PER_EPOCH = 1000
MAX_COPIES = 20
# Below this many held-out digits one digit moves the score by more than 3 points.
FEW_HELD_OUT = 30


@dataclass
class AdaptResult:
    """The adapted copy, what adapting did, and the MNIST test metrics a saved model
    carries (metrics.test_report), all JSON-ready."""

    model: Classifier
    report: dict[str, Any]
    test_metrics: dict[str, Any]


def adapt_problem(labels: np.ndarray) -> str | None:
    """Why these custom labels are too few to adapt to, or None when they will do."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_CLASSES)
    lonely = [str(digit) for digit in range(NUM_CLASSES) if counts[digit] == 1]
    if counts.sum() < MIN_DIGITS:
        return (f"adapting needs at least {MIN_DIGITS} custom digits, and there are "
                f"{int(counts.sum())}; draw and save more on Draw & test")
    if lonely:
        return (f"every digit you include needs at least {MIN_PER_LABEL} examples (one to "
                f"learn from, one to check with); add another {', '.join(lonely)} or "
                "remove the single one")
    return None


def check_options(*, epochs: int, learning_rate_factor: float, holdout_fraction: float,
                  mnist_per_custom: float, augmentation: str = "none",
                  custom_copies: int | None = None) -> None:
    """ValueError naming the first option out of its range."""
    if not isinstance(epochs, int) or not 1 <= epochs <= 50:
        raise ValueError(f"epochs must be a whole number from 1 to 50, got {epochs!r}")
    if not 0 < learning_rate_factor <= 1:
        raise ValueError("learning_rate_factor must be in (0, 1] (a fraction of the "
                         f"model's learning rate), got {learning_rate_factor!r}")
    if not 0 < holdout_fraction <= 0.5:
        raise ValueError("holdout_fraction must be in (0, 0.5]: some digits must be kept "
                         f"back to check the adaptation honestly, got {holdout_fraction!r}")
    if not 0 <= mnist_per_custom <= 20:
        raise ValueError(f"mnist_per_custom must be from 0 to 20, got {mnist_per_custom!r}")
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, "
                         f"got {augmentation!r}")
    if custom_copies is not None and not (isinstance(custom_copies, int)
                                          and 1 <= custom_copies <= 100):
        raise ValueError(f"custom_copies must be a whole number from 1 to 100, "
                         f"got {custom_copies!r}")


def split_custom(labels: np.ndarray, holdout_fraction: float, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(fine-tune rows, held-out rows), split per label so every digit is in both."""
    rng = np.random.default_rng([seed, 4])
    finetune, holdout = [], []
    for digit in range(NUM_CLASSES):
        rows = rng.permutation(np.flatnonzero(np.asarray(labels) == digit))
        if len(rows) == 0:
            continue
        kept = min(len(rows) - 1, max(1, round(len(rows) * holdout_fraction)))
        holdout.append(rows[:kept])
        finetune.append(rows[kept:])
    return np.sort(np.concatenate(finetune)), np.sort(np.concatenate(holdout))


def finetune_config(config: TrainConfig, *, epochs: int, learning_rate_factor: float,
                    seed: int) -> TrainConfig:
    """The base model's config for a gentle fine-tune: a smaller rate decaying to zero,
    no validation split (the held-out custom digits and MNIST's test set judge it), and
    no augmentation in the loop (the custom copies are distorted once, up front)."""
    return config.replace(learning_rate=config.learning_rate * learning_rate_factor,
                          epochs=epochs, lr_schedule="cosine", augmentation="none",
                          validation_fraction=0.0, seed=seed)


class Adaptation:
    """A prepared fine-tune: the copy, its training set and the "before" scores. `run`
    (once) trains and scores "after"; preparing first lets a caller watch the copy train.

    `mnist_per_custom`: MNIST training images per custom image seen in an epoch.
    `custom_copies`: how often each custom digit is seen per epoch (default: enough for
    about CUSTOM_EXAMPLES_PER_EPOCH). `augmentation`: distorts the extra copies.
    """

    def __init__(self, model: Classifier, custom: CustomDigits, mnist: Any, *,
                 epochs: int = EPOCHS, learning_rate_factor: float = LEARNING_RATE_FACTOR,
                 mnist_per_custom: float = 3.0, custom_copies: int | None = None,
                 augmentation: str = "none", holdout_fraction: float = 0.25,
                 seed: int = 0) -> None:
        check_options(epochs=epochs, learning_rate_factor=learning_rate_factor,
                      holdout_fraction=holdout_fraction, mnist_per_custom=mnist_per_custom,
                      augmentation=augmentation, custom_copies=custom_copies)
        problem = adapt_problem(custom.labels)
        if problem:
            raise ValueError(problem)
        self.started = time.perf_counter()
        self.augmentation = augmentation
        self.config = finetune_config(model.config, epochs=epochs,
                                      learning_rate_factor=learning_rate_factor, seed=seed)
        # A fresh network holding a copy of the weights: the given model stays as it is.
        self.model = build_model(model.engine_name, self.config)
        self.model.set_weights(model.get_weights())
        finetune_rows, holdout_rows = split_custom(custom.labels, holdout_fraction, seed)
        self.holdout = (custom.images[holdout_rows], custom.labels[holdout_rows])
        self.copies = custom_copies or min(MAX_COPIES, max(1, math.ceil(
            CUSTOM_EXAMPLES_PER_EPOCH / len(finetune_rows))))
        self.images, self.labels, self.mnist_count = _training_set(
            custom.images[finetune_rows], custom.labels[finetune_rows], mnist,
            copies=self.copies, augmentation=augmentation, mnist_per_custom=mnist_per_custom,
            seed=seed)
        self.mnist = mnist
        self.counts = {"custom_count": len(custom), "finetune_count": len(finetune_rows),
                       "holdout_count": len(holdout_rows)}
        self.before = _scores(model, self.holdout, mnist)

    def run(self, *, on_batch: OnBatch | None = None, on_epoch: OnEpoch | None = None,
            stop: StopFlag | None = None) -> AdaptResult:
        history = self.model.fit(self.images, self.labels, on_batch=on_batch,
                                 on_epoch=on_epoch, stop=stop)
        after = _scores(self.model, self.holdout, self.mnist)
        report = {
            "status": history.status, "message": history.message,
            **{f"{part}_before": self.before[part] for part in ("custom", "mnist")},
            **{f"{part}_after": after[part] for part in ("custom", "mnist")},
            **self.counts,
            "custom_copies": self.copies, "mnist_count": self.mnist_count,
            "per_class": {f"{part}_{when}": scores[f"{part}_per_class"]
                          for when, scores in (("before", self.before), ("after", after))
                          for part in ("custom", "mnist")},
            "epochs": round(history.epochs_done, 4),
            "learning_rate": self.config.learning_rate,
            "augmentation": self.augmentation, "seed": self.config.seed,
            "seconds": round(time.perf_counter() - self.started, 3),
            "notes": _notes(self.counts["holdout_count"]),
        }
        return AdaptResult(self.model, report, after["test_metrics"])


def adapt(model: Classifier, custom: CustomDigits, mnist: Any, *, epochs: int = EPOCHS,
          learning_rate_factor: float = LEARNING_RATE_FACTOR, mnist_per_custom: float = 3.0,
          custom_copies: int | None = None, augmentation: str = "none",
          holdout_fraction: float = 0.25, seed: int = 0, on_batch: OnBatch | None = None,
          on_epoch: OnEpoch | None = None, stop: StopFlag | None = None) -> AdaptResult:
    """Fine-tune a copy of `model` on `custom` mixed with MNIST training images; report
    before/after on held-out custom digits and MNIST's test set (see Adaptation).
    ValueError when the digits are too few or an option is out of range."""
    adaptation = Adaptation(
        model, custom, mnist, epochs=epochs, learning_rate_factor=learning_rate_factor,
        mnist_per_custom=mnist_per_custom, custom_copies=custom_copies,
        augmentation=augmentation, holdout_fraction=holdout_fraction, seed=seed)
    return adaptation.run(on_batch=on_batch, on_epoch=on_epoch, stop=stop)


def _training_set(custom_images: np.ndarray, custom_labels: np.ndarray, mnist: Any, *,
                  copies: int, augmentation: str, mnist_per_custom: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """The custom digits as drawn plus `copies - 1` distorted copies, and a seeded MNIST
    training subset `mnist_per_custom` times as large: (images, labels, MNIST count).

    Only custom copies are ever distorted: the MNIST images are there to keep what the
    model knows. Measured on MLPs, distorting any of them cost MNIST test accuracy
    (0.3-1 point) and bought no held-out custom accuracy, hence "none" by default."""
    originals = as_model_input(custom_images)                          # (n, 28, 28)
    repeated = [originals]
    if copies > 1:
        rng = np.random.default_rng([seed, 6])
        if augmentation == "none":
            repeated *= copies
        else:
            from engine.images.augment import augment_batch   # lazy, as in the engines
            repeated += [augment_batch(originals, rng, augmentation)
                         for _ in range(copies - 1)]
    repeated_images = np.concatenate(repeated)                         # (n*copies, 28, 28)
    repeated_labels = np.tile(np.asarray(custom_labels, dtype=np.uint8), copies)
    mnist_count = min(len(mnist.train_labels), round(len(repeated_labels) * mnist_per_custom))
    rows = np.sort(np.random.default_rng([seed, 5]).choice(
        len(mnist.train_labels), mnist_count, replace=False))
    images = np.concatenate([as_model_input(mnist.train_images[rows]), repeated_images])
    labels = np.concatenate([np.asarray(mnist.train_labels[rows], dtype=np.uint8),
                             repeated_labels])
    return images, labels, mnist_count


def _scores(model: Classifier, holdout: tuple[np.ndarray, np.ndarray], mnist: Any
            ) -> dict[str, Any]:
    scores = {}
    for part, (images, labels) in (("custom", holdout),
                                   ("mnist", (mnist.test_images, mnist.test_labels))):
        labels = np.asarray(labels)
        probabilities = model.predict_proba(images)                     # (n, 10)
        predictions = np.argmax(probabilities, axis=1)
        scores[part] = round(float(np.mean(predictions == labels)), 6)
        scores[f"{part}_per_class"] = [None if math.isnan(value) else round(value, 6)
                                       for value in per_class_accuracy(labels, predictions)]
    scores["test_metrics"] = metrics.test_report(labels, probabilities)   # MNIST's, last
    return scores


def _notes(holdout_count: int) -> list[str]:
    if holdout_count >= FEW_HELD_OUT:
        return []
    return [f"only {holdout_count} custom digits were held out to check the adaptation, "
            f"so one digit moves that score by {100 / holdout_count:.0f} points; draw more "
            "for a steadier number"]

"""Does a prepared 28x28 picture look like a digit at all? A model answers every picture with
some digit (a scribble as a 4 at 99%); this asks MNIST instead: how far the picture lies from
the nearest digit class's principal subspace (a few dozen directions in which that class's
training digits vary), relative to its own ink. Letters, scribbles and shapes lie far from all
ten. The distance knows no model; a model's own doubt (its highest probability under a
floor) flags a picture too.

The threshold was chosen on validation material only (scripts/choose_novelty.py): MNIST
training rows left out of the fit, and generated non-digits of tuning seeds and fonts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

COMPONENTS = 24          # directions per class: more reconstruct letters too, fewer miss digits
FIT_ROWS = 54_000        # MNIST training rows the subspaces are fitted on; the other 6,000 are
                         # the validation digits the threshold was chosen on
# Chosen by scripts/choose_novelty.py on validation material: a distance beyond MNIST's
# validation digits' 99.7th percentile, or a model less sure than this, is "not a digit"
# (1% of the validation digits are flagged).
DISTANCE_LIMIT = 0.637
CONFIDENCE_FLOOR = 0.85


@dataclass(frozen=True)
class DigitSpace:
    """Per class: the mean digit (10, 784) and its leading directions (10, 784, k)."""

    means: np.ndarray
    bases: np.ndarray

    def distance(self, images: np.ndarray) -> np.ndarray:
        """(n,) distance of each (28, 28) image to the nearest class subspace, over the
        image's own ink norm (0: exactly a digit; about 1: nothing of it is digit-like)."""
        flat = np.asarray(images, np.float64).reshape(len(images), -1)      # (n, 784)
        norms = np.linalg.norm(flat, axis=1)
        nearest = np.full(len(flat), np.inf)
        for mean, basis in zip(self.means, self.bases):
            centred = flat - mean                                           # (n, 784)
            residual = centred - (centred @ basis) @ basis.T
            nearest = np.minimum(nearest, np.linalg.norm(residual, axis=1))
        return nearest / np.maximum(norms, 1e-6)


def fit_digit_space(images: np.ndarray, labels: np.ndarray,
                    components: int = COMPONENTS) -> DigitSpace:
    """Each class's mean and top `components` principal directions, from (n, 28, 28) digits
    in [0, 1] (or uint8)."""
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    if flat.max() > 1.0:
        flat = flat / 255.0
    means, bases = [], []
    for digit in range(10):
        rows = flat[labels == digit]
        mean = rows.mean(axis=0)
        centred = rows - mean
        # The covariance's eigenvectors: a 784 x 784 problem, whatever the row count.
        values, vectors = np.linalg.eigh(centred.T @ centred)
        means.append(mean)
        bases.append(vectors[:, np.argsort(values)[::-1][:components]])
    return DigitSpace(np.stack(means), np.stack(bases))


@lru_cache(maxsize=1)
def mnist_digit_space() -> DigitSpace:
    """The subspaces of MNIST's first FIT_ROWS training digits (a second or two, once)."""
    from engine.data import load_mnist

    data = load_mnist()
    return fit_digit_space(data.train_images[:FIT_ROWS], data.train_labels[:FIT_ROWS])


def looks_like_digit(images: np.ndarray, probabilities: np.ndarray,
                     space: DigitSpace | None = None) -> np.ndarray:
    """(n,) bool: True where a prepared (n, 28, 28) picture lies near some digit class and
    the model's (n, 10) `probabilities` are sure enough of one digit."""
    space = space if space is not None else mnist_digit_space()
    near = space.distance(images) <= DISTANCE_LIMIT
    return near & (np.asarray(probabilities).max(axis=1) >= CONFIDENCE_FLOOR)

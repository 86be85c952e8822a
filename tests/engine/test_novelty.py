"""engine.novelty: MNIST's digits lie near their class subspaces and a sure model reads them,
so few are flagged; scribbles, shapes and letters are flagged far more often. The rates
reported in docs/handwriting.md come from scripts/choose_novelty.py on held-out material."""

from __future__ import annotations

import numpy as np
import pytest

from engine import registry
from engine.images.preprocess import NoDigitFound, prepare_digit
from engine.novelty import DISTANCE_LIMIT, fit_digit_space, looks_like_digit, mnist_digit_space
from tests.support.not_digits import not_digit_set


@pytest.fixture(scope="module")
def model():
    location = registry.models_dir() / "default-mlp"
    if not (location / "meta.json").exists():
        pytest.skip("models/default-mlp is not trained yet")
    return registry.load(location)


def test_a_digit_is_near_its_own_class_and_far_from_noise(mnist):
    space = fit_digit_space(mnist.train_images[:6000], mnist.train_labels[:6000], 16)
    digits = mnist.test_images[:300] / np.float32(255)
    noise = np.random.default_rng(0).random((50, 28, 28), np.float32)
    assert np.median(space.distance(digits)) < 0.45 < space.distance(noise).min()
    # Exactly a class mean is at distance 0.
    assert space.distance(space.means[3].reshape(1, 28, 28))[0] < 1e-9


def test_few_mnist_test_digits_are_flagged(model, mnist):
    digits = mnist.test_images[:2000] / np.float32(255)
    flagged = ~looks_like_digit(digits, model.predict_proba(digits))
    assert flagged.mean() <= 0.025


def test_scribbles_shapes_and_letters_are_flagged_far_more(model):
    # A tuning seed: the held-out figure is scripts/choose_novelty.py --measure.
    images = []
    for sample in not_digit_set(3, 48, "tuning", kinds=("letter", "scribble", "shape")):
        try:
            images.append(prepare_digit(sample.picture, ink=sample.ink).image)
        except NoDigitFound:
            continue
    images = np.stack(images)
    flagged = ~looks_like_digit(images, model.predict_proba(images))
    assert flagged.mean() >= 0.35
    # The distance alone, without the model's doubt, flags some of them.
    assert (mnist_digit_space().distance(images) > DISTANCE_LIMIT).mean() >= 0.1

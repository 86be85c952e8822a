"""The shipped default models read digits drawn and photographed the way people do: the
varied set of tests/support/varied_digits.py (canvases, exports, paper photos, small digits in large
frames, thick markers, thin pens), through engine.images.preprocess as the dashboard uses it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from engine import registry
from engine.images.preprocess import NoDigitFound, prepare_digit
from tests.support.varied_digits import KINDS, varied_set

# The shipped models and the recipes that reach the bar (measured in the adaptability work).
RECIPES = {"default-mlp": "--engine numpy --preset strong-mlp",
           "default-cnn": "--engine keras --preset cnn"}
SHIPPED = tuple(RECIPES)
SEED = 7                 # this file's own draw; the recipes were chosen on other seeds
PER_DIGIT = 14           # 140 pictures: each digit twice in every kind
OVERALL = 0.95           # the bar for the shipped models
EACH_KIND = 0.85         # no kind of picture may be left behind


@pytest.fixture(scope="module")
def samples():
    return varied_set(SEED, PER_DIGIT)


@pytest.fixture(scope="module")
def prepared(samples):
    """(images, labels, groups): every picture as the dashboard would prepare it (canvases
    told their ink is light), and the canvases once more with ink="auto"."""
    jobs = [(sample, sample.ink, sample.kind) for sample in samples]
    jobs += [(sample, "auto", "canvas (auto)") for sample in samples if sample.kind == "canvas"]
    images = []
    for sample, ink, _ in jobs:
        try:
            images.append(prepare_digit(sample.picture, ink=ink).image)
        except NoDigitFound:
            images.append(np.zeros((28, 28), np.float32))    # no digit found: counts as wrong
    return (np.stack(images), np.array([sample.label for sample, _, _ in jobs]),
            np.array([group for _, _, group in jobs]))


def test_the_varied_set_is_varied(samples):
    kinds = Counter(sample.kind for sample in samples)
    assert set(kinds) == set(KINDS) and min(kinds.values()) >= 2 * 10
    assert {(sample.kind, sample.label) for sample in samples} == {
        (kind, digit) for kind in KINDS for digit in range(10)}
    styles = {(sample.label, sample.style) for sample in samples}
    assert all(len({style for digit, style in styles if digit == label}) >= 2
               for label in range(10)) and len(styles) >= 25
    assert len({sample.writer for sample in samples}) >= 10
    shapes = Counter(sample.picture.shape[2] if sample.picture.ndim == 3 else 1
                     for sample in samples)
    assert set(shapes) == {1, 3, 4}                      # grey, RGB and RGBA pictures
    sides = [max(sample.picture.shape[:2]) for sample in samples]
    assert min(sides) <= 280 and max(sides) >= 1500
    transparent = [sample for sample in samples if sample.kind == "canvas-transparent"]
    assert all(sample.picture[0, 0, 3] == 0 for sample in transparent)
    # Light ink on dark and dark ink on light, judged from the corners' brightness.
    corners = [float(np.mean(sample.picture[[0, 0, -1, -1], [0, -1, 0, -1]][..., :3]))
               for sample in samples if sample.kind != "canvas-transparent"]
    assert min(corners) < 40 and max(corners) > 150


def test_the_same_seed_gives_the_same_set_and_another_seed_another():
    first, again, other = varied_set(3, 1), varied_set(3, 1), varied_set(4, 1)
    assert all(np.array_equal(a.picture, b.picture) for a, b in zip(first, again))
    assert not all(a.picture.shape == b.picture.shape and np.array_equal(a.picture, b.picture)
                   for a, b in zip(first, other))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reads_varied_digits(name, prepared):
    if not (registry.models_dir() / name / "meta.json").exists():
        pytest.skip(f"models/{name} is not trained yet: python -m engine train "
                    f"{RECIPES[name]} --out models/{name}")
    images, labels, groups = prepared
    right = registry.load(name).predict(images) == labels
    by_group = {group: float(right[groups == group].mean()) for group in dict.fromkeys(groups)}
    overall = float(right[groups != "canvas (auto)"].mean())
    report = f"{name}: {overall:.1%} overall; " + ", ".join(
        f"{group} {accuracy:.0%}" for group, accuracy in by_group.items())
    assert overall >= OVERALL, report
    assert min(by_group.values()) >= EACH_KIND, report

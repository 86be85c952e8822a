"""engine.diagnose: measures of a digit against MNIST's, and the intended digit's probability
under shift, rotation and stroke width."""

from __future__ import annotations

import numpy as np
import pytest

from engine import diagnose, registry


def test_measures_follow_the_picture(mnist):
    seven = mnist.test_images[0] / np.float32(255)
    base = diagnose.measure(seven)
    moved = diagnose.measure(diagnose.shifted(seven, 3, -2))
    assert moved["centre x"] == pytest.approx(base["centre x"] + 3, abs=0.01)
    assert moved["centre y"] == pytest.approx(base["centre y"] - 2, abs=0.01)
    wider = diagnose.measure(diagnose.restroked(seven, 2.0))["stroke"]
    thinner = diagnose.measure(diagnose.restroked(seven, 0.5))["stroke"]
    assert thinner < base["stroke"] < wider


def test_an_mnist_digit_sits_mid_range_and_a_shifted_one_does_not(mnist):
    seven = mnist.test_images[0] / np.float32(255)
    rows = {row["measure"]: row for row in diagnose.percentiles(seven, (7,))}
    assert 5 < rows["centre x"]["percentile among 7s"] < 95
    assert diagnose.unusual(list(rows.values()), 7) == []
    off = diagnose.percentiles(diagnose.shifted(seven, 4, 0), (7,))
    assert "centre x" in diagnose.unusual(off, 7)


def test_the_fix_undoes_a_turn():
    location = registry.models_dir() / "default-mlp"
    if not (location / "meta.json").exists():
        pytest.skip("models/default-mlp is not trained yet")
    from engine.data import load_mnist

    model = registry.load(location)
    seven = load_mnist().test_images[0] / np.float32(255)
    turned = diagnose.rotated(seven, -60)
    curves = diagnose.sensitivity(model, turned, 7)
    assert set(curves) == {"shift x", "shift y", "rotation", "stroke"}
    assert all(0 <= p <= 1 for pairs in curves.values() for _, p in pairs)
    fix = diagnose.best_fix(curves)
    assert fix is not None and fix[0] == "rotation" and fix[1] > 0

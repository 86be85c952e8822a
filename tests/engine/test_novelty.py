"""engine.novelty: the shipped detector passes MNIST's test digits and generated held-out
handwriting and flags generated held-out letters, scribbles and shapes; a detector whose
weights are scrambled does not; a missing or damaged file says what to do. The held-out
rates in docs/handwriting.md come from scripts/measure_novelty.py on far more pictures. The
conv path scores as the training script's own layers do, and any detector file (conv or MLP)
round-trips or is refused with one clear message."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine import novelty
from engine.images.preprocess import NoDigitFound, prepare_digit
from engine.novelty import (
    DetectorUnavailable,
    load_detector,
    looks_like_digit,
    save_detector,
    shipped_detector,
)
from scripts.train_detector import as_detector, build_layers
from tests.support.lettering import lettering_set
from tests.support.not_digits import not_digit_set
from tests.support.varied_digits import varied_set

# Margins well outside the measured rates (about 1-2% of digits flagged, most non-digits),
# so a sample of this size passes on any machine and a broken detector does not.
DIGITS_FLAGGED_AT_MOST = 0.06
NOT_DIGITS_FLAGGED_AT_LEAST = 0.7


def prepared(samples) -> np.ndarray:
    images = []
    for sample in samples:
        try:
            images.append(prepare_digit(sample.picture, ink=sample.ink).image)
        except NoDigitFound:
            continue
    return np.stack(images)


@pytest.fixture(scope="module")
def handwriting():
    # Held-out fonts and seeds, a different seed from the measuring script's.
    return prepared(lettering_set(150, 4, "held-out") + varied_set(150, 4))


@pytest.fixture(scope="module")
def not_digits():
    return prepared(not_digit_set(150, 40, "held-out",
                                  kinds=("letter", "scribble", "shape")))


def flagged(detector, images) -> float:
    return float(np.mean(~looks_like_digit(images, detector)))


def passes(detector, mnist, handwriting, not_digits) -> bool:
    digits = mnist.test_images[:2000]
    return (flagged(detector, digits) <= DIGITS_FLAGGED_AT_MOST
            and flagged(detector, handwriting) <= DIGITS_FLAGGED_AT_MOST
            and flagged(detector, not_digits) >= NOT_DIGITS_FLAGGED_AT_LEAST)


def test_the_shipped_detector_passes_digits_and_flags_non_digits(mnist, handwriting,
                                                                  not_digits):
    detector = shipped_detector()
    assert flagged(detector, mnist.test_images[:2000]) <= DIGITS_FLAGGED_AT_MOST
    assert flagged(detector, handwriting) <= DIGITS_FLAGGED_AT_MOST
    assert flagged(detector, not_digits) >= NOT_DIGITS_FLAGGED_AT_LEAST
    # uint8 and [0, 1] pictures get the same answer.
    as_floats = mnist.test_images[:50] / np.float32(255)
    np.testing.assert_array_equal(looks_like_digit(as_floats),
                                  looks_like_digit(mnist.test_images[:50]))


def test_a_scrambled_or_mis_set_detector_fails_the_same_check(mnist, handwriting, not_digits):
    detector = shipped_detector()
    rng = np.random.default_rng(0)
    scrambled = replace(detector,
                        hidden_kernel=rng.permutation(detector.hidden_kernel, axis=0))
    assert not passes(scrambled, mnist, handwriting, not_digits)
    if detector.conv_blocks:
        kernel, bias = detector.conv_blocks[0]
        turned = ((np.rot90(kernel, 1, axes=(0, 1)).copy(), bias),) + detector.conv_blocks[1:]
        assert not passes(replace(detector, conv_blocks=turned), mnist, handwriting,
                          not_digits)
    assert not passes(replace(detector, threshold=-np.inf), mnist, handwriting, not_digits)
    assert not passes(replace(detector, threshold=np.inf), mnist, handwriting, not_digits)


def test_the_detector_round_trips_and_a_bad_file_says_what_to_do(tmp_path, mnist):
    detector = shipped_detector()
    path = save_detector(detector, tmp_path / "detector.npz")
    again = load_detector(path)
    assert again.threshold == detector.threshold and again.about == detector.about
    np.testing.assert_array_equal(again.scores(mnist.test_images[:20]),
                                  detector.scores(mnist.test_images[:20]))

    with pytest.raises(DetectorUnavailable, match="missing.*train_detector"):
        load_detector(tmp_path / "nothing.npz")
    path.write_bytes(b"not a zip archive")
    with pytest.raises(DetectorUnavailable, match="damaged.*train_detector"):
        load_detector(path)
    save_detector(replace(detector, output_bias=np.zeros(3, np.float32)), path)
    with pytest.raises(DetectorUnavailable, match="wrong shape"):
        load_detector(path)
    save_detector(replace(detector, threshold=float("nan")), path)
    with pytest.raises(DetectorUnavailable, match="non-finite"):
        load_detector(path)


def small_detector(conv_filters: tuple[int, ...], seed: int = 0):
    """A detector with the training script's layers, weights drawn at random, and the
    layers themselves."""
    rng = np.random.default_rng(seed)
    layers = build_layers(rng, conv_filters, 6)
    for layer in layers:
        for param in layer.params:
            # Biases too, so a bias dropped or misplaced on the way shows.
            param[...] = rng.normal(0, 0.5, param.shape)
    return as_detector(layers, 0.0, {"made_by": "a test"}), layers


@pytest.mark.parametrize("conv_filters", [(3, 4), (2,), ()])
def test_scores_are_the_training_layers_log_odds(conv_filters, monkeypatch):
    # In chunks of two, so that the five pictures are scored in three calls.
    monkeypatch.setattr(novelty, "CHUNK", 2)
    detector, layers = small_detector(conv_filters)
    images = np.random.default_rng(1).random((5, 28, 28), dtype=np.float32)
    x = images if conv_filters else images.reshape(5, -1)
    for layer in layers:
        x = layer.forward(x, False)
    np.testing.assert_allclose(detector.scores(images), x[:, 1] - x[:, 0], rtol=1e-4,
                               atol=1e-4)
    if conv_filters:
        # Negative control: the same kernels mirrored are another detector.
        kernel, bias = detector.conv_blocks[0]
        mirrored = replace(detector, conv_blocks=((kernel[:, ::-1].copy(), bias),)
                           + detector.conv_blocks[1:])
        assert not np.allclose(mirrored.scores(images), x[:, 1] - x[:, 0], rtol=1e-4,
                               atol=1e-4)


def test_a_conv_detector_round_trips_and_a_bad_one_is_refused(tmp_path):
    detector, _ = small_detector((3, 4))
    images = np.random.default_rng(2).random((4, 28, 28), dtype=np.float32)
    path = save_detector(detector, tmp_path / "detector.npz")
    again = load_detector(path)
    assert len(again.conv_blocks) == 2 and again.about == detector.about
    np.testing.assert_array_equal(again.scores(images), detector.scores(images))
    # The MLP's files (no conv blocks), as the first detector shipped, still load.
    mlp, _ = small_detector(())
    again = load_detector(save_detector(mlp, tmp_path / "mlp.npz"))
    assert again.conv_blocks == ()
    np.testing.assert_array_equal(again.scores(images), mlp.scores(images))

    kernel, bias = detector.conv_blocks[1]
    wrong_channels = (detector.conv_blocks[0], (kernel[:, :, :2], bias))
    save_detector(replace(detector, conv_blocks=wrong_channels), path)
    with pytest.raises(DetectorUnavailable, match="wrong shape"):
        load_detector(path)
    # A head sized for the image, not for the conv blocks' features.
    save_detector(replace(detector, hidden_kernel=np.zeros((784, 6), np.float32)), path)
    with pytest.raises(DetectorUnavailable, match="wrong shape"):
        load_detector(path)
    nan_kernel = detector.conv_blocks[0][0].copy()
    nan_kernel[0, 0, 0, 0] = np.nan
    save_detector(replace(detector, conv_blocks=((nan_kernel, detector.conv_blocks[0][1]),
                                                 detector.conv_blocks[1])), path)
    with pytest.raises(DetectorUnavailable, match="non-finite"):
        load_detector(path)
    with np.load(save_detector(detector, path)) as stored:
        arrays = {name: stored[name] for name in stored.files if name != "conv_1_bias"}
    np.savez(path, **arrays)
    with pytest.raises(DetectorUnavailable, match="damaged.*train_detector"):
        load_detector(path)

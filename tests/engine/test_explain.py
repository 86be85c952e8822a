"""The Inside views on the shipped models: integrated gradients add up to the score
difference, occlusion equals a brute-force loop, the hidden-space PCA equals NumPy's SVD
of the data, activation maximisation raises its score at every step, fooling flips the
answer at the smallest size of its grid, dead units are the ones a direct forward pass
finds silent."""

from __future__ import annotations

import numpy as np
import pytest

from engine import explain, registry
from engine.config import TrainConfig
from engine.cross_engine import other_engine
from engine.numpy_nn.network import NumpyNetwork
from engine.training import as_model_input

ROOT_MODELS = "models"


@pytest.fixture(scope="module")
def mlp():
    return registry.load(f"{ROOT_MODELS}/default-mlp")


@pytest.fixture(scope="module")
def cnn():
    return registry.load(f"{ROOT_MODELS}/default-cnn")


def digits(mnist, count: int) -> list[tuple[np.ndarray, int]]:
    """The first test digit of each class, then the next ones: `count` (image, label)."""
    firsts = [int(np.flatnonzero(mnist.test_labels == digit)[0]) for digit in range(10)]
    order = firsts + [index for index in range(100) if index not in firsts]
    return [(mnist.test_images[index], int(mnist.test_labels[index]))
            for index in order[:count]]


def target_logit(model, image: np.ndarray, target: int) -> float:
    return float(model.logits(as_model_input(image))[0, target])


# ---- attributions -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_integrated_gradients_add_up_to_the_score_difference_within_1_percent(
        request, mnist, name):
    model = request.getfixturevalue(name)
    black = np.zeros((28, 28), np.float32)
    for image, label in digits(mnist, 12):
        attribution = explain.integrated_gradients(model, image, label)
        score, baseline = target_logit(model, image, label), target_logit(model, black, label)
        assert attribution.steps >= 32
        assert attribution.score == pytest.approx(score, abs=1e-4)
        assert attribution.baseline_score == pytest.approx(baseline, abs=1e-4)
        total = float(np.sum(attribution.values, dtype=np.float64))
        assert abs(total - (score - baseline)) <= 0.01 * abs(score - baseline), label
        assert attribution.values.shape == (28, 28) and attribution.values.dtype == np.float32


def test_the_completeness_check_fails_for_a_path_too_coarse(mlp, mnist):
    """Negative control: two intervals, never refined, miss 1% on some digit."""
    gaps = [explain.integrated_gradients(mlp, image, label, steps=2, max_steps=2
                                         ).completeness_gap
            for image, label in digits(mnist, 12)]
    assert max(gaps) > 0.01


def test_integrated_gradients_from_another_baseline_and_versus_a_class(mlp, mnist):
    image, label = digits(mnist, 1)[0]
    grey = np.full((28, 28), 0.5, np.float32)
    other = (label + 1) % 10
    attribution = explain.integrated_gradients(mlp, image, label, baseline=grey,
                                               versus=other)
    difference = [target_logit(mlp, picture, label) - target_logit(mlp, picture, other)
                  for picture in (image, grey)]
    assert attribution.score == pytest.approx(difference[0], abs=1e-4)
    assert attribution.baseline_score == pytest.approx(difference[1], abs=1e-4)
    assert attribution.completeness_gap <= 0.01


def test_saliency_is_the_input_gradient_and_versus_is_the_difference(mlp, mnist):
    image, label = digits(mnist, 1)[0]
    other = (label + 3) % 10
    plain = explain.saliency(mlp, image, label)
    _, expected = mlp.input_gradient(image, np.eye(10)[label])
    np.testing.assert_allclose(plain.values, expected[0], rtol=1e-6)
    assert plain.predicted == label and plain.score == pytest.approx(
        target_logit(mlp, image, label), abs=1e-4)
    versus = explain.saliency(mlp, image, label, versus=other)
    np.testing.assert_allclose(
        versus.values, plain.values - explain.saliency(mlp, image, other).values,
        atol=1e-5 * float(np.abs(plain.values).max()))
    for bad in [{"target": 10}, {"target": label, "versus": label}]:
        with pytest.raises(ValueError):
            explain.saliency(mlp, image, **bad)


@pytest.mark.parametrize("patch, stride, fill", [(4, 2, 0.0), (5, 3, 0.5), (3, 3, 1.0)])
def test_occlusion_equals_a_brute_force_loop(mlp, mnist, patch, stride, fill):
    image, label = digits(mnist, 2)[1]
    digit = as_model_input(image)[0]
    expected = np.zeros((28, 28))
    score = target_logit(mlp, digit, label)
    drops = {}
    for row in range(28):
        for column in range(28):
            covering = [(top, left) for top in range(29 - patch) for left in range(29 - patch)
                        if (top % stride == 0 or top == 28 - patch)
                        and (left % stride == 0 or left == 28 - patch)
                        and top <= row < top + patch and left <= column < left + patch]
            for corner in covering:
                if corner not in drops:
                    hidden = digit.copy()
                    hidden[corner[0]:corner[0] + patch, corner[1]:corner[1] + patch] = fill
                    drops[corner] = score - target_logit(mlp, hidden, label)
            expected[row, column] = np.mean([drops[corner] for corner in covering])
    attribution = explain.occlusion(mlp, image, label, patch=patch, stride=stride, fill=fill)
    np.testing.assert_allclose(attribution.values, expected, rtol=1e-5, atol=1e-4)
    assert np.abs(expected).max() > 0.1          # the digit's own patches matter


# ---- the hidden space -------------------------------------------------------------

@pytest.mark.parametrize("count", [1000, 300], ids=["more-digits-than-units",
                                                      "fewer-digits-than-units"])
def test_the_hidden_space_pca_matches_numpys_svd_of_the_data(mlp, mnist, count):
    images, labels = mnist.test_images[:count], mnist.test_labels[:count]
    hidden_map = explain.hidden_space(mlp, images, labels)
    values = mlp.layer_outputs(images)[-2].values.astype(np.float64)
    centred = values - values.mean(axis=0)
    _, singular, right = np.linalg.svd(centred, full_matrices=False)
    assert hidden_map.layer_name == "dense 2 (800 units)"
    for component, expected in zip(hidden_map.components, right[:2]):
        assert abs(float(component @ expected)) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(hidden_map.explained, singular[:2] ** 2 / np.sum(singular ** 2),
                               rtol=1e-6)
    signs = np.sign(np.sum(hidden_map.components * right[:2], axis=1))
    np.testing.assert_allclose(hidden_map.coords, centred @ (right[:2].T * signs),
                               rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(hidden_map.place(values[:5]), hidden_map.coords[:5],
                               rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(hidden_map.predictions, mlp.predict(images))
    assert hidden_map.explained[0] >= hidden_map.explained[1] > 0


# ---- what a class or unit responds to ---------------------------------------------

def unit_score(model, image: np.ndarray, layer: int, unit: int) -> float:
    values = model.layer_outputs(image[None])[layer].values[0]
    return float(np.mean(values[..., unit]))


@pytest.mark.parametrize("target, layer, start, step_size", [
    (3, -1, "blank", 0.25), (8, -1, "mean", 0.25), (None, 1, "mean", 0.25),
    (0, -1, "blank", 50.0)], ids=["class-from-blank", "class-from-mean",
                                  "hidden-unit", "huge-steps"])
def test_activation_maximisation_raises_the_score_at_every_step(
        mlp, mnist, target, layer, start, step_size):
    if target is None:      # a unit the mean digit excites: a silent one has no gradient
        mean = mnist.train_images.mean(axis=0) / 255.0
        active = np.flatnonzero(mlp.layer_outputs(mean[None])[layer].values[0] > 0)
        target = int(active[len(active) // 2])
    dream = explain.activation_maximisation(mlp, target=target, layer=layer, start=start,
                                            steps=24, step_size=step_size)
    steps = np.diff(dream.scores)
    assert len(steps) == 24 or dream.converged
    assert len(steps) > 0 and np.all(steps > 0), dream.scores
    assert 0.0 <= dream.image.min() and dream.image.max() <= 1.0
    assert unit_score(mlp, dream.image, layer, target) == pytest.approx(
        dream.scores[-1], rel=1e-5, abs=1e-5)


def test_activation_maximisation_stops_at_once_for_a_unit_silent_at_the_start(mlp):
    """A ReLU unit that is off on a black image has no gradient there: no step can raise
    it, and the ascent says so instead of wandering."""
    silent = int(np.flatnonzero(mlp.layer_outputs(np.zeros((1, 28, 28)))[0].values[0] <= 0)[0])
    dream = explain.activation_maximisation(mlp, target=silent, layer=0, start="blank")
    assert dream.converged and dream.scores == [0.0]


def test_activation_maximisation_of_a_conv_channel(cnn):
    dream = explain.activation_maximisation(cnn, target=2, layer=0, steps=8)
    assert dream.layer_name.startswith("conv 1") and np.all(np.diff(dream.scores) > 0)
    assert unit_score(cnn, dream.image, 0, 2) == pytest.approx(dream.scores[-1], rel=1e-4)


# ---- fooling it -------------------------------------------------------------------

def fgsm(model, digit: np.ndarray, predicted: int, epsilon: float) -> np.ndarray:
    """One step along the sign of d(cross-entropy of `predicted`)/d(pixels)."""
    logits = model.logits(digit[None])[0].astype(np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    _, gradient = model.input_gradient(digit[None], probabilities - np.eye(10)[predicted])
    return np.clip(digit + epsilon * np.sign(gradient[0]), 0.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("targeted", [False, True])
def test_fooling_flips_the_answer_at_the_smallest_size_found(mlp, mnist, targeted):
    for image, label in digits(mnist, 3)[1:]:
        digit = as_model_input(image)[0]
        target = (label + 4) % 10 if targeted else None
        fooled = explain.fooling(mlp, image, target=target)
        original = int(mlp.predict(digit[None])[0])
        assert fooled.original_prediction == original == label
        assert fooled.flipped
        answer = int(mlp.predict(fooled.adversarial[None])[0])
        assert answer == fooled.prediction
        assert answer != original if target is None else answer == target
        assert np.abs(fooled.perturbation).max() <= fooled.epsilon + 1e-6
        np.testing.assert_allclose(fooled.adversarial - digit, fooled.perturbation, atol=1e-7)
        first = fooled.flipped_at.index(True)
        assert fooled.epsilon == pytest.approx(fooled.grid[first])
        if target is None:
            # Below that size not even a plain FGSM step, done by hand here, flips it.
            for epsilon in fooled.grid[:first]:
                assert mlp.predict(fgsm(mlp, digit, original, epsilon)[None])[0] == original


def test_fooling_says_when_nothing_on_its_grid_flips(mlp, mnist):
    image, _ = digits(mnist, 1)[0]
    fooled = explain.fooling(mlp, image, epsilon_max=0.001, steps=2)
    assert not fooled.flipped and fooled.flipped_at == [False, False]
    assert fooled.prediction == fooled.original_prediction


# ---- dead units, the first layer, both engines ------------------------------------

def test_dead_units_are_the_ones_a_direct_forward_pass_finds_silent(mlp, mnist):
    images = mnist.test_images[:2000]
    found = explain.dead_units(mlp, images)
    kernel_1, bias_1, kernel_2, bias_2 = [np.asarray(w, np.float64)
                                          for w in mlp.get_weights()[:4]]
    first = np.maximum(images.reshape(-1, 784) / 255.0 @ kernel_1 + bias_1, 0)
    second = np.maximum(first @ kernel_2 + bias_2, 0)
    assert [unit.name for unit in found] == ["dense 1 (800 units)", "dense 2 (800 units)"]
    for unit, values in zip(found, (first, second)):
        silent = np.flatnonzero(values.max(axis=0) <= 0)
        assert unit.total == 800 and unit.dead == len(silent)
        # A unit within rounding of zero may land either side; every other one agrees.
        doubtful = np.flatnonzero(np.abs(values.max(axis=0)) < 1e-5)
        assert set(unit.indices) ^ set(silent) <= set(doubtful)


def test_dead_units_counts_units_silenced_on_purpose_and_skips_non_relu_layers(mnist):
    network = NumpyNetwork(TrainConfig(hidden_sizes=(12, 8), activation="relu"))
    weights = network.get_weights()
    weights[1][[0, 5, 7]] = -100.0                  # dense 1: never above zero
    network.set_weights(weights)
    images = mnist.test_images[:500]
    first = explain.dead_units(network, images)[0]
    direct = np.maximum(images.reshape(-1, 784) / 255.0 @ weights[0] + weights[1], 0)
    silent = np.flatnonzero(direct.max(axis=0) <= 0).tolist()
    assert {0, 5, 7} <= set(silent)
    assert (first.total, first.dead, first.indices) == (12, len(silent), silent)
    tanh = NumpyNetwork(TrainConfig(hidden_sizes=(12,), activation="tanh"))
    assert explain.dead_units(tanh, mnist.test_images[:50]) == []


def test_first_layer_shows_each_units_weights_as_a_picture(mlp, cnn):
    kernel = mlp.get_weights()[0]
    dense = explain.first_layer(mlp)
    assert dense.kind == "dense" and dense.weights.shape == (800, 28, 28)
    np.testing.assert_array_equal(dense.weights[17], kernel[:, 17].reshape(28, 28))
    np.testing.assert_allclose(dense.norms[17], np.linalg.norm(kernel[:, 17]), rtol=1e-5)
    conv = explain.first_layer(cnn)
    assert conv.kind == "conv" and conv.weights.shape == (16, 3, 3)
    np.testing.assert_array_equal(conv.weights[4], cnn.get_weights()[0][:, :, 0, 4])


def test_both_engines_give_the_same_saliency_for_a_copied_model(mlp, mnist):
    image, label = digits(mnist, 1)[0]
    ours, theirs, difference = explain.compare_engines(mlp, other_engine(mlp), image, label)
    assert difference == float(np.max(np.abs(ours - theirs)))
    assert difference < 1e-4 * float(np.abs(ours).max())


def test_the_bench_prints_each_inside_view_against_its_target():
    from engine.bench_inside import format_inside
    from engine.bench_report import format_table

    part = {"model": "default-mlp", "digits": 30, "keras_twin_build_seconds": 2.0,
            "views": {"saliency": {"median_ms": 0.5, "max_ms": 2.0, "target_ms": 100.0},
                      "fooling": {"median_ms": 140.0, "max_ms": 300.0, "target_ms": 100.0}}}
    lines = format_inside(part)
    assert "saliency" in lines[1] and lines[1].endswith("ok")
    assert "fooling" in lines[2] and lines[2].endswith("MISSED")
    machine = {"cpus": 2, "numpy": "2", "matmul_peak_gflops_one_thread": 1.0,
               "matmul_peak_gflops_all_threads": 2.0}
    assert "\n".join(lines) in format_table({"machine": machine, "inside": part})
    assert format_inside({"error": "no model"}) == ["inside: failed: no model"]

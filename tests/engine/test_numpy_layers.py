"""Gradient checks for the NumPy engine: every layer, the fused loss, L2 and the whole
network's `gradients`, each against central differences in float64, plus negative
controls showing the same checker catches a wrong gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.numpy_nn.layers import (LEAKY_RELU_SLOPE, Dense, Dropout, LeakyReLU, ReLU,
                                    Sigmoid, Tanh, glorot_uniform, he_uniform)
from engine.numpy_nn.losses import (SoftmaxCrossEntropy, add_l2_gradient, l2_penalty,
                                    log_softmax)
from engine.numpy_nn.network import NumpyNetwork

TOLERANCE = 1e-6


def numerical_gradient(function, array: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """d function() / d array by central differences, perturbing `array` in place."""
    gradient = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + step
        plus = function()
        array[index] = original - step
        minus = function()
        array[index] = original
        gradient[index] = (plus - minus) / (2 * step)
    return gradient


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), 1e-8)
    return float(np.abs(analytic - numeric).max() / scale)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Inputs with |x| >= 0.1, so a step of 1e-6 never crosses a ReLU kink."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


def layer_errors(layer, x: np.ndarray, rng: np.random.Generator) -> list[float]:
    """Relative errors of backward's input gradient and of every param gradient, for the
    scalar objective sum(forward(x) * upstream)."""
    upstream = rng.normal(size=layer.forward(x, training=False).shape)

    def objective() -> float:
        return float(np.sum(layer.forward(x, training=False) * upstream))

    layer.forward(x, training=False)
    input_gradient = layer.backward(upstream.copy())
    analytic = [input_gradient.copy()] + [grad.copy() for grad in layer.grads]
    numeric = [numerical_gradient(objective, x)]
    numeric += [numerical_gradient(objective, param) for param in layer.params]
    return [relative_error(a, n) for a, n in zip(analytic, numeric)]


@pytest.mark.parametrize("make_layer", [ReLU, LeakyReLU, Sigmoid, Tanh],
                         ids=["relu", "leaky_relu", "sigmoid", "tanh"])
def test_activation_gradients_match_central_differences(make_layer):
    rng = np.random.default_rng(1)
    errors = layer_errors(make_layer(), away_from_zero(rng, (4, 6)), rng)
    assert max(errors) < TOLERANCE, errors


def test_dense_gradients_for_input_kernel_and_bias_match_central_differences():
    rng = np.random.default_rng(2)
    layer = Dense(rng.normal(size=(5, 3)), rng.normal(size=3))
    errors = layer_errors(layer, rng.normal(size=(4, 5)), rng)
    assert len(errors) == 3
    assert max(errors) < TOLERANCE, errors


def test_dropout_gradient_with_a_fixed_mask_matches_central_differences():
    rng = np.random.default_rng(3)
    rate = 0.5
    mask = (rng.random((4, 6)) >= rate) / (1 - rate)            # kept units scaled by 2
    x = rng.normal(size=(4, 6))
    upstream = rng.normal(size=(4, 6))
    layer = Dropout(rate)
    layer.forward_with_mask(x, mask)
    analytic = layer.backward(upstream.copy()).copy()
    numeric = numerical_gradient(
        lambda: float(np.sum(layer.forward_with_mask(x, mask) * upstream)), x)
    assert relative_error(analytic, numeric) < TOLERANCE
    assert np.all(analytic[mask == 0] == 0)


def test_dropout_in_training_drops_the_rate_and_rescales_and_is_identity_otherwise():
    layer = Dropout(0.25, rng=np.random.default_rng(4))
    x = np.ones((200, 500), dtype=np.float32)
    y = layer.forward(x, training=True)
    dropped = np.mean(y == 0)
    assert abs(dropped - 0.25) < 0.01
    assert np.allclose(y[y != 0], 1 / 0.75)
    assert layer.forward(x, training=False) is x


def test_fused_softmax_cross_entropy_gradient_matches_central_differences():
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=3.0, size=(6, 10))
    labels = rng.integers(0, 10, size=6)
    loss = SoftmaxCrossEntropy()
    loss.forward(logits, labels)
    analytic = loss.backward().copy()
    numeric = numerical_gradient(lambda: loss.forward(logits, labels), logits)
    assert relative_error(analytic, numeric) < TOLERANCE


def test_fused_loss_equals_the_textbook_formula_and_survives_huge_logits():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(5, 10))
    labels = np.array([0, 3, 9, 3, 7])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    textbook = -np.mean(np.log(probabilities[np.arange(5), labels]))
    assert SoftmaxCrossEntropy().forward(logits, labels) == pytest.approx(textbook, 1e-12)
    # exp(1000) overflows, so only the log-sum-exp form gets these right: shifting every
    # logit by the same amount must not change the loss.
    huge = SoftmaxCrossEntropy().forward(logits + 1000.0, labels)
    assert huge == pytest.approx(textbook, 1e-9)
    assert np.all(np.isfinite(log_softmax(np.array([[1e4, -1e4, 0.0]]))))


def test_l2_penalty_and_its_gradient_match_central_differences():
    rng = np.random.default_rng(7)
    kernels = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
    l2 = 0.05
    assert l2_penalty(kernels, l2) == pytest.approx(
        l2 * sum(float(np.sum(kernel ** 2)) for kernel in kernels))
    grads = [np.zeros_like(kernel) for kernel in kernels]
    add_l2_gradient(kernels, grads, l2)
    for kernel, grad in zip(kernels, grads):
        numeric = numerical_gradient(lambda: l2_penalty(kernels, l2), kernel)
        assert relative_error(grad, numeric) < TOLERANCE


class ReluPassingGradientUnmasked(ReLU):
    """A deliberately wrong ReLU: its backward forgets the mask."""

    def _scale_gradient(self, grad, out):
        np.copyto(out, grad)
        return out


class SigmoidDerivativeOfInput(Sigmoid):
    """A deliberately wrong sigmoid: the derivative uses the output as if it were exp."""

    def _scale_gradient(self, grad, out):
        return np.multiply(grad, self._y, out=out)


@pytest.mark.parametrize("broken", [ReluPassingGradientUnmasked, SigmoidDerivativeOfInput])
def test_the_checker_catches_a_wrong_gradient(broken):
    rng = np.random.default_rng(8)
    errors = layer_errors(broken(), away_from_zero(rng, (4, 6)), rng)
    assert max(errors) > 0.1, errors


def test_leaky_relu_uses_slope_0_01_and_relu_has_zero_gradient_at_zero():
    assert LEAKY_RELU_SLOPE == 0.01
    x = np.array([[-2.0, 0.0, 3.0]])
    assert np.array_equal(LeakyReLU().forward(x, training=False), [[-0.02, 0.0, 3.0]])
    relu = ReLU()
    relu.forward(x, training=False)
    assert np.array_equal(relu.backward(np.ones_like(x)), [[0.0, 0.0, 1.0]])


def test_sigmoid_is_exact_for_large_inputs_without_warnings():
    x = np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]], dtype=np.float32)
    with np.errstate(all="raise"):
        y = Sigmoid().forward(x, training=False)
    assert y.dtype == np.float32
    assert y[0, 0] == 0.0 and y[0, 2] == 0.5 and y[0, 4] == 1.0


def test_initialisers_draw_within_the_keras_limits():
    rng = np.random.default_rng(9)
    he = he_uniform(rng, 400, 300)
    glorot = glorot_uniform(rng, 400, 300)
    assert np.abs(he).max() <= math.sqrt(6 / 400)
    assert np.abs(glorot).max() <= math.sqrt(6 / 700)
    # A uniform on [-limit, limit] has standard deviation limit / sqrt(3).
    assert he.std() == pytest.approx(math.sqrt(6 / 400) / math.sqrt(3), rel=0.02)
    assert glorot.std() == pytest.approx(math.sqrt(6 / 700) / math.sqrt(3), rel=0.02)


# ---- the whole network ------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {"activation": "relu", "hidden_sizes": (6, 5), "l2": 0.01},
    {"activation": "leaky_relu", "hidden_sizes": (5,), "l2": 0.0},
    {"activation": "tanh", "hidden_sizes": (4, 4, 3), "l2": 0.02, "dropout": 0.5},
    {"activation": "sigmoid", "hidden_sizes": (5,), "l2": 0.001},
    {"hidden_sizes": (), "l2": 0.01},
], ids=["relu-l2", "leaky", "tanh-dropout-ignored", "sigmoid", "softmax-regression"])
def test_network_gradients_match_central_differences(mnist, changes):
    config = TrainConfig(batch_size=8, **changes)
    network = NumpyNetwork(config, dtype=np.float64)
    rng = np.random.default_rng(10)
    # Non-zero biases, so their gradients are tested away from the starting point.
    network.set_weights([weight if weight.ndim == 2 else rng.normal(scale=0.1, size=weight.shape)
                         for weight in network.get_weights()])
    images, labels = mnist.train_images[:8], mnist.train_labels[:8]
    analytic = network.gradients(images, labels)
    weights = network.get_weights()
    assert [grad.shape for grad in analytic] == [weight.shape for weight in weights]
    lit_pixels = np.flatnonzero(images.reshape(8, -1).max(axis=0) > 0)
    for position, (weight, grad) in enumerate(zip(weights, analytic)):
        # A sample of entries; for the first kernel, rows of pixels some image lights
        # (a blank pixel's row only sees the L2 term).
        rows = lit_pixels if position == 0 else np.arange(weight.shape[0])
        entries = np.arange(weight.size).reshape(weight.shape)[rows].reshape(-1)
        flat = weight.reshape(-1)                                  # a view: edits weight
        for index in rng.choice(entries, size=min(30, len(entries)), replace=False):
            original, values = flat[index], []
            for shifted in (original + 1e-6, original - 1e-6):
                flat[index] = shifted
                network.set_weights(weights)
                values.append(network.objective(images, labels))
            flat[index] = original
            numeric = (values[0] - values[1]) / 2e-6
            assert grad.reshape(-1)[index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (
                f"weight {position}, entry {index}")
    network.set_weights(weights)
    again = network.gradients(images, labels)
    assert all(np.array_equal(a, b) for a, b in zip(again, analytic))

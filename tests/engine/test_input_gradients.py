"""Input gradients, the NumPy layer contract's `trace`: each layer's, and each network
layer's through the whole stack, against central differences in float64 (with negative
controls that a wrong gradient is caught); training state left untouched; and the NumPy
engine's input gradients equal TensorFlow's on copied weights for every activation."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.numpy_nn.batchnorm import BatchNorm
from engine.numpy_nn.conv import Conv2D, Flatten, MaxPool2D
from engine.numpy_nn.layers import Dense, Dropout, LeakyReLU, ReLU, Sigmoid, Tanh
from engine.numpy_nn.network import NumpyNetwork
from tests.engine.test_cross_engine import assert_close_relative, twin_networks
from tests.engine.test_cross_engine_cnn import SMALL_CNN, twins_in_float64
from tests.engine.test_numpy_conv import CONV_CASES, MaxPoolSpreadingTies, distinct_values
from tests.engine.test_numpy_layers import (SigmoidDerivativeOfInput, away_from_zero,
                                            numerical_gradient, relative_error)

TOLERANCE = 1e-6
ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh"]


def trace_error(layer, x: np.ndarray, rng: np.random.Generator) -> float:
    """Relative error of trace's input gradient of sum(output * upstream)."""
    y, backward = layer.trace(x)
    upstream = rng.normal(size=y.shape)
    analytic = np.array(backward(upstream.copy()))
    numeric = numerical_gradient(lambda: float(np.sum(layer.trace(x)[0] * upstream)), x)
    return relative_error(analytic, numeric)


def batch_norm(rng: np.random.Generator, channels: int = 3) -> BatchNorm:
    """Moving statistics far from (0, 1), so that forgetting them shows."""
    return BatchNorm(rng.uniform(0.5, 1.5, channels), rng.normal(size=channels),
                     rng.normal(size=channels), rng.uniform(0.2, 3.0, channels))


LAYERS = {
    "dense": lambda rng: (Dense(rng.normal(size=(5, 3)), rng.normal(size=3),
                                input_gradient=False), rng.normal(size=(4, 5))),
    "relu": lambda rng: (ReLU(), away_from_zero(rng, (4, 6))),
    "leaky_relu": lambda rng: (LeakyReLU(), away_from_zero(rng, (4, 6))),
    "sigmoid": lambda rng: (Sigmoid(), rng.normal(size=(4, 6))),
    "tanh": lambda rng: (Tanh(), rng.normal(size=(4, 6))),
    "maxpool-even": lambda rng: (MaxPool2D(), distinct_values(rng, (2, 6, 6, 3))),
    "maxpool-odd": lambda rng: (MaxPool2D(), distinct_values(rng, (2, 7, 7, 3))),
    "batch-norm-inference": lambda rng: (batch_norm(rng), rng.normal(size=(2, 4, 4, 3))),
    "dropout-inference": lambda rng: (Dropout(0.5), rng.normal(size=(4, 6))),
    "flatten": lambda rng: (Flatten(), rng.normal(size=(2, 3, 4, 2))),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_each_layers_input_gradient_matches_central_differences(name):
    layer, x = LAYERS[name](np.random.default_rng(40))
    assert trace_error(layer, x, np.random.default_rng(41)) < TOLERANCE


@pytest.mark.parametrize("size, stride, padding", CONV_CASES)
def test_a_conv_layers_input_gradient_matches_central_differences(size, stride, padding):
    rng = np.random.default_rng(42)
    # The engine's first conv skips the input gradient in training; trace needs it.
    layer = Conv2D(rng.normal(size=(size, size, 2, 3)), rng.normal(size=3), stride=stride,
                   padding=padding, input_gradient=False)
    assert trace_error(layer, rng.normal(size=(2, 7, 8, 2)), rng) < TOLERANCE


def test_a_one_channel_conv_has_the_right_input_gradient_too():
    rng = np.random.default_rng(43)
    layer = Conv2D(rng.normal(size=(3, 3, 1, 4)), padding="same", input_gradient=False)
    assert trace_error(layer, rng.normal(size=(2, 6, 6, 1)), rng) < TOLERANCE


class DenseForgettingTheTranspose(Dense):
    def trace(self, x):
        W, b = self.params
        return x @ W + b, lambda grad: grad @ W         # W is square here: wrong, not a crash


class BatchNormForgettingTheVariance(BatchNorm):
    def trace(self, x):
        return self.infer(x), lambda grad: grad * self.params[0]


BROKEN = {
    "dense": lambda rng: (DenseForgettingTheTranspose(rng.normal(size=(4, 4)),
                                                      rng.normal(size=4)),
                          rng.normal(size=(3, 4))),
    "sigmoid": lambda rng: (SigmoidDerivativeOfInput(), rng.normal(size=(4, 6))),
    "maxpool": lambda rng: (MaxPoolSpreadingTies(), distinct_values(rng, (2, 6, 6, 3))),
    "batch-norm": lambda rng: (BatchNormForgettingTheVariance(
        rng.uniform(0.5, 1.5, 3), rng.normal(size=3), rng.normal(size=3),
        rng.uniform(0.2, 3.0, 3)), rng.normal(size=(2, 4, 4, 3))),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_the_checker_catches_a_wrong_input_gradient(name):
    layer, x = BROKEN[name](np.random.default_rng(44))
    assert trace_error(layer, x, np.random.default_rng(45)) > 0.05


def test_trace_leaves_the_layers_buffers_and_parameter_gradients_alone():
    rng = np.random.default_rng(46)
    layer = Conv2D(rng.normal(size=(3, 3, 2, 3)), padding="same")
    x = rng.normal(size=(2, 5, 5, 2))
    y = layer.forward(x, training=True).copy()
    layer.backward(np.ones_like(y))
    grads_before = [grad.copy() for grad in layer.grads]
    buffers_before = {name: buffer.copy() for name, buffer in layer._buffers.items()}
    _, backward = layer.trace(rng.normal(size=(4, 5, 5, 2)))
    backward(rng.normal(size=(4, 5, 5, 3)))
    for before, after in zip(grads_before, layer.grads):
        np.testing.assert_array_equal(before, after)
    assert set(layer._buffers) == set(buffers_before)
    for name, before in buffers_before.items():
        np.testing.assert_array_equal(before, layer._buffers[name], err_msg=name)


# ---- whole networks ---------------------------------------------------------------

NETWORKS = {
    "mlp-relu-dropout": TrainConfig(hidden_sizes=(6, 5), activation="relu", dropout=0.5),
    "mlp-tanh": TrainConfig(hidden_sizes=(4,), activation="tanh"),
    "cnn": TrainConfig(architecture="cnn", conv_filters=(4, 5), hidden_sizes=(5,),
                       dropout=0.3),
    "cnn-no-hidden": TrainConfig(architecture="cnn", conv_filters=(4,), hidden_sizes=(),
                                 dropout=0.3),
}


def float64_network(config: TrainConfig, seed: int) -> NumpyNetwork:
    """Weights and moving statistics all away from their initial values."""
    network = NumpyNetwork(config, dtype=np.float64)
    rng = np.random.default_rng(seed)
    weights = network.get_weights()
    for name, weight in zip(network.stack.names, weights):
        if name.endswith("moving_variance"):
            weight[...] = rng.uniform(0.3, 2.0, weight.shape)
        elif not name.endswith("kernel"):
            weight[...] += rng.normal(0.0, 0.3, weight.shape)
    network.set_weights(weights)
    return network


def directional_errors(network: NumpyNetwork, images: np.ndarray, layer: int,
                       rng: np.random.Generator, directions: int = 3) -> list[float]:
    """Relative errors of the gradient's derivative along random directions against
    central differences of the layer's output."""
    values = network.layer_outputs(images)[layer].values
    upstream = rng.normal(size=values.shape)
    got_values, gradient = network.input_gradient(images, upstream, layer=layer)
    np.testing.assert_allclose(got_values, values, rtol=1e-12, atol=1e-12)
    errors = []
    for _ in range(directions):
        direction = rng.normal(size=images.shape)

        def objective(step: float, direction: np.ndarray = direction) -> float:
            moved = network.layer_outputs(images + step * direction)[layer].values
            return float(np.sum(moved * upstream))

        numeric = (objective(1e-6) - objective(-1e-6)) / 2e-6
        analytic = float(np.sum(gradient * direction))
        errors.append(abs(analytic - numeric) / max(abs(numeric), 1e-8))
    return errors


def jittered(digits: np.ndarray, seed: int) -> np.ndarray:
    """Real digits in float64 with a little noise: a blank background makes exact ties
    in a max pool's windows, where the output has no derivative to check."""
    rng = np.random.default_rng(seed)
    return 0.9 * digits / 255.0 + rng.uniform(0.0, 0.1, size=digits.shape)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_layers_input_gradient_through_the_network_matches_central_differences(
        mnist, name):
    network = float64_network(NETWORKS[name], seed=47)
    images = jittered(mnist.test_images[:2], seed=53)
    rng = np.random.default_rng(48)
    outputs = network.layer_outputs(images)
    assert outputs[-1].kind == "logits"
    np.testing.assert_allclose(outputs[-1].values, network.logits(images), atol=1e-5)
    for layer in range(len(outputs)):
        errors = directional_errors(network, images, layer, rng)
        assert max(errors) < 1e-6, (outputs[layer].name, errors)


def test_the_network_check_notices_batch_norm_statistics_left_out(mnist):
    """Negative control: the right outputs with the gradient of the same weights under
    batch norm's initial statistics (mean 0, variance 1) instead of the moving ones."""
    network = float64_network(NETWORKS["cnn"], seed=49)
    fresh = NumpyNetwork(NETWORKS["cnn"], dtype=np.float64)
    fresh.set_weights([np.zeros_like(weight) if name.endswith("moving_mean")
                       else np.ones_like(weight) if name.endswith("moving_variance")
                       else weight for name, weight in zip(network.stack.names,
                                                           network.get_weights())])
    right = network.input_gradient
    network.input_gradient = lambda x, w, layer=-1: (
        right(x, w, layer=layer)[0], fresh.input_gradient(x, w, layer=layer)[1])
    images = jittered(mnist.test_images[:2], seed=54)
    errors = directional_errors(network, images, -1, np.random.default_rng(50))
    assert max(errors) > 0.05, errors


def test_entries_are_named_and_shaped_for_people():
    network = NumpyNetwork(TrainConfig(architecture="cnn", conv_filters=(4, 8),
                                       hidden_sizes=(16,)))
    outputs = network.layer_outputs(np.zeros((3, 28, 28), np.float32))
    assert [(entry.name, entry.kind, entry.values.shape) for entry in outputs] == [
        ("conv 1 (3x3, 4 filters)", "conv", (3, 28, 28, 4)),
        ("pool 1 (2x2 max)", "pool", (3, 14, 14, 4)),
        ("conv 2 (3x3, 8 filters)", "conv", (3, 14, 14, 8)),
        ("pool 2 (2x2 max)", "pool", (3, 7, 7, 8)),
        ("dense 1 (16 units)", "dense", (3, 16)),
        ("logits", "logits", (3, 10))]
    # The conv entry is after its ReLU: no negative value.
    assert all(entry.values.min() >= 0 for entry in outputs[:4])
    with pytest.raises(ValueError, match="layer must index"):
        network.input_gradient(np.zeros((1, 28, 28)), 1.0, layer=6)


def test_an_input_gradient_touches_no_training_state(mnist):
    """A training step's gradients, buffers and optimizer state are as they were."""
    config = TrainConfig(architecture="cnn", conv_filters=(4, 5), hidden_sizes=(5,),
                         dropout=0.3, batch_size=32, epochs=1)
    network = NumpyNetwork(config)
    network.partial_fit(mnist.train_images[:64], mnist.train_labels[:64])
    stack = network.stack
    grads = stack.flat_grads.copy()
    params, state = stack.flat_params.copy(), stack.flat_state.copy()
    optimizer = {key: np.array(value, copy=True) for key, value in
                 vars(network.optimizer).items() if isinstance(value, np.ndarray)}
    buffers = [dict(layer._buffers) for layer in stack.layers]
    network.input_gradient(mnist.test_images[:8], np.eye(10)[3])
    network.layer_outputs(mnist.test_images[:8])
    np.testing.assert_array_equal(stack.flat_grads, grads)
    np.testing.assert_array_equal(stack.flat_params, params)
    np.testing.assert_array_equal(stack.flat_state, state)
    for key, value in optimizer.items():
        np.testing.assert_array_equal(getattr(network.optimizer, key), value)
    for layer, before in zip(stack.layers, buffers):
        assert layer._buffers.keys() == before.keys()
        assert all(layer._buffers[name] is before[name] for name in before)


# ---- NumPy against TensorFlow -------------------------------------------------------

def assert_same_inside(numpy_network, keras_network, images: np.ndarray, tolerance: float
                       ) -> None:
    numpy_outputs = numpy_network.layer_outputs(images)
    keras_outputs = keras_network.layer_outputs(images)
    assert [(entry.name, entry.kind, entry.values.shape) for entry in numpy_outputs] == \
        [(entry.name, entry.kind, entry.values.shape) for entry in keras_outputs]
    rng = np.random.default_rng(51)
    for layer, entry in enumerate(numpy_outputs):
        upstream = rng.normal(size=entry.values.shape)
        expected = keras_network.input_gradient(images, upstream, layer=layer)
        actual = numpy_network.input_gradient(images, upstream, layer=layer)
        assert_close_relative(list(actual), list(expected), tolerance)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_input_gradients_equal_tensorflows_on_copied_weights(mnist, activation):
    numpy_network, keras_network = twin_networks(
        TrainConfig(hidden_sizes=(48, 24), activation=activation, dropout=0.3))
    assert_same_inside(numpy_network, keras_network, mnist.test_images[:16], 1e-4)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_cnn_input_gradients_equal_tensorflows_on_copied_weights(mnist, activation):
    numpy_network, keras_network = twins_in_float64(
        SMALL_CNN.replace(activation=activation, dropout=0.2), seed=52)
    assert_same_inside(numpy_network, keras_network, mnist.test_images[:8] / 255.0, 1e-8)


def test_the_engine_comparison_notices_other_weights(mnist):
    """Negative control: a Keras twin of another seed's network differs."""
    numpy_network, _ = twin_networks(TrainConfig(hidden_sizes=(48,), seed=1))
    _, keras_network = twin_networks(TrainConfig(hidden_sizes=(48,), seed=2))
    with pytest.raises(AssertionError):
        assert_same_inside(numpy_network, keras_network, mnist.test_images[:16], 1e-4)

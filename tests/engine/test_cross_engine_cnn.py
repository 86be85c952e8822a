"""The NumPy engine's CNN is Keras's CNN: on copied weights the single layers (every
conv kernel size, stride and padding; pooling; batch norm in both modes) and the whole
`cnn` network give the same outputs, the same gradients (TensorFlow's autodiff against
hand-written backpropagation), the same moving statistics and the same optimizer steps,
within float32 tolerances that hold on any CPU kernel."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.keras_nn import KerasNetwork
from engine.keras_nn.build import import_keras
from engine.numpy_nn.batchnorm import BatchNorm
from engine.numpy_nn.conv import Conv2D, MaxPool2D
from engine.numpy_nn.network import NumpyNetwork
from engine.training import as_model_input
from tests.engine.test_cross_engine import assert_close_relative

SMALL_CNN = TrainConfig(architecture="cnn", conv_filters=(4, 8), hidden_sizes=(16,),
                        l2=1e-3, dropout=0.0, batch_size=64)
CONV_CASES = [(size, stride, padding) for size in (3, 5) for stride in (1, 2)
              for padding in ("same", "valid")]


@pytest.fixture(scope="module")
def batch(mnist):
    """A real batch of 64 training digits."""
    return mnist.train_images[:64], mnist.train_labels[:64].astype(np.int64)


def keras_layer_gradients(layer, x: np.ndarray, upstream: np.ndarray, training: bool
                          ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Output of a built Keras layer and the gradients of sum(output * upstream) for
    the input and every trainable weight, by tf.GradientTape."""
    import tensorflow as tf
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = layer(inputs, training=training)
        objective = tf.reduce_sum(y * upstream)
    gradients = tape.gradient(objective, [inputs, *layer.trainable_weights])
    return y.numpy(), [gradient.numpy() for gradient in gradients]


def numpy_layer_gradients(layer, x: np.ndarray, upstream: np.ndarray, training: bool
                          ) -> tuple[np.ndarray, list[np.ndarray]]:
    y = layer.forward(x, training).copy()
    input_gradient = layer.backward(upstream)
    return y, [np.array(input_gradient)] + [grad.copy() for grad in layer.grads]


# ---- single layers --------------------------------------------------------------

@pytest.mark.parametrize("size, stride, padding", CONV_CASES)
def test_a_conv_layer_equals_kerass(size, stride, padding):
    keras = import_keras()
    rng = np.random.default_rng(30)
    # Odd and even sides: TensorFlow pads a stride-2 "same" conv unevenly.
    x = rng.normal(size=(4, 11, 12, 3)).astype(np.float32)
    kernel = rng.normal(scale=0.3, size=(size, size, 3, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    keras_layer = keras.layers.Conv2D(5, size, strides=stride, padding=padding)
    keras_layer.build(x.shape)
    keras_layer.set_weights([kernel, bias])
    ours = Conv2D(kernel.copy(), bias.copy(), stride=stride, padding=padding)
    expected_y = keras_layer(x).numpy()
    upstream = rng.normal(size=expected_y.shape).astype(np.float32)
    expected_y, expected = keras_layer_gradients(keras_layer, x, upstream, False)
    y, actual = numpy_layer_gradients(ours, x, upstream, False)
    assert y.shape == expected_y.shape
    np.testing.assert_allclose(y, expected_y, rtol=0, atol=1e-5 * np.abs(expected_y).max())
    np.testing.assert_allclose(ours.infer(x), expected_y, rtol=0,
                               atol=1e-5 * np.abs(expected_y).max())
    assert_close_relative(actual, expected, tolerance=1e-4)


@pytest.mark.parametrize("side", [8, 7])
def test_max_pooling_equals_kerass(side):
    keras = import_keras()
    rng = np.random.default_rng(31)
    x = rng.normal(size=(4, side, side, 3)).astype(np.float32)
    upstream = rng.normal(size=(4, side // 2, side // 2, 3)).astype(np.float32)
    expected_y, expected = keras_layer_gradients(keras.layers.MaxPooling2D(2), x,
                                                 upstream, False)
    y, actual = numpy_layer_gradients(MaxPool2D(), x, upstream, False)
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_allclose(actual[0], expected[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("training", [True, False], ids=["batch-statistics", "moving"])
def test_batch_norm_equals_kerass_in_output_gradients_and_moving_statistics(training):
    keras = import_keras()
    rng = np.random.default_rng(32)
    x = rng.normal(loc=1.0, scale=3.0, size=(8, 5, 5, 4)).astype(np.float32)
    weights = [rng.uniform(0.5, 1.5, 4), rng.normal(size=4), rng.normal(size=4),
               rng.uniform(0.5, 2.0, 4)]
    weights = [weight.astype(np.float32) for weight in weights]
    keras_layer = keras.layers.BatchNormalization(momentum=0.9)
    keras_layer.build(x.shape)
    keras_layer.set_weights(weights)
    ours = BatchNorm(*(weight.copy() for weight in weights))
    upstream = rng.normal(size=x.shape).astype(np.float32)
    expected_y, expected = keras_layer_gradients(keras_layer, x, upstream, training)
    y, actual = numpy_layer_gradients(ours, x, upstream, training)
    np.testing.assert_allclose(y, expected_y, rtol=0, atol=1e-5 * np.abs(expected_y).max())
    assert_close_relative(actual, expected, tolerance=1e-4)
    # Keras's moving statistics moved (or not) exactly as ours.
    keras_state = [weight.numpy() for weight in keras_layer.non_trainable_weights]
    np.testing.assert_allclose(ours.state[0], keras_state[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.state[1], keras_state[1], rtol=1e-6, atol=1e-6)
    assert training != np.array_equal(keras_state[1], weights[3])


# ---- the whole network -----------------------------------------------------------

def varied(weights: list[np.ndarray], names: list[str], seed: int) -> list[np.ndarray]:
    """The weights with every bias, gamma, beta and moving statistic moved off its
    starting value, so the comparison exercises each of them."""
    rng = np.random.default_rng(seed)
    changed = []
    for name, weight in zip(names, weights):
        if name.endswith(("_gamma", "_moving_variance")):
            weight = rng.uniform(0.5, 1.5, weight.shape)
        elif not name.endswith("_kernel"):
            weight = rng.normal(0.0, 0.1, weight.shape)
        changed.append(np.asarray(weight, dtype=np.float32))
    return changed


def twin_networks(config: TrainConfig, numpy_first: bool = True
                  ) -> tuple[NumpyNetwork, KerasNetwork]:
    numpy_network, keras_network = NumpyNetwork(config), KerasNetwork(config)
    names = numpy_network.stack.names
    if numpy_first:
        numpy_network.set_weights(varied(numpy_network.get_weights(), names, 7))
        keras_network.set_weights(numpy_network.get_weights())
    else:
        keras_network.set_weights(varied(keras_network.get_weights(), names, 8))
        numpy_network.set_weights(keras_network.get_weights())
    return numpy_network, keras_network


@contextlib.contextmanager
def keras_floatx(name: str) -> Iterator[None]:
    """Keras builds its layers (and their variables) in `name` within the block."""
    keras = import_keras()
    # Both: once any layer exists, Keras's global dtype policy no longer follows floatx.
    previous, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(name)
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)
        keras.config.set_dtype_policy(previous_policy)


def tensorflow_gradients(network: KerasNetwork, images: np.ndarray, labels: np.ndarray,
                         training: bool) -> list[np.ndarray]:
    """d(mean cross-entropy + L2)/d(trainable weights) by tf.GradientTape, in the model's
    dtype; `training` makes batch norm use the batch's statistics (and move Keras's
    moving ones)."""
    import tensorflow as tf
    model = network.model
    inputs = tf.constant(as_model_input(images), dtype=model.inputs[0].dtype)
    with tf.GradientTape() as tape:
        logits = model(inputs, training=training)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        loss += tf.add_n(model.losses)
    return [gradient.numpy() for gradient in tape.gradient(loss, model.trainable_weights)]


@pytest.mark.parametrize("numpy_first", [True, False], ids=["numpy-to-keras",
                                                             "keras-to-numpy"])
def test_copied_weights_give_the_same_logits_and_gradients(batch, numpy_first):
    images, labels = batch
    numpy_network, keras_network = twin_networks(SMALL_CNN, numpy_first)
    for ours, theirs in zip(numpy_network.get_weights(), keras_network.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(numpy_network.logits(images), keras_network.logits(images),
                               rtol=0, atol=1e-5)
    assert_close_relative(numpy_network.gradients(images, labels),
                          tensorflow_gradients(keras_network, images, labels, False),
                          tolerance=1e-4)


@pytest.fixture(scope="module")
def float64_twins() -> tuple[NumpyNetwork, KerasNetwork]:
    """Both engines in float64, the NumPy one's weights copied into Keras.

    On the batch's statistics the kernels' gradients are sums that nearly cancel (a
    kernel's gradient is orthogonal to the kernel: scaling it changes nothing after
    batch norm), so TensorFlow's float32 batch variance, ~1e-4 off, moves them by up to
    1% (measured; the NumPy engine sums its statistics in float64). In float64 both
    engines are exact enough to show the same maths beyond doubt.
    """
    return twins_in_float64(SMALL_CNN, seed=9)


def twins_in_float64(config: TrainConfig, *, seed: int) -> tuple[NumpyNetwork, KerasNetwork]:
    """A float64 NumPy network with varied weights (`seed`), and a float64 Keras one
    holding the same weights."""
    numpy_network = NumpyNetwork(config, dtype=np.float64)
    numpy_network.set_weights(varied(numpy_network.get_weights(), numpy_network.stack.names,
                                     seed))
    with keras_floatx("float64"):
        keras_network = KerasNetwork(config)
    keras_network.model.set_weights(numpy_network.get_weights())
    return numpy_network, keras_network


@pytest.mark.parametrize("batch_statistics", [False, True], ids=["moving", "batch"])
def test_in_float64_the_gradients_agree_in_both_batch_norm_modes(
        batch, float64_twins, batch_statistics):
    images, labels = batch
    numpy_network, keras_network = float64_twins
    expected = tensorflow_gradients(keras_network, images, labels, batch_statistics)
    assert expected[0].dtype == np.float64
    assert_close_relative(
        numpy_network.gradients(images, labels, batch_statistics=batch_statistics),
        expected, tolerance=1e-8)


def test_the_comparison_notices_batch_norm_in_the_wrong_mode(batch, float64_twins):
    """Negative control: the moving statistics' gradients are not the batch's."""
    images, labels = batch
    numpy_network, keras_network = float64_twins
    with pytest.raises(AssertionError):
        assert_close_relative(numpy_network.gradients(images, labels),
                              tensorflow_gradients(keras_network, images, labels, True),
                              tolerance=1e-4)


def test_same_training_steps_give_the_same_weights_and_moving_statistics(batch):
    """Three full-batch epochs of Nesterov momentum, in float64 (see `float64_twins`):
    kernels, gammas and betas step alike, the moving statistics follow the same batches,
    and neither the optimizer nor L2 touches them."""
    images, labels = batch
    config = SMALL_CNN.replace(batch_size=len(images), epochs=3, optimizer="nesterov",
                               learning_rate=0.05)
    numpy_network, keras_network = twins_in_float64(config, seed=10)
    start = numpy_network.get_weights()
    for _ in range(config.epochs):
        numpy_network.partial_fit(images, labels)
        keras_network.partial_fit(images, labels)
    numpy_weights = numpy_network.get_weights()
    keras_weights = [weight.numpy() for weight in keras_network.model.weights]
    assert keras_weights[0].dtype == np.float64
    moved = min(float(np.abs(after - before).max())
                for after, before in zip(numpy_weights, start))
    assert moved > 1e-3                # every array moved, far beyond the tolerance
    for name, ours, theirs in zip(numpy_network.stack.names, numpy_weights, keras_weights):
        # Not tighter: Keras keeps the learning rate in a float32 variable.
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-8, err_msg=name)
    losses = numpy_network.history.batch_loss
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(losses, keras_network.history.batch_loss, rtol=1e-7)

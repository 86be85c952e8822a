"""The NumPy engine and the Keras engine are the same maths: on identical weights they give
the same logits, the same gradients (TensorFlow's autodiff against hand-written
backpropagation) and the same optimizer steps."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.keras_nn import KerasNetwork
from engine.numpy_nn.network import NumpyNetwork
from engine.training import as_model_input


@pytest.fixture(scope="module")
def batch(mnist):
    """A real batch of 64 training digits."""
    return mnist.train_images[:64], mnist.train_labels[:64].astype(np.int64)


def twin_networks(config: TrainConfig) -> tuple[NumpyNetwork, KerasNetwork]:
    """A NumPy network with non-zero biases and a Keras network holding its weights."""
    numpy_network = NumpyNetwork(config)
    rng = np.random.default_rng(7)
    weights = numpy_network.get_weights()
    for bias in weights[1::2]:
        bias += rng.normal(0.0, 0.1, size=bias.shape).astype(bias.dtype)
    numpy_network.set_weights(weights)
    keras_network = KerasNetwork(config)
    keras_network.set_weights(numpy_network.get_weights())
    return numpy_network, keras_network


def tensorflow_gradients(network: KerasNetwork, images: np.ndarray, labels: np.ndarray
                         ) -> list[np.ndarray]:
    """d(mean cross-entropy + L2 penalties)/d(weights) by tf.GradientTape, no dropout."""
    import keras
    import tensorflow as tf
    model = network.model
    inputs = tf.constant(as_model_input(images))
    with tf.GradientTape() as tape:
        logits = model(inputs, training=False)
        data_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            labels, logits)
        loss = data_loss + sum(model.losses)      # the L2 penalties, if any
    return [gradient.numpy() for gradient in tape.gradient(loss, model.trainable_weights)]


def assert_close_relative(actual: list[np.ndarray], expected: list[np.ndarray],
                          tolerance: float) -> None:
    assert [a.shape for a in actual] == [e.shape for e in expected]
    for index, (a, e) in enumerate(zip(actual, expected)):
        scale = float(np.abs(e).max())
        assert scale > 0, f"array {index} is all zero: the comparison would prove nothing"
        np.testing.assert_allclose(a, e, rtol=tolerance, atol=tolerance * scale,
                                   err_msg=f"array {index} of {len(expected)}")


@pytest.mark.parametrize("activation, l2", [
    ("relu", 0.0), ("leaky_relu", 1e-3), ("tanh", 0.0), ("sigmoid", 1e-2)])
def test_same_weights_give_same_logits_and_gradients(batch, activation, l2):
    images, labels = batch
    config = TrainConfig(hidden_sizes=(48, 24), activation=activation, l2=l2, dropout=0.3)
    numpy_network, keras_network = twin_networks(config)

    np.testing.assert_allclose(keras_network.logits(images), numpy_network.logits(images),
                               rtol=0, atol=1e-5)
    assert_close_relative(tensorflow_gradients(keras_network, images, labels),
                          numpy_network.gradients(images, labels), tolerance=1e-4)


def test_the_gradient_comparison_notices_a_different_loss(batch):
    """Negative control: the L2 term changes the gradients beyond the tolerance."""
    images, labels = batch
    numpy_network, _ = twin_networks(TrainConfig(hidden_sizes=(48,), l2=1e-2))
    _, keras_network = twin_networks(TrainConfig(hidden_sizes=(48,), l2=0.0))
    with pytest.raises(AssertionError):
        assert_close_relative(tensorflow_gradients(keras_network, images, labels),
                              numpy_network.gradients(images, labels), tolerance=1e-4)


@pytest.mark.parametrize("optimizer, learning_rate", [
    ("adam", 1e-3), ("sgd", 0.1), ("momentum", 0.05), ("nesterov", 0.05)])
def test_same_optimizer_steps_give_same_weights(batch, optimizer, learning_rate):
    """Three full-batch epochs are three steps on one batch: the second and third use
    the optimizer's state (velocity, moments, bias correction)."""
    images, labels = batch
    config = TrainConfig(hidden_sizes=(32,), optimizer=optimizer, momentum=0.8,
                         learning_rate=learning_rate, batch_size=len(images), l2=1e-3,
                         epochs=3)
    numpy_network, keras_network = twin_networks(config)
    start = numpy_network.get_weights()
    for _ in range(config.epochs):
        numpy_network.partial_fit(images, labels)
        keras_network.partial_fit(images, labels)

    numpy_weights, keras_weights = numpy_network.get_weights(), keras_network.get_weights()
    moved = max(float(np.abs(after - before).max())
                for after, before in zip(numpy_weights, start))
    assert moved > 100 * 1e-5        # the steps are far larger than the tolerance
    for keras_weight, numpy_weight in zip(keras_weights, numpy_weights):
        np.testing.assert_allclose(keras_weight, numpy_weight, rtol=0, atol=1e-5)
    np.testing.assert_allclose(keras_network.history.batch_loss,
                               numpy_network.history.batch_loss, rtol=1e-5)


def test_same_epochs_give_same_history_and_weights(mnist):
    """Two epochs of 200 images in batches of 64 (the last one short): both engines take
    the batches in the same order and report the same history."""
    images, labels = mnist.train_images[:200], mnist.train_labels[:200]
    validation = (mnist.test_images[:100], mnist.test_labels[:100])
    config = TrainConfig(hidden_sizes=(32,), optimizer="nesterov", learning_rate=0.05,
                         batch_size=64, epochs=2)
    numpy_network, keras_network = twin_networks(config)
    for _ in range(config.epochs):
        numpy_record = numpy_network.partial_fit(images, labels, validation=validation)
        keras_record = keras_network.partial_fit(images, labels, validation=validation)

    for keras_weight, numpy_weight in zip(keras_network.get_weights(),
                                          numpy_network.get_weights()):
        np.testing.assert_allclose(keras_weight, numpy_weight, rtol=0, atol=1e-5)
    numpy_history, keras_history = numpy_network.history, keras_network.history
    assert len(keras_history.batch_loss) == 2 * 4
    np.testing.assert_allclose(keras_history.batch_loss, numpy_history.batch_loss,
                               rtol=1e-5)
    assert keras_history.status == numpy_history.status == "completed"
    assert keras_record.train_loss == pytest.approx(numpy_record.train_loss, rel=1e-5)
    # Accuracies may differ by a digit whose top two logits tie within float32 rounding.
    assert keras_record.train_accuracy == pytest.approx(numpy_record.train_accuracy, abs=0.01)
    assert keras_record.val_accuracy == pytest.approx(numpy_record.val_accuracy, abs=0.01)
    assert keras_record.val_loss == pytest.approx(numpy_record.val_loss, rel=1e-5)

"""The Keras engine on real MNIST: building from the config, one epoch's history, the stop
flag, the divergence guard, files, predictions. Agreement with the NumPy engine is in
test_cross_engine.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.keras_nn import KerasNetwork, epoch
from engine.training import (as_model_input, batch_rng,
                             epoch_permutation, learning_rate_at, split_training_data,
                             stop_message)

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(train_size=1400, validation_fraction=0.1, batch_size=32, seed=3)


@pytest.fixture(scope="module")
def small(mnist):
    """1,260 training and 140 validation images, the split the engines use."""
    config = TrainConfig(**SMALL)
    return split_training_data(mnist.train_images, mnist.train_labels, config)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(labels)), labels].mean())


def test_importing_the_engine_does_not_import_tensorflow():
    code = ("import sys, engine.keras_nn; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("activation, initialiser", [
    ("leaky_relu", "HeUniform"), ("tanh", "GlorotUniform")])
def test_mlp_is_built_from_the_config(activation, initialiser):
    config = TrainConfig(hidden_sizes=(32, 16), activation=activation, dropout=0.25,
                         l2=1e-3)
    network = KerasNetwork(config)
    shapes = [weight.shape for weight in network.get_weights()]
    assert shapes == [(784, 32), (32,), (32, 16), (16,), (16, 10), (10,)]
    assert network.parameter_count == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert all(not bias.any() for bias in network.get_weights()[1::2])
    dense = [layer for layer in network.model.layers if type(layer).__name__ == "Dense"]
    assert [type(layer.kernel_initializer).__name__ for layer in dense] == [initialiser] * 3
    assert [layer.kernel_regularizer.l2 for layer in dense] == pytest.approx([1e-3] * 3)
    dropouts = [layer.rate for layer in network.model.layers
                if type(layer).__name__ == "Dropout"]
    assert dropouts == [0.25, 0.25]
    leaky = [layer.negative_slope for layer in network.model.layers
             if type(layer).__name__ == "LeakyReLU"]
    assert leaky == ([0.01, 0.01] if activation == "leaky_relu" else [])
    assert network.model.layers[-1].activation.__name__ == "linear"   # outputs logits


def test_the_seed_decides_the_initial_weights():
    config = TrainConfig(hidden_sizes=(16, 16, 16), dropout=0.1)
    first, again = KerasNetwork(config).get_weights(), KerasNetwork(config).get_weights()
    other = KerasNetwork(config.replace(seed=1)).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[2], first[4])     # same-shape layers differ, too


def test_cnn_is_built_from_the_config():
    config = TrainConfig(architecture="cnn", conv_filters=(8, 16), hidden_sizes=(32,))
    network = KerasNetwork(config)
    kinds = [type(layer).__name__ for layer in network.model.layers]
    assert kinds.count("Conv2D") == 2 and kinds.count("BatchNormalization") == 2
    assert kinds.count("MaxPooling2D") == 2
    shapes = [weight.shape for weight in network.get_weights()]
    assert shapes[0] == (3, 3, 1, 8) and shapes[5] == (3, 3, 8, 16)
    assert shapes[-4:] == [(7 * 7 * 16, 32), (32,), (32, 10), (10,)]
    trainable = sum(int(np.prod(weight.shape)) for weight in network.model.trainable_weights)
    assert trainable == (9 * 8 + 2 * 8 + 9 * 8 * 16 + 2 * 16 + 784 * 32 + 32 + 32 * 10 + 10)


def test_one_epoch_records_the_shared_history_format(small):
    train_images, train_labels, val_images, val_labels = small
    config = TrainConfig(**SMALL, hidden_sizes=(64,), l2=0.01, lr_schedule="step", epochs=3)
    network = KerasNetwork(config)
    first_rows = epoch_permutation(config.seed, 0, len(train_images))[:config.batch_size]
    first_batch_loss = cross_entropy(network.logits(train_images[first_rows]),
                                     train_labels[first_rows])
    reports = []
    record = network.partial_fit(train_images, train_labels,
                                 validation=(val_images, val_labels), on_batch=reports.append)

    batches = -(-len(train_images) // config.batch_size)
    history = network.history
    assert history.batches_per_epoch == batches and len(history.batch_loss) == batches
    assert [report.batch for report in reports] == list(range(1, batches + 1))
    assert [report.loss for report in reports] == history.batch_loss
    # The logged loss is the data term alone: with l2=0.01 the penalty would add ~1.
    assert history.batch_loss[0] == pytest.approx(first_batch_loss, abs=1e-4)
    assert record.epoch == 1 and record.fraction == 1.0 and history.epochs == [record]
    assert history.status == "running" and history.message == ""
    assert record.learning_rate == learning_rate_at(config, 0)
    assert 0 < record.train_loss < history.batch_loss[0]
    assert record.val_accuracy == pytest.approx(network.score(val_images, val_labels))
    assert len(record.val_per_class_accuracy) == 10
    assert record.val_accuracy > 0.7

    for _ in range(2):
        record = network.partial_fit(train_images, train_labels)
    assert record.learning_rate == learning_rate_at(config, 2) == config.learning_rate / 4
    assert float(network.model.optimizer.learning_rate.numpy()) == pytest.approx(
        record.learning_rate)
    assert history.status == "completed" and len(history.epochs) == 3


def test_augmented_epoch_trains_on_the_shared_augmentation(small):
    from engine.images.augment import augment_batch
    train_images, train_labels, _, _ = small
    config = TrainConfig(**SMALL, hidden_sizes=(32,), augmentation="light")
    network = KerasNetwork(config)
    first_rows = epoch_permutation(config.seed, 0, len(train_images))[:config.batch_size]
    augmented = augment_batch(as_model_input(train_images[first_rows]),
                              batch_rng(config.seed, 0), "light")
    expected = cross_entropy(network.logits(augmented), train_labels[first_rows])
    plain = cross_entropy(network.logits(train_images[first_rows]), train_labels[first_rows])
    reports = []
    network.partial_fit(train_images, train_labels, on_batch=reports.append)
    assert network.history.batch_loss[0] == pytest.approx(expected, abs=1e-4)
    assert abs(expected - plain) > 1e-3      # the check above could tell them apart
    # Augmented epochs are fed to Keras in several fit calls; the count runs on.
    batches = network.history.batches_per_epoch
    assert [report.batch for report in reports] == list(range(1, batches + 1))
    assert len(network.history.batch_loss) == batches


# Spans of at most this many batches in the tests below, so a stop or a divergence can
# fall in the middle of one; the first spans of a run are shorter still (1, 2, 4, ...).
TEST_SPAN = 4


@pytest.fixture
def short_spans(monkeypatch):
    monkeypatch.setattr(epoch, "MAX_BATCHES_PER_SPAN", TEST_SPAN)


def same_weights(first, second) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(first, second))


def test_span_length_doubles_then_follows_the_time_per_batch():
    assert epoch.next_span_length(1, 0.001) == 2              # fast: double
    assert epoch.next_span_length(64, 0.01, target=0.25) == 128
    assert epoch.next_span_length(100, 0.5, target=0.25) == 50    # slow: fit the target
    assert epoch.next_span_length(1, 3.0) == 1                # tracing: never below one
    assert epoch.next_span_length(200, 0.01, longest=256) == 256
    assert epoch.next_span_length(4, 0.0) == 8


def test_stop_flag_ends_the_epoch_after_the_span_that_saw_it(small, short_spans):
    train_images, train_labels, val_images, val_labels = small
    network = KerasNetwork(TrainConfig(**SMALL, hidden_sizes=(32,)))
    stop = threading.Event()
    weights_after = {}

    def on_batch(progress):
        weights_after[progress.batch] = network.get_weights()
        if progress.batch == 5:
            stop.set()

    record = network.partial_fit(train_images, train_labels,
                                 validation=(val_images, val_labels),
                                 on_batch=on_batch, stop=stop)
    batches = network.history.batches_per_epoch
    stopped_at = max(weights_after)
    assert sorted(weights_after) == list(range(1, stopped_at + 1))
    assert 5 <= stopped_at < 5 + TEST_SPAN < batches, "honoured within one span"
    # Every batch that ran was reported, and no other: the optimizer counted them.
    assert int(network.model.optimizer.iterations.numpy()) == stopped_at
    assert record.fraction == pytest.approx(stopped_at / batches)
    assert network.history.status == "stopped"
    assert network.history.message == stop_message(1, stopped_at, batches)
    assert len(network.history.batch_loss) == stopped_at and record.val_accuracy is not None
    assert same_weights(network.get_weights(), weights_after[stopped_at])

    before = network.get_weights()
    record = network.partial_fit(train_images, train_labels, stop=stop)   # already set
    assert record.fraction == 0 and network.history.status == "stopped"
    assert same_weights(network.get_weights(), before)


def train_with_a_bad_batch(network, images, labels, bad_batch, spoil):
    """One epoch in which `spoil` changes the images of batch `bad_batch` (1-based);
    returns the weights seen at each report, keyed by batch (0: before training)."""
    size = network.config.batch_size
    images = as_model_input(images).copy()
    order = epoch_permutation(network.config.seed, 0, len(images))
    rows = order[(bad_batch - 1) * size:bad_batch * size]
    images[rows] = spoil(images[rows])
    seen = {0: network.get_weights()}
    network.partial_fit(images, labels,
                        on_batch=lambda progress: seen.update(
                            {progress.batch: network.get_weights()}))
    return seen


def failed_batch(network) -> int:
    return int(network.history.message.split("batch ")[1].split(":")[0])


def check_kept_weights(network, seen, bad_batch) -> None:
    """The weights kept are finite, from before the bad batch, and the fraction counts
    the batches they hold."""
    kept = network.get_weights()
    assert all(np.isfinite(weight).all() for weight in kept)
    kept_batches = round(network.history.epochs[-1].fraction
                         * network.history.batches_per_epoch)
    assert kept_batches < bad_batch
    assert same_weights(kept, seen[kept_batches])


def test_divergence_restores_finite_weights_and_can_resume(small, short_spans):
    train_images, train_labels, _, _ = small
    config = TrainConfig(**SMALL, hidden_sizes=(32,), optimizer="momentum")
    network = KerasNetwork(config)

    def nan_pixel(batch):
        batch[:, 10, 10] = np.nan
        return batch

    seen = train_with_a_bad_batch(network, train_images, train_labels, 6, nan_pixel)
    assert network.history.status == "diverged"
    # Eigen's kernels turn the NaN pixel into a NaN loss at batch 6; oneDNN's fused
    # MatMul+BiasAdd+ReLU turns it into 0, so only the check of the weights after the
    # span sees the NaN gradient's mark.
    assert 6 <= failed_batch(network) < 6 + TEST_SPAN, network.history.message
    assert max(seen) == failed_batch(network) - 1
    check_kept_weights(network, seen, 6)
    # The optimizer's moments were reset too, so clean data trains on from there.
    network.partial_fit(train_images, train_labels)
    assert np.isfinite(network.history.batch_loss).all()
    assert network.history.status in ("running", "completed")


def test_an_exploding_batch_stops_the_span_where_it_happens(small, short_spans):
    # Pictures 10,000 times too bright give a finite loss far past the ceiling on
    # any kernel. The check runs inside the compiled span, after every batch: Python
    # would only see the span's last loss, which later batches bring back down.
    train_images, train_labels, _, _ = small
    network = KerasNetwork(TrainConfig(**SMALL, hidden_sizes=(32,)))
    seen = train_with_a_bad_batch(network, train_images, train_labels, 6,
                                  lambda batch: batch * 1e4)
    assert network.history.status == "diverged"
    assert failed_batch(network) == 6 and "exploded" in network.history.message
    assert sorted(seen) == [0, 1, 2, 3, 4, 5]
    check_kept_weights(network, seen, 6)


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_save_and_load_round_trip(tmp_path, small, mnist, architecture):
    train_images, train_labels, _, _ = small
    config = TrainConfig(**SMALL, architecture=architecture, hidden_sizes=(32,),
                         conv_filters=(4, 8), dropout=0.2)
    network = KerasNetwork(config)
    network.partial_fit(train_images[:320], train_labels[:320])
    assert network.save_weights(tmp_path) == "model.keras"
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]      # no temp file left
    loaded = KerasNetwork.load_weights(tmp_path, config)
    test_images = mnist.test_images[:200]
    np.testing.assert_array_equal(loaded.predict_proba(test_images),
                                  network.predict_proba(test_images))


def test_load_refuses_other_shapes_and_missing_files(tmp_path):
    KerasNetwork(TrainConfig(hidden_sizes=(32,))).save_weights(tmp_path)
    with pytest.raises(ValueError, match="do not fit this network"):
        KerasNetwork.load_weights(tmp_path, TrainConfig(hidden_sizes=(64,)))
    with pytest.raises(ValueError, match="no Keras weights file"):
        KerasNetwork.load_weights(tmp_path / "elsewhere", TrainConfig(hidden_sizes=(32,)))
    (tmp_path / "model.keras").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable Keras model"):
        KerasNetwork.load_weights(tmp_path, TrainConfig(hidden_sizes=(32,)))


def test_load_refuses_a_lambda_layer(tmp_path):
    import keras
    inputs = keras.Input(shape=(28, 28))
    doubled = keras.layers.Lambda(lambda images: images * 2.0)(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(doubled))
    keras.Model(inputs, outputs).save(tmp_path / "model.keras")
    config = TrainConfig(hidden_sizes=())
    with pytest.raises(ValueError, match="Lambda layer"):
        KerasNetwork.load_weights(tmp_path, config)


def test_set_weights_refuses_wrong_shapes():
    network = KerasNetwork(TrainConfig(hidden_sizes=(8,)))
    weights = network.get_weights()
    with pytest.raises(ValueError, match="do not fit this network"):
        network.set_weights(weights[:2])
    with pytest.raises(ValueError, match="do not fit this network"):
        network.set_weights([weights[0].T, *weights[1:]])
    weights[1][0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        network.set_weights(weights)


def test_single_image_predictions_are_probabilities(mnist):
    network = KerasNetwork(TrainConfig(architecture="cnn", conv_filters=(4,),
                                       hidden_sizes=(16,)))
    image = mnist.test_images[0]                                  # (28, 28) uint8
    probabilities = network.predict_proba(image)
    assert probabilities.shape == (1, 10) and probabilities.dtype == np.float32
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert (probabilities >= 0).all()
    assert network.predict(image).shape == (1,)
    many = network.predict_proba(mnist.test_images[:5000])       # several chunks
    np.testing.assert_allclose(many[:1], probabilities, atol=1e-6)
    assert many.shape == (5000, 10)


def test_predicting_while_another_thread_trains(small):
    train_images, train_labels, val_images, _ = small
    network = KerasNetwork(TrainConfig(**SMALL, hidden_sizes=(32,)))
    trainer = threading.Thread(
        target=lambda: network.fit(train_images, train_labels, epochs=2))
    trainer.start()
    predictions = []
    while trainer.is_alive() or not predictions:
        predictions.append(network.predict_proba(val_images[:1]))
    trainer.join()
    assert len(network.history.epochs) == 2
    assert all(np.isfinite(p).all() and p.shape == (1, 10) for p in predictions)


@pytest.mark.slow
def test_short_cnn_run_learns_digits(mnist):
    # Measured: 94-95 % on these 2,000 test digits for seeds 1-3 (chance is 10 %).
    config = TrainConfig(architecture="cnn", conv_filters=(16, 32), hidden_sizes=(64,),
                         train_size=5000, validation_fraction=0.0, epochs=2, seed=1,
                         batch_size=32, learning_rate=2e-3)
    network = KerasNetwork(config)
    network.fit(mnist.train_images[:5000], mnist.train_labels[:5000])
    assert network.score(mnist.test_images[:2000], mnist.test_labels[:2000]) > 0.9

"""NumpyNetwork as a Classifier on real MNIST: layout, determinism, learning, the stop
flag, the divergence guard, the history, and the weights file."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from engine.config import PRESETS, TrainConfig
from engine.numpy_nn import storage
from engine.numpy_nn.network import NumpyNetwork
from engine.numpy_nn.stack import INFERENCE_COLS_BYTES, parameter_layout
from engine.training import (LOSS_CEILING, divergence_message, learning_rate_at,
                             split_training_data, stop_message)

SMALL = TrainConfig(hidden_sizes=(32, 16), batch_size=64, train_size=1000, epochs=2,
                    learning_rate=0.01)


def subset(mnist, count: int = 1000):
    return mnist.train_images[:count], mnist.train_labels[:count]


def test_a_cnn_has_kerass_weights_order_shapes_and_initialisation():
    config = TrainConfig(architecture="cnn", conv_filters=(8, 16), hidden_sizes=(32,))
    network = NumpyNetwork(config)
    weights = network.get_weights()
    block = [(8,)] * 4
    assert [w.shape for w in weights] == [
        (3, 3, 1, 8), *block, (3, 3, 8, 16), *[(16,)] * 4,
        (7 * 7 * 16, 32), (32,), (32, 10), (10,)]
    names, shapes = parameter_layout(config)
    assert shapes == [w.shape for w in weights]
    assert names[:5] == ["conv_0_kernel", "batch_norm_0_gamma", "batch_norm_0_beta",
                         "batch_norm_0_moving_mean", "batch_norm_0_moving_variance"]
    for kernel, fan_in in ((weights[0], 9), (weights[5], 9 * 8)):
        limit = math.sqrt(6 / fan_in)                  # He-uniform, as Keras's HeUniform
        assert limit * 0.9 < np.abs(kernel).max() <= limit
    for gamma, beta, mean, variance in (weights[1:5], weights[6:10]):
        assert (gamma == 1).all() and (variance == 1).all()
        assert not beta.any() and not mean.any()
    # The trained arrays leave out the moving statistics, as Keras's trainable_weights.
    assert [p.shape for p in network.stack.params] == [
        w.shape for index, w in enumerate(weights) if index not in (3, 4, 8, 9)]
    assert network.parameter_count == sum(w.size for w in weights)


@pytest.mark.parametrize("activation, limit_of", [
    ("relu", lambda fan_in, fan_out: math.sqrt(6 / fan_in)),
    ("tanh", lambda fan_in, fan_out: math.sqrt(6 / (fan_in + fan_out))),
])
def test_weights_use_keras_layout_and_initialisation(activation, limit_of):
    network = NumpyNetwork(TrainConfig(activation=activation))
    weights = network.get_weights()
    assert [w.shape for w in weights] == [(784, 256), (256,), (256, 128), (128,),
                                          (128, 10), (10,)]
    assert all(w.dtype == np.float32 for w in weights)
    for kernel, bias in zip(weights[::2], weights[1::2]):
        limit = limit_of(*kernel.shape)
        assert np.abs(kernel).max() <= limit
        assert np.abs(kernel).max() > 0.95 * limit     # spread over the whole range
        assert not bias.any()
    assert network.parameter_count == 784 * 256 + 256 + 256 * 128 + 128 + 1290


def test_zero_hidden_layers_is_softmax_regression(mnist):
    network = NumpyNetwork(SMALL.replace(hidden_sizes=[]))
    assert [w.shape for w in network.get_weights()] == [(784, 10), (10,)]
    network.partial_fit(*subset(mnist))
    assert network.score(mnist.test_images[:1000], mnist.test_labels[:1000]) > 0.7


@pytest.mark.parametrize("changes", [{}, {"dropout": 0.3}, {"augmentation": "light"}],
                         ids=["plain", "dropout", "augmentation"])
def test_same_config_and_seed_give_identical_weights_after_an_epoch(mnist, changes):
    config = SMALL.replace(**changes)
    runs = []
    for seed in (config.seed, config.seed, config.seed + 1):
        network = NumpyNetwork(config.replace(seed=seed))
        network.partial_fit(*subset(mnist))
        runs.append(network.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not any(np.array_equal(a, b) for a, b in zip(runs[0][::2], runs[2][::2]))


def test_a_short_seeded_run_on_5000_images_passes_90_percent_on_the_test_set(mnist):
    config = TrainConfig(train_size=5000, epochs=5, seed=1)
    images, labels, val_images, val_labels = split_training_data(
        mnist.train_images, mnist.train_labels, config)
    network = NumpyNetwork(config)
    history = network.fit(images, labels, validation=(val_images, val_labels))
    assert history.status == "completed"
    accuracy = network.score(mnist.test_images, mnist.test_labels)
    assert accuracy > 0.90, accuracy
    assert history.epochs[-1].val_accuracy > 0.88


def test_epoch_records_batches_schedule_and_status(mnist):
    config = SMALL.replace(lr_schedule="cosine")
    network = NumpyNetwork(config)
    images, labels = subset(mnist, 1000)        # 15 batches of 64 and one of 40
    progress = []
    record = network.partial_fit(images, labels, validation=subset(mnist, 200),
                                 on_batch=progress.append)
    assert network.history.batches_per_epoch == 16
    assert [p.batch for p in progress] == list(range(1, 17))
    assert all(p.epoch == 1 and p.batches_per_epoch == 16 for p in progress)
    assert len(network.history.batch_loss) == 16
    assert network.history.batch_loss == pytest.approx([p.loss for p in progress])
    assert record.fraction == 1.0 and record.epoch == 1
    # The epoch's loss is the sample-weighted mean of its batch losses.
    weights = [64] * 15 + [40]
    assert record.train_loss == pytest.approx(
        np.average([p.loss for p in progress], weights=weights))
    assert 0 < record.train_accuracy <= 1
    assert len(record.val_per_class_accuracy) == 10
    assert record.val_accuracy == pytest.approx(
        network.score(*subset(mnist, 200)))
    assert network.history.status == "running"
    second = network.partial_fit(images, labels)
    assert record.learning_rate == 0.01
    assert second.learning_rate == learning_rate_at(config, 1) == pytest.approx(0.005)
    assert second.val_accuracy is None
    assert network.history.status == "completed"
    assert [r.epoch for r in network.history.epochs] == [1, 2]


def stopping_after(network: NumpyNetwork, batch: int):
    """(on_batch, stop, seen): a callback that records the weights after every batch and
    raises the stop flag after `batch`."""
    stop, seen = threading.Event(), []

    def on_batch(progress):
        seen.append(network.get_weights())
        if progress.batch == batch:
            stop.set()

    return on_batch, stop, seen


def test_stop_flag_keeps_the_weights_of_the_last_finished_batch(mnist):
    network = NumpyNetwork(SMALL)
    on_batch, stop, seen = stopping_after(network, 5)
    record = network.partial_fit(*subset(mnist), validation=subset(mnist, 300),
                                 on_batch=on_batch, stop=stop)
    assert len(seen) == 5
    assert record.fraction == 5 / 16
    assert network.history.status == "stopped"
    assert network.history.message == stop_message(1, 5, 16)
    assert all(np.array_equal(a, b) for a, b in zip(network.get_weights(), seen[-1]))
    assert record.val_accuracy == pytest.approx(network.score(*subset(mnist, 300)))
    assert record.val_accuracy > 0.3                 # five batches already beat chance
    # A stop already set before an epoch trains nothing; clearing it trains again.
    before = network.get_weights()
    empty = network.partial_fit(*subset(mnist), stop=stop)
    assert empty.fraction == 0 and math.isnan(empty.train_loss)
    assert all(np.array_equal(a, b) for a, b in zip(network.get_weights(), before))
    stop.clear()
    network.partial_fit(*subset(mnist), stop=stop)
    assert network.history.status == "completed" and network.history.message == ""


def test_divergence_restores_the_last_weights_that_gave_an_acceptable_loss(mnist):
    # Nesterov momentum 0.99 at learning rate 1 passes the loss ceiling within a few
    # batches on every kernel; which batch depends on the CPU's rounding, so the test
    # asserts how the kept weights relate to the reported ones, not a batch number.
    config = SMALL.replace(optimizer="nesterov", momentum=0.99, learning_rate=1.0,
                           activation="leaky_relu", hidden_sizes=[256, 128],
                           batch_size=32)
    network = NumpyNetwork(config)
    after_batch = [network.get_weights()]
    record = network.partial_fit(*subset(mnist), validation=subset(mnist, 200),
                                 on_batch=lambda _: after_batch.append(network.get_weights()))
    history = network.history
    assert history.status == "diverged"
    diverged_at = len(after_batch)        # the batch after the last one reported
    assert diverged_at < 32
    assert history.message.startswith(f"diverged at epoch 1, batch {diverged_at}: the loss ")
    assert history.message.endswith("lower the learning rate below 1. The weights from "
                                    "before the divergence were kept.")
    kept = round(record.fraction * 32)
    assert kept == diverged_at - 2       # the weights that gave the last acceptable loss
    weights = network.get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    assert all(np.array_equal(a, b) for a, b in zip(weights, after_batch[kept]))
    assert network.loss(*subset(mnist, 200)) < LOSS_CEILING
    assert network.fit(*subset(mnist)).status == "diverged"   # fit ends at once, too


def test_a_nan_weight_after_the_last_update_is_caught_and_undone(mnist):
    # No later loss would show it: only the check of the weights themselves can.
    network = NumpyNetwork(SMALL)
    reported = []

    def poison_after_the_last_batch(progress):
        reported.append(network.get_weights())
        if progress.batch == progress.batches_per_epoch:
            network.stack.params[2][3, 4] = np.nan

    record = network.partial_fit(*subset(mnist), on_batch=poison_after_the_last_batch)
    assert network.history.status == "diverged"
    assert network.history.message == divergence_message(
        1, 16, SMALL.learning_rate, "a weight became infinite or NaN")
    # The snapshot was taken before the last update: the weights after batch 15.
    assert record.fraction == 15 / 16
    assert all(np.array_equal(a, b) for a, b in zip(network.get_weights(), reported[-2]))


def test_weights_too_large_to_give_a_finite_loss_are_kept_as_they_were(mnist):
    network = NumpyNetwork(SMALL)
    huge = [w * 1e30 if w.ndim == 2 else w for w in network.get_weights()]
    network.set_weights(huge)
    record = network.partial_fit(*subset(mnist))
    assert network.history.status == "diverged"
    assert network.history.message == divergence_message(1, 1, SMALL.learning_rate)
    assert record.fraction == 0
    assert all(np.array_equal(a, b) for a, b in zip(network.get_weights(), huge))


def test_outputs_probabilities_logits_and_gradients(mnist):
    network = NumpyNetwork(SMALL)
    network.partial_fit(*subset(mnist))
    images = mnist.test_images[:50]
    probabilities = network.predict_proba(images)
    assert probabilities.shape == (50, 10) and probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    logits = network.logits(images)
    assert np.array_equal(np.argmax(logits, axis=1), network.predict(images))
    assert np.array_equal(network.logits(images.astype(np.float32) / np.float32(255)),
                          logits)
    gradients = network.gradients(images, mnist.test_labels[:50])
    assert [g.shape for g in gradients] == [w.shape for w in network.get_weights()]
    with pytest.raises(ValueError, match="one label per image"):
        network.partial_fit(images, mnist.test_labels[:49])
    with pytest.raises(ValueError, match="labels must be integers 0-9"):
        network.partial_fit(images, np.full(50, 10))


def test_save_and_load_round_trip_predicts_identically(mnist, tmp_path):
    network = NumpyNetwork(SMALL)
    network.partial_fit(*subset(mnist))
    assert network.save_weights(tmp_path) == "model.npz"
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]   # no temp file left
    with np.load(tmp_path / "model.npz") as archive:
        assert sorted(archive.files) == sorted(
            f"dense_{i}_{part}" for i in range(3) for part in ("kernel", "bias"))
    loaded = NumpyNetwork.load_weights(tmp_path, SMALL)
    images = mnist.test_images[:500]
    assert np.array_equal(loaded.predict_proba(images), network.predict_proba(images))
    # Loading skips drawing random weights: every array comes from the file.
    blank = NumpyNetwork(SMALL, initialise=False)
    assert not any(np.any(weight) for weight in blank.get_weights())
    assert all(np.array_equal(mine, theirs) for mine, theirs in
               zip(loaded.get_weights(), network.get_weights()))


def write_weights(folder, **arrays):
    with open(folder / "model.npz", "wb") as file:
        np.savez(file, **arrays)


def test_load_refuses_another_architecture_naming_the_array(tmp_path):
    NumpyNetwork(SMALL).save_weights(tmp_path)
    with pytest.raises(ValueError, match=r"dense_0_kernel has shape \(784, 32\)"):
        NumpyNetwork.load_weights(tmp_path, SMALL.replace(hidden_sizes=[64, 16]))
    with pytest.raises(ValueError, match="lacks dense_3_kernel, dense_3_bias"):
        NumpyNetwork.load_weights(tmp_path, SMALL.replace(hidden_sizes=[32, 16, 8]))
    with pytest.raises(ValueError, match="unexpected arrays dense_2_bias, dense_2_kernel"):
        NumpyNetwork.load_weights(tmp_path, SMALL.replace(hidden_sizes=[32]))


def test_load_refuses_missing_non_finite_and_pickled_arrays(tmp_path):
    weights = dict(zip([f"dense_{i}_{part}" for i in range(3) for part in ("kernel", "bias")],
                       NumpyNetwork(SMALL).get_weights()))
    with pytest.raises(ValueError, match="no model.npz"):
        NumpyNetwork.load_weights(tmp_path, SMALL)
    write_weights(tmp_path, **{k: v for k, v in weights.items() if k != "dense_1_bias"})
    with pytest.raises(ValueError, match="lacks dense_1_bias"):
        NumpyNetwork.load_weights(tmp_path, SMALL)
    broken = dict(weights, dense_1_kernel=np.full((32, 16), np.nan, np.float32))
    write_weights(tmp_path, **broken)
    with pytest.raises(ValueError, match="dense_1_kernel holds infinite or NaN"):
        NumpyNetwork.load_weights(tmp_path, SMALL)
    pickled = np.empty(1, dtype=object)
    pickled[0] = {"payload": "a pickled object"}
    write_weights(tmp_path, **dict(weights, dense_2_bias=pickled))
    with pytest.raises(ValueError, match="dense_2_bias .*pickled objects are refused"):
        NumpyNetwork.load_weights(tmp_path, SMALL)
    (tmp_path / "model.npz").write_bytes(b"not a zip archive at all")
    with pytest.raises(ValueError, match="is not a .npz archive"):
        NumpyNetwork.load_weights(tmp_path, SMALL)


def test_set_weights_refuses_wrong_count_shape_and_nan():
    network = NumpyNetwork(SMALL)
    weights = network.get_weights()
    with pytest.raises(ValueError, match="expected 6 weight arrays"):
        network.set_weights(weights[:4])
    with pytest.raises(ValueError, match="dense_1_bias has shape"):
        network.set_weights(weights[:3] + [np.zeros(17)] + weights[4:])
    weights[4][0, 0] = np.inf
    with pytest.raises(ValueError, match="dense_2_kernel holds infinite"):
        network.set_weights(weights)


def test_training_pins_openblas_threads_and_restores_them_after_the_last_user():
    from engine.numpy_nn import blas
    functions = blas._openblas()
    if functions is None:
        pytest.skip("NumPy does not use OpenBLAS here")
    set_threads, get_threads = functions
    original = get_threads()
    inside = []
    with blas.training_threads():
        inside.append(get_threads())
        with blas.training_threads():          # a second training in another thread
            inside.append(get_threads())
        inside.append(get_threads())           # the outer one is still running
    assert inside == [blas.TRAINING_THREADS] * 3
    assert get_threads() == original


# ---- the CNN ----------------------------------------------------------------------

SMALL_CNN = TrainConfig(architecture="cnn", conv_filters=(8, 16), hidden_sizes=(32,),
                        batch_size=64, train_size=2000, epochs=2, learning_rate=3e-3,
                        validation_fraction=0.0)


@pytest.fixture(scope="module")
def trained_cnn(mnist):
    """SMALL_CNN after its two epochs on the first 2,000 training digits."""
    network = NumpyNetwork(SMALL_CNN)
    network.fit(*subset(mnist, 2000))
    return network


def test_a_small_cnn_learns_mnist_in_two_epochs(mnist, trained_cnn):
    assert trained_cnn.history.status == "completed"
    # 82.7-84.3% over seeds 0-3 (measured); an MLP of this size reaches about 80%.
    assert trained_cnn.score(mnist.test_images[:1000], mnist.test_labels[:1000]) > 0.80
    moving_variances = trained_cnn.get_weights()[4::5][:2]
    assert all((variance != 1).all() for variance in moving_variances)   # they moved


def test_a_cnn_run_repeats_for_its_seed_moving_statistics_included(mnist, trained_cnn):
    config = SMALL_CNN.replace(epochs=1, dropout=0.3, hidden_sizes=())
    runs = []
    for seed in (0, 0, 1):
        network = NumpyNetwork(config.replace(seed=seed))
        network.partial_fit(*subset(mnist, 640))
        runs.append(network.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not any(np.array_equal(a, b) for a, b in zip(runs[0], runs[2]))


def test_a_saved_cnn_loads_and_predicts_identically(mnist, trained_cnn, tmp_path):
    trained_cnn.save_weights(tmp_path)
    names, shapes = parameter_layout(SMALL_CNN)
    with np.load(tmp_path / "model.npz") as archive:
        assert sorted(archive.files) == sorted(names)
        assert "batch_norm_1_moving_variance" in archive.files
    storage.check_headers(tmp_path, names, shapes)     # what the registry checks
    loaded = NumpyNetwork.load_weights(tmp_path, SMALL_CNN)
    assert all(np.array_equal(a, b) for a, b in
               zip(loaded.get_weights(), trained_cnn.get_weights()))
    images = mnist.test_images[:500]
    assert np.array_equal(loaded.predict_proba(images), trained_cnn.predict_proba(images))
    with pytest.raises(ValueError, match=r"conv_1_kernel has shape \(3, 3, 8, 16\)"):
        NumpyNetwork.load_weights(tmp_path, SMALL_CNN.replace(conv_filters=(8, 32)))
    # Its flattened features happen to be 784 wide, as many as an MLP's pixels: the
    # names still tell the files apart.
    with pytest.raises(ValueError, match="unexpected arrays batch_norm_0_beta"):
        storage.check_headers(tmp_path, *parameter_layout(
            SMALL_CNN.replace(architecture="mlp")))


def test_cnn_prediction_in_chunks_bounds_memory_and_changes_nothing(mnist, trained_cnn):
    stack = trained_cnn.stack
    big = NumpyNetwork(PRESETS["strong-cnn"]).stack
    # The largest im2col matrix of a chunk stays within the budget, for any preset.
    for each in (stack, big):
        conv = each.layers[5]                          # the second conv: the widest
        assert each.inference_chunk * conv.cols_bytes_per_image(14, 14, 4) \
            <= INFERENCE_COLS_BYTES
    assert big.inference_chunk >= 100
    images = mnist.test_images[:300]
    whole = trained_cnn.logits(images)
    stack.inference_chunk = 7
    # Relative too: products over other row counts may take other BLAS kernels, whose
    # float32 sums differ in the last bits, and logits reach about 10 (a 1e-5 miss at
    # 7.55 was seen). A wrong chunk boundary would be off by whole units.
    try:
        np.testing.assert_allclose(trained_cnn.logits(images), whole, rtol=1e-5, atol=1e-5)
    finally:
        stack.inference_chunk = stack._inference_chunk()
    np.testing.assert_allclose(trained_cnn.logits(images[0]), whole[:1],   # one image
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected images of shape \(n, 28, 28\)"):
        trained_cnn.logits(np.zeros((0, 27, 27), np.uint8))


def test_a_cnn_stop_keeps_the_last_finished_batch_moving_statistics_included(mnist):
    network = NumpyNetwork(SMALL_CNN)
    on_batch, stop, seen = stopping_after(network, 3)
    record = network.partial_fit(*subset(mnist, 640), on_batch=on_batch, stop=stop)
    assert network.history.status == "stopped" and record.fraction == 3 / 10
    assert all(np.array_equal(a, b) for a, b in zip(network.get_weights(), seen[-1]))


def test_a_cnn_divergence_restores_weights_and_moving_statistics_together(mnist):
    # A NaN written into the first gamma after batch 2 makes batch 3's loss NaN and
    # its forward pass poisons the moving statistics: both must come back.
    network = NumpyNetwork(SMALL_CNN)
    reported = [network.get_weights()]

    def poison_after_batch_2(progress):
        reported.append(network.get_weights())
        if progress.batch == 2:
            network.stack.weights["batch_norm_0_gamma"][0] = np.nan

    record = network.partial_fit(*subset(mnist, 640), on_batch=poison_after_batch_2)
    assert network.history.status == "diverged"
    assert network.history.message.startswith("diverged at epoch 1, batch 3: ")
    kept = network.get_weights()
    assert all(np.isfinite(weight).all() for weight in kept)
    # The weights after batch 1: those after batch 2 gave no acceptable loss.
    assert record.fraction == 1 / 10
    assert all(np.array_equal(a, b) for a, b in zip(kept, reported[1]))
    assert network.loss(*subset(mnist, 200)) < LOSS_CEILING


def test_a_cnn_that_diverges_on_its_first_batch_keeps_its_moving_statistics(mnist):
    network = NumpyNetwork(SMALL_CNN)
    huge = network.get_weights()
    huge[-2] *= 1e30                                  # the logits' kernel
    network.set_weights(huge)
    network.partial_fit(*subset(mnist, 640))
    assert network.history.status == "diverged"
    assert all(np.array_equal(a, b) for a, b in zip(network.get_weights(), huge))

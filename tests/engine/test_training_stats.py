"""Per-layer statistics recorded while training, by both engines: weight histograms equal
numpy.histogram of the weights each epoch ended with, gradient norms equal norms of the
gradients computed directly (by the NumPy engine in float64 on the same weights), dead
units equal a direct pass over the epoch's sampled batches, and models saved before the
statistics existed still load."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from engine import build_model, registry
from engine.config import TrainConfig
from engine.numpy_nn.network import NumpyNetwork
from engine.training import History, epoch_permutation
from engine.training_stats import EDGE_MARGIN, SAMPLE_EVERY, StatsRecorder, stats_layers

ENGINES = ("numpy", "keras")
MLP = TrainConfig(hidden_sizes=(24, 16), train_size=600, validation_fraction=0.0,
                  batch_size=200, epochs=2, seed=3)
CNN = MLP.replace(architecture="cnn", conv_filters=(4, 6), hidden_sizes=(8,))


def trained_with_weights(engine: str, config: TrainConfig, images, labels):
    """A model trained `config.epochs` epochs, and its weights after each epoch."""
    model = build_model(engine, config)
    weights = []
    model.fit(images, labels, on_epoch=lambda record: weights.append(model.get_weights()))
    return model, weights


def layer_norms(gradients: list[np.ndarray], config: TrainConfig) -> np.ndarray:
    """Each layer's gradient norm, straight from the arrays (Keras's trained order)."""
    return np.array([math.sqrt(sum(float(np.sum(gradients[index].astype(np.float64) ** 2))
                                   for index in layer.trainable))
                     for layer in stats_layers(config)])


def float64_twin(model) -> NumpyNetwork:
    twin = NumpyNetwork(model.config, dtype=np.float64)
    twin.set_weights(model.get_weights())
    return twin


def test_the_layout_names_each_weighted_layer_in_both_engines_order():
    layers = stats_layers(CNN)
    assert [layer.name for layer in layers] == ["conv 1", "conv 2", "dense 1", "logits"]
    assert [layer.units for layer in layers] == [4, 6, 8, 10]
    assert [layer.relu for layer in layers] == [True, True, True, False]
    # conv kernel, gamma, beta per block; kernel, bias per dense layer
    assert [layer.trainable for layer in layers] == [(0, 1, 2), (3, 4, 5), (6, 7), (8, 9)]
    assert [layer.kernel for layer in layers] == [0, 5, 10, 12]
    assert not any(layer.relu for layer in stats_layers(MLP.replace(activation="tanh")))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("config", [MLP, CNN], ids=["mlp", "cnn"])
def test_weight_histograms_equal_numpy_histogram_of_each_epochs_weights(
        engine, config, mnist):
    images, labels = mnist.train_images[:600], mnist.train_labels[:600]
    model, weights = trained_with_weights(engine, config, images, labels)
    stats = model.history.training_stats
    assert [epoch.epoch for epoch in stats.epochs] == [1, 2]
    layers = stats_layers(config)
    for layer_index, layer in enumerate(layers):
        first = np.abs(weights[0][layer.kernel]).max()
        assert stats.weight_limits[layer_index] == pytest.approx(EDGE_MARGIN * first)
        edges = stats.bin_edges(layer_index)
        for epoch, epoch_weights in zip(stats.epochs, weights):
            kernel = epoch_weights[layer.kernel]
            expected, _ = np.histogram(kernel, bins=edges)
            assert epoch.weight_counts[layer_index] == expected.tolist()
            assert sum(epoch.weight_counts[layer_index]) + epoch.weights_below[layer_index] \
                + epoch.weights_above[layer_index] == kernel.size
    # Negative control: the weights moved between epochs, so each epoch matching its
    # own weights is not one histogram compared twice.
    assert any(first != second for first, second in
               zip(stats.epochs[0].weight_counts, stats.epochs[1].weight_counts))


def test_weights_beyond_the_first_epochs_edges_are_counted_not_dropped():
    history, recorder = History(), StatsRecorder(MLP)
    weights = NumpyNetwork(MLP).get_weights()
    recorder.add_batch([1.0, 1.0, 1.0], [np.ones(24), np.ones(16)])
    recorder.close_epoch(history, 1, weights)
    grown = [weight * 3 for weight in weights]
    recorder.add_batch([1.0, 1.0, 1.0], [np.ones(24), np.ones(16)])
    recorder.close_epoch(history, 2, grown)
    first, second = history.training_stats.epochs
    assert first.weights_below == first.weights_above == [0, 0, 0]
    kernel = grown[0]
    limit = history.training_stats.weight_limits[0]
    assert second.weights_below[0] == np.count_nonzero(kernel < -limit) > 0
    assert second.weights_above[0] == np.count_nonzero(kernel > limit) > 0
    assert second.weights_below[0] + sum(second.weight_counts[0]) \
        + second.weights_above[0] == kernel.size


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("config", [MLP, CNN], ids=["mlp", "cnn"])
def test_one_batch_gradient_norms_equal_the_gradients_norms(engine, config, mnist):
    config = config.replace(train_size=200, epochs=1, optimizer="sgd", l2=1e-3)
    images, labels = mnist.train_images[:200], mnist.train_labels[:200]
    model = build_model(engine, config)
    twin = float64_twin(model)          # the weights the one batch was computed on
    model.fit(images, labels)
    (epoch,) = model.history.training_stats.epochs
    assert epoch.batches == 1
    # Batch norm in a training step normalises by the batch, so the twin does too.
    expected = layer_norms(twin.gradients(images, labels, batch_statistics=True), config)
    np.testing.assert_allclose(epoch.gradient_norm, expected, rtol=2e-4)


@pytest.mark.parametrize("engine", ENGINES)
def test_gradient_norms_average_every_sampled_batch_of_the_epoch(engine, mnist):
    # A rate so small the weights stay put: every batch's gradient is then the one at
    # the starting weights, computable directly.
    config = MLP.replace(epochs=1, optimizer="sgd", learning_rate=1e-7, batch_size=100,
                         train_size=900)
    images, labels = mnist.train_images[:900], mnist.train_labels[:900]
    model = build_model(engine, config)
    twin = float64_twin(model)
    model.fit(images, labels)
    (epoch,) = model.history.training_stats.epochs
    order = epoch_permutation(config.seed, 0, len(labels))
    per_batch = [layer_norms(twin.gradients(images[rows], labels[rows]), config)
                 for rows in np.split(order, 9)]
    measured = np.mean(per_batch[::SAMPLE_EVERY], axis=0)        # batches 1 and 9
    assert epoch.batches == len(per_batch[::SAMPLE_EVERY])
    np.testing.assert_allclose(epoch.gradient_norm, measured, rtol=2e-4)
    # Negative controls: the mean over every batch, and the norm of the whole epoch's
    # gradient, are other numbers, so the test tells which batches were averaged.
    assert np.all(np.abs(np.mean(per_batch, axis=0) / measured - 1) > 1e-3)
    whole = layer_norms(twin.gradients(images, labels), config)
    assert np.all(np.abs(whole / measured - 1) > 0.01)


def hidden_inputs(weights: list[np.ndarray], images: np.ndarray) -> list[np.ndarray]:
    """Each ReLU layer's input for every image, computed from the weights alone."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255
    inputs = []
    for kernel, bias in zip(weights[0:-2:2], weights[1:-2:2]):
        inputs.append(x @ kernel + bias)
        x = np.maximum(inputs[-1], 0)
    return inputs


@pytest.mark.parametrize("engine, threads", [("numpy", "1"), ("numpy", "2"), ("keras", "")])
def test_dead_units_equal_a_direct_pass_over_the_sampled_batches(engine, threads, mnist,
                                                                  monkeypatch):
    # Two threads run each batch as two halves through two sets of layers.
    monkeypatch.setenv("DIGIT_LAB_THREADS", threads)
    config = MLP.replace(epochs=1, optimizer="sgd", learning_rate=1e-7, batch_size=100,
                         train_size=900)
    images, labels = mnist.train_images[:900], mnist.train_labels[:900]
    model = build_model(engine, config)
    weights = model.get_weights()
    kernel, bias = weights[0].astype(np.float64), weights[1]
    bias[:5] = -1e3                                 # five units that can never fire
    # Units 5-23 fire on one image each: a bias halfway between the two largest inputs
    # a unit gets. Some of those images lie in the sampled batches (1 and 9 of 9), the
    # others not, so a recorder that read other batches, or only part of one, would
    # count a different number.
    lone = range(5, 24)
    inputs = images.reshape(900, -1) / 255 @ kernel[:, lone]
    top = np.sort(inputs, axis=0)
    assert np.all(top[-1] - top[-2] > 1e-3)         # the step cannot move them across
    bias[lone] = -(top[-1] + top[-2]) / 2
    model.set_weights(weights)
    model.fit(images, labels)
    (epoch,) = model.history.training_stats.epochs
    order = epoch_permutation(config.seed, 0, len(labels))
    sampled = order.reshape(9, 100)[::SAMPLE_EVERY].reshape(-1)    # batches 1 and 9
    # A unit whose largest input is within rounding of zero may go either way on
    # another CPU: count it in neither bound.
    peaks = [inputs.max(axis=0) for inputs in hidden_inputs(weights, images[sampled])]
    surely_dead = [int(np.count_nonzero(peak < -1e-4)) for peak in peaks]
    maybe_dead = [int(np.count_nonzero(peak <= 1e-4)) for peak in peaks]
    for recorded, low, high in zip(epoch.dead_units, surely_dead, maybe_dead):
        assert low <= recorded <= high
    assert epoch.dead_units[-1] is None
    expected = surely_dead
    # Negative controls: the lone units' images lie in sampled batches, in both halves
    # of one, and outside them, so each way of reading the wrong images miscounts.
    lone_images = np.argmax(inputs, axis=0)
    places = {int(np.flatnonzero(order == image).item()) for image in lone_images}
    in_sampled = {place for place in places if place // 100 % SAMPLE_EVERY == 0}
    assert in_sampled and places - in_sampled
    assert {place % 100 < 50 for place in in_sampled} == {True, False}
    everything = hidden_inputs(weights, images)[0].max(axis=0)
    assert int(np.count_nonzero(everything <= 1e-4)) < expected[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_conv_channel_that_never_fires_is_counted_dead(engine, mnist):
    config = CNN.replace(epochs=1)
    model = build_model(engine, config)
    weights = model.get_weights()
    beta = stats_layers(config)[0].kernel + 2       # kernel, gamma, beta of block 1
    weights[beta][:] = 10.0                         # every channel on everywhere ...
    weights[beta][1] = -100.0                       # ... but channel 1, off everywhere
    model.set_weights(weights)
    model.fit(mnist.train_images[:600], mnist.train_labels[:600])
    (epoch,) = model.history.training_stats.epochs
    assert epoch.dead_units[0] == 1


def test_statistics_round_trip_through_meta_json_and_old_models_still_load(
        tmp_path, mnist):
    model, _ = trained_with_weights("numpy", MLP, mnist.train_images[:600],
                                    mnist.train_labels[:600])
    folder = registry.save(model, tmp_path / "with-stats")
    loaded = registry.load(folder).history.training_stats
    assert loaded is not None
    assert loaded.to_dict() == model.history.training_stats.to_dict()
    assert "training_stats" in json.loads((folder / "meta.json").read_text())["history"]
    # A model saved before: its meta.json has no such key.
    old_meta = json.loads((folder / "meta.json").read_text())
    del old_meta["history"]["training_stats"]
    (folder / "meta.json").write_text(json.dumps(old_meta))
    old = registry.load(folder).history
    assert old.training_stats is None and old.epochs


def test_statistics_with_a_wrong_number_of_layers_are_refused():
    stats = {"layers": [{"name": "dense 1", "kind": "dense", "units": 2, "relu": True}],
             "weight_limits": [1.0, 2.0], "epochs": []}
    with pytest.raises(ValueError, match="one entry per layer"):
        History.from_dict({"training_stats": stats})


@pytest.mark.parametrize("broken", [{"epochs": []}, {"layers": 3, "weight_limits": []},
                                    {"layers": [], "weight_limits": [], "epochs": [{}]}])
def test_a_meta_json_with_unreadable_statistics_is_a_broken_model_not_a_crash(
        tmp_path, mnist, broken):
    model, _ = trained_with_weights("numpy", MLP.replace(epochs=1), mnist.train_images[:600],
                                    mnist.train_labels[:600])
    folder = registry.save(model, tmp_path / "model")
    meta = json.loads((folder / "meta.json").read_text())
    meta["history"]["training_stats"] = broken
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(registry.ModelError, match="invalid config or history"):
        registry.load(folder)


def test_recording_can_be_turned_off(monkeypatch, mnist):
    monkeypatch.setattr(NumpyNetwork, "record_training_stats", False)
    model = build_model("numpy", MLP.replace(epochs=1))
    model.fit(mnist.train_images[:600], mnist.train_labels[:600])
    assert model.history.epochs and model.history.training_stats is None

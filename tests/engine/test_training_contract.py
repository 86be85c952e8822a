"""The training contract, held by both engines alike: divergence by meaning (a non-finite
or exploded loss, a non-finite weight) with the last good weights kept, the "not
learning" warning, a training/validation split that never overlaps, and randomness
(batch order, dropout masks, augmentation) that changes every epoch and repeats for a
seed.

Divergence is triggered deterministically (an injected NaN, or a loss past the ceiling
by orders of magnitude), never by overflow that depends on the CPU's rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.numpy_nn.network import NumpyNetwork
from engine.training import (CHANCE_LOSS, LOSS_CEILING, EpochRecord, loss_problem,
                             not_learning_warning, split_training_data, weights_finite)

ENGINES = ["numpy", "keras"]


def build(engine: str, config: TrainConfig):
    if engine == "numpy":
        return NumpyNetwork(config)
    from engine.keras_nn import KerasNetwork
    return KerasNetwork(config)


def poison_first_bias(network) -> None:
    """Write NaN into one bias of the first layer, behind the engine's back."""
    if isinstance(network, NumpyNetwork):
        network.stack.params[1][0] = np.nan
        return
    layer = next(layer for layer in network.model.layers if layer.weights)
    bias = np.array(layer.bias.numpy())
    bias[0] = np.nan
    layer.bias.assign(bias)


def same_weights(first, second) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(first, second))


# ---- the rules themselves ------------------------------------------------------

def test_the_loss_rule_names_what_went_wrong():
    assert loss_problem(2.0) is None and loss_problem(LOSS_CEILING) is None
    assert loss_problem(math.nan) == loss_problem(math.inf) \
        == "the loss became infinite or NaN"
    assert loss_problem(1e9) == "the loss exploded to 1e+09, far above chance (2.30)"


def test_weights_finite_sees_any_nan_or_infinity():
    weights = [np.ones((3, 4), np.float32), np.zeros(4, np.float32)]
    assert weights_finite(weights)
    for value in (np.nan, np.inf, -np.inf):
        broken = [array.copy() for array in weights]
        broken[1][2] = value
        assert not weights_finite(broken)


def record(train_loss: float, train_accuracy: float, val_accuracy: float | None
           ) -> EpochRecord:
    return EpochRecord(epoch=2, fraction=1.0, train_loss=train_loss,
                       train_accuracy=train_accuracy, val_loss=None,
                       val_accuracy=val_accuracy, val_per_class_accuracy=None,
                       learning_rate=0.5, seconds=1.0)


def test_not_learning_means_loss_above_chance_and_accuracy_at_chance():
    warning = not_learning_warning(record(4.0, 0.5, 0.11))
    assert warning is not None and warning.startswith("not learning after epoch 2: ")
    assert "11.0%" in warning and "(this epoch's: 0.5)" in warning
    assert not_learning_warning(record(4.0, 0.11, None)) is not None
    assert not_learning_warning(record(CHANCE_LOSS - 0.01, 0.1, 0.1)) is None
    assert not_learning_warning(record(4.0, 0.1, 0.5)) is None     # validation learns


def test_not_learning_advice_follows_the_loss():
    flat = not_learning_warning(record(2.48, 0.09, 0.087), record(2.49, 0.09, 0.09))
    assert "sits near chance, so raise the learning rate" in flat
    rising = not_learning_warning(record(3.0, 0.09, 0.1), record(2.5, 0.09, 0.1))
    assert "high or rising, so lower the learning rate" in rising
    assert "high or rising" in not_learning_warning(record(9.0, 0.1, 0.1))


# ---- divergence, in both engines ------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_the_issues_runaway_momentum_run_diverges_on_every_kernel(mnist, engine):
    # Learning rate 1 with momentum 0.99 reaches losses around 1e9: past the ceiling by
    # orders of magnitude, whether or not this CPU's rounding also overflows.
    config = TrainConfig(train_size=3000, epochs=2, learning_rate=1.0,
                         optimizer="momentum", momentum=0.99, seed=0)
    images, labels, val_images, val_labels = split_training_data(
        mnist.train_images, mnist.train_labels, config)
    network = build(engine, config)
    reported = [network.get_weights()]
    history = network.fit(images, labels, validation=(val_images, val_labels),
                          on_batch=lambda _: reported.append(network.get_weights()))
    assert history.status == "diverged", history.message
    assert len(history.epochs) == 1
    assert history.message.startswith("diverged at epoch 1, batch ")
    kept = network.get_weights()
    assert weights_finite(kept)
    # Weights from a report before the blow-up, the one the fraction names (the Keras
    # engine reports a span's batches after it ran, with the span's last weights).
    assert same_weights(kept, reported[round(history.epochs[0].fraction
                                             * history.batches_per_epoch)])
    # The kept weights predict as they did before the blow-up: a finite loss below the
    # ceiling, and the probabilities of a network given the same weights.
    assert network.loss(val_images, val_labels) < LOSS_CEILING
    twin = build(engine, config)
    twin.set_weights(kept)
    np.testing.assert_array_equal(twin.predict(mnist.test_images[:500]),
                                  network.predict(mnist.test_images[:500]))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_nan_weight_is_divergence_even_when_the_loss_stays_finite(mnist, engine):
    # oneDNN's fused MatMul+BiasAdd+ReLU reads a NaN pre-activation as 0, so with it on
    # the loss stays finite and only the check of the weights can tell.
    config = TrainConfig(hidden_sizes=(64,), train_size=2000, batch_size=50, epochs=1,
                         seed=5)
    images, labels, _, _ = split_training_data(mnist.train_images, mnist.train_labels,
                                               config)
    network = build(engine, config)
    reported = [network.get_weights()]      # index i: the weights after i batches

    def poison_after_batch_2(progress):
        reported.append(network.get_weights())
        if progress.batch == 2:
            poison_first_bias(network)

    record = network.partial_fit(images, labels, on_batch=poison_after_batch_2)
    assert network.history.status == "diverged"
    assert "infinite or NaN" in network.history.message
    kept = network.get_weights()
    assert weights_finite(kept)
    # The Keras engine reports a span's batches after it ran, each with the weights of
    # the span's end; it keeps weights from a span's start, so the fraction names the
    # report whose weights were kept.
    kept_batches = round(record.fraction * network.history.batches_per_epoch)
    assert kept_batches < 2, "the kept weights are from before the poison"
    assert same_weights(kept, reported[kept_batches])
    assert math.isfinite(network.loss(mnist.test_images[:300], mnist.test_labels[:300]))


# ---- not learning -----------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_stuck_on_one_digit_is_warned_about_after_each_epoch(mnist, engine):
    # Zero kernels and a bias that favours 9 predict 9 for everything (10% right, loss
    # about 5); a learning rate of 1e-6 keeps it there on any CPU.
    config = TrainConfig(hidden_sizes=(16,), train_size=1000, epochs=2, optimizer="sgd",
                         learning_rate=1e-6, batch_size=100, seed=1)
    images, labels, val_images, val_labels = split_training_data(
        mnist.train_images, mnist.train_labels, config)
    network = build(engine, config)
    stuck = [np.zeros_like(weight) for weight in network.get_weights()]
    stuck[-1][9] = 5.0
    network.set_weights(stuck)
    history = network.fit(images, labels, validation=(val_images, val_labels))
    assert history.status == "completed"
    assert [line.split(":")[0] for line in history.warnings] == [
        "not learning after epoch 1", "not learning after epoch 2"]
    assert history.to_dict()["warnings"] == history.warnings


@pytest.mark.parametrize("engine", ENGINES)
def test_a_learning_run_gets_no_warning(mnist, engine):
    config = TrainConfig(hidden_sizes=(32,), train_size=2000, epochs=1, seed=2)
    images, labels, val_images, val_labels = split_training_data(
        mnist.train_images, mnist.train_labels, config)
    history = build(engine, config).fit(images, labels, validation=(val_images, val_labels))
    assert history.status == "completed" and history.warnings == []


# ---- the split and the randomness of each epoch -------------------------------------

@pytest.mark.parametrize("train_size, fraction", [(60_000, 0.1), (1000, 0.25), (5000, 0.0)])
def test_training_and_validation_rows_are_disjoint(train_size, fraction):
    config = TrainConfig(train_size=train_size, validation_fraction=fraction, batch_size=32)
    rows = np.arange(60_000)
    training, _, validation, _ = split_training_data(rows, rows, config)
    assert len(np.intersect1d(training, validation)) == 0
    assert len(training) + len(validation) == train_size
    assert len(validation) == int(train_size * fraction)
    assert len(np.unique(training)) == len(training)


def batch_losses(engine: str, config: TrainConfig, images, labels) -> list[list[float]]:
    """Each epoch's batch losses at a learning rate too small to change the weights:
    they differ between epochs only through the data each batch saw."""
    network = build(engine, config)
    network.fit(images, labels)
    per_epoch = network.history.batches_per_epoch
    losses = network.history.batch_loss
    return [losses[start:start + per_epoch] for start in range(0, len(losses), per_epoch)]


TINY_STEPS = dict(hidden_sizes=(32,), optimizer="sgd", learning_rate=1e-9, epochs=2,
                  lr_schedule="constant", validation_fraction=0.0)


@pytest.mark.parametrize("engine", ENGINES)
def test_batch_order_changes_every_epoch_and_repeats_for_the_seed(mnist, engine):
    config = TrainConfig(**TINY_STEPS, train_size=640, batch_size=64, seed=7)
    images, labels = mnist.train_images[:640], mnist.train_labels[:640]
    first_run = batch_losses(engine, config, images, labels)
    assert first_run == batch_losses(engine, config, images, labels)
    assert first_run[0] != pytest.approx(first_run[1], rel=1e-3)
    other_seed = batch_losses(engine, config.replace(seed=8), images, labels)
    assert other_seed[0] != pytest.approx(first_run[0], rel=1e-3)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("randomness", [{"dropout": 0.5}, {"augmentation": "light"}],
                         ids=["dropout masks", "augmentation"])
def test_per_epoch_randomness_changes_every_epoch_and_repeats_for_the_seed(
        mnist, engine, randomness):
    # One image, copied: every batch and every order hold the same pictures, so only the
    # masks or the distortions can make one epoch's loss differ from the next.
    config = TrainConfig(**TINY_STEPS, train_size=128, batch_size=64, seed=3, **randomness)
    images = np.repeat(mnist.train_images[:1], 128, axis=0)
    labels = np.repeat(mnist.train_labels[:1], 128)
    first_run = batch_losses(engine, config, images, labels)
    assert first_run == batch_losses(engine, config, images, labels)
    epoch_one, epoch_two = first_run
    assert epoch_one != pytest.approx(epoch_two, rel=1e-4)
    # Within an epoch, too, the two batches draw differently.
    assert epoch_one[0] != pytest.approx(epoch_one[1], rel=1e-4)

"""The learning-rate finder: its suggestion rule on made-up loss curves whose answer is
known, a real sweep of the default MLP on MNIST, and each engine's one-batch step."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from engine import build_model
from engine.config import TrainConfig
from engine.lr_finder import (BATCHES, DIVERGED_FACTOR, find_learning_rate,
                              smoothed_losses, suggest_rate, sweep_rates)
from engine.numpy_nn.network import NumpyNetwork
from engine.training import split_training_data


def synthetic_curve(steepest_at: float, *, blow_up_at: float = 0.1) -> tuple[list, list]:
    """A loss that falls from 2.3 to 0.3 along a logistic curve in log10(rate), steepest
    at `steepest_at`, then climbs past `blow_up_at`, as real sweeps do."""
    rates = sweep_rates()
    position = np.log10(rates)
    loss = 2.3 - 2.0 / (1 + np.exp(-(position - math.log10(steepest_at)) / 0.3))
    loss += np.where(rates > blow_up_at, 20 * (position - math.log10(blow_up_at)), 0.0)
    return rates.tolist(), loss.tolist()


def test_sweep_rates_grow_by_one_factor_from_start_to_end():
    rates = sweep_rates(100, 1e-6, 1.0)
    assert len(rates) == 100 and rates[0] == pytest.approx(1e-6) and rates[-1] == 1.0
    assert np.allclose(rates[1:] / rates[:-1], 10 ** (6 / 99))


def test_smoothing_starts_at_the_first_loss_and_follows_a_constant():
    assert smoothed_losses([2.0])[0] == pytest.approx(2.0)     # bias-corrected, not 0.2
    assert np.allclose(smoothed_losses([1.5] * 30), 1.5)


@pytest.mark.parametrize("steepest_at", [3e-4, 1e-3, 5e-3])
def test_the_rule_finds_the_steepest_descent_of_a_known_curve(steepest_at):
    rates, losses = synthetic_curve(steepest_at)
    suggested, minimum_rate, rule = suggest_rate(rates, losses)
    assert rule == "steepest descent"
    # Within one step of the sweep (a factor of 10^(6/99) = 1.15) of the true point.
    assert abs(math.log10(suggested / steepest_at)) <= 6 / 99 + 1e-9
    assert minimum_rate == pytest.approx(0.1, rel=0.2)


def test_the_rule_on_the_smoothed_curve_lags_but_stays_before_the_minimum():
    rates, losses = synthetic_curve(1e-3)
    noisy = np.asarray(losses) + np.random.default_rng(0).normal(0, 0.05, len(losses))
    suggested, minimum_rate, _ = suggest_rate(rates, smoothed_losses(noisy.tolist()))
    assert 1e-3 <= suggested <= 1e-2 and suggested < minimum_rate


def test_a_minimum_too_early_for_a_slope_falls_back_to_a_tenth_of_it():
    rates = sweep_rates(10).tolist()                # a coarse sweep: a decade in 1.5 steps
    losses = [2.3, 2.2, 2.0, 1.6, 1.0, 0.8, 3.0, 9.0, 20.0, 50.0]
    suggested, minimum_rate, rule = suggest_rate(rates, losses)
    assert rule == "lowest loss / 10"
    assert minimum_rate == rates[5] and suggested == pytest.approx(rates[5] / 10)
    # A fine sweep's early minimum: a tenth of it was never tried, so the first rate.
    fine = sweep_rates().tolist()
    suggested, _, _ = suggest_rate(fine, [2.0, 1.5, 1.4, *np.linspace(3, 9, 97)])
    assert suggested == fine[0]


def test_a_loss_that_never_falls_gets_no_suggestion():
    rates = sweep_rates().tolist()
    suggested, _, rule = suggest_rate(rates, np.linspace(2.3, 5, len(rates)).tolist())
    assert suggested is None and rule == "the loss never fell"


@pytest.fixture(scope="module")
def default_training_images(mnist):
    images, labels, _, _ = split_training_data(mnist.train_images, mnist.train_labels,
                                               TrainConfig())
    return images, labels


def test_a_real_sweep_of_the_default_mlp_suggests_a_rate_that_trains(
        default_training_images, mnist):
    images, labels = default_training_images
    config = TrainConfig()                          # adam, batch 128
    sweep = find_learning_rate(build_model("numpy", config), images, labels)
    assert sweep.complete and len(sweep.losses) > 50
    assert sweep.rule == "steepest descent"
    # Adam's usual rates for this network lie around 1e-3.
    assert 3e-4 <= sweep.suggested <= 1e-2 < sweep.rates[-1]
    at = sweep.rates.index(sweep.suggested)
    assert sweep.smoothed[at] < sweep.smoothed[0]
    # The sweep stopped when the loss blew up, not before.
    assert sweep.diverged and sweep.smoothed[-1] > DIVERGED_FACTOR * min(sweep.smoothed)
    # What the suggestion is for: 300 batches at it beat 300 at a rate 100 times
    # smaller and one 100 times larger (negative controls on either side).
    scores = {}
    for factor in (0.01, 1, 100):
        model = build_model("numpy", config.replace(
            learning_rate=min(1.0, sweep.suggested * factor), lr_schedule="constant",
            epochs=1, train_size=300 * 128, validation_fraction=0.0))
        model.fit(images[:300 * 128], labels[:300 * 128])
        scores[factor] = model.score(mnist.test_images[:2000], mnist.test_labels[:2000])
    assert scores[1] > scores[0.01] + 0.02 and scores[1] > scores[100] + 0.02, scores


def test_a_stop_ends_the_sweep_with_what_it_has(default_training_images):
    images, labels = default_training_images
    stop, seen = threading.Event(), []

    def on_batch(progress):
        seen.append(progress.batch)
        if progress.batch == 7:
            stop.set()

    sweep = find_learning_rate(build_model("numpy", TrainConfig()), images, labels,
                               on_batch=on_batch, stop=stop)
    assert seen == list(range(1, 8)) and len(sweep.losses) == 7
    assert not sweep.complete and sweep.batches_planned == BATCHES


@pytest.mark.parametrize("engine", ["numpy", "keras"])
def test_one_batch_at_a_rate_returns_the_loss_before_and_takes_an_sgd_step(engine, mnist):
    config = TrainConfig(hidden_sizes=(32,), optimizer="sgd", batch_size=64)
    images, labels = mnist.train_images[:64], mnist.train_labels[:64]
    model = build_model(engine, config)
    twin = NumpyNetwork(config, dtype=np.float64)
    twin.set_weights(model.get_weights())
    before = model.get_weights()
    loss = model.train_batch_at(images, labels, 0.05)
    assert loss == pytest.approx(twin.loss(images, labels), rel=1e-4)
    gradients = twin.gradients(images, labels)
    for weight, old, gradient in zip(model.get_weights(), before, gradients):
        np.testing.assert_allclose(weight, old - 0.05 * gradient, atol=1e-5)
    # Negative control: a step at another rate lands elsewhere.
    again = model.train_batch_at(images, labels, 0.5)
    assert again < loss
    assert not np.allclose(model.get_weights()[0], before[0] - 0.05 * gradients[0],
                           atol=1e-5)


def test_a_short_keras_sweep_falls_then_stops_at_the_blow_up(default_training_images):
    images, labels = default_training_images
    sweep = find_learning_rate(build_model("keras", TrainConfig()), images, labels,
                               batches=40, start=1e-4, end=1.0)
    assert all(math.isfinite(loss) for loss in sweep.losses[:-1])
    assert min(sweep.smoothed) < 0.7 * sweep.smoothed[0] and sweep.diverged
    assert sweep.suggested is not None and sweep.suggested < sweep.minimum_rate

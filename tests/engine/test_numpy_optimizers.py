"""One and two update steps of each NumPy optimizer against numbers worked out by hand,
following Keras 3's formulas; then twenty steps against Keras itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.numpy_nn.optimizers import SGD, Adam, build_optimizer


def run_steps(optimizer, start, gradients, dtype=np.float64):
    """Apply each gradient in turn to a copy of `start`; return the params after each."""
    param = np.array(start, dtype=dtype)
    seen = []
    for gradient in gradients:
        optimizer.step([(param, np.array(gradient, dtype=dtype))])
        seen.append(param.copy())
    return seen


def test_plain_sgd_step():
    # W -= lr g:  1.0 - 0.1 * 0.5 = 0.95;  -2.0 - 0.1 * 0.25 = -2.025
    (after,) = run_steps(SGD(0.1), [1.0, -2.0], [[0.5, 0.25]])
    assert after == pytest.approx([0.95, -2.025], abs=1e-15)


def test_momentum_first_and_second_step():
    # step 1: v = 0.9 * 0 - 0.1 * [0.5, 0.25] = [-0.05, -0.025];   W = [0.95, -2.025]
    # step 2: v = 0.9 * [-0.05, -0.025] - 0.1 * [0.5, 0.25] = [-0.095, -0.0475]
    #         W = [0.95 - 0.095, -2.025 - 0.0475] = [0.855, -2.0725]
    first, second = run_steps(SGD(0.1, momentum=0.9), [1.0, -2.0],
                              [[0.5, 0.25], [0.5, 0.25]])
    assert first == pytest.approx([0.95, -2.025], abs=1e-15)
    assert second == pytest.approx([0.855, -2.0725], abs=1e-15)


def test_nesterov_first_and_second_step():
    # step 1: v = [-0.05, -0.025];  W += 0.9 v - 0.1 g = [-0.045 - 0.05, -0.0225 - 0.025]
    #         W = [1 - 0.095, -2 - 0.0475] = [0.905, -2.0475]
    # step 2: v = [-0.095, -0.0475];  W += 0.9 v - 0.1 g = [-0.0855 - 0.05, -0.04275 - 0.025]
    #         W = [0.905 - 0.1355, -2.0475 - 0.06775] = [0.7695, -2.11525]
    first, second = run_steps(SGD(0.1, momentum=0.9, nesterov=True), [1.0, -2.0],
                              [[0.5, 0.25], [0.5, 0.25]])
    assert first == pytest.approx([0.905, -2.0475], abs=1e-15)
    assert second == pytest.approx([0.7695, -2.11525], abs=1e-15)


def test_adam_first_and_second_step():
    # beta_1 0.9, beta_2 0.999, epsilon 1e-7 (Keras's), lr 0.1.
    # step 1, g = [0.5, -0.25]:
    #   m = 0 + (g - 0) * 0.1 = [0.05, -0.025]
    #   v = 0 + (g^2 - 0) * 0.001 = [0.00025, 0.0000625]
    #   alpha = 0.1 * sqrt(1 - 0.999) / (1 - 0.9) = sqrt(0.001) = 0.0316227766...
    #   sqrt(v) = [0.0158113883, 0.0079056942] = sqrt(0.001) * |g|
    #   step = alpha m / (sqrt(v) + 1e-7), i.e. about lr * sign(g) = [0.1, -0.1]
    alpha_1 = math.sqrt(0.001)
    step_1 = [alpha_1 * 0.05 / (math.sqrt(0.00025) + 1e-7),
              alpha_1 * -0.025 / (math.sqrt(0.0000625) + 1e-7)]
    # step 2, g = [0.1, 0.2]:
    #   m = [0.05 + (0.1 - 0.05) 0.1, -0.025 + (0.2 + 0.025) 0.1] = [0.055, -0.0025]
    #   v = [0.00025 + (0.01 - 0.00025) 0.001, 0.0000625 + (0.04 - 0.0000625) 0.001]
    #     = [0.00025975, 0.0001024375]
    #   alpha = 0.1 * sqrt(1 - 0.999^2) / (1 - 0.9^2) = 0.1 * sqrt(0.001999) / 0.19
    alpha_2 = 0.1 * math.sqrt(0.001999) / 0.19
    step_2 = [alpha_2 * 0.055 / (math.sqrt(0.00025975) + 1e-7),
              alpha_2 * -0.0025 / (math.sqrt(0.0001024375) + 1e-7)]
    first, second = run_steps(Adam(0.1), [1.0, -2.0], [[0.5, -0.25], [0.1, 0.2]])
    assert step_1 == pytest.approx([0.1, -0.1], abs=1e-5)   # the known first Adam step
    assert first == pytest.approx([1.0 - step_1[0], -2.0 - step_1[1]], abs=1e-14)
    assert second == pytest.approx([first[0] - step_2[0], first[1] - step_2[1]], abs=1e-14)


def test_learning_rate_set_between_steps_is_used_and_float32_stays_float32():
    optimizer = SGD(0.1)
    param = np.array([1.0, 2.0], dtype=np.float32)
    optimizer.step([(param, np.array([1.0, 1.0], dtype=np.float32))])
    optimizer.learning_rate = 0.5
    optimizer.step([(param, np.array([1.0, 1.0], dtype=np.float32))])
    assert param.dtype == np.float32
    assert param == pytest.approx([0.4, 1.4], abs=1e-6)   # 1 - 0.1 - 0.5, 2 - 0.1 - 0.5


def test_reset_forgets_moments_and_step_count():
    optimizer = Adam(0.1)
    run_steps(optimizer, [1.0], [[0.5], [0.5]])
    optimizer.reset()
    assert optimizer.iterations == 0
    (after,) = run_steps(optimizer, [1.0], [[0.5]])
    fresh = run_steps(Adam(0.1), [1.0], [[0.5]])[0]
    assert np.array_equal(after, fresh)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
def test_build_optimizer_reads_the_config(name):
    optimizer = build_optimizer(TrainConfig(optimizer=name, learning_rate=0.05,
                                            momentum=0.8))
    assert optimizer.learning_rate == 0.05
    assert isinstance(optimizer, Adam if name == "adam" else SGD)
    if name != "adam":
        assert optimizer.momentum == (0.0 if name == "sgd" else 0.8)
        assert optimizer.nesterov == (name == "nesterov")


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
def test_twenty_float32_steps_equal_keras_bit_for_bit(name):
    # Same formulas, same order of operations, scalars in float32: Keras's eager
    # optimizer and ours round identically.
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    start = rng.normal(size=(30, 20)).astype(np.float32)
    gradients = [rng.normal(size=(30, 20)).astype(np.float32) for _ in range(20)]
    config = TrainConfig(optimizer=name, learning_rate=0.01, momentum=0.9)
    ours = run_steps(build_optimizer(config), start, gradients, dtype=np.float32)[-1]
    if name == "adam":
        theirs = keras.optimizers.Adam(learning_rate=0.01)
    else:
        theirs = keras.optimizers.SGD(learning_rate=0.01,
                                      momentum=0.0 if name == "sgd" else 0.9,
                                      nesterov=name == "nesterov")
    variable = keras.Variable(start)
    for gradient in gradients:
        theirs.apply_gradients([(keras.ops.convert_to_tensor(gradient), variable)])
    assert not np.array_equal(ours, start)
    assert np.array_equal(ours, keras.ops.convert_to_numpy(variable))

"""A training step cut in two halves on two threads (engine/numpy_nn/parts.py) computes
the whole batch's step: the same loss, gradients, dropout masks and batch-norm
statistics as one thread, to float rounding; and the runner behind it runs each part
once, hands errors to the caller and never leaves a part waiting."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.config import PRESETS, TrainConfig
from engine.numpy_nn import stack as stack_module
from engine.numpy_nn.network import NumpyNetwork
from engine.numpy_nn.layout import forward_multiply_adds
from engine.numpy_nn.parts import (THREADS_VARIABLE, TWO_PART_MIN_MULTIPLY_ADDS, PartRunner,
                                   part_runner, training_thread_count)
from engine.training import as_model_input, batch_rng

MLP = TrainConfig(hidden_sizes=(48, 24), dropout=0.3, batch_size=64, train_size=600,
                  epochs=1, validation_fraction=0.0, l2=1e-3)
CNN = TrainConfig(architecture="cnn", conv_filters=(4, 8), hidden_sizes=(16,), dropout=0.2,
                  batch_size=33, train_size=600, epochs=1, validation_fraction=0.0)


def one_step(config, images, labels, parts):
    """(loss, correct, gradients, moving statistics) of one training step in float64."""
    network = NumpyNetwork(config, dtype=np.float64)
    stack = network.stack
    for dropout in stack.dropouts:
        dropout.rng = batch_rng(config.seed, 0)
    x = as_model_input(images).reshape(len(images), -1).astype(np.float64)
    with part_runner(parts) as runner:
        loss, correct = stack.train_step(x, labels.astype(np.intp), runner)
    return loss, correct, stack.flat_grads.copy(), stack.flat_state.copy()


@pytest.mark.parametrize("config", [MLP, CNN], ids=["mlp-dropout-l2", "cnn-odd-batch"])
def test_two_halves_give_the_whole_batchs_step(mnist, config):
    images, labels = mnist.train_images[:config.batch_size], mnist.train_labels[:config.batch_size]
    whole = one_step(config, images, labels, parts=1)
    halves = one_step(config, images, labels, parts=2)
    assert halves[0] == pytest.approx(whole[0], rel=1e-12)
    assert halves[1] == whole[1]
    np.testing.assert_allclose(halves[2], whole[2], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(halves[3], whole[3], rtol=1e-12, atol=1e-12)


def test_the_halves_check_catches_batch_norm_without_shared_sums(mnist, monkeypatch):
    """Negative control: halves each normalised by their own rows are a different step,
    and the comparison above sees it."""
    images, labels = mnist.train_images[:CNN.batch_size], mnist.train_labels[:CNN.batch_size]
    whole = one_step(CNN, images, labels, parts=1)

    def each_half_alone(steps, runner):
        sent, returned = [None, None], [None, None]
        for index, step in enumerate(steps):
            try:
                while True:
                    sent[index] = step.send(sent[index])      # its own sums back
            except StopIteration as end:
                returned[index] = end.value
        return returned

    monkeypatch.setattr(stack_module, "_run_in_step", each_half_alone)
    alone = one_step(CNN, images, labels, parts=2)
    assert not np.allclose(alone[2], whole[2], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("config", [MLP, CNN], ids=["mlp", "cnn"])
def test_an_epoch_on_two_threads_repeats_and_matches_one_thread(mnist, monkeypatch, config):
    images, labels = mnist.train_images[:config.train_size], mnist.train_labels[:config.train_size]

    def trained(threads: str) -> NumpyNetwork:
        monkeypatch.setenv(THREADS_VARIABLE, threads)
        network = NumpyNetwork(config, dtype=np.float64)
        network.fit(images, labels)
        return network

    one, two, again = trained("1"), trained("2"), trained("2")
    for a, b, c in zip(one.get_weights(), two.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(b, c)                 # the same split every time
        np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9)
    assert two.history.epochs[0].train_loss == pytest.approx(
        one.history.epochs[0].train_loss, rel=1e-9)


def test_thread_count_reads_the_variable_and_refuses_other_values(monkeypatch):
    monkeypatch.setenv(THREADS_VARIABLE, "1")
    assert training_thread_count() == 1
    monkeypatch.setenv(THREADS_VARIABLE, "2")
    assert training_thread_count() == 2
    monkeypatch.delenv(THREADS_VARIABLE)
    assert training_thread_count() in (1, 2)
    monkeypatch.setenv(THREADS_VARIABLE, "4")
    with pytest.raises(ValueError, match="DIGIT_LAB_THREADS must be 1 or 2, got '4'"):
        training_thread_count()


def test_only_a_step_large_enough_takes_two_threads_unless_the_variable_says(monkeypatch):
    monkeypatch.delenv(THREADS_VARIABLE, raising=False)
    machine = training_thread_count()
    assert training_thread_count(TWO_PART_MIN_MULTIPLY_ADDS - 1) == 1
    assert training_thread_count(TWO_PART_MIN_MULTIPLY_ADDS) == machine
    default_mlp, cnn = NumpyNetwork(PRESETS["default"]), NumpyNetwork(PRESETS["cnn"])
    assert default_mlp.step_threads() == 1                 # 128 x 234,752 multiply-adds
    assert default_mlp.step_threads(1) == 1
    assert cnn.step_threads() == machine
    monkeypatch.setenv(THREADS_VARIABLE, "2")
    assert default_mlp.step_threads() == 2
    assert training_thread_count(1) == 2


def test_a_forward_pass_counts_its_products_multiply_adds():
    assert forward_multiply_adds(PRESETS["default"]) == 784 * 256 + 256 * 128 + 128 * 10
    convs = 28 * 28 * 9 * 1 * 16 + 14 * 14 * 9 * 16 * 32 + 7 * 7 * 9 * 32 * 64
    assert forward_multiply_adds(PRESETS["cnn"]) == convs + 3 * 3 * 64 * 128 + 128 * 10


def test_the_runner_runs_each_part_once_per_step():
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()
    with part_runner(2) as runner:
        for step in range(300):
            def task(part: int, step: int = step) -> None:
                with lock:
                    seen.append((step, part))
            runner.run(task)
    assert sorted(seen) == [(step, part) for step in range(300) for part in (0, 1)]


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failing_part_raises_in_the_caller_and_the_runner_goes_on(failing):
    with part_runner(2) as runner:
        def task(part: int) -> None:
            if part == failing:
                raise RuntimeError(f"part {part} failed")
        with pytest.raises(RuntimeError, match=f"part {failing} failed"):
            runner.run(task)
        done = []
        runner.run(lambda part: done.append(part))
        assert sorted(done) == [0, 1]


def test_the_helper_keeps_the_callers_numpy_error_state():
    states = {}
    with part_runner(2) as runner, np.errstate(over="ignore"):
        for _ in range(50):     # until the helper, not the caller, has run part 1
            runner.run(lambda part: states.setdefault(
                (part, threading.current_thread() is threading.main_thread()),
                np.geterr()["over"]))
    assert set(states.values()) == {"ignore"}


def test_one_part_runs_in_the_callers_thread():
    runner = PartRunner(1)
    threads = []
    runner.run(lambda part: threads.append((part, threading.current_thread())))
    assert threads == [(0, threading.current_thread())]
    with pytest.raises(ValueError, match="parts must be 1 or 2"):
        PartRunner(3)

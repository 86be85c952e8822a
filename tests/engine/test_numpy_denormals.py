"""Training flushes denormal floats to zero (engine/numpy_nn/denormals.py) in every
thread that runs a step, and gives each thread its own setting back afterwards."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.numpy_nn.denormals import denormals_flushed, supported
from engine.numpy_nn.network import NumpyNetwork
from engine.numpy_nn.parts import PartRunner

pytestmark = pytest.mark.skipif(not supported(), reason="flushing is x86-64 Linux only")

SMALLEST_NORMAL = np.finfo(np.float32).tiny
TINY = TrainConfig(hidden_sizes=(16,), batch_size=50, train_size=200, epochs=1,
                   validation_fraction=0.0)


def flushing() -> bool:
    """Whether this thread now flushes: a product below the normal range, and a denormal
    input, both come out as zero."""
    product = np.float32(SMALLEST_NORMAL) * np.float32(0.5)
    denormal_input = np.float32(SMALLEST_NORMAL) / np.float32(4)
    through = np.array([denormal_input], np.float32) * np.float32(1.0)
    if product == 0 and through[0] == 0:
        return True
    assert product != 0 and through[0] != 0, "only one of the two switches is on"
    return False


def test_the_block_flushes_then_gives_the_old_setting_back():
    assert not flushing()               # the negative control: Python starts unflushed
    with denormals_flushed():
        assert flushing()
        with denormals_flushed():
            assert flushing()
        assert flushing()               # an inner block restores the outer one's setting
    assert not flushing()


def test_the_setting_belongs_to_the_thread():
    # A thread started before the block keeps its own setting (one started inside
    # inherits the creator's, as POSIX threads do).
    asked, seen = threading.Event(), []

    def report() -> None:
        asked.wait()
        seen.append(flushing())

    thread = threading.Thread(target=report)
    thread.start()
    with denormals_flushed():
        asked.set()
        thread.join()
    assert seen == [False]


def test_an_epoch_flushes_in_the_training_thread_and_restores_it(mnist):
    network = NumpyNetwork(TINY)
    during = []
    network.partial_fit(mnist.train_images[:200], mnist.train_labels[:200],
                        on_batch=lambda progress: during.append(flushing()))
    assert during == [True] * 4
    assert not flushing()


def test_the_second_part_of_a_step_flushes_in_its_own_thread():
    runner = PartRunner(2)
    seen: dict[int, tuple[bool, bool]] = {}

    def task(part: int) -> None:
        if part == 0:
            time.sleep(0.05)            # leaves the helper time to claim part 1
        seen[part] = (threading.current_thread() is runner._helper, flushing())

    try:
        for _ in range(20):
            runner.run(task)
            if seen[1][0]:
                break
    finally:
        runner.close()
    ran_in_helper, flushed = seen[1]
    assert ran_in_helper, "the helper never claimed a part"
    assert flushed

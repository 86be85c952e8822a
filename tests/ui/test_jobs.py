"""ui.jobs: a training run in a worker thread on real MNIST, its snapshots, Stop, the
process-wide limit on concurrent runs, and failures reported as a status."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.config import TrainConfig
from ui import jobs
from ui.jobs import CompareJob, TrainingJob

TINY = TrainConfig(hidden_sizes=(32,), epochs=2, batch_size=64, train_size=1000)
# Long enough (dozens of seconds) that a Stop always lands in the middle of it.
LONG = TrainConfig(hidden_sizes=(64,), epochs=20, batch_size=32, train_size=60_000)


@pytest.fixture(autouse=True)
def slots(monkeypatch):
    """A fresh process-wide limit of 4 runs, created on first use like the server's."""
    monkeypatch.setenv("DIGIT_LAB_MAX_CONCURRENT_RUNS", "4")
    monkeypatch.setattr(jobs, "_slots", None)
    started: list = []
    original_start = TrainingJob.start

    def tracked_start(self):
        started.append(self)
        return original_start(self)

    monkeypatch.setattr(TrainingJob, "start", tracked_start)
    yield
    for job in started:            # never leave a thread training into the next test
        job.stop()
        job.join(60)


def wait_for_batches(job: TrainingJob, count: int = 3, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = job.snapshot().progress
        if progress is not None and (progress.epoch - 1) * progress.batches_per_epoch \
                + progress.batch >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {count} batches within {timeout} s: {job.snapshot()}")


def test_a_tiny_config_trains_in_a_thread(mnist):
    job = TrainingJob("numpy", TINY, mnist)
    assert job.snapshot().status == "queued" and job.model is None
    assert job.start()
    assert job.snapshot().status == "running"      # start() returns while it trains
    job.join(60)
    snapshot = job.snapshot()
    assert snapshot.status == "completed" and snapshot.finished, snapshot.message
    assert snapshot.fraction_done == 1.0 and snapshot.seconds_left is None
    assert [record.epoch for record in snapshot.history.epochs] == [1, 2]
    model = job.model
    assert model is not None and model.config == TINY
    # The test accuracy reported is the model's own on MNIST's test set.
    accuracy = np.mean(np.argmax(model.predict_proba(mnist.test_images), 1) == mnist.test_labels)
    assert snapshot.test_metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert accuracy > 0.5          # two epochs on 900 images already beat chance by far
    assert jobs.running_count() == 0


def test_snapshots_are_consistent_copies_while_training(mnist):
    config = TrainConfig(hidden_sizes=(32,), epochs=3, batch_size=64, train_size=20_000)
    job = TrainingJob("numpy", config, mnist)
    assert job.start()
    fractions = []
    while not job.snapshot().finished:
        snapshot = job.snapshot()
        if snapshot.status == "running" and snapshot.progress is not None:
            fractions.append(snapshot.fraction_done)
            progress = snapshot.progress
            # The epochs recorded are those before the one in progress.
            assert len(snapshot.history.epochs) in (progress.epoch - 1, progress.epoch)
            assert 1 <= progress.batch <= progress.batches_per_epoch
            snapshot.history.epochs.clear()        # a copy: the job must not notice
        time.sleep(0.01)
    job.join(60)
    assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions)
    final = job.snapshot()
    assert len(final.history.epochs) == 3
    assert job.snapshot().history is not final.history


def test_stop_keeps_what_was_learnt(mnist):
    job = TrainingJob("numpy", LONG, mnist)
    assert job.start()
    wait_for_batches(job, 5)
    assert jobs.running_count() == 1
    job.stop()
    job.join(60)
    snapshot = job.snapshot()
    assert snapshot.status == "stopped", snapshot
    assert "stopped" in snapshot.message
    assert snapshot.history.epochs and snapshot.history.epochs_done < LONG.epochs
    model = job.model
    assert model is not None
    probabilities = model.predict_proba(mnist.test_images[:50])
    assert probabilities.shape == (50, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert jobs.running_count() == 0


def test_the_process_wide_limit_refuses_a_run_beyond_it(mnist, monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_MAX_CONCURRENT_RUNS", "1")
    monkeypatch.setattr(jobs, "_slots", None)
    first = TrainingJob("numpy", LONG, mnist)
    second = TrainingJob("numpy", TINY, mnist)
    assert first.start()
    assert not second.start()
    assert second.snapshot().status == "queued" and second._thread is None
    first.stop()
    first.join(60)
    # The slot is free again once the first run has ended.
    assert second.start()
    second.join(60)
    assert second.snapshot().status == "completed"


def test_a_second_start_of_the_same_job_is_refused(mnist):
    job = TrainingJob("numpy", LONG, mnist)
    assert job.start()
    thread = job._thread
    assert not job.start()
    assert job._thread is thread and jobs.running_count() == 1
    job.stop()
    job.join(60)
    assert job.snapshot().status == "stopped"
    assert not job.start()         # a finished job does not train again either


def test_a_failure_becomes_status_failed_with_a_message(mnist, monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_MAX_CONCURRENT_RUNS", "1")
    monkeypatch.setattr(jobs, "_slots", None)
    job = TrainingJob("no-such-engine", TINY, mnist)
    assert job.start()
    job.join(60)
    snapshot = job.snapshot()
    assert snapshot.status == "failed" and snapshot.finished
    assert snapshot.message.startswith("training failed: ")
    assert "no-such-engine" in snapshot.message
    assert job.model is None
    # The failed run gave its slot back.
    assert TrainingJob("numpy", TINY, mnist).start()




def test_compare_job_stop_before_keras_leaves_keras_not_started(mnist, monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_MAX_CONCURRENT_RUNS", "1")
    monkeypatch.setattr(jobs, "_slots", None)
    compare = CompareJob(LONG, mnist)
    assert compare.start()
    assert not compare.start()
    assert not TrainingJob("numpy", TINY, mnist).start()   # the pair holds the one slot
    wait_for_batches(compare.jobs["numpy"], 3)
    compare.stop()
    compare.join(60)
    assert compare.finished
    numpy_run, keras_run = (compare.jobs[name].snapshot() for name in ("numpy", "keras"))
    assert numpy_run.status == "stopped" and numpy_run.history.epochs
    assert keras_run.status == "stopped" and "not started" in keras_run.message
    assert compare.jobs["keras"].model is None
    assert TrainingJob("numpy", TINY, mnist).start()

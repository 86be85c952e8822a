"""One Keras epoch's bookkeeping, bridged from Keras callbacks: per-batch loss and
accuracy, progress reports, the stop flag and the divergence guard.

Preparing the data and calling `model.fit` is left to `engine.keras_nn.network`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from engine.keras_nn.build import import_keras
from engine.training import (BatchProgress, History, OnBatch, StopFlag, loss_problem,
                             weights_finite)

NON_FINITE_WEIGHT = "a weight became infinite or NaN"

# Snapshots of the weights kept per epoch for the divergence guard: often enough to lose
# little work, rare enough that copying the weights stays cheap (a CNN's are ~5 MB).
MAX_SNAPSHOTS_PER_EPOCH = 16


class EpochRun:
    """Watches one `model.fit(epochs=1)` call batch by batch.

    `outcome` ends as "completed", "stopped" (the stop flag was set; the weights of the
    last finished batch stay) or "diverged" (a non-finite or exploded loss, or a
    non-finite weight; call `finish()`, which restores the last good weights).
    """

    def __init__(self, model: Any, history: History, *, epoch: int, sample_count: int,
                 batch_size: int, on_batch: OnBatch | None, stop: StopFlag | None,
                 started: float | None = None) -> None:
        self.model = model
        self.history = history
        self.epoch = epoch
        self.sample_count = sample_count
        self.batch_size = batch_size
        self.batches_per_epoch = math.ceil(sample_count / batch_size)
        self.on_batch = on_batch
        self.stop = stop
        self.losses: list[float] = []
        self.accuracies: list[float] = []
        self.outcome = "completed"
        self.failed_batch: int | None = None
        self.failure_reason = ""
        self.snapshot_every = max(1, math.ceil(self.batches_per_epoch
                                               / MAX_SNAPSHOTS_PER_EPOCH))
        # A snapshot counts as good only once the batch after it also had an acceptable
        # loss: finite weights can still overflow the next forward pass. It is checked
        # for finite values when taken, because the loss alone cannot be trusted to show
        # a NaN weight: oneDNN's fused MatMul+BiasAdd+ReLU turns NaN into 0.
        self._good_weights = model.get_weights()
        self._good_batches = 0      # batches of this epoch the good weights hold
        self._candidate_weights: list[np.ndarray] | None = None
        self._candidate_batches = 0
        self._started = time.perf_counter() if started is None else started

    def callback(self) -> Any:
        # Overriding on_train_batch_end also makes Keras call it synchronously, so the
        # stop flag is honoured right after the batch that saw it.
        keras = import_keras()
        return keras.callbacks.LambdaCallback(on_train_batch_end=self._batch_end)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._started

    @property
    def batches_done(self) -> int:
        return len(self.losses)

    @property
    def batches_kept(self) -> int:
        """Batches whose updates the weights hold: after a divergence, the good ones."""
        return self._good_batches if self.outcome == "diverged" else self.batches_done

    def stop_requested(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def mean_loss_and_accuracy(self) -> tuple[float, float]:
        """Means over the batches done, weighted by batch size (the last may be short)."""
        if not self.losses:
            return math.nan, math.nan
        sizes = [min(self.batch_size, self.sample_count - index * self.batch_size)
                 for index in range(self.batches_done)]
        return (float(np.average(self.losses, weights=sizes)),
                float(np.average(self.accuracies, weights=sizes)))

    def _batch_end(self, batch: int, logs: dict[str, Any] | None) -> None:
        logs = logs or {}
        # Counted here, not from Keras's index: an epoch may span several fit calls.
        number = self.batches_done + 1
        loss = float(logs.get("batch_loss", math.nan))
        problem = loss_problem(loss)
        snapshot = None
        if problem is None and number % self.snapshot_every == 0:
            snapshot = self.model.get_weights()
            if not weights_finite(snapshot):
                problem = NON_FINITE_WEIGHT
        if problem is not None:
            # This batch's update is undone, so its loss is not counted either.
            self._diverge(number, problem)
            return
        if self._candidate_weights is not None:
            self._good_weights, self._candidate_weights = self._candidate_weights, None
            self._good_batches = self._candidate_batches
        self.losses.append(loss)
        self.accuracies.append(float(logs.get("batch_accuracy", math.nan)))
        self.history.add_batch_loss(loss)
        if snapshot is not None:
            self._candidate_weights, self._candidate_batches = snapshot, number
        if self.on_batch is not None:
            self.on_batch(BatchProgress(epoch=self.epoch, batch=number,
                                        batches_per_epoch=self.batches_per_epoch,
                                        loss=loss, seconds_in_epoch=self.seconds))
        if self.stop_requested():
            self.outcome = "stopped"
            self.model.stop_training = True

    def _diverge(self, batch: int, reason: str) -> None:
        self.outcome, self.failed_batch, self.failure_reason = "diverged", batch, reason
        self.model.stop_training = True

    def finish(self) -> None:
        """After fit: undo a divergence, including a last update that overflowed."""
        if self.outcome != "diverged" and not weights_finite(self.model.get_weights()):
            self.outcome, self.failed_batch = "diverged", max(self.batches_done, 1)
            self.failure_reason = NON_FINITE_WEIGHT
        if self.outcome == "diverged":
            self.model.set_weights(self._good_weights)
            reset_optimizer(self.model.optimizer)


def reset_optimizer(optimizer: Any) -> None:
    """Zero the step count and moments, keeping the learning rate.

    After a divergence the moments point back the way the weights blew up, as the
    NumPy engine also assumes.
    """
    for variable in optimizer.variables:
        if variable is not optimizer.learning_rate:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))

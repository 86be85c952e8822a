"""One Keras epoch, trained in compiled spans of batches: per-batch loss and accuracy,
progress reports, the stop flag and the divergence guard.

`model.fit` with a per-batch Python callback cost the dashboard's engine about 40% over
plain `fit` (the callback forces a synchronous round trip to Python after every batch).
Here one `tf.function` call runs a whole span of batches through the model's own
`train_step`, stops early inside the graph at a non-finite or exploded loss, and returns
every batch's loss and accuracy at once; Python reports them, checks the stop flag and
decides about divergence between spans. A span is sized to take about `SECONDS_PER_SPAN`,
so progress still arrives several times a second and a stop or a divergence is acted on
within that time. Preparing the data is left to `engine.keras_nn.network`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.keras_nn.build import IMAGE_SHAPE, import_keras
from engine.training import (LOSS_CEILING, BatchProgress, History, OnBatch, StopFlag,
                             loss_problem)

NON_FINITE_WEIGHT = "a weight became infinite or NaN"

# Training time each compiled call aims at: reports, the stop flag and the divergence
# guard act between calls, so this is also how late they may come.
SECONDS_PER_SPAN = 0.25
# Enough to make the per-call cost (~0.3 ms) vanish even for a tiny network.
MAX_BATCHES_PER_SPAN = 256


def next_span_length(length: int, seconds: float, *, target: float = SECONDS_PER_SPAN,
                     longest: int = MAX_BATCHES_PER_SPAN) -> int:
    """Batches for the next call after `length` batches took `seconds`: at most double
    (so the first reports of a run come at once, and a call slowed by tracing does not
    stretch the next one), at most what the last call's pace fits in `target`."""
    fits = int(target * length / seconds) if seconds > 0 else longest
    return max(1, min(2 * length, fits, longest))


@dataclass
class SpanResult:
    """What one compiled call did."""

    losses: list[float]         # per batch run; the last is the bad one if any was
    accuracies: list[float]
    weights_finite_before: bool     # False: nothing ran, the weights were already broken
    weights_finite_after: bool
    start_kept: bool            # the weights from before the span became the good copy


class CompiledSteps:
    """The model's `train_step`, compiled to run a span of batches per call, plus two
    in-graph copies of the weights for the divergence guard: a candidate taken before
    each span, promoted to the good copy once the span's first batch shows it could
    still train (finite weights can overflow the next forward pass)."""

    def __init__(self, model: Any, batch_size: int) -> None:
        import_keras()
        import tensorflow as tf

        self.model = model
        self.batch_size = batch_size
        self.span_length = 1
        self.longest_span = MAX_BATCHES_PER_SPAN
        # Batch norm's moving statistics too, but not the dropout layers' integer seeds.
        self._weights = [weight.value for weight in model.weights
                         if weight.dtype.startswith("float")]
        self._candidate = [tf.Variable(weight, trainable=False) for weight in self._weights]
        self._good = [tf.Variable(weight, trainable=False) for weight in self._weights]
        self._tf = tf
        self._span_functions: dict[Any, Any] = {}    # image dtype -> compiled span
        self._keep_current = tf.function(lambda: _copy_all(self._weights, self._good),
                                         autograph=False)
        self._restore_good = tf.function(lambda: _copy_all(self._good, self._weights),
                                         autograph=False)

    def train(self, images: Any, labels: Any, order: Any, first: int, count: int
              ) -> SpanResult:
        """Run batches `first` to `first + count` (0-based) of `order` and adapt the
        next span's length to how long this one took."""
        tf = self._tf
        started = time.perf_counter()
        outputs = self._span_function(images.dtype)(
            images, labels, order, tf.constant(first, tf.int32), tf.constant(count, tf.int32))
        losses, accuracies, before, after, kept = (value.numpy() for value in outputs)
        self.span_length = min(self.longest_span, next_span_length(
            count, time.perf_counter() - started))
        return SpanResult(losses.tolist(), accuracies.tolist(), bool(before), bool(after),
                          bool(kept))

    def _span_function(self, image_dtype: Any) -> Any:
        # One trace per image type whatever the number of images: an augmented epoch's
        # last chunk is shorter, and each trace of a CNN's step costs about a second.
        if image_dtype not in self._span_functions:
            tf = self._tf
            rows = tf.TensorSpec((None,), tf.int32)
            scalar = tf.TensorSpec((), tf.int32)
            # autograph=False: the loop is written as tf.while_loop, and Keras's own code
            # inside train_step stays as Keras wrote it.
            self._span_functions[image_dtype] = tf.function(
                self._span_graph, autograph=False, input_signature=[
                    tf.TensorSpec((None, *IMAGE_SHAPE), image_dtype), rows, rows, scalar,
                    scalar])
        return self._span_functions[image_dtype]

    def keep_current(self) -> None:
        """Make the current weights the good copy (an epoch starts from them)."""
        self._keep_current()

    def restore_good(self) -> None:
        self._restore_good()

    def _span_graph(self, images: Any, labels: Any, order: Any, first: Any,
                    count: Any) -> tuple[Any, ...]:
        tf, model, size = self._tf, self.model, self.batch_size
        finite_before = _all_finite(tf, self._weights)
        _copy_all(self._weights, self._candidate)

        def one_batch(done: Any, healthy: Any, losses: Any, accuracies: Any) -> tuple:
            start = (first + done) * size
            rows = order[start:start + size]
            batch = tf.gather(images, rows)                         # (batch, 28, 28)
            if batch.dtype == tf.uint8:
                # Scaled here, per batch: no float copy of the whole set each epoch.
                batch = tf.cast(batch, tf.float32) / 255.0
            logs = model.train_step((batch, tf.gather(labels, rows)))
            loss = tf.cast(logs["batch_loss"], tf.float32)
            healthy = tf.math.is_finite(loss) & (loss <= LOSS_CEILING)
            return (done + 1, healthy, losses.write(done, loss),
                    accuracies.write(done, tf.cast(logs["batch_accuracy"], tf.float32)))

        done, healthy, losses, accuracies = tf.while_loop(
            lambda done, healthy, *_: tf.logical_and(done < count, healthy), one_batch,
            (tf.constant(0), finite_before,
             tf.TensorArray(tf.float32, size=0, dynamic_size=True),
             tf.TensorArray(tf.float32, size=0, dynamic_size=True)))
        # The span's first batch trained with an acceptable loss from the candidate.
        start_kept = finite_before & ((done >= 2) | ((done == 1) & healthy))
        tf.cond(start_kept, lambda: _copy_all(self._candidate, self._good), lambda: None)
        return (losses.stack(), accuracies.stack(), finite_before,
                _all_finite(tf, self._weights), start_kept)


def _all_finite(tf: Any, variables: list[Any]) -> Any:
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(variable))
                                   for variable in variables]))


def _copy_all(sources: list[Any], targets: list[Any]) -> None:
    for source, target in zip(sources, targets):
        target.assign(source)


class EpochRun:
    """One epoch's bookkeeping over the spans `CompiledSteps` trains.

    `outcome` ends as "completed", "stopped" (the stop flag was set; the weights of the
    last finished span stay) or "diverged" (a non-finite or exploded loss, or a
    non-finite weight; call `finish()`, which restores the last good weights).
    """

    def __init__(self, steps: CompiledSteps, history: History, *, epoch: int,
                 sample_count: int, batch_size: int, on_batch: OnBatch | None,
                 stop: StopFlag | None, started: float | None = None) -> None:
        self.steps = steps
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
        steps.keep_current()
        self._good_batches = 0      # batches of this epoch the good weights hold
        self._started = time.perf_counter() if started is None else started

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

    def train(self, images: Any, labels: Any, order: Any, batch_count: int) -> None:
        """Train `batch_count` batches of `order` (rows of `images`), span by span, until
        they are done, the stop flag is raised or the run diverges. An epoch may be fed
        in several parts (augmented chunks); the batch count runs on across them."""
        first = 0
        while first < batch_count and self.outcome == "completed":
            count = min(self.steps.span_length, batch_count - first)
            self._take(self.steps.train(images, labels, order, first, count), count)
            first += count
            if self.outcome == "completed" and self.stop_requested():
                self.outcome = "stopped"

    def _take(self, span: SpanResult, count: int) -> None:
        before = self.batches_done
        if span.start_kept:
            self._good_batches = before
        if not span.weights_finite_before:
            self._diverge(before + 1, NON_FINITE_WEIGHT)
            return
        problem = loss_problem(span.losses[-1]) if span.losses else None
        if problem is None and not span.weights_finite_after:
            problem = NON_FINITE_WEIGHT     # seen after the span's last batch
        fine = len(span.losses) - (problem is not None)
        for loss, accuracy in zip(span.losses[:fine], span.accuracies[:fine]):
            self._record(loss, accuracy)
        if problem is not None:
            # The failing batch's update is undone, so its loss is not counted either.
            self._diverge(before + fine + 1, problem)

    def _record(self, loss: float, accuracy: float) -> None:
        self.losses.append(loss)
        self.accuracies.append(accuracy)
        self.history.add_batch_loss(loss)
        if self.on_batch is not None:
            self.on_batch(BatchProgress(epoch=self.epoch, batch=self.batches_done,
                                        batches_per_epoch=self.batches_per_epoch,
                                        loss=loss, seconds_in_epoch=self.seconds))

    def _diverge(self, batch: int, reason: str) -> None:
        self.outcome, self.failed_batch, self.failure_reason = "diverged", batch, reason

    def finish(self) -> None:
        """After the epoch: undo a divergence and reset the optimizer's moments."""
        if self.outcome == "diverged":
            self.steps.restore_good()
            reset_optimizer(self.steps.model.optimizer)


def reset_optimizer(optimizer: Any) -> None:
    """Zero the step count and moments, keeping the learning rate.

    After a divergence the moments point back the way the weights blew up, as the
    NumPy engine also assumes.
    """
    for variable in optimizer.variables:
        if variable is not optimizer.learning_rate:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))

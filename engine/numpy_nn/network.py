"""`NumpyNetwork`: the from-scratch engine behind the `Classifier` interface. Its batch
loop (batch order, stop flag, divergence guard) runs `Stack`; the epoch's status and
record are `Classifier`'s, the maths is in the layers, the file format in `storage`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine import engine_architectures
from engine.config import TrainConfig
from engine.numpy_nn import storage
from engine.numpy_nn.blas import training_threads
from engine.numpy_nn.denormals import denormals_flushed
from engine.numpy_nn.layout import forward_multiply_adds
from engine.numpy_nn.losses import softmax
from engine.numpy_nn.optimizers import build_optimizer
from engine.numpy_nn.parts import PartRunner, part_runner, training_thread_count
from engine.numpy_nn.stack import INPUT_SIZE, Stack
from engine.numpy_nn.stats_probe import StackProbe
from engine.training import (NUM_CLASSES, BatchProgress, Classifier, EpochOutcome,
                             EpochRecord, History, LayerOutput, OnBatch, StopFlag,
                             as_model_input, batch_rng, epoch_permutation, learning_rate_at,
                             loss_problem, weights_finite)
from engine.training_stats import StatsRecorder

# Checking the weights and copying them aside before every update costs a few % of a
# batch (measured), and makes "the last good weights" exact: finite weights that gave
# the last acceptable loss.
SNAPSHOT_EVERY = 1


class NumpyNetwork(Classifier):
    """An MLP or a CNN trained by hand-written backpropagation.

    `dtype` float64 is for gradient checks and cross-engine comparisons; training uses
    float32.
    """

    engine_name = "numpy"
    architectures = engine_architectures("numpy")

    def __init__(self, config: TrainConfig, *, dtype: Any = np.float32,
                 initialise: bool = True) -> None:
        config.validate()
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.history = History()
        self.stack = Stack(config, self.dtype, initialise=initialise)
        self.optimizer = build_optimizer(config)
        self._snapshot = np.empty_like(self.stack.flat_params)
        # Batch norm's moving statistics belong to the snapshot too: a forward pass
        # moves them before its loss is known, so the copy is taken before it.
        self._snapshot_state = np.empty_like(self.stack.flat_state)
        self._state_before = np.empty_like(self.stack.flat_state)
        self._snapshot_taken = False
        self.stats = StatsRecorder(config) if self.record_training_stats else None
        self._stats_probe = StackProbe(self.stack, self.stats)

    # ---- training ----------------------------------------------------------------

    def partial_fit(self, images: np.ndarray, labels: np.ndarray, *,
                    validation: tuple[np.ndarray, np.ndarray] | None = None,
                    on_batch: OnBatch | None = None, stop: StopFlag | None = None
                    ) -> EpochRecord:
        """Train one epoch; append and return its record (status in `history`).

        A stop (checked before each batch) keeps the last finished batch's weights. A
        non-finite or exploded loss (`loss_problem`) or a non-finite weight ends training
        as "diverged" and restores the last finite weights that gave an acceptable loss;
        `fraction` then counts the batches kept.
        """
        started = time.perf_counter()
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"expected images of shape (n, 28, 28), got {images.shape}")
        labels = _checked_labels(images, labels)
        epoch_index = len(self.history.epochs)
        learning_rate = learning_rate_at(self.config, epoch_index)
        self.optimizer.learning_rate = learning_rate
        # Overflow on the way to a divergence is expected and handled, not warned about.
        with training_threads(), denormals_flushed(), \
                part_runner(self.step_threads(len(images))) as runner, \
                np.errstate(over="ignore", invalid="ignore"):
            tally = self._train_epoch(images, labels, epoch_index, on_batch, stop, started,
                                      runner)
        seen = tally.seen
        outcome = EpochOutcome(
            batches=tally.batches, kept=tally.done,
            train_loss=tally.loss_sum / seen if seen else math.nan,
            train_accuracy=tally.correct / seen if seen else math.nan,
            ended=tally.ended, failed_batch=tally.failed_batch, reason=tally.reason)
        return self._finish_epoch(outcome, epoch_index=epoch_index,
                                  learning_rate=learning_rate, started=started,
                                  validation=validation, stop=stop)

    def _train_epoch(self, images: np.ndarray, labels: np.ndarray, epoch_index: int,
                     on_batch: OnBatch | None, stop: StopFlag | None, started: float,
                     runner: PartRunner) -> _Tally:
        config, stack = self.config, self.stack
        epoch, batch_size = epoch_index + 1, config.batch_size
        tally = _Tally(batches=math.ceil(len(labels) / batch_size))
        self.history.batches_per_epoch = tally.batches
        order = epoch_permutation(config.seed, epoch_index, len(labels))
        # One stream per epoch: each batch draws its augmentation first, then its masks.
        rng = batch_rng(config.seed, epoch_index)
        for dropout in stack.dropouts:
            dropout.rng = rng
        flat_params, flat_state = stack.flat_params, stack.flat_state
        pairs = list(zip(_pieces(flat_params), _pieces(stack.flat_grads)))
        done_at_snapshot = 0        # a snapshot from an earlier epoch keeps none of this one

        for batch_index in range(tally.batches):
            if stop is not None and stop.is_set():
                tally.ended = "stopped"
                return tally
            rows = order[batch_index * batch_size:(batch_index + 1) * batch_size]
            np.copyto(self._state_before, flat_state)
            # Backward runs before the checks below: it changes only the gradients.
            loss, correct = stack.train_step(self._batch_input(images[rows], rng),
                                             labels[rows], runner)
            problem = loss_problem(loss)
            if problem is None and batch_index % SNAPSHOT_EVERY == 0 \
                    and not weights_finite([flat_params, self._state_before]):
                problem = "a weight became infinite or NaN"
            if problem is not None:
                return self._diverged(tally, done_at_snapshot, batch_index + 1, problem)
            if batch_index % SNAPSHOT_EVERY == 0:
                np.copyto(self._snapshot, flat_params)
                np.copyto(self._snapshot_state, self._state_before)
                self._snapshot_taken, done_at_snapshot = True, tally.done
            self._stats_probe.after_backward(len(rows))
            self.optimizer.step(pairs, runner)
            tally.add(loss, correct, len(rows))
            self.history.add_batch_loss(loss)
            if on_batch is not None:
                on_batch(BatchProgress(epoch, tally.done, tally.batches, loss,
                                       time.perf_counter() - started))
        if not weights_finite([flat_params, flat_state]):
            # The last update overflowed; no later loss of this epoch would show it.
            return self._diverged(tally, done_at_snapshot, tally.batches,
                                  "a weight became infinite or NaN")
        return tally

    def train_batch_at(self, images: np.ndarray, labels: np.ndarray,
                       learning_rate: float) -> float:
        """One update on one batch at `learning_rate`, the step partial_fit takes (on
        as many threads); the batch's loss before it.

        For the learning-rate finder and run estimates, on a throwaway copy: no schedule,
        augmentation, history or divergence guard, and no statistics recorded.
        """
        labels = _checked_labels(images, labels)
        self.optimizer.learning_rate = learning_rate
        stack = self.stack
        # The pieces partial_fit updates: the optimizer keeps its state per piece.
        pairs = list(zip(_pieces(stack.flat_params), _pieces(stack.flat_grads)))
        with training_threads(), denormals_flushed(), \
                part_runner(self.step_threads(len(images))) as runner, \
                np.errstate(over="ignore", invalid="ignore"):
            loss, _ = stack.train_step(self._flat(as_model_input(images)), labels, runner)
            self.optimizer.step(pairs, runner)
        self._snapshot_taken = False    # the weights moved outside an epoch
        return float(loss)

    def step_threads(self, batch_rows: int | None = None) -> int:
        """Threads a training step on `batch_rows` images (default: a full batch) uses."""
        rows = min(self.config.batch_size, batch_rows or self.config.batch_size)
        return training_thread_count(rows * forward_multiply_adds(self.config))

    def _diverged(self, tally: _Tally, done_at_snapshot: int, batch: int,
                  reason: str) -> _Tally:
        # With no snapshot since the weights were last set, no update has changed them.
        if self._snapshot_taken:
            np.copyto(self.stack.flat_params, self._snapshot)
            np.copyto(self.stack.flat_state, self._snapshot_state)
        else:
            # The failed batch's forward pass moved the statistics, though.
            np.copyto(self.stack.flat_state, self._state_before)
        # Moments gathered on the way to divergence would push straight back there.
        self.optimizer.reset()
        tally.done = done_at_snapshot if self._snapshot_taken else 0
        tally.ended, tally.failed_batch, tally.reason = "diverged", batch, reason
        return tally

    def _batch_input(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = as_model_input(images)                          # (batch, 28, 28) float32
        if self.config.augmentation != "none":
            from engine.images import augment  # lazy: only augmented runs need it
            batch = augment.augment_batch(batch, rng, self.config.augmentation)
        return self._flat(batch)

    def _flat(self, batch: np.ndarray) -> np.ndarray:
        return batch.reshape(len(batch), INPUT_SIZE).astype(self.dtype, copy=False)

    # ---- inference and the cross-engine calls -------------------------------------

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(n, 10) pre-softmax outputs, in the network's dtype."""
        images = np.asarray(images)
        if images.ndim == 2:
            images = images[None]                               # one image
        as_model_input(images[:0])                              # refuses a wrong shape
        logits = np.empty((len(images), NUM_CLASSES), dtype=self.dtype)
        # A CNN's products are thin (at most 288 columns), so a second OpenBLAS thread
        # gains little and, beside other work, spins: 10,000 digits took 4-6 s on all
        # threads against 1.7 s on one (2 busy cores, measured).
        threads = training_threads() if self.config.architecture == "cnn" \
            else contextlib.nullcontext()
        step = self.stack.inference_chunk
        with threads:
            # Converted chunk by chunk too: 60,000 digits as float32 are 188 MB.
            for start in range(0, len(images), step):
                chunk = self._flat(as_model_input(images[start:start + step]))
                logits[start:start + len(chunk)] = self.stack.infer(chunk)
        return logits

    def layer_outputs(self, images: np.ndarray) -> list[LayerOutput]:
        # One BLAS thread, as in training: an inspection's products are small, and on
        # a busy machine two threads spinning for each other made saliency, integrated
        # gradients and fooling 5-20 times slower (measured at load 12 on 2 cores).
        with training_threads():
            values = self.stack.layer_outputs(self._model_input(images))
        return [LayerOutput(tap.name, tap.kind, value)
                for tap, value in zip(self.stack.taps, values)]

    def input_gradient(self, images: np.ndarray, output_weights: np.ndarray, *,
                       layer: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """See `Classifier.input_gradient`; by the layers' own backward code. The
        gradient is float32, or float64 for a float64 network (for gradient checks)."""
        tap = _tap_index(layer, len(self.stack.taps))
        x = self._model_input(images)
        with training_threads():        # see layer_outputs
            values, grad = self.stack.input_gradient(x, np.asarray(output_weights), tap)
        dtype = np.float64 if self.dtype == np.float64 else np.float32
        return values, grad.reshape(len(x), 28, 28).astype(dtype, copy=False)

    def _model_input(self, images: np.ndarray) -> np.ndarray:
        """(n, 784) in the network's dtype; float images are not rounded to float32
        first, so a float64 network's gradient checks see the input they perturb."""
        images = np.asarray(images)
        images = images[None] if images.ndim == 2 else images
        if images.dtype == np.float64:
            as_model_input(images[:0])                          # refuses a wrong shape
            return images.reshape(len(images), INPUT_SIZE).astype(self.dtype, copy=False)
        return self._flat(as_model_input(images))

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        # Weights kept from just before a divergence can overflow; the run already said
        # so in one line, and NumPy's warnings would only add noise after it.
        with np.errstate(over="ignore", invalid="ignore"):
            return softmax(self.logits(images)).astype(np.float32, copy=False)

    def objective(self, images: np.ndarray, labels: np.ndarray, *,
                  batch_statistics: bool = False) -> float:
        """Mean cross-entropy plus the L2 term: what `gradients` differentiates. Batch
        norm uses its moving statistics, or the batch's with `batch_statistics` (as in
        training, but leaving the moving statistics as they are)."""
        labels = _checked_labels(images, labels)
        loss, _ = self.stack.forward_loss(self._flat(as_model_input(images)), labels,
                                          training=False, batch_statistics=batch_statistics)
        return loss + self.stack.penalty()

    def gradients(self, images: np.ndarray, labels: np.ndarray, *,
                  batch_statistics: bool = False) -> list[np.ndarray]:
        """d(objective)/d(trained weights) without dropout (copies), in Keras's
        `trainable_weights` order: `get_weights` without batch norm's moving
        statistics."""
        labels = _checked_labels(images, labels)
        self.stack.forward_loss(self._flat(as_model_input(images)), labels, training=False,
                                batch_statistics=batch_statistics)
        self.stack.backward()
        return [grad.copy() for grad in self.stack.grads]

    # ---- weights ------------------------------------------------------------------

    def get_weights(self) -> list[np.ndarray]:
        """Copies in Keras's `get_weights` order and layouts: per conv block the kernel
        (kh, kw, in, out), gamma, beta, moving mean and moving variance; then W (in, out)
        and b per dense layer."""
        return [weight.copy() for weight in self.stack.all_weights]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Copy `weights` (get_weights order) in; refuses wrong shapes and non-finite
        values. Optimizer state is kept, as in Keras."""
        params = self.stack.all_weights
        storage.check_weights(list(weights), self.stack.names,
                              [param.shape for param in params])
        for param, weight in zip(params, weights):
            np.copyto(param, weight, casting="unsafe")
        self._snapshot_taken = False

    def save_weights(self, folder: Any) -> str:
        return storage.save(folder, self.stack.names, self.stack.all_weights)

    @classmethod
    def load_weights(cls, folder: Any, config: TrainConfig) -> NumpyNetwork:
        """A network built from `config` holding the weights saved in `folder`."""
        # Drawing random weights for a 800-800 MLP takes 60 ms of every model's first
        # page; the saved ones replace every array.
        network = cls(config, initialise=False)
        network.set_weights(storage.load(folder, network.stack.names))
        return network


@dataclass
class _Tally:
    """What one epoch's batches added up to."""

    batches: int
    done: int = 0               # batches whose updates the weights hold
    loss_sum: float = 0.0       # sum of batch losses, each weighted by its batch size
    correct: int = 0
    seen: int = 0
    ended: str = "completed"    # completed | stopped | diverged
    failed_batch: int | None = None
    reason: str = ""

    def add(self, loss: float, correct: int, count: int) -> None:
        self.done += 1
        self.loss_sum += loss * count
        self.correct += correct
        self.seen += count


def _tap_index(layer: int, count: int) -> int:
    if not -count <= layer < count:
        raise ValueError(f"layer must index one of the {count} layer outputs, got {layer}")
    return layer % count

# Elements per piece of the flat weights an optimizer step updates at a time: its dozen
# passes then run over arrays that stay in cache (Adam on the default MLP: 13% faster
# than over the whole 235,146 at once, measured).
OPTIMIZER_PIECE = 1 << 16


def _pieces(flat: np.ndarray) -> list[np.ndarray]:
    """`flat` in consecutive equal pieces, an even number of them so that two threads
    share them evenly; the same pieces whatever the thread count, as the optimizer
    keeps its state per piece."""
    count = -(-len(flat) // OPTIMIZER_PIECE)
    return np.array_split(flat, count + count % 2)


def _checked_labels(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"expected one label per image ({len(images)}), got labels of "
                         f"shape {labels.shape}")
    if len(labels) == 0:
        raise ValueError("no images to train on")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
            or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must be integers 0-{NUM_CLASSES - 1}")
    return labels.astype(np.intp, copy=False)

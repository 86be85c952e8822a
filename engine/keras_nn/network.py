"""KerasNetwork: the Classifier contract on a Keras model built from a TrainConfig.

Building the layers lives in `build.py`, per-batch bookkeeping in `epoch.py`; the shared
split, batch order and schedule come from `engine.training`.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from engine import engine_architectures
from engine.config import TrainConfig
from engine.keras_nn.archive import check_archive
from engine.keras_nn.build import IMAGE_SHAPE, build_model, compile_model, import_keras
from engine.keras_nn.epoch import CompiledSteps, EpochRun
from engine.keras_nn.stats_step import install_stats_step
from engine.training import (NUM_CLASSES, Classifier, EpochOutcome, EpochRecord, History,
                             LayerOutput, OnBatch, StopFlag, as_model_input, batch_rng,
                             epoch_permutation, learning_rate_at)
from engine.training_stats import StatsRecorder

WEIGHTS_FILE = "model.keras"
# Images per direct forward call: big enough to amortise the call, small enough that a
# 60,000-image prediction never holds more than a few MB of activations at once.
PREDICT_CHUNK = 2048
# Parts of an augmented epoch, each augmented while the one before it trains.
AUGMENTED_CHUNKS = 10


class KerasNetwork(Classifier):
    """A Keras MLP or CNN answering the same calls as the NumPy engine."""

    engine_name = "keras"
    architectures = engine_architectures("keras")

    def __init__(self, config: TrainConfig) -> None:
        self.config = config.validate()
        self.history = History()
        self.model = build_model(config)
        compile_model(self.model, config)
        self._forward = _compiled_forward(self.model)
        self._steps: CompiledSteps | None = None     # built with the first epoch
        if self.record_training_stats:
            self.stats = StatsRecorder(config)
            self.stats.totals = install_stats_step(self.model, self.stats.layers)

    # ---- prediction -----------------------------------------------------------

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(n, 10) float32 pre-softmax scores, in inference mode (no dropout)."""
        inputs = as_model_input(images)                     # (n, 28, 28)
        chunks = [self._forward(inputs[start:start + PREDICT_CHUNK]).numpy()
                  for start in range(0, len(inputs), PREDICT_CHUNK)]
        if not chunks:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        scores = self.logits(images)                        # (n, 10)
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)

    # ---- inside the network (engine/keras_nn/inside.py) --------------------------

    def layer_outputs(self, images: np.ndarray) -> list[LayerOutput]:
        return self._inside().layer_outputs(images)

    def input_gradient(self, images: np.ndarray, output_weights: np.ndarray, *,
                       layer: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """See `Classifier.input_gradient`; by tf.GradientTape."""
        return self._inside().input_gradient(images, output_weights, layer)

    def _inside(self) -> Any:
        # Built on first use: the views trace their graphs, which a model never
        # looked inside should not pay for.
        if getattr(self, "_inside_views", None) is None:
            from engine.keras_nn.inside import Inside
            self._inside_views = Inside(self.model)
        return self._inside_views

    # ---- training ---------------------------------------------------------------

    def partial_fit(self, images: np.ndarray, labels: np.ndarray, *,
                    validation: tuple[np.ndarray, np.ndarray] | None = None,
                    on_batch: OnBatch | None = None, stop: StopFlag | None = None
                    ) -> EpochRecord:
        started = time.perf_counter()
        config = self.config
        inputs = _training_input(images)                    # (n, 28, 28)
        targets = _checked_labels(len(inputs), labels)
        epoch_index = len(self.history.epochs)
        learning_rate = learning_rate_at(config, epoch_index)
        if self._steps is None:
            self._steps = CompiledSteps(self.model, config.batch_size)
        run = EpochRun(self._steps, self.history, epoch=epoch_index + 1,
                       sample_count=len(inputs), batch_size=config.batch_size,
                       on_batch=on_batch, stop=stop, started=started)
        self.history.batches_per_epoch = run.batches_per_epoch
        self.history.status, self.history.message = "running", ""
        if run.stop_requested():
            run.outcome = "stopped"     # set before the first batch: train none
        else:
            self.model.optimizer.learning_rate.assign(learning_rate)
            self.model.reset_metrics()
            self._fit_epoch(inputs, targets, epoch_index, run)
        run.finish()
        train_loss, train_accuracy = run.mean_loss_and_accuracy()
        outcome = EpochOutcome(batches=run.batches_per_epoch, kept=run.batches_kept,
                               train_loss=train_loss, train_accuracy=train_accuracy,
                               ended=run.outcome, failed_batch=run.failed_batch,
                               reason=run.failure_reason)
        return self._finish_epoch(outcome, epoch_index=epoch_index,
                                  learning_rate=learning_rate, started=started,
                                  validation=validation, stop=stop)

    def _fit_epoch(self, inputs: np.ndarray, targets: np.ndarray, epoch_index: int,
                   run: EpochRun) -> None:
        """Train the epoch in the shared batch order, augmented if asked."""
        import tensorflow as tf

        config = self.config
        order = epoch_permutation(config.seed, epoch_index, len(inputs)).astype(np.int32)
        labels = tf.convert_to_tensor(targets)
        if config.augmentation == "none":
            # The rows are gathered batch by batch inside the compiled step, so the set
            # is neither reordered nor copied here.
            run.train(tf.convert_to_tensor(inputs), labels, tf.convert_to_tensor(order),
                      run.batches_per_epoch)
            return
        # Augmenting 54,000 images takes 5-10 s. In chunks, the first batches (and their
        # progress reports) start after a tenth of that; and the next chunk is augmented
        # in a second thread while this one trains (NumPy and TensorFlow both release
        # the GIL), in order, so the generator's draws are those of a serial run.
        chunk = config.batch_size * math.ceil(run.batches_per_epoch / AUGMENTED_CHUNKS)
        rng = batch_rng(config.seed, epoch_index)
        starts = range(0, len(inputs), chunk)

        def augmented(start: int) -> np.ndarray:
            return self._augmented(as_model_input(inputs[order[start:start + chunk]]), rng)

        with ThreadPoolExecutor(max_workers=1) as augmenter:
            upcoming = augmenter.submit(augmented, starts[0])
            for index, start in enumerate(starts):
                images = upcoming.result()
                if index + 1 < len(starts):
                    upcoming = augmenter.submit(augmented, starts[index + 1])
                rows = order[start:start + chunk]
                run.train(tf.convert_to_tensor(images), tf.gather(labels, rows),
                          tf.range(len(rows)), math.ceil(len(rows) / config.batch_size))
                if run.outcome != "completed":
                    upcoming.cancel()
                    break

    def train_batch_at(self, images: np.ndarray, labels: np.ndarray,
                       learning_rate: float) -> float:
        """One update on one batch at `learning_rate`; the batch's loss before it.

        For the learning-rate finder, on a throwaway copy: no schedule, augmentation,
        history or divergence guard.
        """
        inputs = as_model_input(images)                     # (batch, 28, 28)
        targets = _checked_labels(len(inputs), labels)
        self.model.optimizer.learning_rate.assign(learning_rate)
        logs = self.model.train_on_batch(inputs, targets, return_dict=True)
        return float(logs["batch_loss"])

    def _augmented(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Batch by batch from one generator, in training order, as the NumPy engine does.
        from engine.images.augment import augment_batch
        size = self.config.batch_size
        return np.concatenate([
            augment_batch(images[start:start + size], rng, self.config.augmentation)
            for start in range(0, len(images), size)]).astype(np.float32, copy=False)

    # ---- weights and files ------------------------------------------------------

    def get_weights(self) -> list[np.ndarray]:
        return [np.asarray(weight) for weight in self.model.get_weights()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Copy `weights` (get_weights order) in; refuses wrong shapes and non-finite
        values, as the NumPy engine does. The optimizer's state is kept."""
        _check_shapes([np.shape(weight) for weight in weights], self._weight_shapes(),
                      "the weights given")
        arrays = [np.asarray(weight, dtype=np.float32) for weight in weights]
        broken = [index for index, array in enumerate(arrays) if not np.isfinite(array).all()]
        if broken:
            raise ValueError(f"weight array(s) {broken} hold NaN or infinite values; "
                             f"load weights from a run that did not diverge")
        self.model.set_weights(arrays)

    def _weight_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(weight.shape) for weight in self.model.weights]

    def save_weights(self, folder: Any) -> str:
        """Write `model.keras` into `folder` (atomically); return the file name.

        The optimizer's state is not saved: a loaded model resumes with fresh moments.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # Keras insists on the .keras suffix, so the temporary name ends with it too.
        handle, temp_name = tempfile.mkstemp(prefix=".model-", suffix=".keras", dir=folder)
        os.close(handle)
        try:
            self.model.save(temp_name, include_optimizer=False)
            os.chmod(temp_name, 0o644)      # mkstemp's 0o600 would hide it from others
            with open(temp_name, "rb") as written:
                os.fsync(written.fileno())
            os.replace(temp_name, folder / WEIGHTS_FILE)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return WEIGHTS_FILE

    @classmethod
    def load_weights(cls, folder: Any, config: TrainConfig) -> KerasNetwork:
        """Build the network `config` describes and fill it from `folder/model.keras`.

        The file's model must have the same input, output and weight shapes; a file that
        needs arbitrary Python code to load (a Lambda layer) is refused.
        """
        path = Path(folder) / WEIGHTS_FILE
        if not path.is_file():
            raise ValueError(f"no Keras weights file at {path}; save the model first")
        check_archive(path)     # a clear reason, before TensorFlow is even imported
        keras = import_keras()
        try:
            loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file is the user's error
            raise ValueError(_load_error_message(path, error)) from None
        network = cls(config)
        _check_compatible(loaded, network, path)
        network.set_weights(loaded.get_weights())
        return network


def _compiled_forward(model: Any) -> Any:
    # One traced graph for any batch size: a direct eager call costs several ms per
    # layer stack and model.predict about 40 ms, too slow for a drawing page.
    import_keras()
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32)])
    def forward(images: Any) -> Any:
        return model(images, training=False)

    return forward


def _load_error_message(path: Path, error: Exception) -> str:
    text = str(error)
    if "Lambda" in text or "safe_mode" in text:
        return (f"{path} contains a Lambda layer, i.e. arbitrary Python code, which is "
                f"refused for safety; only load models saved by this app")
    return (f"{path} is not a readable Keras model ({type(error).__name__}: "
            f"{text.splitlines()[0] if text else 'no details'}); re-save or re-train it")


def _check_compatible(loaded: Any, network: KerasNetwork, path: Path) -> None:
    try:
        input_shape = tuple(loaded.inputs[0].shape)
        output_shape = tuple(loaded.outputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        raise ValueError(f"{path} holds a model without a fixed input and output; "
                         f"only load models saved by this app") from None
    expected_input, expected_output = (None, *IMAGE_SHAPE), (None, NUM_CLASSES)
    if input_shape != expected_input or output_shape != expected_output:
        raise ValueError(f"{path} maps {input_shape} to {output_shape}, but this app needs "
                         f"{expected_input} images to {expected_output} scores")
    _check_shapes([tuple(weight.shape) for weight in loaded.weights],
                  network._weight_shapes(), f"the weights in {path}")


def _check_shapes(given: list[tuple[int, ...]], expected: list[tuple[int, ...]],
                  source: str) -> None:
    given = [tuple(int(size) for size in shape) for shape in given]
    if given != expected:
        raise ValueError(f"{source} do not fit this network: expected {len(expected)} "
                         f"arrays of shapes {expected}, got {len(given)} of shapes {given}; "
                         f"use the config the weights were trained with")


def _training_input(images: np.ndarray) -> np.ndarray:
    """Images as the training step takes them: uint8 as given (the step scales each
    batch, sparing a float copy of the whole set per epoch), anything else as floats."""
    images = np.asarray(images)
    if images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == IMAGE_SHAPE:
        return images
    return as_model_input(images)


def _checked_labels(count: int, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != count:
        raise ValueError(f"expected one label per image ({count}), got labels of "
                         f"shape {labels.shape}")
    if count == 0:
        raise ValueError("no images to train on")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
            or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must be integers 0-{NUM_CLASSES - 1}")
    return labels.astype(np.int32)

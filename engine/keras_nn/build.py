"""Turn a TrainConfig into a compiled Keras model: layers, initialisers, optimizer, loss.

Training, prediction and files are left to `engine.keras_nn.network`. Keras is imported
inside each function, never at module import (see `import_keras`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from engine.config import TrainConfig
from engine.training import NUM_CLASSES

IMAGE_SHAPE = (28, 28)
ADAM_EPSILON = 1e-7     # Keras's default, and the NumPy engine's


# What TensorFlow's C++ side writes to stderr while its libraries load, before it reads
# TF_CPP_MIN_LOG_LEVEL: absl's banner, then records such as the oneDNN notice
# ("I0000 00:00:1796169908.639469    5892 port.cc:153] oneDNN custom operations ...")
# and the CPU feature guard's, whose second line starts "To enable".
_LOAD_LOGGING = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)"
                           r"|[IWE]\d{4} \d+:\d+:\d+\.\d+ +\d+ \S+:\d+\] "
                           r"|To enable the following instructions: ")
_import_lock = threading.Lock()
_keras: Any = None


def import_keras() -> Any:
    """Import Keras on the TensorFlow backend, quietly; return the module."""
    global _keras
    with _import_lock:
        if _keras is None:
            # Level 3 keeps TensorFlow's C++ logging to fatal errors once it is loaded;
            # a user who set the variable (to debug TensorFlow, say) keeps their level.
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
            with _without_load_logging():
                import keras
            with contextlib.suppress(ImportError):
                from absl import logging as absl_logging
                absl_logging.set_verbosity(absl_logging.ERROR)
            _keras = keras
    return _keras


@contextlib.contextmanager
def _without_load_logging() -> Iterator[None]:
    """Run the block with file descriptor 2 in a temporary file, then write to stderr
    every captured line that is not TensorFlow's load-time logging, so a real message
    (a Python warning, a fatal error's line) still reaches the user. A crash inside the
    block loses what it wrote: a cost the import of a compiled library rarely charges."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:         # no stderr at all: nothing to keep quiet
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _LOAD_LOGGING.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def build_model(config: TrainConfig) -> Any:
    """The config's network as an uncompiled functional keras.Model outputting logits.

    Softmax is not part of the model: the loss takes logits (numerically stable) and
    `predict_proba` applies softmax, so logits can be compared with the NumPy engine's.
    """
    keras = import_keras()
    keras.utils.set_random_seed(config.seed)
    # Each layer gets its own seed drawn from the config's, so the weights do not depend
    # on what other threads did to Keras's global seed generator meanwhile.
    seeds = iter(np.random.default_rng([config.seed, 4]).integers(0, 2**31 - 1, size=64))
    inputs = keras.Input(shape=IMAGE_SHAPE, name="images")
    if config.architecture == "cnn":
        x = _conv_blocks(keras, inputs, config, seeds)
    else:
        x = keras.layers.Flatten(name="flatten")(inputs)
    # LeakyReLU is its own layer: Keras's "leaky_relu" string has slope 0.2, not 0.01.
    activation = None if config.activation == "leaky_relu" else config.activation
    for index, width in enumerate(config.hidden_sizes, start=1):
        x = _dense(keras, width, config, next(seeds), activation, name=f"hidden_{index}")(x)
        if config.activation == "leaky_relu":
            x = keras.layers.LeakyReLU(negative_slope=0.01, name=f"leaky_relu_{index}")(x)
        if config.dropout > 0:
            x = keras.layers.Dropout(config.dropout, seed=int(next(seeds)),
                                     name=f"dropout_{index}")(x)
    logits = _dense(keras, NUM_CLASSES, config, next(seeds), None, name="logits")(x)
    name = f"{config.architecture}_" + "_".join(map(str, config.hidden_sizes or ("linear",)))
    return keras.Model(inputs=inputs, outputs=logits, name=name)


def _dense(keras: Any, width: int, config: TrainConfig, seed: int, activation: str | None,
           *, name: str) -> Any:
    return keras.layers.Dense(
        width, activation=activation, name=name,
        kernel_initializer=_initialiser(keras, config.resolved_initialisation, seed),
        bias_initializer="zeros", kernel_regularizer=_l2(keras, config))


def _conv_blocks(keras: Any, inputs: Any, config: TrainConfig, seeds: Any) -> Any:
    """Conv(3x3, no bias) - BatchNorm - ReLU - MaxPool(2x2) per entry of conv_filters."""
    x = keras.layers.Reshape((*IMAGE_SHAPE, 1), name="add_channel")(inputs)
    for index, filters in enumerate(config.conv_filters, start=1):
        # No bias: the batch norm's beta that follows plays its part.
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"conv_{index}",
            kernel_initializer=_initialiser(keras, "he", next(seeds)),
            kernel_regularizer=_l2(keras, config))(x)
        # Momentum 0.9, not 0.99: the inference statistics settle within ~50 batches,
        # so short runs on small subsets are not judged on half-warm statistics.
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"batch_norm_{index}")(x)
        x = keras.layers.ReLU(name=f"conv_relu_{index}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if config.dropout > 0 and not config.hidden_sizes:
        # Dropout acts on hidden units; with no hidden layer, the features stand in.
        x = keras.layers.Dropout(config.dropout, seed=int(next(seeds)),
                                 name="dropout_features")(x)
    return x


def _initialiser(keras: Any, kind: str, seed: Any) -> Any:
    seed = int(seed)
    if kind == "he":
        return keras.initializers.HeUniform(seed=seed)
    return keras.initializers.GlorotUniform(seed=seed)


def _l2(keras: Any, config: TrainConfig) -> Any:
    # l2 * sum(W**2), the NumPy engine's penalty; None keeps l2=0 models free of it.
    return keras.regularizers.L2(config.l2) if config.l2 > 0 else None


def make_optimizer(config: TrainConfig) -> Any:
    keras = import_keras()
    rate = config.learning_rate
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate, epsilon=ADAM_EPSILON)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=rate)
    return keras.optimizers.SGD(learning_rate=rate, momentum=config.momentum,
                                nesterov=config.optimizer == "nesterov")


def compile_model(model: Any, config: TrainConfig) -> None:
    """Attach the optimizer (built now, so its state can be snapshot) and the loss."""
    keras = import_keras()
    optimizer = make_optimizer(config)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=list(batch_metrics()))
    optimizer.build(model.trainable_variables)


def batch_metrics() -> tuple[Any, Any]:
    """Metrics holding the last batch's data loss and accuracy (not running means).

    Keras's own "loss" log is a running mean over the epoch and includes the L2 term;
    the history wants each batch's cross-entropy alone, comparable with the NumPy engine.
    """
    keras = import_keras()
    ops = keras.ops

    class LastBatch(keras.metrics.Metric):
        def __init__(self, name: str) -> None:
            super().__init__(name=name)
            self.value = self.add_variable(shape=(), initializer="zeros", name="value")

        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
            labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
            self.value.assign(ops.mean(self.per_sample(labels, y_pred)))

        def result(self) -> Any:
            return self.value

        def reset_state(self) -> None:
            self.value.assign(0.0)

    class BatchLoss(LastBatch):
        def per_sample(self, labels: Any, logits: Any) -> Any:
            return ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)

    class BatchAccuracy(LastBatch):
        def per_sample(self, labels: Any, logits: Any) -> Any:
            predicted = ops.cast(ops.argmax(logits, axis=-1), "int32")
            return ops.cast(ops.equal(predicted, labels), "float32")

    return BatchLoss("batch_loss"), BatchAccuracy("batch_accuracy")

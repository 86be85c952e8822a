"""The benchmark's reference: the default MLP as a Keras user writes it (a Sequential
model, `compile`, plain `model.fit`, no callbacks), so both engines are measured against
what Keras does on its own, not only against this project's Keras engine, whose per-batch
callback (progress, stop flag, divergence guard) costs time of its own."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from engine.config import TrainConfig


def plain_keras_run(config: TrainConfig, images: np.ndarray, labels: np.ndarray,
                    epochs: int) -> tuple[list[float], Any]:
    """Seconds of each of `epochs` one-epoch `fit` calls, and the trained model."""
    from engine.keras_nn.build import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(config.seed)
    layers: list[Any] = [keras.Input(shape=(28, 28)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(width, activation=config.activation)
               for width in config.hidden_sizes]
    model = keras.Sequential([*layers, keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    inputs = images.astype(np.float32) / np.float32(255)        # (n, 28, 28)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.fit(inputs, labels, batch_size=config.batch_size, epochs=1, shuffle=True,
                  verbose=0)
        seconds.append(time.perf_counter() - started)
    return seconds, model


def plain_keras_accuracy(model: Any, images: np.ndarray, labels: np.ndarray) -> float:
    logits = model.predict(images.astype(np.float32) / np.float32(255), batch_size=2048,
                           verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == labels))

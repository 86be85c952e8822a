"""Digit Lab's compute core: data, preprocessing, the two engines, metrics, registry.

Nothing here imports Streamlit, and only `engine.keras_nn` imports TensorFlow, when a
Keras model is built or loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import TrainConfig
    from engine.training import Classifier

# The engines: name -> (module, class, the architectures it builds). The module is
# imported only when the engine is used (the NumPy network's takes 60 ms, which a page
# checking the sidebar's settings should not pay), and neither imports TensorFlow until a
# Keras model is built. Each class's `architectures` is read from here.
ENGINE_CLASSES = {"numpy": ("engine.numpy_nn.network", "NumpyNetwork", ("mlp", "cnn")),
                  "keras": ("engine.keras_nn", "KerasNetwork", ("mlp", "cnn"))}
ENGINES = tuple(ENGINE_CLASSES)


def engine_architectures(engine: str) -> tuple[str, ...]:
    """What `engine` builds ("mlp", "cnn"), without importing it."""
    if engine not in ENGINE_CLASSES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return ENGINE_CLASSES[engine][2]


def engine_class(engine: str) -> type[Classifier]:
    """The Classifier class of `engine`."""
    if engine not in ENGINE_CLASSES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    module, name, _ = ENGINE_CLASSES[engine]
    return getattr(importlib.import_module(module), name)


def build_model(engine: str, config: TrainConfig) -> Classifier:
    """A fresh, untrained model of `engine` ("numpy" or "keras") built from `config`."""
    config.validate()
    return engine_class(engine)(config)

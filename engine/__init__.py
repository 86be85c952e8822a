"""Digit Lab's compute core: data, preprocessing, the two engines, metrics, registry.

Nothing here imports Streamlit, and only `engine.keras_nn` imports TensorFlow, when a
Keras model is built or loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import TrainConfig
    from engine.training import Classifier

ENGINES = ("numpy", "keras")


def build_model(engine: str, config: TrainConfig) -> Classifier:
    """A fresh, untrained model of `engine` ("numpy" or "keras") built from `config`."""
    config.validate()
    if engine == "numpy":
        from engine.numpy_nn.network import NumpyNetwork
        return NumpyNetwork(config)
    if engine == "keras":
        from engine.keras_nn import KerasNetwork
        return KerasNetwork(config)
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")

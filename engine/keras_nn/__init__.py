"""The same networks in Keras (MLP, and a CNN the NumPy engine does not offer).

Importing this package does not import TensorFlow: that happens the first time a Keras
model is built or loaded, so pages that never touch Keras never pay for it.
"""

from __future__ import annotations

from engine.keras_nn.network import KerasNetwork

__all__ = ["KerasNetwork"]

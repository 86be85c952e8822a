"""Inside a Keras network: each hidden layer's output after its activation, and input
gradients by `tf.GradientTape`, for `KerasNetwork.layer_outputs` and `input_gradient`.

The same entries as the NumPy engine's `Stack.taps`, read from the layers `build.py`
names; TensorFlow is imported only when a network is first asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.keras_nn.build import IMAGE_SHAPE, import_keras
from engine.training import LayerOutput, as_model_input

# Images per call of the all-layers model: a CNN's first maps are 28 * 28 * filters
# values per image, so 512 images of 64 filters hold ~100 MB at once.
OUTPUTS_CHUNK = 512


@dataclass(frozen=True)
class _Tap:
    name: str
    kind: str
    layer: Any          # the Keras layer whose output is the entry


def taps(model: Any) -> list[_Tap]:
    """One entry per hidden layer after its activation, then the logits."""
    found: list[_Tap] = []
    conv_name, convs, denses = "", 0, 0
    for layer in model.layers:
        name = layer.name
        if name.startswith("conv_") and not name.startswith("conv_relu_"):
            convs += 1
            kh, kw = layer.kernel_size
            conv_name = f"conv {convs} ({kh}x{kw}, {layer.filters} filters)"
        elif name.startswith("conv_relu_"):
            found.append(_Tap(conv_name, "conv", layer))
        elif name.startswith("pool_"):
            found.append(_Tap(f"pool {convs} (2x2 max)", "pool", layer))
        elif name.startswith("hidden_"):
            denses += 1
            # A leaky ReLU is a layer of its own, read below in place of this one.
            if layer.activation is not None and layer.activation.__name__ != "linear":
                found.append(_Tap(f"dense {denses} ({layer.units} units)", "dense", layer))
        elif name.startswith("leaky_relu_"):
            found.append(_Tap(f"dense {denses} ({layer.output.shape[-1]} units)", "dense",
                              layer))
        elif name == "logits":
            found.append(_Tap("logits", "logits", layer))
    return found


class Inside:
    """Compiled views of one Keras model (they share its weights, so a later
    `set_weights` shows): all taps at once, and per tap the value and input gradient of
    sum(output * weights)."""

    def __init__(self, model: Any) -> None:
        keras = import_keras()
        import tensorflow as tf
        self.model, self.taps = model, taps(model)
        self.dtype = model.inputs[0].dtype
        outputs = [tap.layer.output for tap in self.taps]
        self._all = _compiled(keras.Model(model.inputs, outputs), self.dtype)
        self._gradients: dict[int, Any] = {}
        self._tf = tf

    def layer_outputs(self, images: np.ndarray) -> list[LayerOutput]:
        inputs = self._input(images)
        parts = [[value.numpy() for value in self._all(inputs[start:start + OUTPUTS_CHUNK])]
                 for start in range(0, max(len(inputs), 1), OUTPUTS_CHUNK)]
        return [LayerOutput(tap.name, tap.kind, np.concatenate(column))
                for tap, column in zip(self.taps, zip(*parts))]

    def input_gradient(self, images: np.ndarray, output_weights: np.ndarray, layer: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        count = len(self.taps)
        if not -count <= layer < count:
            raise ValueError(f"layer must index one of the {count} layer outputs, got {layer}")
        index = layer % count
        inputs = self._input(images)
        shape = (len(inputs), *self.taps[index].layer.output.shape[1:])
        weights = np.array(np.broadcast_to(output_weights, shape), dtype=self.dtype)
        values, gradient = self._gradient(index)(inputs, weights)
        dtype = np.float64 if self.dtype == "float64" else np.float32
        return values.numpy(), gradient.numpy().astype(dtype, copy=False)

    def _gradient(self, index: int) -> Any:
        if index not in self._gradients:
            tf = self._tf
            keras = import_keras()
            tap = self.taps[index]
            partial = keras.Model(self.model.inputs, tap.layer.output)

            @tf.function(input_signature=[
                tf.TensorSpec((None, *IMAGE_SHAPE), self.dtype),
                tf.TensorSpec((None, *tap.layer.output.shape[1:]), self.dtype)])
            def gradient(images: Any, weights: Any) -> Any:
                with tf.GradientTape() as tape:
                    tape.watch(images)
                    values = partial(images, training=False)
                    objective = tf.reduce_sum(values * weights)
                return values, tape.gradient(objective, images)

            self._gradients[index] = gradient
        return self._gradients[index]

    def _input(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        images = images[None] if images.ndim == 2 else images
        if images.dtype == np.float64:      # kept for float64 twins: no float32 rounding
            as_model_input(images[:0])
            return images.astype(self.dtype, copy=False)
        return as_model_input(images).astype(self.dtype, copy=False)


def _compiled(model: Any, dtype: str) -> Any:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, *IMAGE_SHAPE), dtype)])
    def forward(images: Any) -> Any:
        return model(images, training=False)

    return forward

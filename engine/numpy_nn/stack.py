"""The multilayer perceptron as a stack of layers: built from a config, run forward to
logits, run backward to gradients. Training loops, schedules and files live in
`network.py` and `storage.py`.
"""

from __future__ import annotations

import math

import numpy as np

from engine.config import TrainConfig
from engine.numpy_nn.layers import (ACTIVATIONS, INITIALISERS, Activation, Dense,
                                    Dropout, Layer)
from engine.numpy_nn.losses import SoftmaxCrossEntropy, add_l2_gradient, l2_penalty
from engine.training import NUM_CLASSES

INPUT_SIZE = 28 * 28
# Rows per inference chunk: bounds memory for 60,000 images at a few megabytes.
INFERENCE_CHUNK = 4096


class Stack:
    """Dense -> activation [-> dropout] per hidden layer, then Dense to 10 logits.

    Zero hidden layers is softmax regression. Initial kernels come from
    `default_rng([seed, 0])`, drawn in float64 in layer order, so every dtype starts
    from the same numbers; biases start at zero.
    """

    def __init__(self, config: TrainConfig, dtype: type = np.float32) -> None:
        self.dtype = np.dtype(dtype)
        sizes = (INPUT_SIZE, *config.hidden_sizes, NUM_CLASSES)
        self.names, shapes = parameter_layout(config)
        # Every weight (and every gradient) is a view into one flat array, so the
        # optimizer, the divergence snapshot and the finiteness check each make one
        # pass over memory instead of one per array.
        self.flat_params = np.zeros(sum(math.prod(shape) for shape in shapes), self.dtype)
        self.flat_grads = np.zeros_like(self.flat_params)
        param_views = _views(self.flat_params, shapes)
        grad_views = _views(self.flat_grads, shapes)
        initialise = INITIALISERS[config.resolved_initialisation]
        rng = np.random.default_rng([config.seed, 0])
        self.layers: list[Layer] = []
        self.dense_layers: list[Dense] = []
        self.dropouts: list[Dropout] = []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            kernel, bias = param_views[2 * index], param_views[2 * index + 1]
            kernel[...] = initialise(rng, fan_in, fan_out)
            dense = Dense(kernel, bias, input_gradient=index > 0,
                          grads=grad_views[2 * index:2 * index + 2])
            self.layers.append(dense)
            self.dense_layers.append(dense)
            if index == len(sizes) - 2:
                break
            # In place: the activation's input is the Dense layer's private buffer.
            self.layers.append(ACTIVATIONS[config.activation](inplace=True))
            if config.dropout > 0:
                dropout = Dropout(config.dropout)
                self.layers.append(dropout)
                self.dropouts.append(dropout)
        self.l2 = config.l2
        self.loss = SoftmaxCrossEntropy()

    # ---- weights in Keras's order: kernel, bias per dense layer -------------------

    @property
    def params(self) -> list[np.ndarray]:
        return [param for dense in self.dense_layers for param in dense.params]

    @property
    def grads(self) -> list[np.ndarray]:
        return [grad for dense in self.dense_layers for grad in dense.grads]

    @property
    def kernels(self) -> list[np.ndarray]:
        return [dense.params[0] for dense in self.dense_layers]

    # ---- training path: buffers reused, state kept for backward ---------------------

    def forward_loss(self, x: np.ndarray, labels: np.ndarray, training: bool
                     ) -> tuple[float, int]:
        """Mean cross-entropy of a batch (data term) and how many it got right."""
        for layer in self.layers:
            x = layer.forward(x, training)
        loss = self.loss.forward(x, labels)
        correct = int(np.count_nonzero(x.argmax(axis=1) == labels))
        return loss, correct

    def backward(self) -> None:
        """Fill every layer's `grads` with d(mean loss + L2) / d(param)."""
        grad = self.loss.backward()
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        add_l2_gradient(self.kernels, [dense.grads[0] for dense in self.dense_layers],
                        self.l2)

    def penalty(self) -> float:
        return l2_penalty(self.kernels, self.l2)

    # ---- inference: fresh arrays, no layer state touched ---------------------------

    def infer(self, x: np.ndarray) -> np.ndarray:
        """(n, 784) -> (n, 10) logits; safe to call while another thread trains."""
        logits = np.empty((len(x), NUM_CLASSES), dtype=self.dtype)
        for start in range(0, len(x), INFERENCE_CHUNK):
            a = x[start:start + INFERENCE_CHUNK]
            for layer in self.layers:
                if isinstance(layer, Dense):
                    W, b = layer.params
                    a = a @ W
                    a += b
                elif isinstance(layer, Activation):
                    a = layer.apply(a, out=a)
            logits[start:start + len(a)] = a
        return logits


def parameter_layout(config: TrainConfig) -> tuple[list[str], list[tuple[int, ...]]]:
    """Names and shapes of the weights an MLP of `config` has, kernel then bias per dense
    layer, without building it."""
    sizes = (INPUT_SIZE, *config.hidden_sizes, NUM_CLASSES)
    names, shapes = [], []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        names += [f"dense_{index}_kernel", f"dense_{index}_bias"]
        shapes += [(fan_in, fan_out), (fan_out,)]
    return names, shapes


def _views(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Consecutive pieces of `flat`, reshaped (views, not copies)."""
    views, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(flat[start:start + size].reshape(shape))
        start += size
    return views

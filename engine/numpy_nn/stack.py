"""The network as a stack of layers, an MLP or a CNN: built from a config, run forward
to logits, run backward to gradients. Training loops, schedules and files live in
`network.py` and `storage.py`; names and shapes of the weights in `layout.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config import TrainConfig
from engine.numpy_nn.batchnorm import BatchNorm
from engine.numpy_nn.conv import Conv2D, Flatten, MaxPool2D, Reshape
from engine.numpy_nn.layers import (ACTIVATIONS, INITIALISERS, Activation, Dense,
                                    Dropout, Layer, ReLU, he_uniform)
from engine.numpy_nn.layout import (IMAGE_SIDE, INPUT_SIZE, conv_filters, feature_size,
                                    is_state, parameter_layout)
from engine.numpy_nn.losses import SoftmaxCrossEntropy, add_l2_gradient, l2_penalty
from engine.numpy_nn.parts import PartRunner
from engine.training import NUM_CLASSES

__all__ = ["INPUT_SIZE", "Stack", "parameter_layout"]   # the registry imports the layout

# Rows per inference chunk: bounds memory for 60,000 images at a few megabytes.
INFERENCE_CHUNK = 4096
# A CNN's chunk is cut so its largest im2col matrix stays under this; with the layer
# outputs beside it, predicting 60,000 images peaks at 75 MB (measured for the cnn and
# strong-cnn presets).
INFERENCE_COLS_BYTES = 48 * 2**20


@dataclass(frozen=True)
class Tap:
    """Where `Stack.layer_outputs` reads an entry: the output of layer `after`, passed
    through a ReLU for a conv entry (`rectify`): the stack pools before its ReLU, and
    the conv's activated maps are the ReLU of batch norm's output."""

    name: str
    kind: str           # conv | pool | dense | logits
    after: int          # index into Stack.layers
    rectify: bool = False


class Stack:
    """MLP: Dense -> activation [-> dropout] per hidden layer, then Dense to 10 logits.
    CNN: per conv block Conv 3x3 "same" (no bias) -> BatchNorm -> ReLU -> MaxPool 2x2,
    then Flatten [-> dropout, when no hidden layer follows] and the MLP's dense layers,
    exactly as engine/keras_nn/build.py builds them.

    Initial kernels come from `default_rng([seed, 0])`, drawn in float64 in layer order,
    so every dtype starts from the same numbers; biases and betas start at zero, gammas
    at one, moving statistics at mean 0 and variance 1, as in Keras.
    """

    def __init__(self, config: TrainConfig, dtype: type = np.float32, *,
                 initialise: bool = True) -> None:
        self.dtype = np.dtype(dtype)
        self.names, shapes = parameter_layout(config)
        trainable = [not is_state(name) for name in self.names]
        # Every trained weight (and every gradient) is a view into one flat array, so the
        # optimizer, the divergence snapshot and the finiteness check each make one pass
        # over memory instead of one per array. Batch norm's moving statistics sit in a
        # second flat array: saved and snapshot with the weights, never trained.
        param_shapes = [shape for shape, kept in zip(shapes, trainable) if kept]
        state_shapes = [shape for shape, kept in zip(shapes, trainable) if not kept]
        self.flat_params = np.zeros(_total(param_shapes), self.dtype)
        self.flat_grads = np.zeros_like(self.flat_params)
        self.flat_state = np.zeros(_total(state_shapes), self.dtype)
        param_views = iter(_views(self.flat_params, param_shapes))
        grad_views = iter(_views(self.flat_grads, param_shapes))
        state_views = iter(_views(self.flat_state, state_shapes))
        self.weights: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}
        for name, kept in zip(self.names, trainable):
            if kept:
                self.weights[name], self._grads[name] = next(param_views), next(grad_views)
            else:
                self.weights[name] = next(state_views)
        if initialise:          # not when saved weights replace them all at once
            self._initialise(config)
        self.config = config
        self.layers = self._conv_layers(config) + self._dense_layers(config)
        self.dropouts = [layer for layer in self.layers if isinstance(layer, Dropout)]
        self.l2 = config.l2
        self.loss = SoftmaxCrossEntropy()
        self.inference_chunk = self._inference_chunk()
        self._second_part: _Part | None = None     # built at the first two-part step

    def _initialise(self, config: TrainConfig) -> None:
        initialise = INITIALISERS[config.resolved_initialisation]
        rng = np.random.default_rng([config.seed, 0])
        for name, weight in self.weights.items():
            if name.startswith("conv_"):
                # Keras's HeUniform whatever the activation: fan_in = kh * kw * in.
                weight[...] = he_uniform(rng, math.prod(weight.shape[:3]),
                                         weight.shape[3]).reshape(weight.shape)
            elif name.endswith("_kernel"):
                weight[...] = initialise(rng, *weight.shape)
            elif name.endswith(("_gamma", "_moving_variance")):
                weight[...] = 1

    def _conv_layers(self, config: TrainConfig,
                     grads: dict[str, np.ndarray] | None = None) -> list[Layer]:
        grads = self._grads if grads is None else grads
        filters = conv_filters(config)
        if not filters:
            return []
        layers: list[Layer] = [Reshape((IMAGE_SIDE, IMAGE_SIDE, 1))]
        side = IMAGE_SIDE
        for index in range(len(filters)):
            norm = f"batch_norm_{index}_"
            # Even maps go to their pool corner-major (conv.py); an odd side's last row
            # and column, which the pool drops, have no place in that order.
            corner_major = side % 2 == 0
            side //= 2
            layers += [
                Conv2D(self.weights[f"conv_{index}_kernel"], padding="same",
                       input_gradient=index > 0, corner_major=corner_major,
                       grads=[grads[f"conv_{index}_kernel"]]),
                BatchNorm(*(self.weights[norm + part] for part in
                            ("gamma", "beta", "moving_mean", "moving_variance")),
                          grads=[grads[norm + "gamma"], grads[norm + "beta"]]),
                # Keras's ReLU-then-pool, run as pool-then-ReLU on a quarter of the
                # values: the same outputs and the same gradients, ties included (a
                # window whose maximum is <= 0 passes no gradient either way). Not in
                # place: the pool's backward reads its own output.
                MaxPool2D(corner_major=corner_major),
                ReLU()]
        layers.append(Flatten())
        if config.dropout > 0 and not config.hidden_sizes:
            # As in Keras: with no hidden layer, dropout acts on the features.
            layers.append(_dropout(config, feature_size(config)))
        return layers

    def _dense_layers(self, config: TrainConfig,
                      grads: dict[str, np.ndarray] | None = None) -> list[Layer]:
        grads = self._grads if grads is None else grads
        layers: list[Layer] = []
        depth = len(config.hidden_sizes) + 1
        for index in range(depth):
            kernel, bias = f"dense_{index}_kernel", f"dense_{index}_bias"
            # Only a first layer fed the image itself needs no input gradient (not one
            # fed 7 * 7 * 16 features, as many as the image has pixels).
            fed_the_image = index == 0 and not conv_filters(config)
            layers.append(Dense(self.weights[kernel], self.weights[bias],
                                input_gradient=not fed_the_image,
                                grads=[grads[kernel], grads[bias]]))
            if index == depth - 1:
                break
            # In place: the activation's input is the Dense layer's private buffer.
            layers.append(ACTIVATIONS[config.activation](inplace=True))
            if config.dropout > 0:
                layers.append(_dropout(config, config.hidden_sizes[index]))
        return layers

    def _inference_chunk(self) -> int:
        side, itemsize, largest = IMAGE_SIDE, self.dtype.itemsize, 0
        for layer in self.layers:
            if isinstance(layer, Conv2D):
                largest = max(largest, layer.cols_bytes_per_image(side, side, itemsize))
            elif isinstance(layer, MaxPool2D):
                side //= 2
        return max(1, min(INFERENCE_CHUNK, INFERENCE_COLS_BYTES // max(largest, 1)))

    # ---- weights in Keras's order ------------------------------------------------

    @property
    def all_weights(self) -> list[np.ndarray]:
        """Every array `get_weights` hands out, moving statistics included."""
        return list(self.weights.values())

    @property
    def params(self) -> list[np.ndarray]:
        """The trained arrays, in Keras's `trainable_weights` order."""
        return [self.weights[name] for name in self._grads]

    @property
    def grads(self) -> list[np.ndarray]:
        return list(self._grads.values())

    @property
    def kernels(self) -> list[np.ndarray]:
        """Conv and dense kernels: what L2 acts on (not biases, gammas or betas)."""
        return [self.weights[name] for name in self._grads if name.endswith("_kernel")]

    @property
    def batch_norms(self) -> list[BatchNorm]:
        return [layer for layer in self.layers if isinstance(layer, BatchNorm)]

    # ---- training path: buffers reused, state kept for backward ---------------------

    def forward_loss(self, x: np.ndarray, labels: np.ndarray, training: bool, *,
                     batch_statistics: bool | None = None) -> tuple[float, int]:
        """Mean cross-entropy of a batch (data term) and how many it got right.

        `training` turns dropout on and makes batch norm normalise by the batch and
        update its moving statistics. `batch_statistics` overrides batch norm alone,
        leaving the moving statistics untouched: the gradient of a training step without
        its dropout.
        """
        x = _forward(self.layers, x, training, batch_statistics)
        loss = self.loss.forward(x, labels)
        correct = int(np.count_nonzero(x.argmax(axis=1) == labels))
        return loss, correct

    def backward(self) -> None:
        """Fill every layer's `grads` with d(mean loss + L2) / d(param)."""
        _backward(self.layers, self.loss.backward())
        self._add_l2_gradient()

    def _add_l2_gradient(self) -> None:
        add_l2_gradient(self.kernels,
                        [self._grads[name] for name in self._grads if name.endswith("_kernel")],
                        self.l2)

    def train_step(self, x: np.ndarray, labels: np.ndarray, runner: PartRunner
                   ) -> tuple[float, int]:
        """Forward and backward of a training batch: its mean loss and how many it got
        right, with `grads` holding the whole batch's gradient. A two-part `runner`
        runs the batch's two halves at once (see parts.py) and sums their gradients."""
        if runner.parts == 1 or len(x) < 2:
            loss, correct = self.forward_loss(x, labels, training=True)
            self.backward()
            return loss, correct
        parts = (_Part(self.layers, self.loss, self.flat_grads), self._second())
        cut = (len(x) + 1) // 2
        rows = (slice(0, cut), slice(cut, len(x)))
        for same_layer in zip(*(part.dropouts for part in parts)):
            # The whole batch's numbers, drawn as one part would draw them.
            whole = same_layer[0]
            draws = whole._buffer("whole_batch_draws", (len(x), whole.units), np.float32)
            whole.rng.random(out=draws, dtype=np.float32)
            for dropout, part_rows in zip(same_layer, rows):
                dropout.draws = draws[part_rows]
        steps = [part.step(x[part_rows], labels[part_rows], len(x))
                 for part, part_rows in zip(parts, rows)]
        try:
            outcome = _run_in_step(steps, runner)
        finally:
            for part in parts:
                for dropout in part.dropouts:
                    dropout.draws = None
        np.add(self.flat_grads, parts[1].flat_grads, out=self.flat_grads)
        self._add_l2_gradient()
        (loss_0, correct_0), (loss_1, correct_1) = outcome
        return (loss_0 + loss_1) / len(x), correct_0 + correct_1

    @property
    def second_part_layers(self) -> list[Layer]:
        """The layers a two-part step runs the batch's second half through (none before
        the first such step); their outputs are that half's."""
        return self._second_part.layers if self._second_part is not None else []

    def _second(self) -> _Part:
        """The layers of a step's second part: the same weights (and moving statistics),
        gradients of their own."""
        if self._second_part is None:
            flat_grads = np.zeros_like(self.flat_grads)
            shapes = [grad.shape for grad in self._grads.values()]
            grads = dict(zip(self._grads, _views(flat_grads, shapes)))
            layers = self._conv_layers(self.config, grads) + self._dense_layers(self.config,
                                                                                  grads)
            self._second_part = _Part(layers, SoftmaxCrossEntropy(), flat_grads,
                                      moves_statistics=False)
        return self._second_part

    def penalty(self) -> float:
        return l2_penalty(self.kernels, self.l2)

    # ---- inference: fresh arrays, no layer state touched ---------------------------

    def infer(self, x: np.ndarray) -> np.ndarray:
        """(n, 784) -> (n, 10) logits; safe to call while another thread trains."""
        logits = np.empty((len(x), NUM_CLASSES), dtype=self.dtype)
        for start in range(0, len(x), self.inference_chunk):
            a = x[start:start + self.inference_chunk]
            for layer in self.layers:
                if isinstance(layer, Dense):
                    W, b = layer.params
                    a = a @ W
                    a += b
                elif isinstance(layer, Activation):
                    a = layer.apply(a, out=a)       # `a` is always a fresh array here
                elif not isinstance(layer, Dropout):
                    a = layer.infer(a)
            logits[start:start + len(a)] = a
        return logits


    # ---- inside the network: every layer's output, input gradients -------------------

    @property
    def taps(self) -> list[Tap]:
        """One entry per hidden layer after its activation, then the logits, named for
        people ("conv 1 (3x3, 32 filters)", "dense 1 (256 units)", "logits")."""
        taps: list[Tap] = []
        convs = denses = 0
        conv_name = ""
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            if isinstance(layer, Conv2D):
                convs += 1
                kh, kw, _, filters = layer.params[0].shape
                conv_name = f"conv {convs} ({kh}x{kw}, {filters} filters)"
            elif isinstance(layer, BatchNorm):
                taps.append(Tap(conv_name, "conv", index, rectify=True))
            elif isinstance(layer, Activation) and isinstance(self.layers[index - 1],
                                                              MaxPool2D):
                taps.append(Tap(f"pool {convs} (2x2 max)", "pool", index))
            elif isinstance(layer, Activation):
                units = self.layers[index - 1].params[0].shape[1]
                taps.append(Tap(f"dense {denses} ({units} units)", "dense", index))
            elif isinstance(layer, Dense):
                denses += 1
                if index == last:
                    taps.append(Tap("logits", "logits", index))
        return taps

    def layer_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """(n, 784) -> each tap's values in inference mode, in fresh arrays; chunked
        like `infer`, so a whole test set fits in memory."""
        parts = [self._walk(x[start:start + self.inference_chunk], None)[0]
                 for start in range(0, len(x), self.inference_chunk)]
        if not parts:
            parts = [self._walk(x, None)[0]]
        return [np.concatenate(column) for column in zip(*parts)]

    def input_gradient(self, x: np.ndarray, output_weights: np.ndarray, tap: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(tap's values, d sum(values * output_weights) / dx (n, 784)), in inference
        mode, by each layer's own backward (`Layer.trace`): no parameter gradient,
        buffer or optimizer state of the stack is touched. For small batches."""
        entries, backward = self._walk(x, tap)
        values = entries[-1]
        grad = np.array(np.broadcast_to(output_weights, values.shape), dtype=self.dtype)
        return values, backward(grad).reshape(len(x), -1)

    def _walk(self, x: np.ndarray, until: int | None
              ) -> tuple[list[np.ndarray], Callable[[np.ndarray], np.ndarray]]:
        """The taps' values up to tap `until` (all, for None), and for `until` the map
        from d/d(its values) to d/dx."""
        taps = self.taps
        chosen = taps[until] if until is not None else None
        stop = chosen.after if chosen is not None else len(self.layers) - 1
        reads = {tap.after: tap for tap in taps}
        entries: list[np.ndarray] = []
        backs: list[Callable[[np.ndarray], np.ndarray]] = []
        a = x
        for index, layer in enumerate(self.layers[:stop + 1]):
            a, back = layer.trace(a)
            if chosen is not None:      # else let each twin's buffers go once used
                backs.append(back)
            tap = reads.get(index)
            if tap is None:
                continue
            if tap.rectify:
                rectified, back = ReLU().trace(a)
                entries.append(rectified)
                if index == stop and chosen is not None:
                    backs.append(back)
            else:
                entries.append(a)

        def backward(grad: np.ndarray) -> np.ndarray:
            for back in reversed(backs):
                grad = back(grad)
            return grad

        return entries, backward

class _Part:
    """One half of a batch: its layers (sharing the weights) and its loss, filling
    `flat_grads` with its rows' share of the batch's gradient. Only the first half's
    batch norms move the moving statistics."""

    def __init__(self, layers: list[Layer], loss: SoftmaxCrossEntropy,
                 flat_grads: np.ndarray, *, moves_statistics: bool = True) -> None:
        self.layers, self.loss, self.flat_grads = layers, loss, flat_grads
        self.moves_statistics = moves_statistics
        self.dropouts = [layer for layer in layers if isinstance(layer, Dropout)]

    def step(self, x: np.ndarray, labels: np.ndarray, batch_size: int) -> Generator:
        """Forward and backward of these rows, stopping at each batch norm: it yields the
        layer's sums over these rows and resumes with the batch's totals. Returns (sum
        of the rows' losses, rows right); the gradients are of the batch's mean loss."""
        for layer in self.layers:
            if isinstance(layer, BatchNorm):
                totals = yield layer.moment_sums(x)
                x = layer.normalise(x, totals, update_statistics=self.moves_statistics)
            else:
                x = layer.forward(x, True)
        loss = self.loss.forward(x, labels) * len(labels)
        correct = int(np.count_nonzero(x.argmax(axis=1) == labels))
        grad = self.loss.backward(batch_size)
        for layer in reversed(self.layers):
            if isinstance(layer, BatchNorm):
                totals = yield layer.gradient_sums(grad)
                grad = layer.input_gradient(grad, totals)
            else:
                grad = layer.backward(grad)
            if grad is None:
                break
        return loss, correct


def _run_in_step(steps: list[Generator], runner: PartRunner) -> list[Any]:
    """Run the halves' `_Part.step`s side by side to their ends, adding what they yield
    (in part order, so every run adds alike) and sending each the totals. Each stretch
    between two meetings is one `runner.run`, so either thread may run either half's
    stretch: a thread starved by other work never holds the other one up."""
    sent: list[Any] = [None, None]
    yielded: list[Any] = [None, None]
    returned: list[Any] = [None, None]

    def advance(index: int) -> None:
        try:
            yielded[index] = steps[index].send(sent[index])
        except StopIteration as end:
            returned[index] = end.value
            yielded[index] = None

    while True:
        runner.run(advance)
        if yielded[0] is None or yielded[1] is None:
            if yielded[0] is not None or yielded[1] is not None:
                raise RuntimeError("the halves of a step stopped at different layers")
            return returned
        totals = tuple(first + second for first, second in zip(*yielded))
        sent = [totals, totals]


def _forward(layers: list[Layer], x: np.ndarray, training: bool,
             batch_statistics: bool | None) -> np.ndarray:
    for layer in layers:
        if batch_statistics is not None and isinstance(layer, BatchNorm):
            x = layer.forward(x, batch_statistics, update_statistics=False)
        else:
            x = layer.forward(x, training)
    return x


def _backward(layers: list[Layer], grad: np.ndarray) -> None:
    for layer in reversed(layers):
        grad = layer.backward(grad)
        if grad is None:            # the first weighted layer: the rest is the image
            break


def _dropout(config: TrainConfig, units: int) -> Dropout:
    dropout = Dropout(config.dropout)
    dropout.units = units
    return dropout


def _total(shapes: list[tuple[int, ...]]) -> int:
    return sum(math.prod(shape) for shape in shapes)


def _views(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Consecutive pieces of `flat`, reshaped (views, not copies)."""
    views, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(flat[start:start + size].reshape(shape))
        start += size
    return views

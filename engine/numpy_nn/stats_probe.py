"""What the NumPy engine's batch loop hands the statistics recorder after a sampled batch's
backward pass: each layer's gradient norm and each ReLU layer's output, read from the
arrays the forward and backward passes already filled (engine.training_stats keeps the epoch's
totals)."""

from __future__ import annotations

import numpy as np

from engine.numpy_nn.layers import ReLU
from engine.numpy_nn.stack import Stack
from engine.training_stats import StatsRecorder


class StackProbe:
    """Reads one batch's statistics off `stack` into `recorder` (None: recording off)."""

    def __init__(self, stack: Stack, recorder: StatsRecorder | None) -> None:
        self.recorder = recorder
        self._stack = stack
        if recorder is None:
            return
        # Flat views: a dot product per array is the cheapest squared norm NumPy has.
        self._grads = [[stack.grads[index].reshape(-1) for index in layer.trainable]
                       for layer in recorder.layers]
        self._norms = np.zeros(len(recorder.layers))
        self._relus = _relus(stack.layers)
        self._second_relus: list[ReLU] | None = None    # once the stack has made them
        if len(self._relus) != len(recorder.relu_layers):
            raise ValueError(f"{len(self._relus)} ReLU layers in the stack, "
                             f"{len(recorder.relu_layers)} in the statistics' layout")

    def after_backward(self, rows: int) -> None:
        """Call once per batch of `rows` images, once `stack.flat_grads` holds its whole
        gradient and before the update."""
        recorder = self.recorder
        if recorder is None:
            return
        if not recorder.samples_next:
            recorder.skip_batch()
            return
        norms = self._norms
        for index, layer in enumerate(self._grads):
            norms[index] = sum(np.dot(grad, grad) for grad in layer)
        np.sqrt(norms, out=norms)
        outputs = [relu.output for relu in self._relus]
        recorder.add_batch(norms, outputs)
        if outputs and len(outputs[0]) < rows:
            # The step ran the batch in two halves (engine/numpy_nn/parts.py): the
            # stack's own layers saw the first, a second set of layers the second.
            if self._second_relus is None:
                self._second_relus = _relus(self._stack.second_part_layers)
            recorder.add_activations([relu.output for relu in self._second_relus])


def _relus(layers: list) -> list[ReLU]:
    return [layer for layer in layers if isinstance(layer, ReLU)]

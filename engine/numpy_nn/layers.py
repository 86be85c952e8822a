"""The NumPy engine's layers: Dense, the activations and inverted Dropout, with their
initialisers (the image layers are in `conv.py` and `batchnorm.py`). Each layer computes
its own forward and backward pass; the loss, the optimizers and the training loop live
elsewhere.

Contract: `forward(x, training)` keeps what `backward` needs; `backward(grad)` fills
`grads` (mirroring `params`) and returns the gradient for the layer below. Outputs are
written into buffers the layer reuses, so an output is valid only until the layer's next
call; copy it if you keep it. `trace(x)` gives the input gradient alone, in inference
mode, touching nothing of the layer's (see there).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np

# Keras's LeakyReLU defaults to 0.3; we use the common 0.01 and the Keras engine passes
# the same value, so both engines compute the same function.
LEAKY_RELU_SLOPE = 0.01


def he_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Keras's `he_uniform`: U(-limit, limit) with limit = sqrt(6 / fan_in)."""
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Keras's `glorot_uniform`: U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out))."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


INITIALISERS = {"he": he_uniform, "glorot": glorot_uniform}


class Layer:
    """A step of the network. Layers without weights keep `params` and `grads` empty."""

    def __init__(self) -> None:
        self.params: list[np.ndarray] = []
        self.grads: list[np.ndarray] = []
        self._buffers: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def trace(self, x: np.ndarray
              ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """The inference-mode output for `x`, and the map from d/d(output) to d/d(x).

        The layer's own forward and backward run on a twin that shares the weights but
        has buffers and parameter gradients of its own: the layer's state, its `grads`
        and so the optimizer are untouched, a training pass may run beside it, and the
        twin's arrays stay valid. Call the map once; it may reuse the gradient given.
        """
        twin = copy.copy(self)
        twin._buffers = {}
        twin.grads = [np.empty_like(grad) for grad in self.grads]
        if "input_gradient" in vars(twin):
            twin.input_gradient = True      # a first layer's, which training skips
        if "corner_major" in vars(twin):
            twin.corner_major = False       # traced maps are read as images (conv.py)
        return twin.forward(x, False), twin.backward

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A reusable array; reallocated only when the batch size (shape) changes."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._buffers[name] = np.empty(shape, dtype=dtype)
        return buffer


class Dense(Layer):
    """Z = X @ W + b with W of shape (in, out), Keras's kernel layout."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, *,
                 input_gradient: bool = True,
                 grads: list[np.ndarray] | None = None) -> None:
        """`grads` may pass the arrays to fill (e.g. views into one flat buffer)."""
        super().__init__()
        self.params = [kernel, bias]
        self.grads = grads if grads is not None else [np.zeros_like(kernel),
                                                      np.zeros_like(bias)]
        # The first layer's input is the image: nobody needs its gradient, and skipping
        # it saves the largest matrix product of the backward pass.
        self.input_gradient = input_gradient
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        W, b = self.params                                     # (in, out), (out,)
        self._x = x                                            # (batch, in)
        z = self._buffer("z", (x.shape[0], W.shape[1]), W.dtype)
        np.matmul(x, W, out=z)
        z += b
        return z                                               # (batch, out)

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        W = self.params[0]
        x = self._x
        np.matmul(x.T, grad, out=self.grads[0])                # (in, out)
        np.sum(grad, axis=0, out=self.grads[1])                # (out,)
        if not self.input_gradient:
            return None
        dx = self._buffer("dx", x.shape, W.dtype)
        np.matmul(grad, W.T, out=dx)                           # (batch, in)
        return dx

    def trace(self, x: np.ndarray
              ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        # Without the twin: an affine map's input gradient needs nothing kept, and
        # skipping the kernel's gradient saves most of the backward pass.
        W, b = self.params                                     # (in, out), (out,)
        return x @ W + b, lambda grad: grad @ W.T


class Activation(Layer):
    """An elementwise non-linearity whose derivative is a function of its output.

    With `inplace` the layer overwrites its input and its incoming gradient; the network
    turns that on because the input is a Dense layer's private buffer. Left off, as for
    a standalone layer, the caller's arrays are never touched.
    """

    def __init__(self, *, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace
        self._y: np.ndarray | None = None

    def _out(self, name: str, like: np.ndarray) -> np.ndarray:
        return like if self.inplace else self._buffer(name, like.shape, like.dtype)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._y = self._apply(x, self._out("y", x))
        return self._y

    @property
    def output(self) -> np.ndarray | None:
        """The last forward pass's output; valid until the layer's next call."""
        return self._y

    def apply(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The function alone, keeping nothing: safe beside a training pass."""
        return self._apply(x, out)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return self._scale_gradient(grad, self._out("dx", grad))

    def _apply(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write f(x) into `out` (which may be x) using no buffer of the layer."""
        raise NotImplementedError

    def _scale_gradient(self, grad: np.ndarray, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class ReLU(Activation):
    def _apply(self, x, out):
        return np.maximum(x, 0, out=out)

    def _scale_gradient(self, grad, out):
        # Derivative 0 at x == 0, as TensorFlow's ReluGrad.
        return np.multiply(grad, self._y > 0, out=out)


class LeakyReLU(Activation):
    def __init__(self, slope: float = LEAKY_RELU_SLOPE, *, inplace: bool = False) -> None:
        super().__init__(inplace=inplace)
        self.slope = slope

    def _apply(self, x, out):
        # max(x, slope * x) is x for x > 0 and slope * x otherwise, as 0 < slope < 1.
        return np.maximum(x, x * x.dtype.type(self.slope), out=out)

    def _scale_gradient(self, grad, out):
        slope = grad.dtype.type(self.slope)
        negative = self._y <= 0
        np.copyto(out, grad)
        np.multiply(out, slope, out=out, where=negative)
        return out


class Sigmoid(Activation):
    def _apply(self, x, out):
        # 0.5 * (1 + tanh(x / 2)) equals 1 / (1 + exp(-x)) without exp overflowing.
        half = x.dtype.type(0.5)
        np.multiply(x, half, out=out)
        np.tanh(out, out=out)
        out += 1
        out *= half
        return out

    def _scale_gradient(self, grad, out):
        y = self._y
        derivative = self._buffer("derivative", y.shape, y.dtype)
        np.subtract(1, y, out=derivative)
        derivative *= y                                        # y (1 - y)
        return np.multiply(grad, derivative, out=out)


class Tanh(Activation):
    def _apply(self, x, out):
        return np.tanh(x, out=out)

    def _scale_gradient(self, grad, out):
        y = self._y
        derivative = self._buffer("derivative", y.shape, y.dtype)
        np.multiply(y, y, out=derivative)
        np.subtract(1, derivative, out=derivative)             # 1 - y^2
        return np.multiply(grad, derivative, out=out)


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh}


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability `rate` and scale the
    survivors by 1 / (1 - rate), so inference needs no rescaling.

    Never works in place: the activation below derives its gradient from its own output,
    which must stay undropped.
    """

    def __init__(self, rate: float, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.rng = rng if rng is not None else np.random.default_rng()
        self.mask: np.ndarray | None = None        # kept units scaled, dropped ones 0
        # Uniform numbers drawn for this layer's rows beforehand, when the batch is cut
        # in parts (parts.py): the masks then come from the same stream, in the same
        # order, as for the whole batch. Drawn here when None.
        self.draws: np.ndarray | None = None
        self.units: int | None = None               # input width, set by the stack
        self._active = False

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._active = training and self.rate > 0
        if not self._active:
            return x
        mask = self._buffer("mask", x.shape, x.dtype)
        draws = self.draws
        if draws is None:
            draws = self._buffer("draws", x.shape, np.float32)
            self.rng.random(out=draws, dtype=np.float32)
        np.greater_equal(draws, np.float32(self.rate), out=mask, casting="unsafe")
        mask *= x.dtype.type(1.0 / (1.0 - self.rate))
        self.mask = mask
        return np.multiply(x, mask, out=self._buffer("y", x.shape, x.dtype))

    def forward_with_mask(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Training pass with a given (already scaled) mask, for gradient checks."""
        self._active = True
        self.mask = mask
        return x * mask

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if not self._active:
            return grad
        return np.multiply(grad, self.mask, out=self._buffer("dx", grad.shape, grad.dtype))

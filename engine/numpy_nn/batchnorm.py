"""Batch normalisation with Keras 3's semantics, per channel (the last axis).

Training: normalise by the batch's mean and biased variance over every axis but the
last, and fold both into the moving statistics with
`moving = moving * momentum + batch * (1 - momentum)`; Keras 3 (tf.nn.moments) feeds the
moving variance the same biased variance. Inference: normalise by the moving
statistics. The moving statistics are state, never trained: they live in `state`, not
`params`, so the optimizer and L2 never see them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.numpy_nn.layers import Layer

# What engine/keras_nn/build.py passes (momentum) and Keras's default (epsilon).
MOMENTUM = 0.9
EPSILON = 1e-3


class BatchNorm(Layer):
    """y = gamma * (x - mean) / sqrt(variance + epsilon) + beta, per channel."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, moving_mean: np.ndarray,
                 moving_variance: np.ndarray, *, momentum: float = MOMENTUM,
                 epsilon: float = EPSILON, grads: list[np.ndarray] | None = None) -> None:
        super().__init__()
        self.params = [gamma, beta]
        self.grads = grads if grads is not None else [np.zeros_like(gamma),
                                                      np.zeros_like(beta)]
        self.state = [moving_mean, moving_variance]
        self.momentum, self.epsilon = momentum, epsilon
        self._batch_statistics = False

    def forward(self, x: np.ndarray, training: bool, *,
                update_statistics: bool = True) -> np.ndarray:
        """With `training`, normalise by the batch and, if `update_statistics`, move the
        moving statistics towards it."""
        gamma, beta = self.params
        scalar = x.dtype.type
        rows = x.reshape(-1, x.shape[-1])                      # (batch*h*w, c)
        centred = self._buffer("centred", rows.shape, x.dtype)
        y = self._buffer("y", x.shape, x.dtype)
        y_rows = y.reshape(rows.shape)
        chunks = _chunks(rows)
        if training:
            mean = _column_mean(rows)                          # (c,)
            scratch = self._buffer("scratch", (_piece_rows(chunks), rows.shape[1]), x.dtype)
            squares = np.zeros(rows.shape[1], np.float64)      # (c,)
            for part in chunks:
                np.subtract(rows[part], mean, out=centred[part])
                square = scratch[:part.stop - part.start]
                squares += _column_sum64(np.multiply(centred[part], centred[part],
                                                     out=square))
            variance = (squares / len(rows)).astype(x.dtype)
            if update_statistics:
                # Keras's order of operations, each statistic written once, so that a
                # prediction in another thread never reads a half-updated one.
                momentum, rest = scalar(self.momentum), scalar(1 - self.momentum)
                for moving, batch in zip(self.state, (mean, variance)):
                    np.add(moving * momentum, batch * rest, out=moving)
        else:
            mean, variance = self.state
            np.subtract(rows, mean, out=centred)
        self._batch_statistics = training
        self._inverse_std = 1 / np.sqrt(variance + scalar(self.epsilon))    # (c,)
        # x-hat is never stored: backward works from `centred` and folds the inverse
        # standard deviation into per-channel factors, which saves a pass each way.
        self._centred = centred
        scale = gamma * self._inverse_std                      # (c,)
        for part in chunks:
            np.multiply(centred[part], scale, out=y_rows[part])
            y_rows[part] += beta
        return y                                               # (batch, h, w, c)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        gamma = self.params[0]
        centred, inverse_std = self._centred, self._inverse_std     # (m, c), (c,)
        grad_rows = grad.reshape(centred.shape)
        chunks = _chunks(centred)
        scratch = self._buffer("scratch", (_piece_rows(chunks), centred.shape[1]), grad.dtype)
        # Both sums in one loop, so each piece of the gradient is read from memory once.
        products = np.zeros(centred.shape[1], np.float64)      # sum of g * centred, (c,)
        sums = np.zeros(centred.shape[1], np.float64)          # sum of g, (c,)
        for part in chunks:
            product = scratch[:part.stop - part.start]
            products += _column_sum64(np.multiply(grad_rows[part], centred[part], out=product))
            sums += _column_sum64(grad_rows[part])
        self.grads[0][...] = products.astype(grad.dtype) * inverse_std     # d gamma, (c,)
        self.grads[1][...] = sums.astype(grad.dtype)                       # d beta, (c,)
        dx = self._buffer("dx", grad.shape, grad.dtype)
        dx_rows = dx.reshape(centred.shape)
        scale = gamma * inverse_std                                 # (c,)
        if not self._batch_statistics:
            # The moving statistics are constants: the layer is an affine map.
            np.multiply(grad_rows, scale, out=dx_rows)
            return dx
        # The batch's mean and variance depend on every row:
        # dx = scale * (g - mean(g) - x_hat * mean(g * x_hat)), with x_hat = centred *
        # inverse_std, as scale * g - centred * slope - offset.
        count = grad.dtype.type(len(centred))
        slope = scale * inverse_std * (self.grads[0] / count)      # (c,)
        offset = scale * (self.grads[1] / count)                    # (c,)
        for part in chunks:
            product = scratch[:part.stop - part.start]
            np.multiply(grad_rows[part], scale, out=dx_rows[part])
            dx_rows[part] -= np.multiply(centred[part], slope, out=product)
            dx_rows[part] -= offset
        return dx

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The inference pass in a fresh array: one multiply-add per value."""
        gamma, beta = self.params
        moving_mean, moving_variance = self.state
        scale = gamma / np.sqrt(moving_variance + x.dtype.type(self.epsilon))
        y = x * scale
        y += beta - moving_mean * scale
        return y

    def trace(self, x: np.ndarray
              ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Inference mode: with the moving statistics fixed the layer is affine, so its
        input gradient is the per-channel scale alone (no twin, no gamma gradient)."""
        scale = self.params[0] / np.sqrt(self.state[1] + x.dtype.type(self.epsilon))
        return self.infer(x), lambda grad: grad * scale


def _column_sum(rows: np.ndarray) -> np.ndarray:
    return _column_sum64(rows).astype(rows.dtype)


def _column_sum64(rows: np.ndarray) -> np.ndarray:
    """Sum over rows (m, c), accumulated in float64: NumPy adds the rows of a float32
    array one by one, which drifts by ~1e-4 of a variance over 100,000 rows, and the
    batch's statistics feed every gradient below through near-cancelling sums.

    Summed as (m / k, k * c) rows of ~1,024 values, then folded: a long contiguous inner
    loop, four times faster than c values at a time (measured for c = 16)."""
    count, channels = rows.shape
    fold = max(1, 1024 // channels)
    while count % fold:
        fold //= 2
    wide = rows.reshape(count // fold, fold * channels)
    return wide.sum(axis=0, dtype=np.float64).reshape(fold, channels).sum(axis=0)


# Rows per piece of a multi-pass loop: ~256 KB of float32 at 16 channels, so the later
# passes over a piece read it from L2 cache instead of memory. 100,352 rows (batch 128
# at 28x28) made each pass over the whole array cost ~1 ms (measured).
CHUNK_VALUES = 1 << 16


def _chunks(rows: np.ndarray) -> list[slice]:
    """Row slices covering `rows` (m, c), each about CHUNK_VALUES values."""
    count, channels = rows.shape
    step = max(1, CHUNK_VALUES // max(channels, 1))
    return [slice(start, min(start + step, count)) for start in range(0, count, step)]


def _piece_rows(chunks: list[slice]) -> int:
    """Rows of the largest piece: a scratch buffer's length (0 for an empty batch)."""
    return chunks[0].stop - chunks[0].start if chunks else 0


def _column_mean(rows: np.ndarray) -> np.ndarray:
    return _column_sum(rows) / rows.dtype.type(len(rows))

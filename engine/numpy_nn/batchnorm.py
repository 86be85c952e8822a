"""Batch normalisation with Keras 3's semantics, per channel (the last axis).

Training: normalise by the batch's mean and biased variance over every axis but the
last, and fold both into the moving statistics with
`moving = moving * momentum + batch * (1 - momentum)`; Keras 3 (tf.nn.moments) feeds the
moving variance the same biased variance. Inference: normalise by the moving
statistics. The moving statistics are state, never trained: they live in `state`, not
`params`, so the optimizer and L2 never see them.
"""

from __future__ import annotations

import threading

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
        # In a step cut in parts (see parts.py) each part's layer sees some rows of the
        # batch; `shared` adds its per-channel sums to the other parts' ones.
        self.shared: PartSums | None = None
        self.part = 0

    def _total(self, phase: str, sums: tuple) -> tuple:
        """`sums` added over the parts of the step, or as they are outside one."""
        if self.shared is None or not self.shared.active:
            return sums
        return self.shared.total(phase, self.part, sums)

    def forward(self, x: np.ndarray, training: bool, *,
                update_statistics: bool = True) -> np.ndarray:
        """With `training`, normalise by the batch and, if `update_statistics`, move the
        moving statistics towards it."""
        gamma, beta = self.params
        scalar = x.dtype.type
        rows = x.reshape(-1, x.shape[-1])                      # (batch*h*w, c)
        wide, fold = _wide(rows)                               # (m / fold, fold*c)
        centred = self._buffer("centred", wide.shape, x.dtype)
        y = self._buffer("y", x.shape, x.dtype)
        y_wide = y.reshape(wide.shape)
        chunks = _chunks(wide)
        if training:
            mean, variance = self._batch_moments(wide, fold, chunks)
            if update_statistics and self.part == 0:
                # Keras's order of operations, each statistic written once, so that a
                # prediction in another thread never reads a half-updated one.
                momentum, rest = scalar(self.momentum), scalar(1 - self.momentum)
                for moving, batch in zip(self.state, (mean, variance)):
                    np.add(moving * momentum, batch * rest, out=moving)
        else:
            mean, variance = self.state
        self._batch_statistics = training
        self._inverse_std = 1 / np.sqrt(variance + scalar(self.epsilon))    # (c,)
        # x-hat is never stored: backward works from `centred` and folds the inverse
        # standard deviation into per-channel factors, which saves a pass each way.
        self._centred, self._fold, self._rows = centred, fold, len(rows)
        mean_wide = np.tile(mean, fold)
        scale, shift = np.tile(gamma * self._inverse_std, fold), np.tile(beta, fold)
        for part in chunks:    # both writes of a piece while it is in cache
            np.subtract(wide[part], mean_wide, out=centred[part])
            np.multiply(centred[part], scale, out=y_wide[part])
            y_wide[part] += shift
        return y                                               # (batch, h, w, c)

    def _batch_moments(self, wide: np.ndarray, fold: int, chunks: list[slice]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """The batch's mean and biased variance per channel, in one pass over the rows.

        Sums of d and d^2 with d = x - moving mean, accumulated in float64: E[d^2] -
        E[d]^2 loses only about (mean - moving mean)^2 / variance times float32's
        rounding, and the moving mean is near the batch's. One pass (and, with the
        batch in parts, one meeting) instead of a pass for the mean and another for the
        variance."""
        dtype = wide.dtype
        reference = self.state[0].copy()                       # (c,)
        reference_wide = np.tile(reference, fold)
        scratch = self._buffer("scratch", (_piece_rows(chunks), wide.shape[1]), dtype)
        sums = np.zeros(wide.shape[1], np.float64)
        squares = np.zeros(wide.shape[1], np.float64)
        for part in chunks:
            d = np.subtract(wide[part], reference_wide, out=scratch[:part.stop - part.start])
            sums += d.sum(axis=0)
            squares += np.multiply(d, d, out=d).sum(axis=0)
        count, sums, squares = self._total("moments", (len(wide) * fold,
                                                       _folded(sums, fold),
                                                       _folded(squares, fold)))
        offset = sums / count                                  # mean - reference, float64
        mean = (reference + offset).astype(dtype)
        variance = np.maximum(squares / count - offset * offset, 0).astype(dtype)
        return mean, variance

    def backward(self, grad: np.ndarray) -> np.ndarray:
        gamma = self.params[0]
        centred, inverse_std, fold = self._centred, self._inverse_std, self._fold
        grad_wide = grad.reshape(centred.shape)                # (m / fold, fold*c)
        chunks = _chunks(centred)
        scratch = self._buffer("scratch", (_piece_rows(chunks), centred.shape[1]), grad.dtype)
        # Both sums in one loop, so each piece of the gradient is read from memory once.
        products = np.zeros(centred.shape[1], np.float64)      # sum of g * centred
        sums = np.zeros(centred.shape[1], np.float64)          # sum of g
        for part in chunks:
            product = scratch[:part.stop - part.start]
            products += np.multiply(grad_wide[part], centred[part], out=product).sum(axis=0)
            sums += grad_wide[part].sum(axis=0)
        products, sums = _folded(products, fold), _folded(sums, fold)      # (c,)
        # This part's share of d gamma and d beta; the parts' grads are summed later.
        self.grads[0][...] = products.astype(grad.dtype) * inverse_std
        self.grads[1][...] = sums.astype(grad.dtype)
        dx = self._buffer("dx", grad.shape, grad.dtype)
        dx_wide = dx.reshape(centred.shape)
        scale = gamma * inverse_std                                 # (c,)
        if not self._batch_statistics:
            # The moving statistics are constants: the layer is an affine map.
            np.multiply(grad_wide, np.tile(scale, fold), out=dx_wide)
            return dx
        # The batch's mean and variance depend on every row:
        # dx = scale * (g - mean(g) - x_hat * mean(g * x_hat)), with x_hat = centred *
        # inverse_std, as scale * g - centred * slope - offset.
        rows, products, sums = self._total("backward", (self._rows, products, sums))
        count = grad.dtype.type(rows)
        d_gamma = products.astype(grad.dtype) * inverse_std         # whole batch, (c,)
        slope = np.tile(scale * inverse_std * (d_gamma / count), fold)
        offset = np.tile(scale * (sums.astype(grad.dtype) / count), fold)
        scale = np.tile(scale, fold)
        for part in chunks:
            product = scratch[:part.stop - part.start]
            np.multiply(grad_wide[part], scale, out=dx_wide[part])
            dx_wide[part] -= np.multiply(centred[part], slope, out=product)
            dx_wide[part] -= offset
        return dx

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The inference pass in a fresh array: one multiply-add per value."""
        gamma, beta = self.params
        moving_mean, moving_variance = self.state
        scale = gamma / np.sqrt(moving_variance + x.dtype.type(self.epsilon))
        y = x * scale
        y += beta - moving_mean * scale
        return y


class PartSums:
    """Where the parts of a step (each in its thread) add up one batch-norm layer's
    per-channel sums: each part leaves its own and gets the totals, added in part order
    so that every part, and every run, gets the same numbers."""

    def __init__(self, barrier: threading.Barrier) -> None:
        self.barrier = barrier
        self.active = False             # only within a step cut in parts
        self._left: dict[tuple[str, int], tuple] = {}

    def total(self, phase: str, part: int, sums: tuple) -> tuple:
        # Each phase has its own slots and a step's parts end together, so no slot is
        # written again before every part has read it.
        self._left[phase, part] = sums
        self.barrier.wait()
        first, second = self._left[phase, 0], self._left[phase, 1]
        return tuple(a + b for a, b in zip(first, second))


def _wide(rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows (m, c) as (m / fold, fold * c): fold consecutive rows side by side, about
    1,024 values a row. Every per-channel operation then runs over long contiguous rows
    (the per-channel vectors tiled `fold` times) where NumPy would otherwise loop over
    runs of only c values: four times faster for c = 16 (measured)."""
    count, channels = rows.shape
    fold = max(1, 1024 // max(channels, 1))
    while count % fold:
        fold //= 2
    return rows.reshape(count // fold, fold * channels), fold


def _folded(wide_sums: np.ndarray, fold: int) -> np.ndarray:
    """Per-channel totals from the column sums of a `_wide` array."""
    return wide_sums.reshape(fold, -1).sum(axis=0)


# Values per piece of a multi-pass loop: ~256 KB of float32, so the later passes over a
# piece read it from L2 cache instead of memory. 100,352 rows (batch 128
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

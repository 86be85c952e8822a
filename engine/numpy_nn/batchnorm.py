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
        self._reference = moving_mean.copy()
        self._centred_input: np.ndarray | None = None

    # Each pass is two phases: this part's per-channel sums, then the work that needs
    # the batch's totals. A batch cut in halves (parts.py) adds the halves' sums between
    # the phases; a whole batch passes its own sums straight on.

    def forward(self, x: np.ndarray, training: bool, *,
                update_statistics: bool = True) -> np.ndarray:
        """With `training`, normalise by the batch and, if `update_statistics`, move the
        moving statistics towards it."""
        return self.normalise(x, self.moment_sums(x) if training else None,
                              update_statistics=update_statistics)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return self.input_gradient(grad, self.gradient_sums(grad))

    def moment_sums(self, x: np.ndarray) -> tuple:
        """(rows, sums of d, sums of d^2) per channel, d = x - the moving mean, in float64.

        One pass over the rows: E[d^2] - E[d]^2 loses only about (mean - moving mean)^2
        / variance times float32's rounding, and the moving mean is near the batch's.
        Accumulated in float64: NumPy adds the rows of a float32 array one by one, which
        drifts by ~1e-4 of a variance over 100,000 rows, and the batch's statistics feed
        every gradient below through near-cancelling sums. d is kept: `normalise` and
        the backward pass work from it instead of subtracting the batch's mean again."""
        wide, fold = _wide(x.reshape(-1, x.shape[-1]))
        chunks = _chunks(wide)
        self._reference = self.state[0].copy()     # `normalise` may move the state
        reference = _tiled(self._reference.astype(x.dtype), fold, chunks)
        centred = self._buffer("centred", wide.shape, x.dtype)
        self._centred_input = x
        sums = np.zeros(wide.shape[1], np.float64)
        squares = np.zeros(wide.shape[1], np.float64)
        for part in chunks:           # a few dozen rows summed in float32 at a time
            d = np.subtract(wide[part], reference[:_rows(part)], out=centred[part])
            sums += d.sum(axis=0)
            squares += np.einsum("ij,ij->j", d, d)      # no d * d array written
        return len(wide) * fold, _folded(sums, fold), _folded(squares, fold)

    def normalise(self, x: np.ndarray, moment_sums: tuple | None, *,
                  update_statistics: bool = True) -> np.ndarray:
        """The forward pass given the batch's `moment_sums` (this layer's own
        `moment_sums(x)` having run, the other part's sums perhaps added), or by the
        moving statistics when None."""
        gamma, beta = self.params
        scalar = x.dtype.type
        rows = x.reshape(-1, x.shape[-1])                      # (batch*h*w, c)
        wide, fold = _wide(rows)                               # (m / fold, fold*c)
        centred = self._buffer("centred", wide.shape, x.dtype)
        if moment_sums is not None:
            count, sums, squares = moment_sums
            offset = sums / count                              # mean - moving mean
            mean = (self._reference + offset).astype(x.dtype)
            variance = np.maximum(squares / count - offset * offset, 0).astype(x.dtype)
            if update_statistics:
                # Keras's order of operations, each statistic written once, so that a
                # prediction in another thread never reads a half-updated one.
                momentum, rest = scalar(self.momentum), scalar(1 - self.momentum)
                for moving, batch in zip(self.state, (mean, variance)):
                    np.add(moving * momentum, batch * rest, out=moving)
            reference = self._reference
        else:
            mean, variance = self.state
            offset = np.zeros(x.shape[-1])
            reference = mean
        chunks = _chunks(wide)
        if moment_sums is None or self._centred_input is not x:
            reference = _tiled(reference.astype(x.dtype), fold, chunks)
            for part in chunks:
                np.subtract(wide[part], reference[:_rows(part)], out=centred[part])
        self._centred_input = None
        self._batch_statistics = moment_sums is not None
        self._inverse_std = 1 / np.sqrt(variance + scalar(self.epsilon))    # (c,)
        # `centred` is x less the reference, which is the mean less `offset` (float64,
        # per channel): x - mean = centred - offset. Folding `offset` into per-channel
        # constants saves a pass each way. x-hat is never stored: backward folds the
        # inverse standard deviation into per-channel factors too.
        self._centred, self._fold, self._offset = centred, fold, offset
        y = self._buffer("y", x.shape, x.dtype)
        y_wide = y.reshape(wide.shape)
        scale = gamma * self._inverse_std
        shift = _tiled((beta - offset * scale).astype(x.dtype), fold, chunks)
        scale = _tiled(scale, fold, chunks)
        for part in chunks:           # both writes of a piece while it is in cache
            np.multiply(centred[part], scale[:_rows(part)], out=y_wide[part])
            y_wide[part] += shift[:_rows(part)]
        return y                                               # (batch, h, w, c)

    def gradient_sums(self, grad: np.ndarray) -> tuple:
        """(rows, sums of g * (x - mean), sums of g) per channel in float64; fills
        `grads` with these rows' share of d gamma and d beta."""
        centred, fold = self._centred, self._fold
        grad_wide = grad.reshape(centred.shape)                # (m / fold, fold*c)
        # Both sums in one loop, so each piece of the gradient is read from memory once.
        products = np.zeros(centred.shape[1], np.float64)
        sums = np.zeros(centred.shape[1], np.float64)
        for part in _chunks(centred):
            products += np.einsum("ij,ij->j", grad_wide[part], centred[part])
            sums += grad_wide[part].sum(axis=0)
        products, sums = _folded(products, fold), _folded(sums, fold)      # (c,)
        products -= self._offset * sums                        # centred is x - mean + offset
        self.grads[0][...] = products.astype(grad.dtype) * self._inverse_std
        self.grads[1][...] = sums.astype(grad.dtype)
        return len(centred) * fold, products, sums

    def input_gradient(self, grad: np.ndarray, gradient_sums: tuple) -> np.ndarray:
        """d loss / d x given the batch's `gradient_sums`."""
        gamma = self.params[0]
        centred, inverse_std, fold = self._centred, self._inverse_std, self._fold
        grad_wide = grad.reshape(centred.shape)
        dx = self._buffer("dx", grad.shape, grad.dtype)
        dx_wide = dx.reshape(centred.shape)
        scale = gamma * inverse_std                                 # (c,)
        if not self._batch_statistics:
            # The moving statistics are constants: the layer is an affine map.
            np.multiply(grad_wide, np.tile(scale, fold), out=dx_wide)
            return dx
        # The batch's mean and variance depend on every row:
        # dx = scale * (g - mean(g) - x_hat * mean(g * x_hat)), with x_hat = (centred -
        # offset) * inverse_std, as scale * g - centred * slope - constant.
        rows, products, sums = gradient_sums
        count = grad.dtype.type(rows)
        d_gamma = products.astype(grad.dtype) * inverse_std         # whole batch, (c,)
        slope = scale * inverse_std * (d_gamma / count)
        constant = scale * (sums / rows) - self._offset * slope
        chunks = _chunks(centred)
        slope, scale = _tiled(slope, fold, chunks), _tiled(scale, fold, chunks)
        constant = _tiled(constant.astype(grad.dtype), fold, chunks)
        scratch = self._buffer("scratch", (_piece_rows(chunks), centred.shape[1]), grad.dtype)
        for part in chunks:
            height = _rows(part)
            product = scratch[:height]
            np.multiply(grad_wide[part], scale[:height], out=dx_wide[part])
            dx_wide[part] -= np.multiply(centred[part], slope[:height], out=product)
            dx_wide[part] -= constant[:height]
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


def _wide(rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows (m, c) as (m / fold, fold * c): fold consecutive rows side by side, about
    1,024 values a row. Every per-channel operation then runs over long contiguous rows
    (the per-channel vectors tiled `fold` times) where NumPy would otherwise loop over
    runs of only c values (the cnn preset's first block, 16 channels: forward and
    backward 13.5 -> 10 ms a batch, measured)."""
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


def _rows(part: slice) -> int:
    return part.stop - part.start


def _tiled(vector: np.ndarray, fold: int, chunks: list[slice]) -> np.ndarray:
    """A per-channel vector as a whole piece of a `_wide` array, (piece rows, fold * c).

    NumPy broadcasts a row over a piece through its general iterator, while operands
    of one shape take its plain loop: a third faster per pass (a multiply over the
    cnn preset's first block's 800,000 values: 0.24 -> 0.17 ms, measured)."""
    return np.tile(vector, (_piece_rows(chunks), fold))


def _piece_rows(chunks: list[slice]) -> int:
    """Rows of the largest piece: a scratch buffer's length (0 for an empty batch)."""
    return chunks[0].stop - chunks[0].start if chunks else 0

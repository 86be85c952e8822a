"""The NumPy engine's image layers: Conv2D (by im2col and one matrix product), 2x2
MaxPool2D and Reshape/Flatten, all channels-last (NHWC) with Keras's kernel layout
(kh, kw, in, out) and Keras's (TensorFlow's) padding rule, so weights copy across.

Same contract as `layers.py`: `forward` keeps what `backward` needs, outputs live in
reused buffers. `infer` is the stateless path for prediction beside a training thread.

A conv feeding a pool may hand it its maps corner-major (`corner_major`): shape (batch,
2, 2, h/2, w/2, c), element [n, a, b, i, j] being pixel (2i + a, 2j + b), so that each
corner of the pool's 2x2 windows is one contiguous block per image. NHWC's corners are
runs of only c values, and NumPy's passes over them cost 5-7 times as much per value
(the cnn preset's first pool: 2.5 -> 0.6 ms a half batch, forward and backward,
measured). Batch norm, per channel, does not care about the order of its rows.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from engine.numpy_nn.layers import Layer

PADDINGS = ("same", "valid")


def conv_geometry(size: int, kernel: int, stride: int, padding: str
                  ) -> tuple[int, int, int]:
    """(output size, padding before, padding after) along one axis, as TensorFlow does:
    "same" gives ceil(size / stride) outputs and puts the odd pixel of padding after."""
    if padding == "valid":
        return (size - kernel) // stride + 1, 0, 0
    if padding != "same":
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


class Conv2D(Layer):
    """2-D cross-correlation, Keras's Conv2D: y[n, i, j, o] = sum over (a, b, c) of
    x_padded[n, s*i + a, s*j + b, c] * kernel[a, b, c, o] (+ bias[o])."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None = None, *,
                 stride: int = 1, padding: str = "same", input_gradient: bool = True,
                 corner_major: bool = False,
                 grads: list[np.ndarray] | None = None) -> None:
        super().__init__()
        if kernel.ndim != 4 or stride < 1:
            raise ValueError(f"need a (kh, kw, in, out) kernel and a stride >= 1, got "
                             f"{kernel.shape} and {stride}")
        conv_geometry(1, 1, 1, padding)                       # refuses a bad padding now
        self.params = [kernel] if bias is None else [kernel, bias]
        self.grads = grads if grads is not None else [np.zeros_like(p) for p in self.params]
        self.stride, self.padding = stride, padding
        # As in Dense: the first layer's input is the image, whose gradient nobody needs.
        self.input_gradient = input_gradient
        # `forward`'s and `backward`'s maps corner-major (see the module's docstring);
        # `infer` and `trace` stay NHWC.
        self.corner_major = corner_major
        self._shape: tuple[int, ...] = ()

    def _geometry(self, x_shape: tuple[int, ...]) -> tuple[tuple[int, int, int], ...]:
        kh, kw = self.params[0].shape[:2]
        return (conv_geometry(x_shape[1], kh, self.stride, self.padding),
                conv_geometry(x_shape[2], kw, self.stride, self.padding))

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        kernel = self.params[0]                                 # (kh, kw, in, out)
        kh, kw, channels, filters = kernel.shape
        (out_h, top, bottom), (out_w, left, right) = self._geometry(x.shape)
        batch, height, width = x.shape[:3]
        self._shape = x.shape
        padded = x
        if top or bottom or left or right:
            # Zeroed once when (re)allocated: only the interior is ever written.
            padded = self._zeroed("padded", (batch, height + top + bottom,
                                             width + left + right, channels), x.dtype)
            padded[:, top:top + height, left:left + width] = x
        positions = _positions(batch, out_h, out_w, self.corner_major)
        if channels == 1:
            # One channel: window entries run only kw values along an NHWC row, while
            # an offset's whole plane runs ow values, so the columns are built
            # offset-major and used transposed (BLAS takes either): 4x faster for the
            # first layer (measured at 28x28).
            cols_t = self._buffer("cols_t", (kh, kw, *positions), x.dtype)
            planes = None
            if self.corner_major:
                planes = self._buffer("planes", _planes_shape(
                    padded.shape[1], self.stride, kw, positions), x.dtype)
            _im2col_single_channel(padded, self.stride, cols_t, self.corner_major, planes)
            self._cols = cols_t.reshape(kh * kw, -1).T          # (batch*oh*ow, kh*kw)
        else:
            cols = self._buffer("cols", (*positions, kh, kw, channels), x.dtype)
            _im2col(padded, self.stride, cols, self.corner_major)   # (..., kh, kw, in)
            self._cols = cols.reshape(-1, kh * kw * channels)   # (batch*oh*ow, kh*kw*in)
        y = self._buffer("y", (*positions, filters), x.dtype)
        np.matmul(self._cols, kernel.reshape(-1, filters), out=y.reshape(-1, filters))
        if len(self.params) == 2:
            y += self.params[1]
        return y                              # (batch, oh, ow, out), or corner-major

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        kernel = self.params[0]
        kh, kw, channels, filters = kernel.shape
        grad_rows = grad.reshape(-1, filters)                   # (batch*oh*ow, out)
        np.matmul(self._cols.T, grad_rows, out=self.grads[0].reshape(-1, filters))
        if len(self.params) == 2:
            np.sum(grad_rows, axis=0, out=self.grads[1])
        if not self.input_gradient:
            return None
        batch, height, width = self._shape[:3]
        (out_h, top, bottom), (out_w, left, right) = self._geometry(self._shape)
        if self.corner_major:
            # col2im adds whole NHWC rows; from corner-major rows it would add runs of
            # `channels` values. One reordering copy of the gradient is cheaper.
            nhwc = self._buffer("grad_nhwc", (batch, out_h, out_w, filters), grad.dtype)
            np.copyto(_corners(nhwc), grad)
            grad_rows = nhwc.reshape(-1, filters)
        # One product per kernel offset, offset-major, so that each of col2im's nine
        # additions reads one contiguous block instead of runs of `channels` values
        # strided by kh*kw*channels: twice as fast for 16 channels (measured).
        grad_cols = self._buffer("grad_cols", (kh * kw, len(grad_rows), channels), grad.dtype)
        np.matmul(grad_rows, kernel.reshape(kh * kw, channels, filters).transpose(0, 2, 1),
                  out=grad_cols)                                # (kh*kw, batch*oh*ow, in)
        dx = self._buffer("dx", self._shape, grad.dtype)
        _col2im(grad_cols.reshape(kh, kw, batch, out_h, out_w, channels), self.stride,
                (top, left), dx)
        return dx                                               # (batch, h, w, in)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The forward pass in fresh arrays, touching no buffer of the layer."""
        kernel = self.params[0]
        kh, kw, channels, filters = kernel.shape
        (out_h, top, bottom), (out_w, left, right) = self._geometry(x.shape)
        padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        cols = np.empty((len(x), out_h, out_w, kh, kw, channels), x.dtype)
        _im2col(padded, self.stride, cols)
        y = cols.reshape(-1, kh * kw * channels) @ kernel.reshape(-1, filters)
        if len(self.params) == 2:
            y += self.params[1]
        return y.reshape(len(x), out_h, out_w, filters)

    def cols_bytes_per_image(self, height: int, width: int, itemsize: int) -> int:
        """Size of one image's im2col rows: what bounds an inference chunk."""
        kh, kw, channels, _ = self.params[0].shape
        (out_h, _, _), (out_w, _, _) = self._geometry((1, height, width))
        return out_h * out_w * kh * kw * channels * itemsize

    def _zeroed(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._buffers[name] = np.zeros(shape, dtype=dtype)
        return buffer


def _positions(batch: int, out_h: int, out_w: int, corner_major: bool) -> tuple[int, ...]:
    """The leading axes of a conv's output (and of its columns)."""
    if not corner_major:
        return batch, out_h, out_w
    if out_h % 2 or out_w % 2:
        raise ValueError(f"corner-major maps need an even size, got {out_h}x{out_w}")
    return batch, 2, 2, out_h // 2, out_w // 2


def _corners(maps: np.ndarray) -> np.ndarray:
    """NHWC maps (n, h, w, c) viewed corner-major, (n, 2, 2, h/2, w/2, c)."""
    batch, height, width, channels = maps.shape
    return maps.reshape(batch, height // 2, 2, width // 2, 2, channels
                        ).transpose(0, 2, 4, 1, 3, 5)


def _position_blocks(target: np.ndarray, stride: int, corner_major: bool
                     ) -> list[tuple[np.ndarray, int, int, int]]:
    """(block, first row, first column, step) of the padded input each block of
    `target`'s output positions (n, oh, ow, ...) reads from, for an offset of (0, 0)."""
    if not corner_major:
        return [(target, 0, 0, stride)]
    return [(target[:, a, b], stride * a, stride * b, 2 * stride)
            for a in (0, 1) for b in (0, 1)]


def _im2col(padded: np.ndarray, stride: int, cols: np.ndarray,
            corner_major: bool = False) -> None:
    """Fill cols[n, i, j, a, b, c] = padded[n, stride*i + a, stride*j + b, c] (the
    positions (i, j) corner-major if asked).

    For a kernel row a, the (b, c) entries of a window are kw * c consecutive values of
    an NHWC row, so each row is one strided copy of runs that long: kh copies moving
    every image and pixel at once, twice as fast as one per (a, b) for 16 channels."""
    padded = np.ascontiguousarray(padded)     # the runs need NHWC rows without gaps
    channels = padded.shape[3]
    kh, kw = cols.shape[-3:-1]
    image, row, pixel, value = padded.strides
    rows = cols.reshape(*cols.shape[:-2], kw * channels)      # a view: cols is a buffer
    for block, top, left, step in _position_blocks(rows, stride, corner_major):
        batch, out_h, out_w = block.shape[:3]
        for a in range(kh):
            block[:, :, :, a] = as_strided(padded[:, top + a:, left:],
                                           shape=(batch, out_h, out_w, kw * channels),
                                           strides=(image, row * step, pixel * step, value),
                                           writeable=False)


def _im2col_single_channel(padded: np.ndarray, stride: int, cols_t: np.ndarray,
                           corner_major: bool = False, planes: np.ndarray | None = None
                           ) -> None:
    """Fill cols_t[a, b, n, i, j] = padded[n, stride*i + a, stride*j + b, 0] (the
    positions (i, j) corner-major if asked, using `planes` from `_planes_shape`)."""
    kh, kw = cols_t.shape[:2]
    if corner_major:
        _im2col_single_channel_corners(padded[..., 0], stride, cols_t, planes)
        return
    for a in range(kh):
        for b in range(kw):
            cols_t[a, b] = padded[:, a:a + stride * (cols_t.shape[3] - 1) + 1:stride,
                                  b:b + stride * (cols_t.shape[4] - 1) + 1:stride, 0]


def _planes_shape(padded_height: int, stride: int, kernel_width: int,
                  positions: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the planes `_im2col_single_channel` needs for corner-major columns."""
    batch, out_w = positions[0], positions[-1]
    step = 2 * stride
    return (step, stride + kernel_width, batch, -(-padded_height // step), out_w)


def _im2col_single_channel_corners(image: np.ndarray, stride: int, cols_t: np.ndarray,
                                   planes: np.ndarray) -> None:
    # Corner (a', b') of the windows reads rows stride*a' + a + step*i, every step-th
    # row: copied straight, each (i, j) plane would be runs of only out_w values. So the
    # image is first cut into planes, one per row residue modulo step and first column,
    # holding every step-th column: each (a, b, a', b') block is then one contiguous
    # run per image (the cnn preset's first conv: 0.36 -> 0.19 ms a half batch, as
    # fast as NHWC columns; measured).
    kh, kw, _, _, _, out_h, out_w = cols_t.shape
    step = 2 * stride
    width = step * (out_w - 1) + 1
    for residue in range(step):
        for column in range(planes.shape[1]):
            source = image[:, residue::step, column:column + width:step]
            planes[residue, column, :, :source.shape[1], :source.shape[2]] = source
    for a in range(kh):
        for b in range(kw):
            for corner_a in (0, 1):
                for corner_b in (0, 1):
                    row, column = stride * corner_a + a, stride * corner_b + b
                    plane = planes[row % step, column]
                    cols_t[a, b, :, corner_a, corner_b] = \
                        plane[:, row // step:row // step + out_h]


def _col2im(grad_cols: np.ndarray, stride: int, padding: tuple[int, int],
            dx: np.ndarray) -> None:
    """The adjoint of `_im2col`, from offset-major columns (kh, kw, batch, oh, ow, in):
    add each offset's column back where it was read from, into dx (batch, h, w, in),
    leaving out what was read from the padding (`padding` = rows above, columns left).

    Straight into dx rather than into a padded array: no padding to zero or add to,
    and a contiguous gradient for the layers below. An offset that read every pixel
    (the centre of a stride-1 "same" kernel) is copied first instead of zeroing dx."""
    kh, kw, _, out_h, out_w, _ = grad_cols.shape
    rows = [_span(a, padding[0], out_h, dx.shape[1], stride) for a in range(kh)]
    columns = [_span(b, padding[1], out_w, dx.shape[2], stride) for b in range(kw)]
    offsets = [(a, b) for a in range(kh) for b in range(kw)
               if rows[a] is not None and columns[b] is not None]
    whole = [(a, b) for a, b in offsets
             if _count(rows[a][0]) == dx.shape[1] and _count(columns[b][0]) == dx.shape[2]]
    if whole:
        a, b = whole[0]
        np.copyto(dx, grad_cols[a, b][:, rows[a][0], columns[b][0]])
        offsets.remove((a, b))
    else:
        dx.fill(0)
    for a, b in offsets:
        _add_offset(dx, rows[a], columns[b], grad_cols[a, b])


def _add_offset(dx: np.ndarray, rows: tuple[slice, slice], columns: tuple[slice, slice],
                grad_col: np.ndarray) -> None:
    """dx's pixels that one kernel offset read += that offset's column (batch, oh, ow, in),
    given (output positions, input pixels) along each axis."""
    dx[:, rows[1], columns[1]] += grad_col[:, rows[0], columns[0]]


def _count(positions: slice) -> int:
    return positions.stop - positions.start


def _span(offset: int, pad: int, out: int, size: int, stride: int
          ) -> tuple[slice, slice] | None:
    """(output positions, input pixels) along one axis where a kernel offset read a
    pixel of the input rather than its padding; None if it read none."""
    first = max(0, -(-(pad - offset) // stride))
    stop = min(out, (size - 1 + pad - offset) // stride + 1)
    if stop <= first:
        return None
    pixel = stride * first + offset - pad
    return slice(first, stop), slice(pixel, pixel + stride * (stop - first - 1) + 1, stride)


# Window offsets in TensorFlow's scan order: on a tie, the first one gets the gradient.
_POOL_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


class MaxPool2D(Layer):
    """Keras's MaxPooling2D(2): 2x2 windows, stride 2, "valid" (an odd last row and
    column are dropped). With `corner_major`, `forward` takes its conv's corner-major
    maps (see the module's docstring) and `backward` returns their gradient so; the
    pooled maps are NHWC either way, and `infer` and `trace` take NHWC."""

    def __init__(self, *, corner_major: bool = False) -> None:
        super().__init__()
        self.corner_major = corner_major
        self._shape: tuple[int, ...] = ()

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        # A knockout, top pair against bottom pair, so that the winner of each window
        # is known from three comparisons, each strict so that a tie goes to the
        # earlier position in TensorFlow's scan order: backward then writes each
        # offset's gradient once, instead of finding the first maximum again. On NHWC
        # maps NumPy loops over runs of only `c` values in these strided views, so the
        # number of strided passes is what costs.
        self._shape = x.shape                   # (batch, h, w, c), or corner-major
        pooled = self._pooled_shape(x.shape)
        windows = self._windows(x, pooled)                      # (batch, oh, 2, ow, 2, c)
        top = self._buffer("top", pooled, x.dtype)
        y = self._buffer("y", pooled, x.dtype)                  # (batch, h//2, w//2, c)
        np.maximum(windows[:, :, 0, :, 0], windows[:, :, 0, :, 1], out=top)
        np.maximum(windows[:, :, 1, :, 0], windows[:, :, 1, :, 1], out=y)   # the bottom
        self._right = [self._buffer(f"right_{a}", pooled, np.bool_) for a in (0, 1)]
        for a, right in enumerate(self._right):
            np.greater(windows[:, :, a, :, 1], windows[:, :, a, :, 0], out=right)
        self._bottom = np.greater(y, top, out=self._buffer("bottom", pooled, np.bool_))
        return np.maximum(top, y, out=y)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        dx = self._buffer("dx", self._shape, grad.dtype)
        if not self.corner_major and (self._shape[1] % 2 or self._shape[2] % 2):
            dx.fill(0)                                          # the dropped row/column
        windows = self._windows(dx, grad.shape)
        # The gradient of the winning pair (row a), then split between its two. The
        # loser's share is the whole less the winner's, exactly (x - x and x - 0 round
        # to nothing): a subtraction instead of negating a mask and multiplying by it,
        # whose bool operand NumPy converts on the way.
        bottom = np.multiply(grad, self._bottom, out=self._buffer("bottom_grad", grad.shape,
                                                                  grad.dtype))
        top = np.subtract(grad, bottom, out=self._buffer("top_grad", grad.shape, grad.dtype))
        for a, (row_grad, right) in enumerate(zip((top, bottom), self._right)):
            np.multiply(row_grad, right, out=windows[:, :, a, :, 1])
            np.subtract(row_grad, windows[:, :, a, :, 1], out=windows[:, :, a, :, 0])
        return dx

    def _pooled_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.corner_major:
            batch, _, _, out_h, out_w, channels = shape
            return batch, out_h, out_w, channels
        return _pooled_shape(shape)

    def _windows(self, x: np.ndarray, pooled: tuple[int, ...]) -> np.ndarray:
        if self.corner_major:
            return x.transpose(0, 3, 1, 4, 2, 5)                # (n, 2, 2, oh, ow, c)
        return _windows(x, pooled)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return _pool(x, out=np.empty(_pooled_shape(x.shape), x.dtype))


def _pooled_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[1] // 2, shape[2] // 2, shape[3])


def _window_shape(pooled: tuple[int, ...]) -> tuple[int, ...]:
    batch, out_h, out_w, channels = pooled
    return (batch, out_h, 2, out_w, 2, channels)


def _windows(x: np.ndarray, pooled: tuple[int, ...]) -> np.ndarray:
    """x's pooled part as (n, oh, 2, ow, 2, c) windows, a view (writeable if x is): a
    strided view, not a reshape, since an odd last row and column are left out."""
    image, row, pixel, value = x.strides
    return as_strided(x, shape=_window_shape(pooled),
                      strides=(image, 2 * row, row, 2 * pixel, pixel, value))


def _pool(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    out_h, out_w = out.shape[1:3]
    corners = [x[:, a:2 * out_h:2, b:2 * out_w:2] for a, b in _POOL_OFFSETS]
    np.maximum(corners[0], corners[1], out=out)
    np.maximum(out, corners[2], out=out)
    return np.maximum(out, corners[3], out=out)


class Reshape(Layer):
    """Each image to `shape` (row-major, as Keras's Reshape); Flatten is shape (-1,)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape
        self._input_shape: tuple[int, ...] = ()

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._input_shape = x.shape
        return self.infer(x)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad.reshape(self._input_shape)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), *self.shape)


def Flatten() -> Reshape:                                       # noqa: N802 - a layer
    """Keras's Flatten on channels-last maps: (batch, h, w, c) -> (batch, h*w*c)."""
    return Reshape((-1,))

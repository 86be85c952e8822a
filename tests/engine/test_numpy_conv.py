"""Gradient checks for the NumPy engine's image layers (Conv2D for every kernel size,
stride and padding, MaxPool2D, BatchNorm in both modes, Flatten) against central
differences in float64, each beside a deliberately wrong backward the same check must
catch; and the padding rule against TensorFlow's."""

from __future__ import annotations

import numpy as np
import pytest

from engine.numpy_nn.batchnorm import BatchNorm
from engine.numpy_nn.conv import Conv2D, Flatten, MaxPool2D, conv_geometry
from tests.engine.test_numpy_layers import numerical_gradient, relative_error

TOLERANCE = 1e-6
CONV_CASES = [(size, stride, padding) for size in (3, 5) for stride in (1, 2)
              for padding in ("same", "valid")]


def gradient_errors(layer, x: np.ndarray, rng: np.random.Generator, training: bool = False
                    ) -> list[float]:
    """Relative errors of backward's input gradient and of every param gradient, for the
    scalar objective sum(forward(x) * upstream)."""
    def run() -> np.ndarray:
        if isinstance(layer, BatchNorm):
            return layer.forward(x, training, update_statistics=False)
        return layer.forward(x, training)

    upstream = rng.normal(size=run().shape)

    def objective() -> float:
        return float(np.sum(run() * upstream))

    run()
    input_gradient = layer.backward(upstream.copy())
    analytic = [np.array(input_gradient)] + [grad.copy() for grad in layer.grads]
    numeric = [numerical_gradient(objective, x)]
    numeric += [numerical_gradient(objective, param) for param in layer.params]
    return [relative_error(a, n) for a, n in zip(analytic, numeric)]


def conv_layer(rng, size: int, stride: int, padding: str, bias: bool = True, **kwargs):
    kernel = rng.normal(size=(size, size, 2, 3))
    return Conv2D(kernel, rng.normal(size=3) if bias else None, stride=stride,
                  padding=padding, **kwargs)


# ---- the padding rule -------------------------------------------------------------

@pytest.mark.parametrize("size, kernel, stride, padding, expected", [
    (28, 3, 1, "same", (28, 1, 1)),
    (28, 3, 2, "same", (14, 0, 1)),     # TensorFlow puts the odd pixel after
    (7, 3, 2, "same", (4, 1, 1)),
    (28, 5, 2, "same", (14, 1, 2)),
    (8, 5, 1, "valid", (4, 0, 0)),
    (7, 3, 2, "valid", (3, 0, 0)),
    (6, 2, 2, "same", (3, 0, 0)),       # no padding needed: max(..., 0)
])
def test_padding_follows_tensorflows_rule(size, kernel, stride, padding, expected):
    assert conv_geometry(size, kernel, stride, padding) == expected


def test_an_unknown_padding_is_refused():
    with pytest.raises(ValueError, match="padding must be one of same, valid"):
        Conv2D(np.zeros((3, 3, 1, 1)), padding="full")


# ---- Conv2D ----------------------------------------------------------------------

@pytest.mark.parametrize("size, stride, padding", CONV_CASES)
def test_conv_gradients_match_central_differences(size, stride, padding):
    rng = np.random.default_rng(11)
    # Odd and even sides: a stride-2 "same" conv pads differently on each.
    errors = gradient_errors(conv_layer(rng, size, stride, padding),
                             rng.normal(size=(2, 7, 8, 2)), rng)
    assert len(errors) == 3
    assert max(errors) < TOLERANCE, errors


def test_conv_forward_equals_a_direct_sum_over_the_window():
    rng = np.random.default_rng(12)
    layer = conv_layer(rng, 3, 2, "same", bias=False)
    x = rng.normal(size=(2, 7, 8, 2))
    y = layer.forward(x, training=False)
    padded = np.pad(x, ((0, 0), (1, 1), (0, 1), (0, 0)))     # rows 1+1, columns 0+1
    kernel = layer.params[0]
    expected = np.zeros((2, 4, 4, 3))
    for i in range(4):
        for j in range(4):
            window = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]   # (2, 3, 3, in)
            expected[:, i, j] = np.einsum("nabc,abco->no", window, kernel)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(layer.infer(x), y)


@pytest.mark.parametrize("stride, padding", [(1, "same"), (2, "valid")])
def test_a_one_channel_conv_builds_its_columns_its_own_way_to_the_same_result(stride,
                                                                              padding):
    """A one-channel input takes the offset-major im2col: same outputs and gradients."""
    rng = np.random.default_rng(17)
    layer = Conv2D(rng.normal(size=(3, 3, 1, 3)), rng.normal(size=3), stride=stride,
                   padding=padding)
    errors = gradient_errors(layer, rng.normal(size=(2, 7, 8, 1)), rng)
    assert max(errors) < TOLERANCE, errors
    x = rng.normal(size=(2, 7, 8, 1))
    # Two identical channels with half the kernel each: the general path's answer.
    wide = Conv2D(np.concatenate([layer.params[0] / 2] * 2, axis=2), layer.params[1],
                  stride=stride, padding=padding)
    np.testing.assert_allclose(layer.forward(x, training=True),
                               wide.forward(np.concatenate([x, x], axis=3), training=True),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.infer(x), layer.forward(x, training=True),
                               rtol=1e-12, atol=1e-12)


def test_a_first_conv_skips_the_input_gradient_but_fills_the_kernels():
    rng = np.random.default_rng(13)
    layer = conv_layer(rng, 3, 1, "same", input_gradient=False)
    layer.forward(rng.normal(size=(2, 6, 6, 2)), training=True)
    assert layer.backward(rng.normal(size=(2, 6, 6, 3))) is None
    assert np.abs(layer.grads[0]).max() > 0


class ConvWithTransposedKernel(Conv2D):
    """A deliberately wrong conv: its input gradient uses the kernel flipped in space."""

    def backward(self, grad):
        kernel = self.params[0]
        self.params[0] = kernel[::-1, ::-1].copy()
        try:
            return super().backward(grad)
        finally:
            self.params[0] = kernel


class ConvForgettingOverlaps(Conv2D):
    """A deliberately wrong conv: each input pixel keeps only one window's gradient."""

    def backward(self, grad):
        import engine.numpy_nn.conv as conv
        original = conv._add_offset

        def overwrite(dx, rows, columns, grad_col):
            dx[:, rows[1], columns[1]] = grad_col[:, rows[0], columns[0]]
        conv._add_offset = overwrite
        try:
            return super().backward(grad)
        finally:
            conv._add_offset = original


@pytest.mark.parametrize("broken", [ConvWithTransposedKernel, ConvForgettingOverlaps])
def test_the_checker_catches_a_wrong_conv_gradient(broken):
    rng = np.random.default_rng(14)
    layer = broken(rng.normal(size=(3, 3, 2, 3)), padding="same")
    errors = gradient_errors(layer, rng.normal(size=(2, 6, 6, 2)), rng)
    assert errors[0] > 0.1, errors


# ---- MaxPool2D -------------------------------------------------------------------

def distinct_values(rng, shape):
    """A permutation of spaced values: no ties within a window, so max is smooth."""
    return rng.permutation(np.arange(np.prod(shape)) * 0.01).reshape(shape) - 1.0


@pytest.mark.parametrize("side", [6, 7], ids=["even", "odd-side-dropped"])
def test_maxpool_gradients_match_central_differences(side):
    rng = np.random.default_rng(15)
    errors = gradient_errors(MaxPool2D(), distinct_values(rng, (2, side, side, 3)), rng)
    assert errors[0] < TOLERANCE, errors


def test_maxpool_takes_window_maxima_and_gives_a_tie_to_the_first_position():
    x = np.array([[1., 5., 2., 2.],
                  [3., 4., 2., 2.],
                  [0., 0., 9., 1.]]).reshape(1, 3, 4, 1)
    layer = MaxPool2D()
    y = layer.forward(x, training=True)
    assert y.reshape(-1).tolist() == [5.0, 2.0]               # the odd row is dropped
    dx = layer.backward(np.array([10., 20.]).reshape(1, 1, 2, 1)).reshape(3, 4)
    assert dx.tolist() == [[0, 10, 20, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(layer.infer(x), y)


@pytest.mark.parametrize("channels", [1, 2], ids=["one-channel", "general"])
@pytest.mark.parametrize("size, stride, padding, side", [
    (3, 1, "same", 6), (3, 2, "same", 12), (5, 2, "same", 7), (3, 1, "valid", 8),
    (5, 1, "valid", 10)])
def test_corner_major_maps_pool_and_backpropagate_as_nhwc_ones_do(channels, size, stride,
                                                                   padding, side):
    """A conv handing its pool corner-major maps: the same pooled maps, ties included,
    and the same input and kernel gradients as the NHWC pair."""
    rng = np.random.default_rng(23)
    kernel, bias = rng.normal(size=(size, size, channels, 3)), rng.normal(size=3)
    x = rng.normal(size=(2, side, side, channels))
    x[0, :, :side // 2] = 0.5               # flat regions: ties in every window
    pairs = [(Conv2D(kernel, bias, stride=stride, padding=padding, corner_major=corner),
              MaxPool2D(corner_major=corner)) for corner in (False, True)]
    maps = [conv.forward(x, training=True) for conv, _ in pairs]
    assert maps[1].shape[1:3] == (2, 2)
    np.testing.assert_array_equal(maps[1].transpose(0, 3, 1, 4, 2, 5).reshape(maps[0].shape),
                                  maps[0])
    pooled = [pool.forward(y, training=True) for (_, pool), y in zip(pairs, maps)]
    np.testing.assert_array_equal(pooled[1], pooled[0])
    upstream = rng.normal(size=pooled[0].shape)
    grads = [conv.backward(pool.backward(upstream.copy())) for conv, pool in pairs]
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, atol=1e-12)
    for nhwc, corner in zip(pairs[0][0].grads, pairs[1][0].grads):
        np.testing.assert_allclose(corner, nhwc, rtol=1e-12, atol=1e-12)
    # Traced maps are read as images: NHWC whatever the training pass uses.
    traced, _ = pairs[1][0].trace(x)
    np.testing.assert_array_equal(traced, maps[0])


def test_corner_major_maps_need_an_even_size():
    with pytest.raises(ValueError, match="even size"):
        Conv2D(np.ones((3, 3, 1, 1)), corner_major=True).forward(np.ones((1, 7, 7, 1)),
                                                                  training=True)


class MaxPoolSpreadingTies(MaxPool2D):
    """A deliberately wrong pool: it routes the gradient to every position of the
    window, not only to the maximum."""

    def backward(self, grad):
        dx = np.zeros(self._shape, grad.dtype)
        for a in (0, 1):
            for b in (0, 1):
                dx[:, a:2 * grad.shape[1]:2, b:2 * grad.shape[2]:2] = grad
        return dx


def test_the_checker_catches_a_wrong_pool_gradient():
    rng = np.random.default_rng(16)
    errors = gradient_errors(MaxPoolSpreadingTies(), distinct_values(rng, (2, 6, 6, 3)),
                             rng)
    assert errors[0] > 0.1, errors


# ---- BatchNorm -------------------------------------------------------------------

def batch_norm(rng, channels: int = 3, cls=BatchNorm) -> BatchNorm:
    return cls(rng.uniform(0.5, 1.5, channels), rng.normal(size=channels),
               rng.normal(size=channels), rng.uniform(0.5, 2.0, channels))


@pytest.mark.parametrize("training", [True, False], ids=["batch-statistics", "moving"])
def test_batch_norm_gradients_match_central_differences(training):
    rng = np.random.default_rng(17)
    x = rng.normal(loc=0.5, scale=2.0, size=(4, 3, 3, 3))
    errors = gradient_errors(batch_norm(rng), x, rng, training=training)
    assert len(errors) == 3
    assert max(errors) < TOLERANCE, errors


class BatchNormIgnoringTheBatchMean(BatchNorm):
    """A deliberately wrong batch norm: it treats the batch statistics as constants,
    dropping their terms from the input gradient."""

    def backward(self, grad):
        batch_statistics, self._batch_statistics = self._batch_statistics, False
        try:
            return super().backward(grad)
        finally:
            self._batch_statistics = batch_statistics


def test_the_checker_catches_a_batch_norm_gradient_missing_the_batch_terms():
    rng = np.random.default_rng(18)
    layer = batch_norm(rng, cls=BatchNormIgnoringTheBatchMean)
    errors = gradient_errors(layer, rng.normal(size=(4, 3, 3, 3)), rng, training=True)
    assert errors[0] > 0.1, errors


def test_batch_norm_moves_its_statistics_with_the_biased_variance_in_training_only():
    rng = np.random.default_rng(19)
    layer = BatchNorm(np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))
    x = rng.normal(loc=3.0, scale=2.0, size=(5, 4, 4, 2))
    y = layer.forward(x, training=True)
    rows = x.reshape(-1, 2)
    np.testing.assert_allclose(layer.state[0], 0.1 * rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.state[1], 0.9 + 0.1 * rows.var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        y.reshape(-1, 2), (rows - rows.mean(0)) / np.sqrt(rows.var(0) + 1e-3), rtol=1e-10)
    moved = [array.copy() for array in layer.state]
    inferred = layer.forward(x, training=False).copy()     # the buffer is reused
    layer.forward(x, training=True, update_statistics=False)
    assert all(np.array_equal(a, b) for a, b in zip(layer.state, moved))
    expected = (rows - moved[0]) / np.sqrt(moved[1] + 1e-3)
    np.testing.assert_allclose(inferred.reshape(-1, 2), expected, rtol=1e-10)
    np.testing.assert_allclose(layer.infer(x), inferred, rtol=1e-12, atol=1e-12)


# ---- Flatten ---------------------------------------------------------------------

def test_flatten_is_channels_last_row_major_and_its_gradient_is_the_reshape():
    rng = np.random.default_rng(20)
    x = rng.normal(size=(2, 3, 3, 4))
    layer = Flatten()
    y = layer.forward(x, training=True)
    assert y.shape == (2, 36)
    assert y[1, 4 * (3 * 1 + 2) + 3] == x[1, 1, 2, 3]           # index (h*W + w)*C + c
    errors = gradient_errors(layer, x, rng)
    assert errors[0] < TOLERANCE, errors


def test_the_checker_catches_a_flatten_gradient_in_the_wrong_order():
    class FlattenChannelsFirst(type(Flatten())):
        def backward(self, grad):
            n, h, w, c = self._input_shape
            return grad.reshape(n, c, h, w).transpose(0, 2, 3, 1)

    rng = np.random.default_rng(21)
    layer = FlattenChannelsFirst((-1,))
    errors = gradient_errors(layer, rng.normal(size=(2, 3, 3, 4)), rng)
    assert errors[0] > 0.1, errors


# ---- the whole CNN ---------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    # 7 * 7 * 16 features are as many as an image's pixels: the dense layer after them
    # must still pass its gradient down.
    {"conv_filters": (4, 16), "hidden_sizes": (), "l2": 0.01},
    {"conv_filters": (4, 4), "hidden_sizes": (6,), "l2": 0.0, "dropout": 0.5,
     "activation": "tanh"},
], ids=["features-as-wide-as-the-image", "hidden-tanh-dropout-ignored"])
@pytest.mark.parametrize("batch_statistics", [False, True], ids=["moving", "batch"])
def test_cnn_gradients_match_central_differences(mnist, changes, batch_statistics):
    from engine.config import TrainConfig
    from engine.numpy_nn.network import NumpyNetwork
    config = TrainConfig(architecture="cnn", batch_size=8, **changes)
    network = NumpyNetwork(config, dtype=np.float64)
    rng = np.random.default_rng(22)
    # Every bias, gamma, beta and moving statistic away from its starting value.
    network.set_weights([
        weight if name.endswith("_kernel") else
        rng.uniform(0.5, 1.5, weight.shape) if name.endswith(("_gamma", "_variance")) else
        rng.normal(scale=0.1, size=weight.shape)
        for name, weight in zip(network.stack.names, network.get_weights())])
    images, labels = mnist.train_images[:8], mnist.train_labels[:8]
    analytic = network.gradients(images, labels, batch_statistics=batch_statistics)
    params = network.stack.params                 # views: editing one edits the network
    assert [grad.shape for grad in analytic] == [param.shape for param in params]
    for position, (param, grad) in enumerate(zip(params, analytic)):
        flat = param.reshape(-1)
        for index in rng.choice(flat.size, size=min(12, flat.size), replace=False):
            original, values = flat[index], []
            for shifted in (original + 1e-6, original - 1e-6):
                flat[index] = shifted
                values.append(network.objective(images, labels,
                                                batch_statistics=batch_statistics))
            flat[index] = original
            numeric = (values[0] - values[1]) / 2e-6
            assert grad.reshape(-1)[index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (
                f"array {position}, entry {index}")
